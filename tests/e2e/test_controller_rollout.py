"""The controller drives real rollouts on a real kube-apiserver: real model servers, a router that reads
the apiserver (KubeSource), traffic through it, and `python -m controller.kube` as a separate process."""
from __future__ import annotations

import json
import uuid

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import (apply, events, get_rollout, logs, predict_versions, rollout_doc, wait_event,
                                wait_for, wait_phase)

pytestmark = pytest.mark.usefixtures("mro_crd")


def _setup(procs, kubeconfig, namespace, name, *, candidate_knobs=None, doc_kw=None, controller_args=()):
    v1 = procs.scorer("v1", seed=7)
    v2 = procs.scorer("v2", seed=7, **(candidate_knobs or {}))
    router = procs.router(kubeconfig, namespace)
    doc = rollout_doc(name, namespace, v1, v2, **(doc_kw or {}))
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url, *controller_args)
    return v1, v2, router, ctl, doc


def test_healthy_candidate_walks_the_steps_and_is_promoted(procs, kubeconfig, kubectl, k8s_api, namespace):
    """A candidate that behaves like the baseline goes shadow → canary → Promoted, and then serves all traffic."""
    v1, v2, router, ctl, doc = _setup(procs, kubeconfig, namespace, "healthy")
    apply(kubectl, doc)
    procs.traffic(router, "healthy", namespace, rps=60)
    diag = lambda: logs(ctl, router)  # noqa: E731
    wait_phase(k8s_api, namespace, "healthy", {"Shadowing"}, 30, diagnose=diag)
    wait_phase(k8s_api, namespace, "healthy", {"Progressing"}, 60, forbid={"RolledBack", "Failed"}, diagnose=diag)
    obj = wait_phase(k8s_api, namespace, "healthy", {"Promoted"}, 60, forbid={"RolledBack", "Failed", "Paused"},
                     diagnose=diag)
    st = obj["status"]
    assert st["routing"]["candidateWeight"] == 100
    assert {c["name"] for c in st["checks"]} == {"score-psi", "errors"}
    assert all(c["samples"] > 0 for c in st["checks"]), st["checks"]
    wait_event(k8s_api, namespace, "healthy", "Promoted")
    wait_event(k8s_api, namespace, "healthy", "StepStarted")
    # the router follows the status written by the controller: the candidate now answers everything
    wait_for(lambda: predict_versions(router, "healthy", namespace, 20) == {"v2": 20}, 10,
             "router serving only v2 after promotion")
    table = kubectl("get", "mro", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header[:6] == ["NAME", "PHASE", "STEP", "WEIGHT", "DRIFT", "AGE"], table
    assert "Promoted" in table and "100" in table


def test_drifting_candidate_is_rolled_back(procs, kubeconfig, kubectl, k8s_api, namespace):
    """A candidate whose scores shift is RolledBack: reason (check, value, threshold) in status, a Warning
    Event, and the router back on the baseline."""
    v1, v2, router, ctl, doc = _setup(procs, kubeconfig, namespace, "drifty", candidate_knobs={"shift": 0.35},
                                      doc_kw={"steps": [{"shadow": {"duration": "30s"}},
                                                        {"canary": {"weight": 50, "duration": "30s"}}]})
    apply(kubectl, doc)
    procs.traffic(router, "drifty", namespace, rps=60)
    obj = wait_phase(k8s_api, namespace, "drifty", {"RolledBack"}, 60, forbid={"Promoted"},
                     diagnose=lambda: logs(ctl, router))
    st = obj["status"]
    assert st["routing"]["candidateWeight"] == 0 and not st["routing"]["shadow"]
    assert "score-psi" in st["message"], st["message"]
    psi = next(c for c in st["checks"] if c["name"] == "score-psi")
    assert psi["verdict"] == "Fail" and psi["value"] > psi["threshold"] == 0.5
    assert st.get("drift", "").startswith("score-psi"), st
    warning = wait_event(k8s_api, namespace, "drifty", "RolledBack")
    assert warning.type == "Warning" and "score-psi" in warning.message
    assert predict_versions(router, "drifty", namespace, 20) == {"v1": 20}


def test_manual_abort_annotation_rolls_back_once(procs, kubeconfig, kubectl, k8s_api, namespace):
    """`modelrollout.io/command` abort rolls the rollout back and is remembered in status.lastCommandId."""
    v1, v2, router, ctl, doc = _setup(procs, kubeconfig, namespace, "manual",
                                      doc_kw={"steps": [{"shadow": {"duration": "10m"}}]})
    apply(kubectl, doc)
    wait_phase(k8s_api, namespace, "manual", {"Shadowing"}, 30, diagnose=lambda: logs(ctl))
    cid = str(uuid.uuid4())
    kubectl("annotate", "mro", "manual", "-n", namespace, "--overwrite",
            f"modelrollout.io/command={json.dumps({'verb': 'abort', 'id': cid})}")
    obj = wait_phase(k8s_api, namespace, "manual", {"RolledBack"}, 30, diagnose=lambda: logs(ctl))
    assert obj["status"]["lastCommandId"] == cid
    assert wait_event(k8s_api, namespace, "manual", "Aborted").type == "Warning"


def test_schema_rejects_bad_spec_with_field_path(kubectl, namespace):
    """kubectl apply of a spec with a wrong type is refused by the apiserver, naming the field."""
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "bad", "namespace": namespace},
           "spec": {"baseline": {"version": "v1", "url": "http://127.0.0.1:1"},
                    "candidate": {"version": "v2", "url": "http://127.0.0.1:2"},
                    "strategy": {"steps": [{"canary": {"weight": 10}}]},
                    "analysis": {"checks": [{"name": "x", "metric": "psi", "max": "high"}]}}}
    proc = apply(kubectl, doc, check=False)
    assert proc.returncode != 0
    assert "spec.analysis.checks[0].max" in proc.stderr, proc.stderr


