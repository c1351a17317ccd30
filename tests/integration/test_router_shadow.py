"""Shadow mirroring through a real router: pairing, and a broken shadow never hurting the primary."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from modelrollout.models.proc import free_port
from policies.summaries import PairedSummary, VersionWindow
from router.predlog import read_records
from tests.router_support import body, metric_value, post_many, rollout_doc, summaries, wait_until, write_config


def _merged(windows: list[dict], arm: str) -> VersionWindow:
    out = VersionWindow.new("score")
    for w in windows:
        out = out.merge(VersionWindow.from_dict(w[arm]))
    return out


def _paired(windows: list[dict]) -> PairedSummary:
    out = PairedSummary()
    for w in windows:
        if w["paired"]:
            out = out.merge(PairedSummary.from_dict(w["paired"]))
    return out


@pytest.mark.parametrize("where", ["--worker", "--no-worker"])
def test_shadow_pairs_each_request_with_the_primary_output(procs, tmp_path, where):
    """Every mirrored request is recorded once in the candidate window and paired with its own primary output,
    whether the shadow calls run in the router's worker process (default) or on its own event loop."""
    v1 = procs.scorer("v1", "--seed", "7")
    v2 = procs.scorer("v2", "--seed", "7", "--shift", "0.05")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=0, shadow=True)])
    router = procs.router(cfg, "--shadow-max-inflight", "1000", where)
    assert bool(_children(router.pid)) == (where == "--worker")
    n = 300
    results = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(age=20 + i % 50, i=i),
                          {"x-user-id": f"u{i}"}) for i in range(n)])
    assert {s for s, _, _ in results} == {200}
    assert {h["x-model-version"] for _, h, _ in results} == {"v1"}
    windows = wait_until(lambda: (lambda w: w if _paired(w).n == n else None)(
        summaries(router.url, "fraud")["windows"]), what="all shadow pairs recorded")
    paired = _paired(windows)
    assert paired.mean_abs_delta == pytest.approx(0.05, abs=0.002)   # same draw, shifted by 0.05
    assert paired.correlation > 0.99
    # the paired tests' parts: a delta per request (all 300 fit the reservoir) and a decision pair each
    assert paired.deltas().size == n and paired.n_decisions == n
    assert float(paired.deltas().mean()) == pytest.approx(0.05, abs=0.002)
    base, cand = _merged(windows, "baseline"), _merged(windows, "candidate")
    assert base.requests == cand.requests == n
    assert cand.prediction.n == n and cand.error_count() == 0
    assert cand.prediction.mean() - base.prediction.mean() == pytest.approx(0.05, abs=0.005)
    assert base.features["age"].n == n


def _broken_shadow(procs, kind: str) -> str:
    if kind == "down":
        return f"http://127.0.0.1:{free_port()}"
    if kind == "hanging":
        return procs.scorer("v2", "--hang-after", "0").url
    if kind == "garbage":
        return procs.scorer("v2", "--garbage-rate", "1").url
    return procs.scorer("v2", "--latency-ms", "30").url      # slow: 10x+ a direct call


@pytest.mark.parametrize("fault", ["down", "hanging", "garbage", "slow"])
def test_broken_shadow_never_fails_primary(procs, tmp_path, fault):
    """Whatever the shadow does (down, hanging, garbage, 10x slower), every primary answer is a 200 from the
    baseline, the shadow's failures are counted as its errors, and excess mirrors are dropped and counted."""
    v1 = procs.scorer("v1")
    shadow_url = _broken_shadow(procs, fault)
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, shadow_url, weight=0, shadow=True,
                                                         shadow_timeout="300ms")])
    router = procs.router(cfg, "--shadow-max-inflight", "8")
    n = 400
    results = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {}) for i in range(n)],
                        concurrency=32)
    assert [s for s, _, _ in results] == [200] * n
    assert {h["x-model-version"] for _, h, _ in results} == {"v1"}

    def settled():
        text = httpx.get(f"{router.url}/metrics").text
        if metric_value(text, "modelrollout_router_shadow_inflight") != 0:
            return None
        return text
    text = wait_until(settled, what="shadow calls finished")
    dropped = metric_value(text, "modelrollout_router_shadow_dropped_total", rollout="fraud")
    windows = summaries(router.url, "fraud")["windows"]
    cand = _merged(windows, "candidate")
    assert _merged(windows, "baseline").requests == n
    assert cand.requests + dropped == n
    expected_error = {"down": "unreachable", "hanging": "timeout", "garbage": "invalid_output", "slow": None}[fault]
    if expected_error:
        assert cand.errors[expected_error] == cand.requests > 0
    else:
        assert cand.error_count() == 0
    if fault == "hanging":
        assert dropped > 0     # 8 in flight for 300 ms each cannot keep up with 400 fast requests


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
            for c in (t / "children").read_text().split()]


