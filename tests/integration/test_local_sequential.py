"""Sequential decisions end to end in local mode with real model processes: `modelrollout run --local` with
traffic through the local router; a sequential error-rate check ends each step of a healthy canary before its
duration (the history says which check and why) and rolls a candidate that fails 25% of its requests back on
its first decisive window, without waiting for failureLimit windows; `modelrollout replay` of the run's log
decides the same."""
from __future__ import annotations

import json

import pytest

from modelrollout.models import proc as _proc
from modelrollout.replay import main as replay_main
from tests.integration.test_local import LocalRunProcess, rollout

STEP_SECONDS = 90
STEPS = [{"canary": {"weight": 50, "duration": f"{STEP_SECONDS}s"}},
         {"canary": {"weight": 80, "duration": f"{STEP_SECONDS}s"}}]
# max 0.05: about 130 error-free candidate requests show a rate below it (policies/sequential.py), so even
# on a busy machine (a few candidate requests a second) a step ends well before its 90 s
CHECK = {"name": "errors", "metric": "error-rate", "max": 0.05, "sequential": True, "action": "rollback"}


def doc(name, base, cand):
    d = rollout(name, base, cand, steps=STEPS, interval="1s", minSamples=30, failureLimit=3, inconclusiveLimit=60)
    d["spec"]["analysis"]["checks"] = [CHECK]
    return d


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("seq-models")
    started = {}
    try:
        for name, args in {"base": ["--seed", "0"], "healthy": ["--seed", "1"],
                           "failing": ["--seed", "1", "--error-rate", "0.25"]}.items():
            started[name] = _proc.start("modelrollout.models.scorer", ["--version", name, *args], log_dir=logs)
        u = {k: p.url for k, p in started.items()}
        r = LocalRunProcess(tmp_path_factory.mktemp("sequential"),
                            [doc("healthy", u["base"], u["healthy"]), doc("failing", u["base"], u["failing"])],
                            ("--timeout", "300s"))
        r.start_traffic(rps=100)
        code = r.wait(360)
        yield r, code
    finally:
        for p in started.values():
            p.stop()


def test_a_healthy_canary_ends_each_step_early_and_is_promoted(run):
    r, code = run
    status = r.final()["rollouts"]["ci/healthy"]
    assert status["phase"] == "Promoted", (status.get("message"), r.output[-3000:])
    early = [h for h in status["history"] if "ended early" in h["reason"]]
    # both steps of 90 s ended on the check's evidence for the candidate, each naming it
    assert len(early) == 2, [(h["step"], h["action"], h["reason"]) for h in status["history"]]
    for h in early:
        assert "errors: evidence against 'rate >= 0.05' reached" in h["reason"]
    ev = status["checks"][0]["evidence"]
    assert ev["sequential"]["decided"] == "pass" and ev["sequential"]["ePass"] >= 100
    assert code == 3      # the other rollout was rolled back


def test_a_failing_canary_is_rolled_back_on_the_evidence_before_failure_limit(run):
    r, _ = run
    status = r.final()["rollouts"]["ci/failing"]
    assert status["phase"] == "RolledBack", (status.get("message"), r.output[-3000:])
    assert "sequential: evidence against 'rate <= 0.05' reached" in status["message"]
    assert status["checks"][0]["failures"] == 1          # acted on the first decisive window (failureLimit 3)
    assert status["currentStep"] == 0


def test_replay_of_the_log_decides_the_same(run, capsys):
    r, _ = run
    assert replay_main([str(r.file), "--log", str(r.log_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rollouts"]
    assert out["ci/healthy"]["phase"] == "Promoted" and out["ci/failing"]["phase"] == "RolledBack"
    assert out["ci/failing"]["check"] == "errors"
    live = {x["key"]: x for x in r.record()["rollouts"]}
    for key in ("ci/healthy", "ci/failing"):
        assert [(t["phase"], t["step"]) for t in out[key]["transitions"]] == \
               [(t["phase"], t["step"]) for t in live[key]["transitions"]]
