"""Shadow calls reach the candidate the way primary calls reach the baseline, and what the router cannot time
fairly is left out of the latency and counted (real router, real worker, real model servers)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelrollout.models.proc import free_port, stop_popen, wait_http
from policies.checks import Observations, evaluate
from policies.spec import parse_spec
from policies.status import Routing, RolloutStatus, Verdict
from policies.summaries import VersionWindow
from tests.router_support import metric_value, rollout_doc, summaries, wait_until, write_config

# A model on Python's standard-library HTTP server (one thread per connection, HTTP/1.1 keep-alive) with a
# listen backlog of `request_queue_size`: 5 is http.server's default. It counts the connections it accepts.
MODEL = r'''
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, backlog, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
accept_after = float(sys.argv[4])      # seconds before it accepts any connection (its listen queue fills)
accepted = [0]
lock = threading.Lock()

class Server(ThreadingHTTPServer):
    request_queue_size = backlog
    daemon_threads = True
    def get_request(self):
        conn = super().get_request()
        with lock:
            accepted[0] += 1
        return conn

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def _send(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._send({"accepted": accepted[0]})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(delay)
        self._send({"prediction": 0.4})

server = Server(("127.0.0.1", port), Handler)
if accept_after:
    stats = Server(("127.0.0.1", port + 1), Handler)       # answers /stats meanwhile
    threading.Thread(target=stats.serve_forever, daemon=True).start()
    time.sleep(accept_after)
server.serve_forever()
'''


@pytest.fixture
def model(tmp_path):
    started = []

    def start(backlog: int, delay: float, accept_after: float = 0.0) -> str:
        script = tmp_path / "model.py"
        script.write_text(MODEL)
        port = free_port()
        while not _free(port + 1):
            port = free_port()
        proc = subprocess.Popen([sys.executable, str(script), str(port), str(backlog), str(delay), str(accept_after)])
        started.append(proc)
        wait_http(f"http://127.0.0.1:{port + 1 if accept_after else port}/stats", 10, proc)
        return f"http://127.0.0.1:{port}"
    yield start
    for p in started:
        stop_popen(p)


def _free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _accepted(url: str) -> int:
    """Connections the model accepted before this question's own."""
    return httpx.get(f"{url}/stats").json()["accepted"] - 1


async def _bursts(url: str, bursts: int, size: int, gap: float) -> list[int]:
    """`bursts` bursts of `size` requests at once, `gap` seconds apart, over at most `size` client connections."""
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        statuses = []
        for i in range(bursts):
            rs = await asyncio.gather(*(client.post(url, json={"features": {"age": 30 + j}})
                                        for j in range(size)))
            statuses += [r.status_code for r in rs]
            await asyncio.sleep(gap)
    return statuses


def _merged(windows: list[dict], arm: str) -> VersionWindow:
    out = VersionWindow.new("score")
    for w in windows:
        out = out.merge(VersionWindow.from_dict(w[arm]))
    return out


@pytest.mark.parametrize("concurrency", [None, 8])
def test_shadow_to_a_small_backlog_candidate_is_timed_like_the_primary(procs, model, tmp_path, concurrency):
    """Bursts of 32 requests at once, mirrored to a candidate whose listen backlog is 5: its shadow p99 is
    close to the baseline's primary p99 (not the ~1 s of SYNs dropped and retried), and it accepted no more
    connections than the shadow concurrency (default 32), however many mirrors it served."""
    baseline = model(128, 0.005)
    candidate = model(5, 0.005)
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", baseline, candidate, weight=0, shadow=True)])
    extra = ["--shadow-concurrency", str(concurrency)] if concurrency else []
    router = procs.router(cfg, "--shadow-max-inflight", "1000", *extra)
    before = _accepted(candidate) + 1       # and this question's connection
    n = 40 * 32
    statuses = asyncio.run(_bursts(f"{router.url}/v1/rollouts/fraud/predict", 40, 32, 0.04))
    assert statuses == [200] * n
    windows = wait_until(lambda: (lambda w: w if _merged(w, "candidate").requests == n else None)(
        summaries(router.url, "fraud")["windows"]), timeout=30, what="every mirror recorded")
    base, cand = _merged(windows, "baseline"), _merged(windows, "candidate")
    assert base.requests == n and cand.error_count() == 0, cand.errors
    b99, c99 = base.latency.quantile(0.99), cand.latency.quantile(0.99)
    print(f"primary p99 {b99:.4f} s, shadow p99 {c99:.4f} s, excluded {cand.latency_excluded}, {base.latency_excluded}")
    assert c99 < 0.2, f"shadow p99 {c99:.3f}s: connections overflowed the candidate's accept queue"
    assert c99 <= max(3 * b99, b99 + 0.03), f"shadow p99 {c99:.4f}s vs primary p99 {b99:.4f}s"
    assert sum(cand.latency_excluded.values()) <= 0.01 * n, cand.latency_excluded
    opened = _accepted(candidate) - before
    assert opened <= (concurrency or 32), f"{opened} connections opened to the candidate for {n} mirrors"
    text = httpx.get(f"{router.url}/metrics").text
    assert metric_value(text, "modelrollout_router_shadow_dropped_total", rollout="fraud") == 0


