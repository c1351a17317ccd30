"""`modelrollout run FILE --local` end to end: real example models, real traffic through the local router,
the real controller core and policies, and the exit code a CI job would act on."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from modelrollout.models import proc as _proc

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def rollout(name: str, baseline: str, candidate: str, steps=None, **analysis) -> dict:
    """A short ModelRollout (steps of 2–3 s, 1 s windows) in the public YAML shape."""
    return {
        "apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {
            "baseline": {"version": "v1", "url": baseline},
            "candidate": {"version": "v2", "url": candidate},
            "predictPath": "/predict",
            "output": {"kind": "score", "path": "prediction"},
            "features": {"path": "features"},
            "strategy": {"stickiness": {"header": "x-user-id"},
                         "steps": steps or [{"shadow": {"duration": "2s"}},
                                            {"canary": {"weight": 50, "duration": "3s"}}]},
            # generous inconclusiveLimit: on a busy machine a window may lack data; that must delay, not pause
            "analysis": {"interval": "1s", "minSamples": 30, "failureLimit": 2, "inconclusiveLimit": 30,
                         "checks": [
                             {"name": "score-psi", "metric": "psi", "on": "prediction", "max": 0.3},
                             {"name": "nan-or-5xx", "metric": "error-rate", "max": 0.01, "immediate": True},
                         ], **analysis},
        },
    }


class LocalRunProcess:
    """`python -m modelrollout.cli run FILE --local ...` plus a traffic generator per rollout."""

    def __init__(self, tmp: Path, docs: list[dict], extra: tuple[str, ...] = ()):
        self.tmp = tmp
        self.file = tmp / "rollouts.yaml"
        self.file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.names = [d["metadata"]["name"] for d in docs]
        self.port = _proc.free_port()
        self.log_dir = tmp / "logs"
        self.traffic: list[subprocess.Popen] = []
        self.out = open(tmp / "run.out", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelrollout.cli", "run", str(self.file), "--local", "--port", str(self.port),
             "--timeout", "60s", "--json", "--log-dir", str(self.log_dir), "--report", str(tmp / "report.html"),
             *extra],
            stdout=self.out, stderr=subprocess.STDOUT, env=ENV, cwd=str(REPO))

    def start_traffic(self, rps: int = 120, extra: dict[str, tuple[str, ...]] | None = None) -> None:
        """Start the generators at once: they boot while the router does (requests before it listens fail
        and are only counted by the generator; rollouts start with their first answered request)."""
        for i, name in enumerate(self.names):
            self.traffic.append(subprocess.Popen(
                [sys.executable, "-m", "modelrollout.models.traffic", "--url",
                 f"http://127.0.0.1:{self.port}/v1/rollouts/{name}", "--rps", str(rps), "--duration", "120",
                 "--users", "2000", "--seed", str(i + 3), "--timeout", "5", *(extra or {}).get(name, ())],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=str(REPO)))

    def wait(self, timeout: float = 90) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        for p in [*self.traffic, self.proc]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.out.close()

    @property
    def output(self) -> str:
        return (self.tmp / "run.out").read_text(errors="replace")

    def final(self) -> dict:
        last = [line for line in self.output.splitlines() if line.startswith("{")][-1]
        return json.loads(last)

    def record(self) -> dict:
        return json.loads((self.log_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Baseline, a same-distribution candidate (other seed), a shifted one and one that answers NaN."""
    logs = tmp_path_factory.mktemp("models")
    started = {}
    try:
        for name, args in {"base": ["--seed", "0"], "same": ["--seed", "1"],
                           "shifted": ["--seed", "1", "--shift", "0.12"],
                           "nan": ["--seed", "1", "--nan-rate", "1.0"]}.items():
            started[name] = _proc.start("modelrollout.models.scorer", ["--version", name, *args], log_dir=logs)
        yield {k: p.url for k, p in started.items()}
    finally:
        for p in started.values():
            p.stop()