def _rss_kib(pid: int) -> int:
    """Resident memory of the router and its shadow worker."""
    total = 0
    for p in (pid, *_children(pid)):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_a_killed_worker_is_restarted_and_primaries_never_notice(procs, tmp_path):
    """SIGKILL the router's worker mid-traffic: every primary answer is still a 200, the router restarts the
    worker (counted), what the dead one had not written is counted as lost, what it had written stays in the
    log, and new outcomes and mirrors are recorded again."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--latency-ms", "5")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=0, shadow=True)])
    logs = tmp_path / "log"
    router = procs.router(cfg, "--shadow-max-inflight", "1000", "--log-dir", str(logs))
    url = f"{router.url}/v1/rollouts/fraud/predict"
    first = post_many([(url, body(i=i), {}) for i in range(200)], concurrency=16)
    wait_until(lambda: _merged(summaries(router.url, "fraud")["windows"], "candidate").requests == 200,
               what="first mirrors recorded")
    scraped = metric_value(httpx.get(f"{router.url}/metrics").text, "modelrollout_router_requests_total",
                           role="shadow")
    assert scraped == 200
    instance = summaries(router.url, "fraud")["instance"]
    wait_until(lambda: len([r for r in read_records(logs) if r.role == "primary"]) == 200,
               what="first records written to the log")
    (worker,) = _children(router.pid)
    killer = threading.Timer(0.2, os.kill, (worker, signal.SIGKILL))
    killer.start()
    during = post_many([(url, body(i=i), {}) for i in range(400)], concurrency=16)
    killer.join()
    assert [s for s, _, _ in first + during] == [200] * 600

    def restarted():
        text = httpx.get(f"{router.url}/metrics").text
        return text if metric_value(text, "modelrollout_router_worker_restarts_total") == 1 else None
    wait_until(restarted, what="worker restarted")
    assert _children(router.pid) not in ([], [worker])
    after = post_many([(url, body(i=i), {}) for i in range(100)], concurrency=16)
    assert {s for s, _, _ in after} == {200}
    windows = wait_until(lambda: (lambda w: w if _merged(w, "candidate").requests >= 100 else None)(
        summaries(router.url, "fraud")["windows"]), what="outcomes recorded by the new worker")
    text = httpx.get(f"{router.url}/metrics").text
    # The dead worker's windows are gone with it, like a restarted replica's; the new one's are served, under
    # a new instance name, which tells the controller that the window the worker died in is incomplete.
    assert _merged(windows, "baseline").requests >= 100
    assert summaries(router.url, "fraud")["instance"] not in (instance, None)
    assert metric_value(text, "modelrollout_router_worker_lost_total") > 0
    # Its counters as last scraped are kept: shadow requests never go backwards.
    assert metric_value(text, "modelrollout_router_requests_total", role="shadow") >= scraped + 100
    assert router.stop(signal.SIGTERM) == 0
    logged = {r.request_id for r in read_records(logs) if r.role == "primary"}
    assert {h["x-request-id"] for _, h, _ in first + after} <= logged


def _caught_up(router_url: str, records: int) -> bool:
    """Wait (up to 60 s) until the router's prediction log holds `records` records."""
    return bool(wait_until(lambda: metric_value(httpx.get(f"{router_url}/metrics", timeout=10).text,
                                                "modelrollout_router_log_records_total") >= records, 60,
                           what=f"{records} records logged"))


