"""The gates that judge the model, end to end in local mode with real model processes: embeddings (MMD at
minPValue 0.001), latency (an identical candidate behind a small listen backlog; one 25 ms slower) and the
four-fifths rule (an identical candidate; one that favours a segment). Each run is `modelrollout run --local`
with traffic through the local router, as a user would start it."""
from __future__ import annotations

import pytest

from modelrollout.models import proc as _proc
from tests.integration.test_local import LocalRunProcess, rollout

STEPS = [{"shadow": {"duration": "6s"}}, {"canary": {"weight": 30, "duration": "6s"}},
         {"canary": {"weight": 60, "duration": "6s"}}]
FAIR_STEPS = [{"shadow": {"duration": "8s"}}, {"canary": {"weight": 50, "duration": "8s"}},
              {"canary": {"weight": 80, "duration": "8s"}}]
MODELS = {
    "emb": ["--kind", "embedding", "--seed", "0"],
    "emb-shifted": ["--kind", "embedding", "--seed", "0", "--shift", "0.5"],
    "score": ["--seed", "0", "--mean", "0.38"],
    "score-backlog5": ["--seed", "0", "--mean", "0.38", "--backlog", "5"],
    "score-slow": ["--seed", "0", "--mean", "0.38", "--latency-ms", "25"],
    "score-favours-f": ["--seed", "0", "--mean", "0.38", "--favour", "gender=f:0.3"],
}


def doc(name, base, cand, check, kind="score", steps=STEPS, interval="2s"):
    d = rollout(name, base, cand, steps=steps, interval=interval, minSamples=30, failureLimit=2,
                inconclusiveLimit=30)
    d["spec"]["output"]["kind"] = kind
    d["spec"]["analysis"]["checks"] = [check]
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    logs = tmp_path_factory.mktemp("gate-models")
    started = {}
    try:
        for name, args in MODELS.items():
            started[name] = _proc.start("modelrollout.models.scorer", ["--version", name, *args], log_dir=logs)
        u = {k: p.url for k, p in started.items()}
        mmd = {"name": "emb-mmd", "metric": "mmd", "on": "prediction", "minPValue": 0.001, "action": "rollback"}
        fair = {"name": "fair", "metric": "disparate-impact", "segment": "gender", "min": 0.8, "action": "rollback"}
        docs = {
            "emb-same": doc("emb-same", u["emb"], u["emb"], mmd, "embedding"),
            "emb-shifted": doc("emb-shifted", u["emb"], u["emb-shifted"], mmd, "embedding"),
            "lat-backlog": doc("lat-backlog", u["score"], u["score-backlog5"],
                               {"name": "slow", "metric": "latency-p99", "maxRatioToBaseline": 3}),
            "lat-slow": doc("lat-slow", u["score"], u["score-slow"],
                            {"name": "slow", "metric": "latency-p99", "maxRatioToBaseline": 2}),
            # ~11% positives: fairness windows need more requests than the others to hold positives
            "fair-same": doc("fair-same", u["score"], u["score-backlog5"], fair, steps=FAIR_STEPS, interval="4s"),
            "fair-favours": doc("fair-favours", u["score"], u["score-favours-f"], fair, steps=FAIR_STEPS,
                                interval="4s"),
        }
        # One local run for all six, as a user would run a file of rollouts: one router, one controller loop.
        run = LocalRunProcess(tmp_path_factory.mktemp("gates"), list(docs.values()), ("--timeout", "240s"))
        run.start_traffic(rps=70)
        code = run.wait(300)
        yield run, code
    finally:
        for p in started.values():
            p.stop()




@pytest.mark.parametrize("name,expected", [
    ("emb-same", "Promoted"), ("emb-shifted", "RolledBack"),
    ("lat-backlog", "Promoted"), ("lat-slow", "RolledBack"),
    ("fair-same", "Promoted"), ("fair-favours", "RolledBack"),
])
def test_gate_decides_like_a_user_expects(runs, name, expected):
    run, code = runs
    status = run.final()["rollouts"][f"ci/{name}"]
    assert status["phase"] == expected, (status.get("message"), status.get("checks"), run.output[-3000:])
    assert code == 3     # the run's exit code: at least one rollout rolled back


@pytest.mark.parametrize("name,check", [("emb-shifted", "emb-mmd"), ("emb-same", "emb-mmd"),
                                        ("lat-slow", "slow"), ("lat-backlog", "slow")])
def test_report_draws_the_embedding_and_latency_checks(runs, name, check):
    """The run's HTML report draws each window's value of the MMD and latency checks against the threshold,
    with the windows that failed marked Fail on the rolled-back rollouts."""
    import re

    run, _ = runs
    page = (run.tmp / "report.html").read_text()
    section = page[page.index(f'data-rollout="ci/{name}"'):]
    section = section[:section.index("</section>")]
    series = re.search(rf'<g class="check-series" data-check="{check}">(.*?)</g>', section, re.S)
    assert series, f"no series drawn for {check} in {name}'s section"
    verdicts = re.findall(r'<circle class="point" data-verdict="(\w+)"', series.group(1))
    assert len(verdicts) >= 2, verdicts
    if run.final()["rollouts"][f"ci/{name}"]["phase"] == "RolledBack":
        assert "Fail" in verdicts, verdicts
    else:
        assert "Pass" in verdicts, verdicts