def test_a_stalled_worker_still_times_the_model(procs, model, tmp_path):
    """SIGSTOP the worker for 300 ms while its shadow calls are in flight (what a starved idle-priority worker
    looks like): the answers wait unread, but each call ends at the kernel's receive time of its answer, so
    the candidate's p99 stays near the model's 50 ms, nothing is excluded and every mirror is recorded."""
    baseline = model(128, 0.05)
    candidate = model(128, 0.05)
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", baseline, candidate, weight=0, shadow=True)])
    router = procs.router(cfg, "--shadow-max-inflight", "1000")
    url = f"{router.url}/v1/rollouts/fraud/predict"
    (worker,) = wait_until(lambda: _children(router.pid) or None, what="worker started")
    asyncio.run(_bursts(url, 2, 16, 0.1))          # warm: connections open, the worker ready

    async def load_with_a_stall():
        task = asyncio.create_task(_bursts(url, 12, 16, 0.0))
        await asyncio.sleep(0.3)
        os.kill(worker, signal.SIGSTOP)
        await asyncio.sleep(0.3)
        os.kill(worker, signal.SIGCONT)
        return await task
    statuses = asyncio.run(load_with_a_stall())
    assert statuses == [200] * len(statuses)
    n = 32 + len(statuses)
    windows = wait_until(lambda: (lambda w: w if _merged(w, "candidate").requests == n else None)(
        summaries(router.url, "fraud")["windows"]), timeout=30, what="every mirror recorded")
    cand = _merged(windows, "candidate")
    assert cand.latency.count == n and not cand.latency_excluded
    assert cand.latency.quantile(0.99) < 0.2      # the 300 ms stall is not in the timed calls


def test_calls_behind_an_overflowing_accept_queue_are_excluded_and_the_latency_check_is_inconclusive(
        procs, model, tmp_path):
    """A candidate that accepts no connection for its first 1.5 s (listen backlog 1): the shadow's first
    connections wait for SYN retries; those calls are left out of the latency and counted as "connect", and
    a latency check on that window is Inconclusive, saying why, instead of failing the model."""
    baseline = model(128, 0.005)
    candidate = model(1, 0.005, accept_after=1.5)
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", baseline, candidate, weight=0, shadow=True,
                                                         shadow_timeout="8s")])
    router = procs.router(cfg, "--shadow-max-inflight", "1000")
    statuses = asyncio.run(_bursts(f"{router.url}/v1/rollouts/fraud/predict", 10, 8, 0.05))
    assert statuses == [200] * 80
    windows = wait_until(lambda: (lambda w: w if _merged(w, "candidate").requests == 80 else None)(
        summaries(router.url, "fraud")["windows"]), timeout=30, what="every mirror recorded")
    base, cand = _merged(windows, "baseline"), _merged(windows, "candidate")
    connect = cand.latency_excluded.get("connect", 0)
    assert connect > 0 and cand.latency.count + connect == 80, cand.latency_excluded
    text = httpx.get(f"{router.url}/metrics").text
    assert metric_value(text, "modelrollout_router_latency_excluded_total", role="shadow", reason="connect") == connect

    spec = parse_spec({"baseline": {"version": "v1", "url": baseline}, "candidate": {"version": "v2", "url": candidate},
                       "strategy": {"steps": [{"shadow": {"duration": "1m"}}]},
                       "analysis": {"minSamples": 20, "checks": [
                           {"name": "lat", "metric": "latency-p99", "maxRatioToBaseline": 5}]}}, "fraud", "ml")
    (result,) = evaluate(spec, Observations(0.0, 60.0, base, cand), RolloutStatus(routing=Routing(0, shadow=True)))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "latency not comparable" in result.reason and f"{connect} connect" in result.reason


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
