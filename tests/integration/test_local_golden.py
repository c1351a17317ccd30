"""The golden step end to end in local mode, with real model processes: `modelrollout run FILE --local` where
FILE holds the golden set as a ConfigMap beside the rollouts (as `kubectl apply -f FILE` would create it).

A candidate wrong on the golden set is rolled back in the golden step, naming the golden check with its
numbers, and never receives a live or mirrored request (the model process counts what it got, by kind); a
candidate right on it goes on to the shadow step and is promoted."""
from __future__ import annotations

import json
import urllib.request

import pytest

from modelrollout.models import proc as _proc
from tests.integration.test_local import LocalRunProcess, rollout

N = 20


def predict(url: str, body: dict) -> float:
    req = urllib.request.Request(f"{url}/predict", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["prediction"]


def counts(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
        return json.loads(r.read())["requests"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("golden-models")
    started = {}
    try:
        for name, args in {"base": ["--seed", "0"], "right": ["--seed", "0"],
                           "wrong": ["--seed", "0", "--shift", "0.3"]}.items():
            started[name] = _proc.start("modelrollout.models.scorer", ["--version", name, *args], log_dir=logs)
        u = {k: p.url for k, p in started.items()}
        # the golden set: 20 requests and what the model in production answers to them
        cases = []
        for i in range(N):
            body = {"features": {"amount": 10 * i, "country": ["fr", "de", "us"][i % 3]}}
            cases.append({"id": f"g{i}", "request": body, "expected": predict(u["base"], body)})
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fraud-golden", "namespace": "ci"},
                     "data": {"set.jsonl": "\n".join(json.dumps(c) for c in cases) + "\n"}}
        golden = {"golden": {"configMap": {"name": "fraud-golden", "key": "set.jsonl"}, "maxAbsDelta": 0.05,
                             "minAccuracy": 0.95}}
        steps = [golden, {"shadow": {"duration": "3s"}}, {"canary": {"weight": 50, "duration": "3s"}}]
        docs = [configmap, rollout("golden-wrong", u["base"], u["wrong"], steps=steps),
                rollout("golden-right", u["base"], u["right"], steps=steps)]
        for d in docs[1:]:
            # the live checks: errors only. "right" is the baseline's twin (same seed: the same score for the
            # same request, as the golden set needs), so each traffic generator's user repeats one score,
            # and PSI over 30-request windows of such ties is no measure of anything
            d["spec"]["analysis"]["checks"] = [c for c in d["spec"]["analysis"]["checks"] if c["name"] == "nan-or-5xx"]
        before = {k: counts(v) for k, v in u.items()}
        r = LocalRunProcess(tmp_path_factory.mktemp("golden"), docs, ("--timeout", "90s"))
        r.names = ["golden-wrong", "golden-right"]
        r.start_traffic(rps=60)
        code = r.wait(150)
        after = {k: counts(v) for k, v in u.items()}
        yield r, code, before, after
    finally:
        for p in started.values():
            p.stop()


def test_a_candidate_wrong_on_the_golden_set_is_rolled_back_before_any_live_request(run):
    r, code, before, after = run
    status = r.final()["rollouts"]["ci/golden-wrong"]
    assert code == 3, r.output[-3000:]
    assert status["phase"] == "RolledBack" and status["currentStep"] == 0, status.get("message")
    # the status names the failing golden checks with their numbers and the requests they failed on
    assert "golden set failed: golden-max-abs-delta 0.3 > 0.05" in status["message"], status["message"]
    assert f"golden-accuracy 0 < 0.95: 0/{N} expected outputs matched; wrong on g0, g1, g2, ... (baseline {N}/{N})" \
        in status["message"]
    checks = {c["name"]: c for c in status["checks"]}
    assert checks["golden-max-abs-delta"]["verdict"] == "Fail" and checks["golden-max-abs-delta"]["threshold"] == 0.05
    assert checks["golden-accuracy"]["value"] == 0 and checks["golden-errors"]["verdict"] == "Pass"
    assert [h["action"] for h in status["history"]] == ["Started", "StepStarted", "RolledBack"]
    assert status["history"][-1]["check"]["name"] in ("golden-max-abs-delta", "golden-accuracy")
    # the wrong model answered the golden set once and nothing else: no live request, no mirror
    got = {k: after["wrong"][k] - before["wrong"][k] for k in after["wrong"]}
    assert got == {"live": 0, "shadow": 0, "golden": N}, got


def test_a_candidate_right_on_the_golden_set_goes_on_to_shadow_and_canary(run):
    r, _, before, after = run
    status = r.final()["rollouts"]["ci/golden-right"]
    assert status["phase"] == "Promoted", (status.get("message"), r.output[-3000:])
    steps = [h["reason"] for h in status["history"] if h["action"] == "StepStarted"]
    assert steps[0].startswith("step 1/3 (golden set configmap/fraud-golden[set.jsonl]) started")
    assert steps[1].startswith("step 2/3 (shadow for 3s) started: step 1/3 (golden set configmap/fraud-golden"
                               "[set.jsonl]) passed"), steps
    checks = {c["name"]: c for c in status["checks"]}
    assert checks["golden-max-abs-delta"]["verdict"] == "Pass" and checks["golden-max-abs-delta"]["value"] == 0
    assert checks["golden-accuracy"]["value"] == 1
    got = {k: after["right"][k] - before["right"][k] for k in after["right"]}
    assert got["golden"] == N and got["shadow"] > 0 and got["live"] > 0, got
    # the baseline answered the golden set of both rollouts beside its live traffic
    assert after["base"]["golden"] - before["base"]["golden"] == 2 * N


def test_the_report_shows_the_golden_step_and_its_checks(run):
    r, _, _, _ = run
    page = (r.tmp / "report.html").read_text()
    section = page[page.index('data-rollout="ci/golden-wrong"'):]
    section = section[:section.index("</section>")]
    assert "golden set configmap/fraud-golden[set.jsonl]" in section
    assert "golden-max-abs-delta" in section and "golden-accuracy" in section
    record = next(x for x in r.record()["rollouts"] if x["key"] == "ci/golden-wrong")
    assert record["outcome"]["phase"] == "RolledBack" and record["outcome"]["check"].startswith("golden-")


def test_replay_of_the_runs_log_judges_the_golden_step_as_it_went(run):
    """The router logged the golden answers with their own role; `modelrollout replay` of the same file reads
    them back (and the ConfigMap beside the rollouts) and decides the golden step as the run did."""
    import subprocess
    import sys

    from tests.integration.test_local import ENV, REPO

    r, _, _, _ = run
    lines = [json.loads(line) for p in sorted((r.log_dir).glob("predictions-*.jsonl"))
             for line in p.read_text().splitlines()]
    golden = [x for x in lines if x["role"] == "golden"]
    assert len(golden) == 2 * 2 * N and {x["arm"] for x in golden} == {"baseline", "candidate"}
    assert all(x["request_id"].startswith("golden-") for x in golden)
    out = subprocess.run([sys.executable, "-m", "modelrollout.cli", "replay", str(r.file), "--log", str(r.log_dir),
                          "--json"], capture_output=True, text=True, env=ENV, cwd=str(REPO), timeout=120)
    assert out.returncode == 0, out.stderr
    decided = json.loads(out.stdout.strip().splitlines()[-1])["rollouts"]
    assert decided["ci/golden-wrong"]["phase"] == "RolledBack", out.stdout
    assert decided["ci/golden-wrong"]["check"] in ("golden-max-abs-delta", "golden-accuracy"), out.stdout
    assert decided["ci/golden-right"]["phase"] == "Promoted", out.stdout
