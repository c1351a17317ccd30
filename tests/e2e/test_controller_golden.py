"""The golden step on a real kube-apiserver: the golden set in a ConfigMap, `python -m controller.kube` running
as the identity manifests/rbac.yaml grants (so the RBAC must allow reading the ConfigMap), a router reading
the apiserver, real model processes that count the requests they get, and traffic from the moment the
rollout is applied.

- a candidate wrong on the golden set: RolledBack in the golden step, the status, the Event and the
  controller's metrics name the golden check with its numbers; the candidate never got a live or mirrored
  request, only the golden set;
- a candidate right on it: Shadowing next, then Promoted;
- `kubectl explain` documents the step.
"""
from __future__ import annotations

import json
import urllib.request

import pytest
import yaml

from tests.e2e.conftest import apply, events, logs, metric_value, rollout_doc, wait_event, wait_for, wait_phase
from tests.e2e.test_manifests import manifests_rbac

pytestmark = pytest.mark.usefixtures("mro_crd")

N = 12


def predict(url: str, body: dict) -> float:
    req = urllib.request.Request(f"{url}/predict", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["prediction"]


def counts(proc) -> dict:
    with urllib.request.urlopen(f"{proc.url}/healthz", timeout=5) as r:
        return json.loads(r.read())["requests"]


@pytest.fixture
def controller_identity(kubectl, namespace, restricted_kubeconfig):
    """A kubeconfig for the ServiceAccount modelrollout-controller bound only by manifests/rbac.yaml."""
    with manifests_rbac(kubectl, namespace):
        yield restricted_kubeconfig(namespace, "modelrollout-controller")


def golden_configmap(kubectl, namespace: str, baseline) -> None:
    lines = []
    for i in range(N):
        body = {"features": {"amount": 7 * i, "country": ["fr", "de", "us"][i % 3]}}
        lines.append(json.dumps({"id": f"g{i}", "request": body, "expected": predict(baseline.url, body)}))
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "scorer-golden", "namespace": namespace,
                                                               "labels": {"modelrollout.io/golden-set": "true"}},
          "data": {"set.jsonl": "\n".join(lines) + "\n"}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(cm))


STEPS = [{"golden": {"configMap": {"name": "scorer-golden", "key": "set.jsonl"}, "maxAbsDelta": 0.05,
                     "minAccuracy": 0.9}},
         {"shadow": {"duration": "3s"}}, {"canary": {"weight": 50, "duration": "3s"}}]


def test_a_candidate_wrong_on_the_golden_set_never_meets_a_user(procs, kubeconfig, kubectl, k8s_api, namespace,
                                                                controller_identity):
    v1 = procs.scorer("v1", seed=3)
    v2 = procs.scorer("v2", seed=3, shift=0.25)
    golden_configmap(kubectl, namespace, v1)
    before = counts(v2)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(controller_identity, namespace, "--router-url", router.url)
    apply(kubectl, rollout_doc("golden-wrong", namespace, v1, v2, steps=STEPS))
    procs.traffic(router, "golden-wrong", namespace, rps=40, duration=120)
    obj = wait_phase(k8s_api, namespace, "golden-wrong", {"RolledBack"}, 60,
                     forbid={"Shadowing", "Progressing", "Promoted", "Paused"}, diagnose=lambda: logs(ctl, router))
    st = obj["status"]
    assert st["currentStep"] == 0 and st["routing"]["candidateWeight"] == 0 and not st["routing"].get("shadow")
    assert "golden set failed: golden-max-abs-delta 0.25 > 0.05" in st["message"], st["message"]
    assert f"golden-accuracy 0 < 0.9: 0/{N} expected outputs matched" in st["message"], st["message"]
    checks = {c["name"]: c for c in st["checks"]}
    assert checks["golden-max-abs-delta"]["verdict"] == "Fail" and checks["golden-max-abs-delta"]["samples"] == N
    assert st["history"][-1]["check"]["name"] in ("golden-max-abs-delta", "golden-accuracy")
    event = wait_event(k8s_api, namespace, "golden-wrong", "RolledBack")
    assert event.type == "Warning" and "golden-max-abs-delta 0.25 > 0.05" in event.message
    ctl_metrics = f"{ctl.url}/metrics"
    assert metric_value(ctl_metrics, "modelrollout_check_failing", rollout="golden-wrong",
                        check="golden-max-abs-delta", severity="critical") == 1
    assert metric_value(ctl_metrics, "modelrollout_check_value", rollout="golden-wrong",
                        check="golden-accuracy") == 0
    assert metric_value(f"{router.url}/metrics", "modelrollout_router_golden_requests_total", rollout="golden-wrong",
                        version="v2", code="200") == N
    # 40 more user requests after the rollback: the wrong candidate still got nothing but the one golden run
    live = counts(v1)["live"]
    wait_for(lambda: counts(v1)["live"] >= live + 40, 30, "40 more live requests to v1")
    got = {k: counts(v2)[k] - before[k] for k in before}
    assert got == {"live": 0, "shadow": 0, "golden": N}, (got, logs(ctl, router))