def test_memory_stays_bounded_with_a_hanging_shadow(procs, tmp_path):
    """With a shadow that never answers, RSS of the router and its worker after 6,000 more requests stays
    within a few MiB of the warm level."""
    v1 = procs.scorer("v1")
    hang = procs.scorer("v2", "--hang-after", "0")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, hang.url, weight=0, shadow=True,
                                                         shadow_timeout="200ms")])
    router = procs.router(cfg, "--shadow-max-inflight", "16", "--feedback-max-ids", "500", "--reservoir", "256",
                          "--log-dir", str(tmp_path / "log"))
    url = f"{router.url}/v1/rollouts/fraud/predict"
    for _ in range(2):      # the worker starts a moment after the router: warm both
        post_many([(url, body(i=i), {}) for i in range(2000)], concurrency=32)
    warm = _rss_kib(router.pid) if _caught_up(router.url, 4000) else None
    for round_ in range(3):
        res = post_many([(url, body(i=i), {}) for i in range(2000)], concurrency=32)
        assert {s for s, _, _ in res} == {200}
    # Measured once the idle-priority worker has logged everything: records waiting for it in the router's
    # pipe (bounded, 32 MiB) are a backlog that a busy machine makes grow and shrink, not a leak.
    assert _caught_up(router.url, 10000) and warm is not None
    grown = _rss_kib(router.pid) - warm
    assert grown < 12 * 1024, f"RSS grew by {grown} KiB over 6000 requests"


@pytest.mark.parametrize("priority", ["idle", "normal"])
def test_the_worker_runs_at_the_chosen_cpu_priority(procs, tmp_path, priority):
    """By default the worker only gets CPU the request path leaves (SCHED_IDLE); `--worker-priority normal`
    makes it compete equally."""
    v1 = procs.scorer("v1")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v1.url, weight=0, shadow=True)])
    router = procs.router(cfg, "--worker-priority", priority)
    (worker,) = wait_until(lambda: _children(router.pid) or None, what="worker started")
    expected = os.SCHED_IDLE if priority == "idle" else os.SCHED_OTHER
    wait_until(lambda: os.sched_getscheduler(worker) == expected, what=f"worker at {priority} priority")
    assert os.sched_getscheduler(router.pid) == os.SCHED_OTHER
    res = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {}) for i in range(50)])
    assert {s for s, _, _ in res} == {200}
    wait_until(lambda: _merged(summaries(router.url, "fraud")["windows"], "candidate").requests == 50,
               what="mirrors recorded")
    # A policy belongs to a thread: every thread of the worker (its log writer, anything a library started
    # at import) must be at the chosen policy, or that thread competes with the request path.
    threads = {int(t): os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{worker}/task")}
    assert threads and set(threads.values()) == {expected}, threads


def test_a_stalled_worker_never_stalls_answers_and_loses_nothing_it_can_hold(procs, tmp_path):
    """SIGSTOP the worker (a CPU that never frees up): answers keep coming, records and mirrors queue in the
    router beyond the pipe's 64 KiB (the backlog gauge grows); after SIGCONT every record reaches the summaries and the log."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=0, shadow=True)])
    logs = tmp_path / "log"
    router = procs.router(cfg, "--shadow-max-inflight", "1000", "--log-dir", str(logs))
    url = f"{router.url}/v1/rollouts/fraud/predict"
    assert {s for s, _, _ in post_many([(url, body(i=i), {}) for i in range(50)])} == {200}
    (worker,) = wait_until(lambda: _children(router.pid) or None, what="worker started")
    wait_until(lambda: _merged(summaries(router.url, "fraud")["windows"], "candidate").requests == 50,
               what="first mirrors recorded")
    os.kill(worker, signal.SIGSTOP)
    try:
        answers = post_many([(url, body(i=i), {}) for i in range(1000)], concurrency=32)
        assert [s for s, _, _ in answers] == [200] * 1000
        text = httpx.get(f"{router.url}/metrics", timeout=30).text      # answers from its last known counters
        assert metric_value(text, "modelrollout_router_worker_backlog_bytes") > 0
        assert httpx.get(f"{router.url}/v1/rollouts/fraud/summaries", timeout=30).status_code == 503
    finally:
        os.kill(worker, signal.SIGCONT)
    windows = wait_until(lambda: (lambda w: w if _merged(w, "candidate").requests == 1050 else None)(
        summaries(router.url, "fraud")["windows"]), what="queued mirrors recorded after SIGCONT")
    assert _merged(windows, "baseline").requests == 1050
    assert router.stop(signal.SIGTERM) == 0
    records = list(read_records(logs))
    assert sum(r.role == "primary" for r in records) == 1050 and sum(r.role == "shadow" for r in records) == 1050
