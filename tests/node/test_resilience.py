"""What only real pods show: a router replica dying mid-rollout, the leader controller pod being deleted, and
every pod running non-root under the manifests' own RBAC."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest

from tests.node.conftest import SYSTEM_NS, model_server, rollout_doc, traffic_pod, wait_for

# the first test also waits for the package's cluster (up.sh --image): minutes on a cold machine
pytestmark = pytest.mark.timeout(3000)

NS = "ml-resilience"


def _models(c):
    c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    c.apply(*model_server(NS, "scorer-v1", "v1", "--seed", "7"), *model_server(NS, "scorer-v2", "v2", "--seed", "7"))
    for name in ("scorer-v1", "scorer-v2"):
        proc = c.kubectl("rollout", "status", f"deployment/{name}", "-n", NS, "--timeout=300s", check=False,
                         timeout=320)
        assert proc.returncode == 0, f"{name}: {proc.stderr}\n{c.diagnose(NS)}"


class WindowLog(threading.Thread):
    """Polls the rollout's status and keeps every analysis window it shows: {(check, epoch): verdict}."""

    def __init__(self, c, namespace: str, name: str):
        super().__init__(daemon=True)
        self.c, self.namespace, self.name = c, namespace, name
        self.seen: dict[tuple[str, float], str] = {}
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            try:
                st = self.c.rollout(self.namespace, self.name).get("status") or {}
            except Exception:  # noqa: BLE001 - a failed poll is retried
                st = {}
            for check in st.get("checks") or []:
                for w in check.get("recent") or []:
                    t = dt.datetime.fromisoformat(w["time"].replace("Z", "+00:00")).timestamp()
                    self.seen[(check["name"], t)] = w["verdict"]
            self._done.wait(1)

    def stop(self):
        self._done.set()
        self.join(10)


def _leader(c) -> str:
    lease = c.get("lease", "modelrollout-controller", "-n", SYSTEM_NS)
    return lease["spec"].get("holderIdentity") or ""


def _pod_names(c, component: str) -> list[str]:
    pods = c.get("pods", "-n", SYSTEM_NS, "-l", f"app.kubernetes.io/component={component}")["items"]
    return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_router_pod_killed_and_leader_deleted_mid_rollout(installed):
    """Mid-canary, one router pod is killed and then the controller pod holding the Lease is deleted: the other
    controller replica takes the Lease over and the rollout still ends Promoted, never RolledBack."""
    c = installed
    _models(c)
    steps = [{"shadow": {"duration": "30s"}}, {"canary": {"weight": 50, "duration": "60s"}}]
    c.apply(rollout_doc(NS, "steady", "scorer-v1", "scorer-v2", steps=steps))
    c.wait_available("router")
    c.apply(traffic_pod(NS, "steady"))
    c.wait_phase(NS, "steady", {"Progressing"}, 240, forbid={"RolledBack", "Failed"})

    victim = _pod_names(c, "router")[0]
    c.kubectl("delete", "pod", victim, "-n", SYSTEM_NS, "--grace-period=0", "--force", "--wait=false")
    wait_for(lambda: len(_pod_names(c, "router")) == 2 and victim not in _pod_names(c, "router"), 180,
             "a replacement router pod", diagnose=lambda: c.diagnose(NS))

    leader = wait_for(lambda: _leader(c), 60, "a controller Lease holder")
    leader_pod = next((p for p in _pod_names(c, "controller") if leader.startswith(p) or p in leader), None)
    assert leader_pod, f"Lease holder {leader!r} is none of {_pod_names(c, 'controller')}"
    c.kubectl("delete", "pod", leader_pod, "-n", SYSTEM_NS, "--wait=false")
    new_leader = wait_for(lambda: (lambda h: h if h and leader_pod not in h else None)(_leader(c)), 120,
                          "the Lease to move to another controller pod", diagnose=lambda: c.diagnose(NS))
    assert leader_pod not in new_leader

    obj = c.wait_phase(NS, "steady", {"Promoted"}, 400, forbid={"RolledBack", "Failed"})
    assert obj["status"]["routing"]["candidateWeight"] == 100
    c.kubectl("delete", "pod", "traffic-steady", "-n", NS, "--wait=false")


