"""Fallback and delayed labels end to end in local mode (`modelrollout run --local`), with real model processes:

* both versions fail every request: every client request (predict API and transparent mode) gets the
  fallback's answer, no client sees a 5xx, and the rollout still rolls back on the candidate's errors;
* a promoted version whose labels, arriving after the promotion, show a lower accuracy than the previous
  stable's: the promotion is regretted (with the numbers) and `action: rollback` restores the previous stable.
"""
from __future__ import annotations

import collections
import json
import random
import threading
import time

import httpx
import pytest

from modelrollout.models import proc as _proc
from tests.integration.test_local import LocalRunProcess, rollout

STATIC = {"prediction": 0.0, "source": "fallback"}


@pytest.fixture
def models(tmp_path):
    logs = tmp_path / "models"
    logs.mkdir()
    started = {}
    try:
        for name, args in {"broken1": ["--error-rate", "1"], "broken2": ["--error-rate", "1", "--seed", "1"],
                           "heuristic": ["--seed", "5"], "v1": ["--seed", "0"], "v2": ["--seed", "1"]}.items():
            started[name] = _proc.start("modelrollout.models.scorer", ["--version", name, *args], log_dir=logs)
        yield {k: p.url for k, p in started.items()}
    finally:
        for p in started.values():
            p.stop()