@pytest.fixture
def local_run(tmp_path):
    runs = []

    def make(docs, extra=()):
        r = LocalRunProcess(tmp_path, docs, tuple(extra))
        runs.append(r)
        return r

    yield make
    for r in runs:
        r.stop()


class Webhook:
    """A real HTTP receiver on loopback that keeps the JSON bodies POSTed to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def scenarios(models, tmp_path_factory):
    """The promoted, shifted, NaN and pause-step runs, side by side (each its own process and exit code)."""
    hook = Webhook()
    nan = rollout("nan", models["base"], models["nan"])
    nan["spec"]["notifications"] = [{"webhook": {"url": hook.url}, "on": ["RolledBack"]}]
    docs = {
        "same": rollout("same", models["base"], models["same"]),
        "shifted": rollout("shifted", models["base"], models["shifted"]),
        "nan": nan,
        "paused": rollout("paused", models["base"], models["same"],
                          steps=[{"shadow": {"duration": "2s"}}, {"pause": {}}, {"canary": {"weight": 50}}]),
    }
    runs = {name: LocalRunProcess(tmp_path_factory.mktemp(name), [doc]) for name, doc in docs.items()}
    try:
        for r in runs.values():
            r.start_traffic(rps=80)
        codes = {name: r.wait(120) for name, r in runs.items()}
        yield {name: (r, codes[name]) for name, r in runs.items()}, hook
    finally:
        for r in runs.values():
            r.stop()
        hook.close()


def test_same_distribution_candidate_is_promoted(scenarios):
    """A candidate whose scores follow the baseline's distribution walks every step and exits 0 (Promoted)."""
    run, code = scenarios[0]["same"]
    assert code == 0, run.output
    status = run.final()["rollouts"]["ci/same"]
    assert status["phase"] == "Promoted"
    assert status["routing"]["candidateWeight"] == 100
    assert "Promoted" in run.output and "Progressing" in run.output   # transitions were printed live
    windows = run.record()["rollouts"][0]["windows"]
    assert windows and all(c["verdict"] != "Fail" for w in windows for c in w["checks"] if c["name"] == "nan-or-5xx")


def test_shifted_candidate_is_rolled_back_by_the_drift_check(scenarios):
    """Scores shifted by more than a standard deviation fail the PSI check and the run exits 3 (RolledBack)."""
    run, code = scenarios[0]["shifted"]
    assert code == 3, run.output
    status = run.final()["rollouts"]["ci/shifted"]
    assert status["phase"] == "RolledBack"
    assert status["routing"] == {"candidateWeight": 0, "shadow": False, "interleave": False}
    psi = next(c for c in status["checks"] if c["name"] == "score-psi")
    assert psi["verdict"] == "Fail" and psi["value"] > psi["threshold"] == 0.3
    assert "check score-psi: value" in run.output          # the transition line names the deciding check


def test_nan_candidate_is_rolled_back_within_the_first_windows(scenarios):
    """A candidate answering NaN fails the immediate error-rate check and rolls back at once (exit 3),
    and the spec's webhook hears about it."""
    (run, code), webhook = scenarios[0]["nan"], scenarios[1]
    assert code == 3, run.output
    status = run.final()["rollouts"]["ci/nan"]
    assert status["phase"] == "RolledBack"
    errors = next(c for c in status["checks"] if c["name"] == "nan-or-5xx")
    assert errors["verdict"] == "Fail" and errors["value"] > 0.5
    assert status["currentStep"] == 0                       # still in the shadow step
    # the first window with enough requests to judge is the one that rolled back
    windows = run.record()["rollouts"][0]["windows"]
    judged = [w for w in windows if any(c["name"] == "nan-or-5xx" and c["verdict"] != "Inconclusive"
                                        for c in w["checks"])]
    assert len(judged) == 1 and judged[0] is windows[-1]
    assert [m.get("phase") for m in webhook.received] == ["RolledBack"]
    assert "nan-or-5xx" in json.dumps(webhook.received[0])