def test_window_a_router_replica_dies_in_is_inconclusive(installed):
    """While the candidate is shadowed, one router pod is killed: the analysis window it died in is
    Inconclusive, not judged on the half of the traffic the other replica saw."""
    c = installed
    _models(c)
    c.apply(rollout_doc(NS, "halfdata", "scorer-v1", "scorer-v2", steps=[{"shadow": {"duration": "5m"}}]))
    c.wait_available("router")
    c.apply(traffic_pod(NS, "halfdata"))
    windows = WindowLog(c, NS, "halfdata")
    windows.start()
    try:
        wait_for(lambda: sum(1 for v in windows.seen.values() if v == "Pass") >= 2, 120,
                 "a window judged on both replicas", diagnose=lambda: c.diagnose(NS))
        victim = _pod_names(c, "router")[0]
        killed_at = time.time()
        c.kubectl("delete", "pod", victim, "-n", SYSTEM_NS, "--grace-period=0", "--force", "--wait=false")
        wait_for(lambda: len([t for (_, t) in windows.seen if t > killed_at]) >= 4, 90,
                 "two windows after the kill", diagnose=lambda: c.diagnose(NS))
    finally:
        windows.stop()
        c.kubectl("delete", "pod", "traffic-halfdata", "-n", NS, "--wait=false")
        c.kubectl("delete", "modelrollout", "halfdata", "-n", NS, "--wait=false")
    after = sorted((t, name, v) for (name, t), v in windows.seen.items() if t > killed_at)
    assert any(v == "Inconclusive" for _, _, v in after[:4]), \
        f"no Inconclusive window right after the router pod was killed at {killed_at:.0f}: {after}"


def test_pods_run_non_root_under_the_manifests_rbac(installed):
    """Every modelrollout pod runs as uid 10001 with its own ServiceAccount; neither account is bound to
    cluster-admin, and each can do what it needs and no more."""
    c = installed
    pods = c.get("pods", "-n", SYSTEM_NS)["items"]
    assert {p["spec"]["serviceAccountName"] for p in pods} == {"modelrollout-controller", "modelrollout-router"}
    for p in pods:
        assert p["status"]["phase"] == "Running", p["status"]
        uid = c.kubectl("exec", "-n", SYSTEM_NS, p["metadata"]["name"], "--", "id", "-u").stdout.strip()
        assert uid == "10001", (p["metadata"]["name"], uid)
    bindings = c.get("clusterrolebindings")["items"] + c.get("rolebindings", "-A")["items"]
    for b in bindings:
        subjects = {(s.get("namespace"), s.get("name")) for s in b.get("subjects") or []}
        if subjects & {(SYSTEM_NS, "modelrollout-controller"), (SYSTEM_NS, "modelrollout-router")}:
            assert b["roleRef"]["name"] not in ("cluster-admin", "admin", "edit"), json.dumps(b)

    def can(sa: str, *what: str) -> bool:
        proc = c.kubectl("auth", "can-i", *what, f"--as=system:serviceaccount:{SYSTEM_NS}:{sa}", check=False)
        return proc.stdout.strip() == "yes"

    status = ("modelrollouts.modelrollout.io", "--subresource=status", "-n", NS)
    assert can("modelrollout-router", "watch", "modelrollouts.modelrollout.io", "-A")
    assert not can("modelrollout-router", "update", *status)
    assert can("modelrollout-controller", "update", *status)
    assert not can("modelrollout-controller", "update", "modelrollouts.modelrollout.io", "-n", NS)
    assert can("modelrollout-controller", "list", "endpointslices.discovery.k8s.io", "-n", SYSTEM_NS)
    assert not can("modelrollout-controller", "create", "pods", "-n", NS)
    assert not can("modelrollout-controller", "get", "secrets", "-n", SYSTEM_NS)