class Client(threading.Thread):
    """Sends predictions (with user ids) until stopped or the run ends; keeps every answer."""

    def __init__(self, url: str, host: str | None = None, rps: float = 60):
        super().__init__(daemon=True)
        self.url, self.host, self.every = url, host, 1.0 / rps
        self.answers: list[tuple[int, dict, dict | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(3)
        with httpx.Client(timeout=10) as c:
            while not self.halt.is_set():
                headers = {"x-user-id": f"u{rng.randrange(2000)}"}
                if self.host:
                    headers["host"] = self.host
                try:
                    r = c.post(self.url, json={"features": {"age": rng.gauss(40, 10), "gender": rng.choice("fm")}},
                               headers=headers)
                except httpx.TransportError:
                    time.sleep(0.05)        # the router is not up yet, or gone once the run ended
                    continue
                try:
                    doc = r.json()
                except ValueError:
                    doc = None
                self.answers.append((r.status_code, {k.lower(): v for k, v in r.headers.items()}, doc))
                time.sleep(self.every)

    def stop(self) -> None:
        self.halt.set()
        self.join(15)


def test_both_versions_failing_every_client_gets_the_fallback_and_the_rollout_rolls_back(models, tmp_path):
    api = rollout("api", models["broken1"], models["broken2"])
    api["spec"]["fallback"] = {"static": STATIC}
    svc = rollout("svc", models["broken1"], models["broken2"])
    svc["spec"]["service"] = {"name": "scorer", "port": 8080}
    svc["spec"]["fallback"] = {"url": f"{models['heuristic']}/predict"}
    run = LocalRunProcess(tmp_path, [api, svc])
    clients = [Client(f"http://127.0.0.1:{run.port}/v1/rollouts/api/predict"),
               Client(f"http://127.0.0.1:{run.port}/predict", host="scorer")]
    for c in clients:
        c.start()
    try:
        code = run.wait(120)
    finally:
        for c in clients:
            c.stop()
    assert code == 3, run.output
    final = run.final()["rollouts"]
    for key in ("ci/api", "ci/svc"):
        assert final[key]["phase"] == "RolledBack", final[key]
        assert "nan-or-5xx" in final[key]["message"], final[key]["message"]
    for client, source in zip(clients, ("static", "url")):
        codes = collections.Counter(status for status, _, _ in client.answers)
        assert len(client.answers) > 20 and set(codes) == {200}, codes      # 0 5xx, every answer usable
        assert all(h.get("x-modelrollout-fallback") == "http_5xx" for _, h, _ in client.answers)
        docs = [d for _, _, d in client.answers]
        if source == "static":
            assert all(d == STATIC for d in docs)
        else:
            assert all(d["version"] == "heuristic" and 0 <= d["prediction"] <= 1 for d in docs)
    # the version's failures were recorded as such (the log), each flagged with the fallback that answered
    lines = [json.loads(line) for f in (run.log_dir).glob("*.jsonl") for line in f.read_text().splitlines()]
    primary = [r for r in lines if r["role"] == "primary"]
    assert primary and all(r["error"] == "http_5xx" and r["fallback"] == "served" for r in primary)
    html = (tmp_path / "report.html").read_text()
    assert "fallback: static answer" in html and f"fallback: {models['heuristic']}/predict" in html


def test_a_promotion_regretted_on_delayed_labels_restores_the_previous_stable(models, tmp_path):
    doc = rollout("churn", models["v1"], models["v2"], steps=[{"canary": {"weight": 50, "duration": "4s"}}])
    doc["spec"]["analysis"]["checks"] = [{"name": "errors", "metric": "error-rate", "max": 0.05}]
    doc["spec"]["postPromotion"] = {"duration": "60s", "interval": "1s", "minSamples": 80, "failureLimit": 2,
                                    "action": "rollback",
                                    "checks": [{"name": "accuracy-kept", "metric": "accuracy", "maxDrop": 0.05}]}
    run = LocalRunProcess(tmp_path, [doc], ("--timeout", "110s"))
    base = f"http://127.0.0.1:{run.port}/v1/rollouts/churn"
    client = Client(f"{base}/predict", rps=80)
    client.start()
    labelled: set[str] = set()
    rng = random.Random(11)

    def post_labels(http: httpx.Client) -> int:
        """Label every answered prediction not labelled yet: v1's always right, v2's wrong 30% of the time."""
        n = 0
        for status, headers, answer in list(client.answers):
            fid = headers.get("x-feedback-id")
            if status != 200 or not fid or fid in labelled:
                continue
            predicted = answer["prediction"] >= 0.5
            right = headers["x-model-version"] == "v1" or rng.random() >= 0.3
            try:
                r = http.post(f"{base}/feedback", json={"feedback_id": fid, "label": int(predicted == right)})
            except httpx.TransportError:
                return n
            labelled.add(fid)
            n += r.status_code == 200
        return n

    try:
        deadline = time.monotonic() + 90
        while "Promoted" not in run.output and run.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Promoted" in run.output, run.output
        # the labels arrive late: only now, after the promotion, for the rollout's predictions and the new ones
        with httpx.Client(timeout=10) as http:
            while run.proc.poll() is None and time.monotonic() < deadline:
                post_labels(http)
                time.sleep(0.3)
        code = run.wait(30)
    finally:
        client.stop()
        run.stop()
    assert code == 3, run.output
    status = run.final()["rollouts"]["ci/churn"]
    assert status["phase"] == "RolledBack" and status["stable"]["version"] == "v1", status
    assert status["routing"]["candidateWeight"] == 0
    pp = status["postPromotion"]
    assert pp["state"] == "Regretted" and pp["previous"]["version"] == "v1" and pp["promoted"]["version"] == "v2"
    check = pp["checks"][0]
    assert check["verdict"] == "Fail" and check["failures"] >= 2
    assert check["value"] < check["evidence"]["previousValue"] - 0.05, check
    assert "regretted" in status["message"] and "accuracy" in status["message"], status["message"]
    assert "the previous stable v1 serves again" in status["message"]
    # after the promotion the promoted version served every request, and its predictions were credited to it
    after = [h["x-model-version"] for s, h, _ in client.answers if s == 200]
    assert after and after[-1] in ("v1", "v2")
    assert pp["counts"]["candidate"] and pp["counts"]["baseline"]
    html = (tmp_path / "report.html").read_text()
    assert "After the promotion" in html and "data-post-promotion='Regretted'" in html
