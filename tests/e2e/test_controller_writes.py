"""The controller writes status only when a fact changed (a window, a transition, a command), on a real
kube-apiserver with `python -m controller.kube` as a separate process; `kubectl modelrollout status`
(real kubectl, the installed plugin) computes the time left in the step from the status's facts."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, watch

from policies.status import parse_time
from tests.e2e.conftest import apply, get_rollout, logs, metric_value, wait_for

pytestmark = pytest.mark.usefixtures("mro_crd")

BIN = str(Path(sys.executable).parent)   # holds the kubectl-modelrollout console script
INTERVAL = 2.0
STEP = 3600.0
NOWHERE = "http://127.0.0.1:9"           # no model answers here: nothing reaches the routers, nothing to judge


def doc(name: str, namespace: str, checks: list) -> dict:
    return {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"baseline": {"version": "v1", "url": NOWHERE}, "candidate": {"version": "v2", "url": NOWHERE},
                     "strategy": {"steps": [{"canary": {"weight": 10, "duration": "1h"}}, {"pause": {}}]},
                     "analysis": {"interval": f"{INTERVAL:g}s", "minSamples": 10, "inconclusiveLimit": 10_000,
                                  "checks": checks}}}


def watch_events(k8s_api, namespace: str, seconds: int) -> list[tuple[str, dict]]:
    """Every watch event of the namespace's ModelRollouts for `seconds`, from the current resourceVersion."""
    api = client.CustomObjectsApi(k8s_api)
    listed = api.list_namespaced_custom_object("modelrollout.io", "v1alpha1", namespace, "modelrollouts")
    out = []
    for ev in watch.Watch().stream(api.list_namespaced_custom_object, "modelrollout.io", "v1alpha1", namespace,
                                   "modelrollouts", resource_version=listed["metadata"]["resourceVersion"],
                                   timeout_seconds=seconds):
        out.append((ev["type"], ev["raw_object"]))
    return out


def controller_counter(ctl, name: str, **labels) -> float:
    return metric_value(f"{ctl.url}/metrics", name, **labels) or 0.0


def test_a_long_step_writes_status_only_when_a_window_is_judged(procs, kubeconfig, kubectl, k8s_api, namespace):
    """Two rollouts in a one-hour step, 2 s analysis interval: `quiet` has no checks, `judged` has one with
    nothing to judge (no traffic: every window Inconclusive). Over 5 windows `quiet` is not written at all
    and every write of `judged` records a new window; no reconcile is caused by the controller's own writes."""
    ctl = procs.controller(kubeconfig, namespace, "--no-leader-elect")
    apply(kubectl, doc("quiet", namespace, []))
    apply(kubectl, doc("judged", namespace, [{"name": "errors", "metric": "error-rate", "max": 0.01}]))

    def started():
        q, j = (get_rollout(k8s_api, namespace, n).get("status") or {} for n in ("quiet", "judged"))
        return q.get("phase") == "Progressing" and j.get("lastAnalysisAt") and (q, j)
    quiet, judged = wait_for(started, 30, "both rollouts Progressing, one window judged", diagnose=lambda: logs(ctl))
    assert "left" not in quiet["message"] and quiet["stepDurationSeconds"] == STEP
    quiet_rv = get_rollout(k8s_api, namespace, "quiet")["metadata"]["resourceVersion"]
    writes0 = controller_counter(ctl, "modelrollout_status_writes_total")
    reconciles0 = controller_counter(ctl, "modelrollout_reconcile_duration_seconds_count")

    events = watch_events(k8s_api, namespace, seconds=int(5 * INTERVAL))

    assert [t for t, o in events if o["metadata"]["name"] == "quiet"] == []
    assert get_rollout(k8s_api, namespace, "quiet")["metadata"]["resourceVersion"] == quiet_rv
    written = [o["status"] for t, o in events if o["metadata"]["name"] == "judged"]
    assert {t for t, o in events} <= {"MODIFIED"}
    assert len(written) >= 2, f"expected a write per window, got {len(written)}\n{logs(ctl)}"
    windows = [parse_time(judged["lastAnalysisAt"])] + [parse_time(s["lastAnalysisAt"]) for s in written]
    gaps = [b - a for a, b in zip(windows, windows[1:])]
    assert all(g >= INTERVAL for g in gaps), f"a status write without a new window: {gaps}"
    assert [s["checks"][0]["inconclusive"] for s in written] == \
        list(range(judged["checks"][0]["inconclusive"] + 1, judged["checks"][0]["inconclusive"] + 1 + len(written)))
    writes = controller_counter(ctl, "modelrollout_status_writes_total") - writes0
    reconciles = controller_counter(ctl, "modelrollout_reconcile_duration_seconds_count") - reconciles0
    assert writes >= len(written) and reconciles <= writes + 1, (writes, reconciles, len(written))
    assert controller_counter(ctl, "modelrollout_reconcile_triggers_total", trigger="status") == 0
    assert controller_counter(ctl, "modelrollout_watch_events_total") > 0