def test_spec_the_schema_cannot_catch_gets_invalid_spec(procs, kubeconfig, kubectl, k8s_api, namespace):
    """A spec valid for the schema but not for the controller (a chi2 check on a numeric score) gets phase
    Failed, condition InvalidSpec naming the field, and a Warning Event; the controller keeps running."""
    v1, v2, router, ctl, doc = _setup(procs, kubeconfig, namespace, "dup")
    doc["spec"]["analysis"]["checks"].append({"name": "cats", "metric": "chi2", "max": 1})
    apply(kubectl, doc)
    obj = wait_phase(k8s_api, namespace, "dup", {"Failed"}, 30, diagnose=lambda: logs(ctl))
    cond = next(c for c in obj["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert cond["status"] == "True" and "spec.analysis.checks[2].metric" in cond["message"], cond
    assert wait_event(k8s_api, namespace, "dup", "InvalidSpec").type == "Warning"
    # fixing the spec restarts the rollout
    doc["spec"]["analysis"]["checks"].pop()
    apply(kubectl, doc)
    wait_phase(k8s_api, namespace, "dup", {"Shadowing", "Progressing", "Promoted"}, 30, diagnose=lambda: logs(ctl))
    assert ctl.alive()


def test_new_candidate_revision_restarts_the_analysis(procs, kubeconfig, kubectl, k8s_api, namespace):
    """Changing the candidate mid-rollout restarts from step 0 with fresh checks (flagger#30)."""
    v1, v2, router, ctl, doc = _setup(procs, kubeconfig, namespace, "rev",
                                      doc_kw={"steps": [{"shadow": {"duration": "4s"}},
                                                        {"canary": {"weight": 20, "duration": "10m"}}]})
    apply(kubectl, doc)
    procs.traffic(router, "rev", namespace, rps=60)
    first = wait_phase(k8s_api, namespace, "rev", {"Progressing"}, 60, forbid={"RolledBack"},
                       diagnose=lambda: logs(ctl, router))
    assert first["status"]["currentStep"] == 1
    v3 = procs.scorer("v3", seed=7)
    doc["spec"]["candidate"] = {"version": "v3", "url": v3.url}
    apply(kubectl, doc)

    def restarted():
        st = get_rollout(k8s_api, namespace, "rev").get("status") or {}
        return st if st.get("revision", "").startswith("v3@") else None
    st = wait_for(restarted, 30, "revision v3 in status", diagnose=lambda: logs(ctl))
    assert st["currentStep"] == 0 and st["phase"] == "Shadowing"
    assert st["routing"]["candidateWeight"] == 0 and st["routing"]["shadow"] is True
    assert any(h["action"] == "RevisionChanged" and "v3" in h["reason"] for h in st["history"]), st["history"]
    wait_event(k8s_api, namespace, "rev", "RevisionChanged")


def test_rollout_without_checks_advances_on_step_durations(procs, kubeconfig, kubectl, k8s_api, namespace):
    """With no checks the steps advance on their durations alone, and the router follows each weight."""
    v1, v2, router, ctl, doc = _setup(procs, kubeconfig, namespace, "timed",
                                      doc_kw={"checks": [],
                                              "steps": [{"canary": {"weight": 100, "duration": "4s"}},
                                                        {"pause": {}}]})
    apply(kubectl, doc)
    obj = wait_phase(k8s_api, namespace, "timed", {"Progressing"}, 30, diagnose=lambda: logs(ctl, router))
    assert obj["status"]["routing"]["candidateWeight"] == 100
    wait_for(lambda: predict_versions(router, "timed", namespace, 10) == {"v2": 10}, 10,
             "router sending the canary's 100% to v2", diagnose=lambda: logs(router))
    obj = wait_phase(k8s_api, namespace, "timed", {"Paused"}, 30, forbid={"Promoted"}, diagnose=lambda: logs(ctl))
    assert obj["status"]["currentStep"] == 1
    kubectl("annotate", "mro", "timed", "-n", namespace, "--overwrite",
            'modelrollout.io/command={"verb": "promote", "id": "p-1"}')
    wait_phase(k8s_api, namespace, "timed", {"Promoted"}, 30, diagnose=lambda: logs(ctl))


def test_router_is_ready_with_no_rollout_and_serves_the_first_one_applied(procs, kubeconfig, kubectl, namespace):
    """In a namespace with no ModelRollout yet the router turns Ready (an empty set is a loaded set: the
    Deployment must become available right after the install), and a rollout applied later is served."""
    import httpx

    router = procs.router(kubeconfig, namespace)
    wait_for(lambda: httpx.get(f"{router.url}/readyz", timeout=2).status_code == 200, 20,
             "/readyz 200 with no rollout in the namespace", diagnose=lambda: logs(router))
    missing = httpx.post(f"{router.url}/v1/rollouts/later/predict", json={"features": {"x": 1}}, timeout=5)
    assert missing.status_code == 404, missing.text
    v1, v2 = procs.scorer("v1", seed=7), procs.scorer("v2", seed=7)
    apply(kubectl, rollout_doc("later", namespace, v1, v2))
    wait_for(lambda: httpx.post(f"{router.url}/v1/rollouts/later/predict", json={"features": {"x": 1}},
                                timeout=5).status_code == 200, 20, "the applied rollout served",
             diagnose=lambda: logs(router))