def test_a_candidate_right_on_the_golden_set_goes_on_to_shadow(procs, kubeconfig, kubectl, k8s_api, namespace,
                                                               controller_identity):
    v1 = procs.scorer("v1", seed=3)
    v2 = procs.scorer("v2", seed=3)
    golden_configmap(kubectl, namespace, v1)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(controller_identity, namespace, "--router-url", router.url)
    apply(kubectl, rollout_doc("golden-right", namespace, v1, v2, steps=STEPS))
    procs.traffic(router, "golden-right", namespace, rps=40, duration=120)
    diag = lambda: logs(ctl, router)  # noqa: E731
    obj = wait_phase(k8s_api, namespace, "golden-right", {"Shadowing", "Progressing", "Promoted"}, 60,
                     forbid={"RolledBack", "Paused"}, diagnose=diag)
    checks = {c["name"]: c for c in obj["status"]["checks"]}
    assert checks["golden-max-abs-delta"]["verdict"] == "Pass" and checks["golden-accuracy"]["value"] == 1
    obj = wait_phase(k8s_api, namespace, "golden-right", {"Promoted"}, 90, forbid={"RolledBack", "Paused"},
                     diagnose=diag)
    reasons = [e.reason for e in events(k8s_api, namespace, "golden-right")]
    assert reasons.count("StepStarted") == 3 and "Promoted" in reasons, reasons
    got = counts(v2)
    assert got["golden"] == N and got["shadow"] > 0 and got["live"] > 0, got


def test_an_unlabelled_configmap_is_not_read_and_the_rollout_pauses(procs, kubeconfig, kubectl, k8s_api,
                                                                    namespace, controller_identity):
    """A ConfigMap without the label modelrollout.io/golden-set=true is no golden set: the golden checks are
    Inconclusive saying so, the rollout pauses after inconclusiveLimit runs, the candidate gets nothing."""
    v1, v2 = procs.scorer("v1", seed=3), procs.scorer("v2", seed=3)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "scorer-golden", "namespace": namespace},
          "data": {"set.jsonl": json.dumps({"request": {"features": {"amount": 1}}}) + "\n"}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(cm))
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(controller_identity, namespace, "--router-url", router.url)
    apply(kubectl, rollout_doc("golden-unlabelled", namespace, v1, v2, steps=STEPS))
    obj = wait_phase(k8s_api, namespace, "golden-unlabelled", {"Paused"}, 60,
                     forbid={"Shadowing", "Progressing", "Promoted", "RolledBack"}, diagnose=lambda: logs(ctl, router))
    st = obj["status"]
    assert st["pauseReason"] == "inconclusive" and st["currentStep"] == 0
    assert f"ConfigMap {namespace}/scorer-golden key set.jsonl: the ConfigMap is not labelled " \
           "modelrollout.io/golden-set=true" in st["message"], st["message"]
    assert counts(v2) == {"live": 0, "shadow": 0, "golden": 0}


def test_kubectl_explain_documents_the_golden_step_and_inline_sets_are_accepted(kubectl, namespace):
    out = kubectl("explain", "modelrollout.spec.strategy.steps.golden").stdout
    for words in ("configMap", "minAccuracy", "maxAbsDelta", "maxErrorRate", "requests", "tolerance"):
        assert words in out, out
    out = kubectl("explain", "modelrollout.spec.strategy.steps.golden.configMap").stdout
    assert "key" in out and "name" in out, out
    # inline requests keep any JSON (the schema preserves request and expected as written)
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "golden-inline", "namespace": namespace},
           "spec": {"baseline": {"version": "v1", "url": "http://a.test"},
                    "candidate": {"version": "v2", "url": "http://b.test"}, "output": {"kind": "class"},
                    "strategy": {"steps": [{"golden": {"requests": [
                        {"request": {"features": {"a": [1, 2], "b": {"c": True}}}, "expected": "fraud", "id": "x"},
                        {"request": [1, "two"], "expected": 3}], "minAgreement": 1}},
                        {"canary": {"weight": 10}}]}}}
    out = kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    assert "created" in out.stdout
    got = json.loads(kubectl("get", "mro", "golden-inline", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["strategy"]["steps"][0]["golden"]["requests"] == \
        doc["spec"]["strategy"]["steps"][0]["golden"]["requests"]
    both = dict(doc, metadata={"name": "golden-both", "namespace": namespace})
    both["spec"] = dict(doc["spec"], strategy={"steps": [{"golden": {"url": "https://g.test/set.json",
                                                                      "configMap": {"name": "g", "key": "k"}}}]})
    refused = kubectl("apply", "-f", "-", input=yaml.safe_dump(both), check=False)
    assert refused.returncode != 0 and "expected exactly one of configMap, url, requests" in refused.stderr
