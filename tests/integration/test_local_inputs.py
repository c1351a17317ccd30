"""Input expectations end to end in local mode with real model processes: the same healthy candidate is
promoted when the live inputs meet spec.expectations, and paused — with the broken expectation named, its
failing share and its examples in status — when 20% of the requests lose a feature (sent as null). One
`modelrollout run --local` with traffic through the local router, as a user would start it."""
from __future__ import annotations

import pytest

from modelrollout.models import proc as _proc
from tests.integration.test_local import LocalRunProcess, rollout

STEPS = [{"shadow": {"duration": "4s"}}, {"canary": {"weight": 50, "duration": "4s"}}]
EXPECTATIONS = {"rows": {"min": 20},
                "features": [{"name": "amount", "type": "number", "maxNullRate": 0.05, "min": 0},
                             {"name": "gender", "type": "string", "in": ["f", "m"]}]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("input-models")
    started = {}
    try:
        for name, args in {"v1": ["--seed", "0"], "v2": ["--seed", "1"]}.items():
            started[name] = _proc.start("modelrollout.models.scorer", ["--version", name, *args], log_dir=logs)
        docs = []
        for name in ("inputs-ok", "inputs-null"):
            d = rollout(name, started["v1"].url, started["v2"].url, steps=STEPS, interval="2s", minSamples=40)
            d["spec"]["expectations"] = EXPECTATIONS
            docs.append(d)
        r = LocalRunProcess(tmp_path_factory.mktemp("inputs"), docs, ("--timeout", "90s"))
        r.start_traffic(rps=60, extra={"inputs-null": ("--null", "amount=0.2")})
        code = r.wait(150)
        yield r, code
    finally:
        for p in started.values():
            p.stop()


def test_healthy_inputs_let_the_candidate_through(run):
    r, code = run
    status = r.final()["rollouts"]["ci/inputs-ok"]
    assert status["phase"] == "Promoted", (status.get("message"), r.output[-3000:])
    inputs = next(c for c in status["checks"] if c["name"] == "input-expectations")
    assert inputs["verdict"] == "Pass" and inputs["samples"] >= 40


def test_twenty_percent_nulls_pause_the_rollout_naming_the_expectation(run):
    r, code = run
    assert code == 4                          # waiting on a person: the inputs must be fixed, then resume
    status = r.final()["rollouts"]["ci/inputs-null"]
    assert status["phase"] == "Paused" and status["pauseReason"] == "inputs", status.get("message")
    assert "amount notNull" in status["message"] and "maxNullRate 0.05" in status["message"]
    inputs = next(c for c in status["checks"] if c["name"] == "input-expectations")
    assert inputs["verdict"] == "Fail"
    [broken] = inputs["evidence"]["inputs"]["failing"]
    assert broken["feature"] == "amount" and broken["expectation"] == "notNull"
    assert 0.1 < broken["fraction"] < 0.3                      # 20% of the rows, give or take a window's luck
    # the models were not judged on that window: the drift check kept its last verdict, no failure streak
    psi = next(c for c in status["checks"] if c["name"] == "score-psi")
    assert psi["failures"] == 0 and "inputs are broken" in psi["reason"]
    paused = next(c for c in status["conditions"] if c["type"] == "Paused")
    assert paused["status"] == "True" and paused["reason"] == "InputsBroken"


def test_the_report_shows_the_expectations_and_what_broke(run):
    r, _ = run
    html = (r.tmp / "report.html").read_text()
    assert "<h3>Input expectations</h3>" in html
    assert "number, null &lt;= 0.05, in [0, …]" in html and "string, one of {f, m}" in html
    assert "inputs-broken" in html and "notNull" in html
