"""The controller under faults on a real kube-apiserver: SIGKILL and restart, two replicas with one
leader, an apiserver restart, Prometheus checks failing or unreachable, and the least-privilege RBAC."""
from __future__ import annotations

import signal
import time

import pytest

from modelrollout.models.proc import free_port
from tests.e2e.conftest import (RBAC, apply, events, get_rollout, logs, metric_value, rollout_doc, wait_event,
                                wait_for, wait_phase)

pytestmark = pytest.mark.usefixtures("mro_crd")

STEPS = [{"shadow": {"duration": "3s"}}, {"canary": {"weight": 30, "duration": "3s"}},
         {"canary": {"weight": 60, "duration": "3s"}}]
NO_CHECKS = {"checks": []}   # these tests exercise the shell; analysis is covered in test_controller_rollout


def _models(procs, kubeconfig, namespace, **candidate):
    v1 = procs.scorer("v1", seed=3)
    v2 = procs.scorer("v2", seed=3, **candidate)
    router = procs.router(kubeconfig, namespace)
    return v1, v2, router


def test_controller_killed_mid_rollout_resumes_to_the_same_outcome(procs, kubeconfig, kubectl, k8s_api, namespace):
    """SIGKILL during the canary, restart: the rollout still ends Promoted, resuming from status alone."""
    v1, v2, router = _models(procs, kubeconfig, namespace)
    apply(kubectl, rollout_doc("crash", namespace, v1, v2, steps=STEPS, **NO_CHECKS))
    procs.traffic(router, "crash", namespace, rps=60)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url, "--no-leader-elect")
    wait_phase(k8s_api, namespace, "crash", {"Progressing"}, 60, forbid={"RolledBack", "Failed"},
               diagnose=lambda: logs(ctl, router))
    ctl.stop(signal.SIGKILL)
    before = get_rollout(k8s_api, namespace, "crash")["status"]
    ctl2 = procs.controller(kubeconfig, namespace, "--router-url", router.url, "--no-leader-elect")
    obj = wait_phase(k8s_api, namespace, "crash", {"Promoted"}, 90, forbid={"RolledBack", "Failed"},
                     diagnose=lambda: logs(ctl2, router))
    history = obj["status"]["history"]
    assert history[: len(before["history"])] == before["history"], "restart rewrote recorded history"
    assert sum(1 for h in history if h["action"] == "Started") == 1, history


def test_two_replicas_only_the_leader_writes(procs, kubeconfig, kubectl, k8s_api, namespace):
    """With two controller replicas, every status write and Event comes from the Lease holder; the standby
    writes nothing, then takes over when the leader dies."""
    v1, v2, router = _models(procs, kubeconfig, namespace)
    a = procs.controller(kubeconfig, namespace, "--router-url", router.url, identity="replica-a")
    wait_for(lambda: metric_value(f"{a.url}/metrics", "modelrollout_controller_leader") == 1, 20,
             "replica-a leading", diagnose=lambda: logs(a))
    b = procs.controller(kubeconfig, namespace, "--router-url", router.url, identity="replica-b")
    apply(kubectl, rollout_doc("duo", namespace, v1, v2, steps=STEPS + [{"canary": {"weight": 80,
                                                                                    "duration": "10m"}}], **NO_CHECKS))
    procs.traffic(router, "duo", namespace, rps=60)
    wait_phase(k8s_api, namespace, "duo", {"Progressing"}, 60, diagnose=lambda: logs(a, b))
    time.sleep(2)
    writes_a = metric_value(f"{a.url}/metrics", "modelrollout_status_writes_total")
    writes_b = metric_value(f"{b.url}/metrics", "modelrollout_status_writes_total")
    assert writes_a and writes_a >= 2 and writes_b == 0, (writes_a, writes_b)
    assert metric_value(f"{b.url}/metrics", "modelrollout_controller_leader") == 0
    instances = {e.reporting_instance for e in events(k8s_api, namespace, "duo")}
    assert instances == {"replica-a"}, instances
    # the leader dies without releasing its lease: the standby takes over after the lease expires
    a.stop(signal.SIGKILL)
    wait_for(lambda: (metric_value(f"{b.url}/metrics", "modelrollout_status_writes_total") or 0) > 0, 30,
             "replica-b writing after replica-a died", diagnose=lambda: logs(b))