def test_commands_and_spec_changes_are_acted_on_at_once(procs, kubeconfig, kubectl, k8s_api, namespace):
    """With no timer due for an hour, a command annotation and a spec change are reconciled on their watch
    events: the pause lands, observedGeneration follows the new generation."""
    ctl = procs.controller(kubeconfig, namespace, "--no-leader-elect")
    apply(kubectl, doc("steer", namespace, []))
    wait_for(lambda: (get_rollout(k8s_api, namespace, "steer").get("status") or {}).get("phase") == "Progressing",
             30, "steer Progressing", diagnose=lambda: logs(ctl))
    kubectl("annotate", "mro", "steer", "-n", namespace, "--overwrite",
            'modelrollout.io/command={"verb": "pause", "id": "p-1"}')
    wait_for(lambda: get_rollout(k8s_api, namespace, "steer")["status"]["phase"] == "Paused", 20,
             "the pause command applied", diagnose=lambda: logs(ctl))
    kubectl("patch", "mro", "steer", "-n", namespace, "--type=json",
            "-p", json.dumps([{"op": "replace", "path": "/spec/analysis/minSamples", "value": 20}]))
    obj = wait_for(lambda: (lambda o: o["status"].get("observedGeneration") == o["metadata"]["generation"] == 2
                            and o)(get_rollout(k8s_api, namespace, "steer")),
                   20, "observedGeneration 2", diagnose=lambda: logs(ctl))
    assert obj["status"]["phase"] == "Paused"
    assert controller_counter(ctl, "modelrollout_reconcile_triggers_total", trigger="command") >= 1
    assert controller_counter(ctl, "modelrollout_reconcile_triggers_total", trigger="spec") >= 1


def test_kubectl_modelrollout_status_shows_the_time_left(procs, control_plane, kubeconfig, kubectl, k8s_api,
                                                         namespace):
    """The status holds the step's start and duration; the plugin shows the time left computed from them."""
    ctl = procs.controller(kubeconfig, namespace, "--no-leader-elect")
    apply(kubectl, doc("timed", namespace, []))
    st = wait_for(lambda: (lambda s: s.get("phase") == "Progressing" and s)(
        get_rollout(k8s_api, namespace, "timed").get("status") or {}), 30, "timed Progressing",
        diagnose=lambda: logs(ctl))
    ends = parse_time(st["stepStartedAt"]) + st["stepDurationSeconds"]
    env = control_plane.kubectl_env()
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    before = time.time()
    out = subprocess.run([control_plane.kubectl, "modelrollout", "status", "timed", "-n", namespace],
                         capture_output=True, text=True, env=env, timeout=120)
    after = time.time()
    assert out.returncode == 0, out.stderr
    m = re.search(r"started \S+ ago, (?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)? left\)", out.stdout)
    assert m, out.stdout
    h, mi, s = (int(x or 0) for x in m.groups())
    shown = 3600 * h + 60 * mi + s
    # rounded up to the second, as of a moment between `before` and `after`
    assert ends - after - 1 <= shown <= ends - before + 1, (shown, ends - after, ends - before)
    listed = subprocess.run([control_plane.kubectl, "modelrollout", "list", "-n", namespace],
                            capture_output=True, text=True, env=env, timeout=120)
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == ["timed"])
    assert re.search(r"\b(59m\d+s|1h)\b", row), listed.stdout
