"""`modelrollout replay`: the policy replayed on a recorded prediction log decides what the live run decided."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelrollout.replay import main as replay_main
from modelrollout.report import main as report_main
from modelrollout.models import proc as _proc
from tests.integration.test_local import ENV, REPO, LocalRunProcess, rollout
from tests.integration.test_report import census


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One live local run of two rollouts (a same-distribution and a shifted candidate) with its log."""
    tmp = tmp_path_factory.mktemp("recorded")
    procs = []
    try:
        for version, args in {"base": ["--seed", "0"], "same": ["--seed", "1"],
                              "shifted": ["--seed", "1", "--shift", "0.12"]}.items():
            procs.append(_proc.start("modelrollout.models.scorer", ["--version", version, *args], log_dir=tmp / "models"))
        base, same, shifted = (p.url for p in procs)
        docs = [rollout("same", base, same), rollout("shifted", base, shifted)]
        run = LocalRunProcess(tmp, docs)
        try:
            run.start_traffic()
            code = run.wait()
        finally:
            run.stop()
        assert code == 3, run.output
        yield run
    finally:
        for p in procs:
            p.stop()


def live_outcome(run: LocalRunProcess, key: str) -> tuple[str, str | None]:
    rec = next(r for r in run.record()["rollouts"] if r["key"] == key)
    return rec["outcome"]["phase"], rec["outcome"]["check"]


def replay_json(capsys, *args: str) -> dict:
    assert replay_main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_replay_reproduces_the_live_decisions(recorded, capsys):
    """Replaying the same policy on the run's log gives each rollout the live final phase and deciding check."""
    out = replay_json(capsys, str(recorded.file), "--log", str(recorded.log_dir))
    same, shifted = out["rollouts"]["ci/same"], out["rollouts"]["ci/shifted"]
    assert live_outcome(recorded, "ci/shifted") == ("RolledBack", "score-psi")
    assert (shifted["phase"], shifted["check"]) == ("RolledBack", "score-psi")
    assert shifted["value"] > shifted["threshold"] == 0.3
    assert live_outcome(recorded, "ci/same")[0] == same["phase"] == "Promoted"


def test_replay_takes_the_live_transitions(recorded, capsys):
    """Replay takes the live sequence of phases and steps, each within one analysis interval of its live time
    (a request still in flight when a live window closed may land in it only in the log)."""
    rec = {r["key"]: r for r in recorded.record()["rollouts"]}
    out = replay_json(capsys, str(recorded.file), "--log", str(recorded.log_dir))
    for key in ("ci/same", "ci/shifted"):
        live = [(t["phase"], t["step"]) for t in rec[key]["transitions"]]
        replayed = [(t["phase"], t["step"]) for t in out["rollouts"][key]["transitions"]]
        assert replayed == live
        assert out["rollouts"][key]["transitions"][0]["time"] == rec[key]["transitions"][0]["time"]
        for a, b in zip(rec[key]["transitions"], out["rollouts"][key]["transitions"]):
            assert abs(a["time"] - b["time"]) <= 1.0


def test_a_looser_policy_would_not_have_rolled_back(recorded, tmp_path, capsys):
    """Backtesting a relaxed threshold on the same log shows the shifted candidate no longer rolled back."""
    docs = list(yaml.safe_load_all(recorded.file.read_text()))
    loose = copy.deepcopy(docs[1])
    loose["spec"]["analysis"]["checks"][0]["max"] = 50.0
    path = tmp_path / "loose.yaml"
    path.write_text(yaml.safe_dump(loose))
    out = replay_json(capsys, str(path), "--log", str(recorded.log_dir))
    assert out["rollouts"]["ci/shifted"]["phase"] != "RolledBack"
    assert out["rollouts"]["ci/shifted"]["windows"] >= 1


def test_replay_through_the_cli_prints_what_would_have_happened(recorded):
    """`modelrollout replay` prints the decision in words, with the deciding check."""
    proc = subprocess.run([sys.executable, "-m", "modelrollout.cli", "replay", str(recorded.file), "--log",
                           str(recorded.log_dir)], capture_output=True, text=True, env=ENV, cwd=str(REPO),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ci/shifted: would have rolled back" in proc.stdout
    assert "check score-psi" in proc.stdout
    assert "ci/same: would have promoted" in proc.stdout


def test_report_from_a_prediction_log_with_a_spec(recorded, tmp_path):
    """`modelrollout report LOG.jsonl --spec FILE` replays the policy and draws every check per rollout."""
    log = sorted(recorded.log_dir.glob("predictions-*.jsonl"))[0]
    out = tmp_path / "from-log.html"
    assert report_main([str(log), "--spec", str(recorded.file), "-o", str(out)]) == 0
    sections = census(out.read_text()).sections
    assert sections["ci/shifted"]["outcome"] == "RolledBack"
    assert sections["ci/shifted"]["checks"] == {"score-psi", "nan-or-5xx"}
    assert sections["ci/same"]["baseline_bars"] > 0 and sections["ci/same"]["candidate_bars"] > 0


def test_report_from_a_prediction_log_alone(recorded, tmp_path):
    """Without a spec, the report still shows each rollout's traffic, errors and prediction distributions."""
    log = sorted(recorded.log_dir.glob("predictions-*.jsonl"))[0]
    out = tmp_path / "log-only.html"
    assert report_main([str(log), "-o", str(out)]) == 0
    sections = census(out.read_text()).sections
    assert set(sections) == {"ci/same", "ci/shifted"}
    assert sections["ci/shifted"]["candidate_bars"] > 0


def test_malformed_log_line_is_named(tmp_path, recorded, capsys):
    """A log line that is not JSON stops replay with exit 2 naming the file and line number."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"time": 1, "rollout": "same", "namespace": "ci"}\nnot json\n')
    assert replay_main([str(recorded.file), "--log", str(bad)]) == 2
    assert f"{bad}:2: not a JSON record" in capsys.readouterr().err


def test_report_of_a_short_log_shows_the_candidate_of_its_last_bucket(tmp_path):
    """A log whose candidate answered only in its last (unfinished) bucket still draws the candidate: the log
    ends when that bucket does, and the drawn window is one with data from both versions."""
    import random

    rng = random.Random(3)
    start = 1_800_000_000.0             # a bucket boundary (5 s)
    lines = []
    for i in range(400):
        t = start + (i % 100) * 0.049 + (5.0 if i >= 100 else 0.0)    # bucket 0: 100 baseline; bucket 1: the rest
        arm = "candidate" if i >= 100 and i % 2 else "baseline"
        lines.append({"time": t, "request_id": f"{i:032x}", "rollout": "short", "namespace": "ci",
                      "revision": "v2@x", "version": "v2" if arm == "candidate" else "v1", "arm": arm,
                      "role": "shadow" if arm == "candidate" else "primary", "status": 200, "error": None,
                      "latency_ms": 1.0, "output": rng.random(), "features": None, "segments": None})
    log = tmp_path / "predictions-x-20270115T08-0000.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in sorted(lines, key=lambda r: r["time"])))
    out = tmp_path / "short.html"
    assert report_main([str(log), "-o", str(out)]) == 0
    section = census(out.read_text()).sections["ci/short"]
    assert section["candidate_bars"] > 0 and section["baseline_bars"] > 0
