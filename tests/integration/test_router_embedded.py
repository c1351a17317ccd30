"""The router embedded in-process (local mode's way): StaticSource updates, class outputs, the traffic tool."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn

from modelrollout.models.proc import free_port
from policies.spec import parse_rollout
from policies.summaries import PairedSummary
from router import RouterSettings, StaticSource, create_app
from tests.router_support import body, rollout_doc, wait_until, write_config

REPO = Path(__file__).resolve().parents[2]


class _Served:
    """A uvicorn server running create_app() in a thread of this process, stopped by the test."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="on",
                                                    log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.server.started, what="in-process router started")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


def test_static_source_update_from_another_thread_reroutes_traffic(procs):
    """StaticSource.update() from a non-event-loop thread changes the routing of the embedded router."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    source = StaticSource([parse_rollout(rollout_doc("fraud", v1.url, v2.url, weight=0))])
    with _Served(create_app(source, RouterSettings(replica_id="local"))) as url, httpx.Client(timeout=10) as c:
        wait_until(lambda: c.get(f"{url}/readyz").status_code == 200, what="ready")
        assert c.post(f"{url}/v1/rollouts/fraud/predict", json=body()).headers["x-model-version"] == "v1"
        source.update([parse_rollout(rollout_doc("fraud", v1.url, v2.url, weight=100))])
        wait_until(lambda: c.post(f"{url}/v1/rollouts/fraud/predict", json=body()).headers["x-model-version"] == "v2",
                   what="update applied")
        source.update([])
        wait_until(lambda: c.post(f"{url}/v1/rollouts/fraud/predict", json=body()).status_code == 404,
                   what="rollout removed")
        assert c.get(f"{url}/v1/rollouts/fraud/summaries").status_code == 404


def test_class_outputs_in_shadow_are_paired_by_agreement(procs, tmp_path):
    """For class outputs the shadow pairs record agreement between the primary and shadow labels."""
    v1 = procs.scorer("v1", "--kind", "class", "--seed", "3")
    v2 = procs.scorer("v2", "--kind", "class", "--seed", "3", "--shift", "0.3")
    doc = rollout_doc("fraud", v1.url, v2.url, weight=0, shadow=True, checks=[])
    doc["spec"]["output"] = {"kind": "class", "path": "prediction", "positive": "fraud"}
    router = procs.router(write_config(tmp_path / "r.yaml", [doc]))
    n = 200
    with httpx.Client(timeout=10) as c:
        labels = [c.post(f"{router.url}/v1/rollouts/fraud/predict", json=body(i=i)).json()["prediction"]
                  for i in range(n)]
        shadow = [c.post(f"{v2.url}/predict", json=body(i=i)).json()["prediction"] for i in range(n)]

        def paired():
            p = PairedSummary()
            for w in c.get(f"{router.url}/v1/rollouts/fraud/summaries").json()["windows"]:
                if w["paired"]:
                    p = p.merge(PairedSummary.from_dict(w["paired"]))
            return p if p.n == n else None
        p = wait_until(paired, what="pairs recorded")
    expected = sum(a == b for a, b in zip(labels, shadow)) / n
    assert 0 < expected < 1
    assert p.agreement_rate == pytest.approx(expected)


def test_traffic_generator_drives_predictions_and_feedback(procs, tmp_path):
    """modelrollout.models.traffic sends the requested number of sticky requests and posts accepted feedback for each."""
    r1, r2 = procs.ranker("r1", "--quality", "0.2"), procs.ranker("r2", "--quality", "0.8")
    router = procs.router(write_config(tmp_path / "r.yaml", [rollout_doc(
        "rank", r1.url, r2.url, kind="ranking", interleave=True, versions=("r1", "r2"))]))
    run = subprocess.run([sys.executable, "-m", "modelrollout.models.traffic", "--url", f"{router.url}/v1/rollouts/rank",
                          "--rps", "200", "--requests", "120", "--kind", "ranking", "--feedback", "--users", "20"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["sent"] == 120 and report["statuses"] == {"200": 120}
    assert report["versions"] == {"r1+r2": 120} and report["feedback"] == {"200": 120}


def test_traffic_generator_stops_on_sigterm_and_still_reports(procs, tmp_path):
    """SIGTERM ends a long run early: no new request is sent, the answers in flight are awaited, and the report
    (what a client pod's log says) is printed with exit code 0."""
    import signal
    import time

    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    router = procs.router(write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=50)]))
    gen = subprocess.Popen([sys.executable, "-m", "modelrollout.models.traffic", "--url",
                            f"{router.url}/v1/rollouts/fraud", "--rps", "50", "--duration", "600"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        time.sleep(3)
        gen.send_signal(signal.SIGTERM)
        out, err = gen.communicate(timeout=20)
    finally:
        if gen.poll() is None:
            gen.kill()
    assert gen.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert 0 < report["sent"] < 50 * 600 and report["unfinished"] == 0
    assert report["statuses"] == {"200": report["sent"]} and report["transport_errors"] == 0