def test_apiserver_restart_mid_rollout_is_survived(procs, control_plane, kubeconfig, kubectl, k8s_api, namespace):
    """The apiserver going away and coming back mid-rollout does not stop the rollout from completing."""
    v1, v2, router = _models(procs, kubeconfig, namespace)
    apply(kubectl, rollout_doc("bounce", namespace, v1, v2, steps=STEPS, **NO_CHECKS))
    procs.traffic(router, "bounce", namespace, rps=60)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    wait_phase(k8s_api, namespace, "bounce", {"Shadowing", "Progressing"}, 60, diagnose=lambda: logs(ctl))
    control_plane.restart_apiserver()
    obj = wait_phase(k8s_api, namespace, "bounce", {"Promoted"}, 90, forbid={"RolledBack", "Failed"},
                     diagnose=lambda: logs(ctl, router))
    assert obj["status"]["routing"]["candidateWeight"] == 100
    assert ctl.alive()


def _latency_check(**extra):
    q = ('histogram_quantile(0.99, sum by (le) (rate(modelrollout_router_request_duration_seconds_bucket'
         '{version="{{candidate}}"}[10s])))')
    return {"name": "candidate-p99", "prometheus": {"query": q, "max": 0.1, **extra}, "action": "rollback"}


def test_prometheus_check_fails_a_slow_candidate(procs, kubeconfig, kubectl, k8s_api, namespace):
    """A PromQL check on the router's latency histogram, served by a real Prometheus, rolls back a slow
    candidate with the check named in status."""
    v1, v2, router = _models(procs, kubeconfig, namespace, latency_ms=250)
    prom = procs.prometheus([router.url.removeprefix("http://")])
    doc = rollout_doc("slow", namespace, v1, v2, steps=[{"shadow": {"duration": "30s"}}],
                      checks=[_latency_check()])
    apply(kubectl, doc)
    procs.traffic(router, "slow", namespace, rps=40)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url, "--prometheus-url", prom.url)
    obj = wait_phase(k8s_api, namespace, "slow", {"RolledBack"}, 90, forbid={"Promoted"},
                     diagnose=lambda: logs(ctl, prom))
    check = obj["status"]["checks"][0]
    assert check["name"] == "candidate-p99" and check["verdict"] == "Fail" and check["value"] > 0.1
    assert "candidate-p99" in obj["status"]["message"]


def test_prometheus_down_pauses_and_never_promotes(procs, kubeconfig, kubectl, k8s_api, namespace):
    """With Prometheus unreachable the PromQL check is Inconclusive every window: the rollout pauses after
    inconclusiveLimit windows and is never promoted, however healthy the candidate looks otherwise."""
    v1, v2, router = _models(procs, kubeconfig, namespace)
    nobody = f"http://127.0.0.1:{free_port()}"
    doc = rollout_doc("blind", namespace, v1, v2, steps=[{"shadow": {"duration": "2s"}},
                                                         {"canary": {"weight": 50, "duration": "2s"}}],
                      checks=[_latency_check()], inconclusive_limit=3)
    apply(kubectl, doc)
    procs.traffic(router, "blind", namespace, rps=40)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url, "--prometheus-url", nobody)
    obj = wait_phase(k8s_api, namespace, "blind", {"Paused"}, 60, forbid={"Promoted", "Progressing"},
                     diagnose=lambda: logs(ctl))
    check = obj["status"]["checks"][0]
    assert check["verdict"] == "Inconclusive" and check.get("inconclusive", 0) >= 3, check
    assert "prometheus" in check.get("reason", "").lower(), check
    time.sleep(4)  # stays paused: missing data never promotes
    assert get_rollout(k8s_api, namespace, "blind")["status"]["phase"] == "Paused"


def test_controller_runs_with_the_manifests_rbac(procs, control_plane, kubeconfig, kubectl, k8s_api, namespace,
                                                  restricted_kubeconfig):
    """Bound only by manifests/rbac.yaml, the controller's ServiceAccount can do everything a rollout needs."""
    kubectl("create", "namespace", "modelrollout-system", check=False)
    kubectl("apply", "-n", "modelrollout-system", "-f", str(RBAC))
    sa_config = restricted_kubeconfig("modelrollout-system", "modelrollout-controller")
    v1, v2, router = _models(procs, kubeconfig, namespace)
    apply(kubectl, rollout_doc("least", namespace, v1, v2, steps=STEPS[:2], **NO_CHECKS))
    procs.traffic(router, "least", namespace, rps=60)
    ctl = procs.controller(sa_config, namespace, "--router-url", router.url,
                           "--lease-namespace", "modelrollout-system")
    obj = wait_phase(k8s_api, namespace, "least", {"Promoted"}, 90, forbid={"RolledBack", "Failed"},
                     diagnose=lambda: logs(ctl))
    assert obj["status"]["routing"]["candidateWeight"] == 100
    wait_event(k8s_api, namespace, "least", "Promoted")
    assert "Forbidden" not in ctl.output() and "403" not in ctl.output(), ctl.output()
