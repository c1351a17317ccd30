"""spec.fallback and spec.postPromotion on a real kube-apiserver, with real routers (`router --kube`), real
model processes and `python -m controller.kube` deciding:

- the CRD documents both (`kubectl explain`) and its CEL rules reject what the parser rejects;
- both versions fail every request: every client request gets the fallback's answer (0 5xx) and the
  controller still rolls the candidate back on its errors;
- labels that arrive after v2's promotion show it less accurate than v1: the promotion is regretted
  (Event with the numbers, metric) and `action: rollback` restores v1 (status.stable, routing 100% to it).
"""
from __future__ import annotations

import collections
import json
import random
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

from tests.e2e.conftest import (apply, events, get_rollout, logs, metric_value, rollout_doc, wait_for,
                                wait_phase)

pytestmark = pytest.mark.usefixtures("mro_crd")

STATIC = {"prediction": 0.0, "source": "fallback"}


def post(url: str, doc: dict, headers: dict | None = None) -> tuple[int, dict, dict | None]:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(),
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, hdrs, body = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, body = e.code, dict(e.headers), e.read()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return status, {k.lower(): v for k, v in hdrs.items()}, parsed


class Client(threading.Thread):
    """Predictions through the router at about `rps` until stopped; every answer kept."""

    def __init__(self, url: str, rps: float = 40):
        super().__init__(daemon=True)
        self.url, self.every = url, 1.0 / rps
        self.answers: list[tuple[int, dict, dict | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(5)
        while not self.halt.is_set():
            self.answers.append(post(self.url, {"features": {"age": rng.gauss(40, 10)}},
                                     {"x-user-id": f"u{rng.randrange(1000)}"}))
            time.sleep(self.every)

    def stop(self) -> None:
        self.halt.set()
        self.join(15)


def test_the_crd_documents_and_checks_fallback_and_post_promotion(kubectl, namespace, procs):
    # just after the CRD is Established, discovery may not list it yet: explain once it does
    out = wait_for(lambda: (lambda r: r.returncode == 0 and r.stdout)(kubectl("explain", "mro.spec.fallback",
                                                                              check=False)),
                   30, "kubectl explain mro.spec.fallback")
    assert "x-modelrollout-fallback" in out and "static" in out and "url" in out, out
    out = kubectl("explain", "mro.spec.postPromotion.checks.maxDrop").stdout
    assert "previous stable" in out, out
    out = kubectl("explain", "mro.status.postPromotion").stdout
    assert "delayed labels" in out, out
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    doc = rollout_doc("crd", namespace, v1, v2, fallback={"url": "http://h:1/predict", "static": STATIC})
    r = apply(kubectl, doc, check=False)
    assert r.returncode != 0 and "expected exactly one of url, static" in r.stderr, r.stderr
    doc = rollout_doc("crd", namespace, v1, v2, postPromotion={"duration": "1h", "checks": [
        {"name": "eo", "metric": "equal-opportunity"}]})
    r = apply(kubectl, doc, check=False)
    assert r.returncode != 0 and "equal-opportunity needs segment and minRatioToBaseline" in r.stderr, r.stderr
    doc = rollout_doc("crd", namespace, v1, v2, fallback={"static": STATIC}, postPromotion={
        "duration": "1h", "action": "rollback", "checks": [{"name": "acc", "metric": "accuracy", "maxDrop": 0.02}]})
    apply(kubectl, doc)


def test_both_versions_failing_clients_get_the_fallback_and_the_candidate_rolls_back(
        procs, kubeconfig, kubectl, k8s_api, namespace):
    v1, v2 = procs.scorer("v1", error_rate=1), procs.scorer("v2", error_rate=1, seed=2)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    doc = rollout_doc("failing", namespace, v1, v2, fallback={"static": STATIC},
                      steps=[{"shadow": {"duration": "20s"}}, {"canary": {"weight": 50, "duration": "20s"}}])
    apply(kubectl, doc)
    wait_for(lambda: f"{namespace}/failing" in json.loads(urllib.request.urlopen(f"{router.url}/readyz",
                                                                                 timeout=5).read())["rollouts"],
             30, "the router serving the rollout", diagnose=lambda: logs(router))
    client = Client(f"{router.url}/v1/rollouts/failing/predict?namespace={namespace}")
    client.start()
    try:
        obj = wait_phase(k8s_api, namespace, "failing", {"RolledBack"}, 90, forbid={"Promoted"},
                         diagnose=lambda: logs(ctl, router))
        time.sleep(2)                       # and after the rollback, the baseline's failures too
    finally:
        client.stop()
    assert "errors" in obj["status"]["message"], obj["status"]
    codes = collections.Counter(s for s, _, _ in client.answers)
    assert len(client.answers) > 30 and set(codes) == {200}, codes
    assert all(h.get("x-modelrollout-fallback") == "http_5xx" and d == STATIC for _, h, d in client.answers)
    served = metric_value(f"{router.url}/metrics", "modelrollout_router_fallback_total", rollout="failing",
                          result="served")
    assert served == len(client.answers), (served, len(client.answers))


def test_a_promotion_regretted_on_delayed_labels_restores_the_previous_stable(
        procs, kubeconfig, kubectl, k8s_api, namespace):
    v1, v2 = procs.scorer("v1", seed=0), procs.scorer("v2", seed=1)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    diag = lambda: logs(ctl, router)  # noqa: E731
    doc = rollout_doc("churn", namespace, v1, v2, steps=[{"canary": {"weight": 50, "duration": "6s"}}],
                      checks=[{"name": "errors", "metric": "error-rate", "max": 0.05}],
                      postPromotion={"duration": "90s", "interval": "2s", "minSamples": 60, "failureLimit": 2,
                                     "action": "rollback",
                                     "checks": [{"name": "accuracy-kept", "metric": "accuracy", "maxDrop": 0.05}]})
    doc["spec"]["strategy"]["stickiness"] = {"header": "x-user-id"}
    apply(kubectl, doc)
    base = f"{router.url}/v1/rollouts/churn"
    client = Client(f"{base}/predict?namespace={namespace}")
    client.start()
    labelled: set[str] = set()
    rng = random.Random(9)
    try:
        obj = wait_phase(k8s_api, namespace, "churn", {"Promoted"}, 90, forbid={"RolledBack", "Failed"},
                         diagnose=diag)
        assert obj["status"]["postPromotion"]["state"] == "Judging", obj["status"]
        versions = collections.Counter(h.get("x-model-version") for s, h, _ in client.answers if s == 200)
        assert versions["v1"] > 60 and versions["v2"] > 0, versions

        def label_all() -> None:
            """The labels come now, after the promotion: v1's predictions were right, v2's wrong 30% of the time."""
            for status, headers, answer in list(client.answers):
                fid = headers.get("x-feedback-id")
                if status != 200 or not fid or fid in labelled:
                    continue
                right = headers["x-model-version"] == "v1" or rng.random() >= 0.3
                predicted = answer["prediction"] >= 0.5
                code, _, _ = post(f"{base}/feedback?namespace={namespace}",
                                  {"feedback_id": fid, "label": int(predicted == right)})
                assert code == 200
                labelled.add(fid)

        def rolled_back():
            label_all()
            o = get_rollout(k8s_api, namespace, "churn")
            return o if o["status"].get("phase") == "RolledBack" else None

        obj = wait_for(rolled_back, 80, "the regretted promotion rolled back", interval=1.0, diagnose=diag)
    finally:
        client.stop()
    st = obj["status"]
    assert st["stable"] == {"version": "v1", "url": v1.url} and st["routing"]["candidateWeight"] == 0, st
    pp = st["postPromotion"]
    assert pp["state"] == "Regretted" and pp["previous"]["version"] == "v1" and pp["promoted"]["version"] == "v2"
    check = pp["checks"][0]
    assert check["verdict"] == "Fail" and check["value"] < check["evidence"]["previousValue"] - 0.05, check
    regret = [e for e in events(k8s_api, namespace, "churn") if e.reason == "PromotionRegretted"]
    assert regret and regret[0].type == "Warning", [e.reason for e in events(k8s_api, namespace, "churn")]
    assert "accuracy" in regret[0].message and "v1 serves again" in regret[0].message, regret[0].message
    assert metric_value(f"{ctl.url}/metrics", "modelrollout_rollout_promotion_regretted", rollout="churn",
                        version="v2") == 1
    # the routers follow: every user is served by v1 again
    wait_for(lambda: {post(f"{base}/predict?namespace={namespace}", {"features": {"age": 40}},
                           {"x-user-id": f"u{i}"})[1].get("x-model-version") for i in range(20)} == {"v1"},
             15, "every user served by v1 again", diagnose=diag)
    assert yaml.safe_load(kubectl("get", "mro", "churn", "-n", namespace, "-o", "yaml").stdout)["status"][
        "postPromotion"]["state"] == "Regretted"
    # `kubectl modelrollout status` says so
    import contextlib
    import io

    from modelrollout.plugin import main as plugin_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert plugin_main(["status", "churn", "-n", namespace, "--kubeconfig", kubeconfig]) == 0
    assert "Regretted: v2 against the previous stable v1" in out.getvalue(), out.getvalue()
