"""The stable version and fail-static routing on a real kube-apiserver, with traffic through real routers
(`router --kube`) to real model processes and `python -m controller.kube` deciding:

- promote v2, then set candidate v3 while spec.baseline still says v1: v3 is compared with v2;
- an invalid edit during traffic: no failed request, nobody changes version;
- an apiserver restart during traffic: no failed request, /readyz says the router serves its last routing;
- delete and re-apply within the deletion grace: no failed request.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import (apply, events, get_rollout, logs, metric_value, rollout_doc, wait_event,
                                wait_for, wait_phase)

pytestmark = pytest.mark.usefixtures("mro_crd")

NO_CHECKS = {"checks": []}
LONG_CANARY = [{"canary": {"weight": 50, "duration": "10m"}}]


def sticky_versions(router, name: str, namespace: str, users: int = 40) -> dict[str, str]:
    """user id -> the version that answered that user (x-user-id is the rollouts' stickiness header)."""
    out = {}
    for i in range(users):
        req = urllib.request.Request(f"{router.url}/v1/rollouts/{name}/predict?namespace={namespace}",
                                     data=json.dumps({"features": {"age": 30 + i % 20, "i": i}}).encode(),
                                     headers={"content-type": "application/json", "x-user-id": f"user-{i}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            out[f"user-{i}"] = r.headers["x-model-version"]
    return out


def readyz(router) -> dict:
    with urllib.request.urlopen(f"{router.url}/readyz", timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())


def finished(traffic, timeout: float = 120) -> dict:
    """The traffic generator's report once it has sent everything."""
    traffic.popen.wait(timeout)
    return json.loads(traffic.output().strip().splitlines()[-1])


def assert_no_failure(report: dict) -> None:
    assert report["sent"] > 0 and report["transport_errors"] == 0, report
    assert set(report["statuses"]) == {"200"}, report


def _with_stickiness(doc: dict) -> dict:
    doc["spec"]["strategy"]["stickiness"] = {"header": "x-user-id"}
    return doc


def test_next_candidate_is_compared_with_the_promoted_stable(procs, kubeconfig, kubectl, k8s_api, namespace):
    """v2 is promoted, then candidate v3 is set while spec.baseline still says v1. v1 scores far higher than
    v2 and v3 (which score alike): compared with v1, v3's score-psi check would roll it back; compared with
    the stable v2 it passes and v3 is promoted. Meanwhile v1 answers nobody, and status says what v3 is
    compared with."""
    v1 = procs.scorer("v1", seed=7, shift=0.35)
    v2 = procs.scorer("v2", seed=7)
    v3 = procs.scorer("v3", seed=8)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    diag = lambda: logs(ctl, router)  # noqa: E731
    doc = _with_stickiness(rollout_doc("stable", namespace, v1, v2, steps=[{"canary": {"weight": 50,
                                                                                          "duration": "2s"}}],
                                       **NO_CHECKS))
    apply(kubectl, doc)
    procs.traffic(router, "stable", namespace, rps=60, duration=120)
    obj = wait_phase(k8s_api, namespace, "stable", {"Promoted"}, 60, forbid={"RolledBack", "Failed"},
                     diagnose=diag)
    assert obj["status"]["stable"] == {"version": "v2", "url": v2.url}
    # the next candidate; spec.baseline still says v1
    doc = _with_stickiness(rollout_doc("stable", namespace, v1, v3, candidate_version="v3",
                                       steps=[{"shadow": {"duration": "4s"}},
                                              {"canary": {"weight": 50, "duration": "6s"}}],
                                       min_samples=40))
    assert doc["spec"]["baseline"]["version"] == "v1"
    apply(kubectl, doc)
    obj = wait_phase(k8s_api, namespace, "stable", {"Progressing"}, 60, forbid={"RolledBack", "Failed"},
                     diagnose=diag)
    st = obj["status"]
    assert st["revision"] == f"v3@{v3.url}" and st["stable"]["version"] == "v2"
    started = [h for h in st["history"] if h["action"] == "Started"]
    assert "compared with the stable v2 (spec.baseline says v1)" in started[-1]["reason"], st["history"]
    wait_for(lambda: any("compared with the stable v2" in e.message
                         for e in events(k8s_api, namespace, "stable") if e.reason == "Started"), 10,
             "a Started Event naming the stable v2")
    seen = set(sticky_versions(router, "stable", namespace).values())
    assert seen == {"v2", "v3"}, seen                       # 50% canary: the stable and the candidate, never v1
    # the checks compared v3 with v2: passing windows, and v3 is promoted
    obj = wait_phase(k8s_api, namespace, "stable", {"Promoted"}, 90, forbid={"RolledBack", "Failed", "Paused"},
                     diagnose=diag)
    psi = next(c for c in obj["status"]["checks"] if c["name"] == "score-psi")
    # compared with v1 (3.5 sd higher) PSI is about 8; v3 against v2 is small-window noise around 0.1-0.6
    assert psi["verdict"] == "Pass" and psi["value"] < 2.0, psi
    assert obj["status"]["stable"] == {"version": "v3", "url": v3.url}
    wait_for(lambda: set(sticky_versions(router, "stable", namespace).values()) == {"v3"}, 10,
             "router serving only v3 after its promotion", diagnose=diag)
    # `kubectl modelrollout status` says which version is the stable and what spec.baseline says
    from modelrollout.plugin import main as plugin_main
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert plugin_main(["status", "stable", "-n", namespace, "--kubeconfig", kubeconfig]) == 0
    text = out.getvalue()
    assert "Stable" in text and "v3" in text and "spec.baseline says v1" in text, text


def test_a_spec_without_candidate_serves_the_stable(procs, kubeconfig, kubectl, k8s_api, namespace):
    """After v2's promotion, removing the candidate is a steady state: phase Stable, 100% to v2 (not to
    spec.baseline's v1), no checks."""
    v1 = procs.scorer("v1", seed=7)
    v2 = procs.scorer("v2", seed=7)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    doc = rollout_doc("calm", namespace, v1, v2, steps=[{"canary": {"weight": 50, "duration": "1s"}}],
                      **NO_CHECKS)
    apply(kubectl, doc)
    wait_phase(k8s_api, namespace, "calm", {"Promoted"}, 60, diagnose=lambda: logs(ctl, router))
    del doc["spec"]["candidate"], doc["spec"]["strategy"]
    kubectl("replace", "-f", "-", input=json.dumps(doc))
    obj = wait_phase(k8s_api, namespace, "calm", {"Stable"}, 30, diagnose=lambda: logs(ctl, router))
    assert obj["status"]["stable"]["version"] == "v2" and obj["status"].get("checks", []) == []
    wait_event(k8s_api, namespace, "calm", "Stable")
    assert set(sticky_versions(router, "calm", namespace, 20).values()) == {"v2"}


def test_invalid_edit_during_traffic_fails_nothing_and_keeps_the_split(procs, kubeconfig, kubectl, k8s_api,
                                                                      namespace):
    """An edit the apiserver accepts but the parser rejects, mid-canary under traffic: every request
    succeeds, every user keeps their version, the status reports InvalidSpec (condition, Event, metric)
    and keeps phase and routing; fixing it lets the rollout go on."""
    v1, v2 = procs.scorer("v1", seed=3), procs.scorer("v2", seed=3)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    doc = _with_stickiness(rollout_doc("edit", namespace, v1, v2, steps=LONG_CANARY, **NO_CHECKS))
    apply(kubectl, doc)
    wait_phase(k8s_api, namespace, "edit", {"Progressing"}, 60, diagnose=lambda: logs(ctl, router))
    wait_for(lambda: len(set(sticky_versions(router, "edit", namespace).values())) == 2, 10, "the 50% split served")
    before = sticky_versions(router, "edit", namespace)
    traffic = procs.traffic(router, "edit", namespace, rps=50, duration=12)
    time.sleep(2)
    bad = json.loads(json.dumps(doc))
    bad["spec"]["analysis"]["checks"] = [{"name": "cats", "metric": "chi2", "max": 1}]   # chi2 on a score
    apply(kubectl, bad)
    obj = wait_for(lambda: (lambda o: o if any(c["type"] == "InvalidSpec" and c["status"] == "True"
                                               for c in o["status"].get("conditions", [])) else None)(
        get_rollout(k8s_api, namespace, "edit")), 30, "InvalidSpec condition", diagnose=lambda: logs(ctl))
    st = obj["status"]
    assert st["phase"] == "Progressing" and st["routing"]["candidateWeight"] == 50, st
    assert "spec.analysis.checks[0].metric" in next(c for c in st["conditions"] if c["type"] == "InvalidSpec")["message"]
    assert wait_event(k8s_api, namespace, "edit", "InvalidSpec").type == "Warning"
    assert metric_value(f"{ctl.url}/metrics", "modelrollout_rollout_invalid_spec", rollout="edit") == 1
    assert sticky_versions(router, "edit", namespace) == before
    assert "spec.analysis.checks[0].metric" in readyz(router)["source"]["invalid"][f"{namespace}/edit"]
    assert metric_value(f"{router.url}/metrics", "modelrollout_router_rollout_invalid", rollout="edit") == 1
    assert_no_failure(finished(traffic))
    # fixed: the same revision continues where it was, the router serves the spec as written again
    apply(kubectl, doc)
    wait_event(k8s_api, namespace, "edit", "SpecValid")
    obj = get_rollout(k8s_api, namespace, "edit")
    assert obj["status"]["phase"] == "Progressing" and obj["status"]["routing"]["candidateWeight"] == 50
    wait_for(lambda: readyz(router)["source"]["invalid"] == {}, 10, "router no longer reporting the rollout")
    assert sticky_versions(router, "edit", namespace) == before


def test_apiserver_restart_during_traffic_fails_nothing(procs, control_plane, kubeconfig, kubectl, k8s_api,
                                                       namespace):
    """The apiserver stops and starts again under traffic: no request fails, the router stays ready and says
    on /readyz (and in a metric) that it serves its last routing, then that it reconnected."""
    v1, v2 = procs.scorer("v1", seed=3), procs.scorer("v2", seed=3)
    router = procs.router(kubeconfig, namespace)
    doc = _with_stickiness(rollout_doc("bounce", namespace, v1, v2, steps=LONG_CANARY, **NO_CHECKS))
    apply(kubectl, doc)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    wait_phase(k8s_api, namespace, "bounce", {"Progressing"}, 60, diagnose=lambda: logs(ctl, router))
    wait_for(lambda: len(set(sticky_versions(router, "bounce", namespace).values())) == 2, 10, "the split served")
    before = sticky_versions(router, "bounce", namespace)
    assert readyz(router)["source"]["connected"] is True
    traffic = procs.traffic(router, "bounce", namespace, rps=50, duration=20)
    time.sleep(2)
    # restart_apiserver() runs here: its child dies with the thread that started it. A thread watches the
    # router meanwhile.
    seen: list[tuple[dict, float | None]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                seen.append((readyz(router), metric_value(f"{router.url}/metrics",
                                                          "modelrollout_router_source_connected")))
            except Exception as e:  # noqa: BLE001 - recorded: the router must answer throughout
                seen.append(({"error": repr(e)}, None))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        control_plane.restart_apiserver()
    finally:
        stop.set()
        watcher.join()
    down = [(r, m) for r, m in seen if r.get("source", {}).get("connected") is False]
    assert down, seen[-3:]
    assert all(r.get("ready") is True for r, _ in seen), [r for r, _ in seen if r.get("ready") is not True][:3]
    r = down[-1][0]
    assert r["source"]["error"] and f"{namespace}/bounce" in r["rollouts"], r
    assert any(m == 0 for _, m in down), down[-3:]          # the metric says so too
    wait_for(lambda: readyz(router)["source"]["connected"], 60, "router reconnected", diagnose=lambda: logs(router))
    assert metric_value(f"{router.url}/metrics", "modelrollout_router_source_connected") == 1
    assert_no_failure(finished(traffic))
    assert sticky_versions(router, "bounce", namespace) == before


def test_delete_and_reapply_within_the_grace_fails_nothing(procs, kubeconfig, kubectl, k8s_api, namespace):
    """After v2's promotion the ModelRollout is deleted and applied again (the same file, spec.baseline
    still v1) under traffic: no request fails, and every answer comes from the stable v2 throughout."""
    v1, v2 = procs.scorer("v1", seed=3), procs.scorer("v2", seed=3)
    router = procs.router(kubeconfig, namespace, "1s", "--deletion-grace", "60s")
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    doc = _with_stickiness(rollout_doc("again", namespace, v1, v2,
                                       steps=[{"canary": {"weight": 50, "duration": "1s"}}], **NO_CHECKS))
    apply(kubectl, doc)
    wait_phase(k8s_api, namespace, "again", {"Promoted"}, 60, diagnose=lambda: logs(ctl, router))
    wait_for(lambda: set(sticky_versions(router, "again", namespace, 10).values()) == {"v2"}, 10, "v2 serving")
    traffic = procs.traffic(router, "again", namespace, rps=50, duration=14)
    time.sleep(2)
    kubectl("delete", "mro", "again", "-n", namespace)
    wait_for(lambda: readyz(router)["source"]["deleted"] == [f"{namespace}/again"], 10, "router holding the deleted rollout")
    assert set(sticky_versions(router, "again", namespace, 10).values()) == {"v2"}
    time.sleep(2)
    apply(kubectl, doc)
    # the controller carries the stable over: the same file (baseline v1, candidate v2) is a steady state of v2
    obj = wait_phase(k8s_api, namespace, "again", {"Stable"}, 30, diagnose=lambda: logs(ctl, router))
    assert obj["status"]["stable"]["version"] == "v2"
    wait_for(lambda: readyz(router)["source"]["deleted"] == [], 10, "router serving the re-created rollout")
    assert set(sticky_versions(router, "again", namespace, 10).values()) == {"v2"}
    report = finished(traffic)
    assert_no_failure(report)
    assert set(report["versions"]) == {"v2"}, report


def test_feedback_sent_to_the_other_replica_counts_once(procs, kubeconfig, kubectl, k8s_api, namespace, tmp_path):
    """Two router replicas reading the apiserver, sharing the feedback key (as the Secret mounted into every
    router pod does): rankings interleaved by one, every click posted to the other. Every click is accepted
    and credited exactly once: the interleaving tallies of both replicas add up to the clicks posted (all on
    the replica that received them), a repeat is refused, and the controller judges the clicks."""
    import random

    from modelrollout.models.ranker import simulate_clicks
    from modelrollout.models.proc import start

    keys = tmp_path / "feedback-keys"
    keys.write_text("shared-feedback-key-0123456789\n")
    r1 = procs._keep(start("modelrollout.models.ranker", ["--version", "r1", "--quality", "0.1"]))
    r2 = procs._keep(start("modelrollout.models.ranker", ["--version", "r2", "--quality", "0.9"]))
    a = procs.router(kubeconfig, namespace, "1s", "--feedback-key-file", str(keys))
    b = procs.router(kubeconfig, namespace, "1s", "--feedback-key-file", str(keys))
    ctl = procs.controller(kubeconfig, namespace, "--router-url", a.url, "--router-url", b.url)
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "rank", "namespace": namespace},
           "spec": {"baseline": {"version": "r1", "url": r1.url}, "candidate": {"version": "r2", "url": r2.url},
                    "output": {"kind": "ranking", "path": "ranking"},
                    "strategy": {"steps": [{"interleave": {"duration": "10m"}}]},
                    "analysis": {"interval": "2s", "minSamples": 10,
                                 "checks": [{"name": "clicks", "metric": "interleave", "minPValue": 0.01,
                                             "action": "warn"}]}}}
    apply(kubectl, doc)
    wait_phase(k8s_api, namespace, "rank", {"Interleaving"}, 60, diagnose=lambda: logs(ctl, a, b))
    wait_for(lambda: all(_predict_rank(r, namespace, 0)[0].get("x-model-version") == "r1+r2" for r in (a, b)), 10,
             "both replicas interleaving")
    rng = random.Random(5)
    credited = {"win": 0, "loss": 0, "tie": 0}
    for i in range(80):
        headers, ranking, user = _predict_rank(a, namespace, i)
        fid = headers["x-feedback-id"]
        clicks = simulate_clicks(ranking, user, rng)
        answer = _post(f"{b.url}/v1/rollouts/rank/feedback?namespace={namespace}", {"feedback_id": fid, "clicks": clicks})
        assert answer["status"] == 200, answer
        credited[answer["body"]["outcome"]] += 1
        if i % 10 == 0:
            again = _post(f"{b.url}/v1/rollouts/rank/feedback?namespace={namespace}", {"feedback_id": fid, "clicks": clicks})
            assert again["status"] == 409, again
    assert sum(credited.values()) == 80 and credited["win"] > credited["loss"], credited

    def tally(router):
        got = {"win": 0, "loss": 0, "tie": 0}
        with urllib.request.urlopen(f"{router.url}/v1/rollouts/rank/summaries?namespace={namespace}", timeout=10) as r:
            for w in json.loads(r.read())["windows"]:
                if w["interleave"]:
                    for k, n in (("win", "wins"), ("loss", "losses"), ("tie", "ties")):
                        got[k] += w["interleave"][n]
        return got

    wait_for(lambda: tally(b) == credited, 20, "the clicks in b's summaries", diagnose=lambda: str(tally(b)))
    assert tally(a) == {"win": 0, "loss": 0, "tie": 0}
    # the controller merges both replicas: its check saw the clicks
    obj = wait_for(lambda: (lambda o: o if any(c["name"] == "clicks" and c.get("samples", 0) > 0
                                               for c in o["status"].get("checks", [])) else None)(
        get_rollout(k8s_api, namespace, "rank")), 30, "the interleave check judging clicks", diagnose=lambda: logs(ctl))
    assert obj["status"]["phase"] == "Interleaving"


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return {"status": r.status, "body": json.loads(r.read()), "headers": dict(r.headers)}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": json.loads(e.read())}


def _predict_rank(router, namespace: str, i: int) -> tuple[dict, list, str]:
    import random

    rng = random.Random(i)
    user = f"u{i % 30}"
    body = {"user": user, "candidates": [f"i{rng.randrange(500)}" for _ in range(10)]}
    answer = _post(f"{router.url}/v1/rollouts/rank/predict?namespace={namespace}", body)
    assert answer["status"] == 200, answer
    headers = {k.lower(): v for k, v in answer["headers"].items()}
    return headers, answer["body"]["ranking"], user
