"""Retention of the prediction log: a serving router deletes its oldest files by total size and by age,
counts the deletions in /metrics, never deletes the file it writes, and keeps answering throughout."""
from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx

from router.predlog import PredictionLog, read_log
from tests.router_support import body, metric_value, post_many, rollout_doc, wait_until, write_config

MAX_BYTES = 8 * 1024
MAX_TOTAL = 48 * 1024


def _files(d: Path, replica: str) -> dict[str, int]:
    """{name: size} of `replica`'s files (not those of a replica whose name starts the same)."""
    out = {}
    for p in d.glob(f"predictions-{replica}-*.jsonl"):
        if not re.fullmatch(rf"predictions-{replica}-\d{{8}}T\d\d-\d{{4}}\.jsonl", p.name):
            continue
        try:
            out[p.name] = p.stat().st_size
        except FileNotFoundError:
            pass
    return out


def _metrics(router) -> str:
    return httpx.get(f"{router.url}/metrics", timeout=10).text


def test_files_beyond_the_total_size_are_deleted_oldest_first_while_the_router_serves(procs, tmp_path):
    """Phases of traffic through a real router (worker process on, at normal priority so that a busy machine
    does not starve it): after each phase the replica's files hold
    at most --log-max-total, every file deleted is older than every file kept, the deletion counter equals
    the files that disappeared, the records kept are exactly the newest ones, and every request got 200."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=30)])
    logs = tmp_path / "log"
    router = procs.router(cfg, "--log-dir", str(logs), "--log-max-bytes", str(MAX_BYTES), "--log-max-total",
                          str(MAX_TOTAL), "--replica-id", "r1", "--worker-priority", "normal")
    # Another replica's files in the same directory are not this replica's to delete.
    logs.mkdir(exist_ok=True)
    (logs / "predictions-r1-2-20200101T00-0000.jsonl").write_bytes(b"x" * 100_000)

    seen: set[str] = set()
    sent: list[str] = []
    statuses: list[int] = []
    for phase in range(12):
        answers = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {"x-user-id": f"u{i}"})
                             for i in range(phase * 60, phase * 60 + 60)], concurrency=8)
        statuses += [s for s, _, _ in answers]
        sent += [h["x-request-id"] for _, h, _ in answers]
        wait_until(lambda: metric_value(_metrics(router), "modelrollout_router_log_records_total") == len(sent),
                   timeout=60, what="every record written")
        now = wait_until(lambda: (lambda f: f if sum(f.values()) <= MAX_TOTAL else None)(_files(logs, "r1")),
                         timeout=60, what=f"the replica's files back under {MAX_TOTAL} bytes")
        seen |= set(now)
        gone = seen - set(now)
        assert all(g < k for g in gone for k in now), (sorted(gone), sorted(now))

    assert statuses == [200] * len(statuses)
    kept = _files(logs, "r1")
    gone = seen - set(kept)
    assert len(gone) >= 10, f"expected many deletions at {MAX_TOTAL} bytes, saw {sorted(seen)}"
    text = _metrics(router)
    assert metric_value(text, "modelrollout_router_log_deleted_files_total", reason="size") == len(gone)
    assert metric_value(text, "modelrollout_router_log_deleted_files_total", reason="age") == 0
    assert metric_value(text, "modelrollout_router_log_deleted_bytes_total", reason="size") > len(gone) * MAX_BYTES / 2
    assert 0 < metric_value(text, "modelrollout_router_log_bytes") <= MAX_TOTAL
    assert (logs / "predictions-r1-2-20200101T00-0000.jsonl").stat().st_size == 100_000
    records = read_log([logs / name for name in sorted(kept)])
    ids = [r.request_id for r in records]
    # Whole files went, oldest first, so what is left is the newest records: every phase after the oldest one
    # with records left is whole (within a phase, 8 requests at a time are written as they finish).
    whole = len(ids) // 60 * 60
    assert len(ids) == len(set(ids)) and set(sent[len(sent) - whole:]) <= set(ids), (len(ids), whole)
    assert set(ids) <= set(sent[len(sent) - whole - 60:]), len(ids)
    assert len(ids) >= (MAX_TOTAL - MAX_BYTES) // 600


def test_closed_files_past_the_age_limit_are_deleted_while_the_router_serves(procs, tmp_path):
    """With --log-max-age, files of a first burst disappear while a trickle of traffic keeps the router
    serving; the trickle's own newest file stays, and the age counter counts what went."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=50)])
    logs = tmp_path / "log"
    router = procs.router(cfg, "--log-dir", str(logs), "--log-max-bytes", "4KiB", "--log-max-age", "3s",
                          "--log-max-total", "0", "--replica-id", "r1", "--worker-priority", "normal")
    first = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {}) for i in range(80)])
    assert {s for s, _, _ in first} == {200}
    wait_until(lambda: metric_value(_metrics(router), "modelrollout_router_log_records_total") == 80,
               timeout=60, what="the burst written")
    burst = set(_files(logs, "r1"))
    assert len(burst) >= 4, burst

    trickle: list[int] = []

    def only_new_files_left():
        answers = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=1000 + len(trickle)), {})])
        trickle.extend(s for s, _, _ in answers)
        return not (set(_files(logs, "r1")) & burst)

    wait_until(only_new_files_left, timeout=60, every=0.2, what="the burst's files deleted by age")
    assert set(trickle) == {200}
    left = _files(logs, "r1")
    assert left, "the file being written is never deleted"
    wait_until(lambda: metric_value(_metrics(router), "modelrollout_router_log_deleted_files_total",
                                    reason="age") >= len(burst), timeout=60, what="deletions counted")
    text = _metrics(router)
    assert metric_value(text, "modelrollout_router_log_deleted_files_total", reason="size") == 0


def test_sweep_deletes_oldest_closed_files_of_this_replica_only(tmp_path):
    """PredictionLog.sweep on files with known times and sizes: age first, then the oldest until the total
    fits; the open file and other replicas' files (even with a name that starts like this one's) stay."""
    def make(name: str, size: int, age: float) -> None:
        p = tmp_path / name
        p.write_bytes(b"x" * size)
        t = time.time() - age
        os.utime(p, (t, t))

    make("predictions-a-20240101T00-0000.jsonl", 1000, 500)      # past the age limit
    make("predictions-a-20240101T00-0001.jsonl", 1000, 200)
    make("predictions-a-20240101T01-0000.jsonl", 1000, 100)
    make("predictions-a-20231231T23-0007.jsonl", 1000, 150)      # older name, newer write
    make("predictions-a-2-20240101T00-0000.jsonl", 5000, 900)    # replica "a-2"
    make("notes.jsonl", 10, 900)
    log = PredictionLog(tmp_path, "a", max_bytes=1000, max_total=2500, max_age=300)

    async def run():
        log.write({"i": 1})
        await log.flush()                   # opens this replica's current file, then sweeps
        return log.counters()
    c = asyncio.run(run())
    left = sorted(p.name for p in tmp_path.iterdir())
    current = log._path.name
    assert current in left
    assert left == sorted(["predictions-a-20231231T23-0007.jsonl", "predictions-a-20240101T01-0000.jsonl",
                           current, "predictions-a-2-20240101T00-0000.jsonl", "notes.jsonl"])
    assert c.deleted_files == {"age": 1, "size": 1} and c.deleted_bytes == {"age": 1000, "size": 1000}
    assert c.bytes == 2000 + (tmp_path / current).stat().st_size
    asyncio.run(log.close())