def test_pause_step_without_duration_exits_4(scenarios):
    """A rollout reaching a `pause: {}` step waits for a person, so a local run stops with exit 4."""
    run, code = scenarios[0]["paused"]
    assert code == 4, run.output
    assert run.final()["rollouts"]["ci/paused"]["phase"] == "Paused"


def test_invalid_spec_exits_2_naming_the_field(tmp_path, local_run):
    """A canary weight of 150 is refused before anything starts, with the field path and the bound."""
    doc = rollout("bad", "http://127.0.0.1:9", "http://127.0.0.1:10",
                  steps=[{"canary": {"weight": 10}}, {"canary": {"weight": 150}}])
    run = local_run([doc])
    code = run.wait(30)
    assert code == 2
    assert "spec.strategy.steps[1].canary.weight: expected an integer <= 100, got 150" in run.output
    assert run.final()["path"] == "spec.strategy.steps[1].canary.weight"


def test_sigterm_stops_cleanly_and_keeps_the_log(models, local_run):
    """SIGTERM mid-rollout ends the run (exit 4, not finished) with the prediction log and run record written."""
    doc = rollout("long", models["base"], models["same"], steps=[{"shadow": {"duration": "60s"}}])
    run = local_run([doc])
    run.start_traffic()
    deadline = time.monotonic() + 30
    while "Shadowing" not in run.output and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    run.proc.send_signal(signal.SIGTERM)
    code = run.proc.wait(30)
    run.stop()
    assert code == 4, run.output
    assert run.final()["rollouts"]["ci/long"]["phase"] == "Shadowing"
    logged = [line for f in sorted((run.log_dir).glob("predictions-*.jsonl")) for line in f.read_text().splitlines()]
    assert len(logged) > 50
    assert json.loads(logged[-1])["rollout"] == "long"
    assert run.record()["rollouts"][0]["key"] == "ci/long"


def test_design_example_is_accepted_as_written(tmp_path):
    """The README's fraud-scorer example (examples/rollouts/fraud-scorer.yaml) runs unchanged; with no traffic it waits, then times out with exit 4."""
    port = _proc.free_port()
    proc = subprocess.run([sys.executable, "-m", "modelrollout.cli", "run", str(REPO / "examples/rollouts/fraud-scorer.yaml"),
                           "--local", "--port", str(port), "--timeout", "1s", "--json"],
                          capture_output=True, text=True, env=ENV, cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["timed_out"] is True and list(final["rollouts"]) == ["ml/fraud-scorer"]
    assert "timed out after 1s" in proc.stderr


def test_port_in_use_is_reported_not_a_crash(tmp_path):
    """A router port someone else holds ends the run with exit 2 and a message saying what to change."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "modelrollout.cli", "run",
                               str(REPO / "modelrollout/demo_data/rollouts-fast.yaml"), "--local", "--port", str(port)],
                              capture_output=True, text=True, env=ENV, cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert f"router did not start on http://127.0.0.1:{port}" in proc.stderr
    assert "pass another --port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_rollout_with_a_service_is_called_by_its_host_name_through_a_whole_rollout(models, local_run):
    """Local mode maps the Host header the way the cluster's router does: traffic that only names the
    rollout's Service (`Host: scorer`, path /predict, no /v1/rollouts/...) is split, analysed and promoted."""
    doc = rollout("same", models["base"], models["same"])
    doc["spec"]["service"] = {"name": "scorer", "port": 8080}
    doc["spec"]["analysis"]["checks"][0]["max"] = 0.6     # few samples per 1 s window on a busy machine
    run = local_run([doc])
    run.traffic.append(subprocess.Popen(
        [sys.executable, "-m", "modelrollout.models.traffic", "--url", f"http://127.0.0.1:{run.port}",
         "--host-header", "scorer", "--rps", "80", "--duration", "120", "--users", "2000", "--timeout", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=str(REPO)))
    assert run.wait(120) == 0, run.output
    status = run.final()["rollouts"]["ci/same"]
    assert status["phase"] == "Promoted" and status["routing"]["candidateWeight"] == 100, status
    served = [c["samples"] for c in status["checks"]]
    assert served and min(served) > 0, status["checks"]
