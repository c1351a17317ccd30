"""`metric: outlier-rate` end to end in local mode with real model processes that answer a score and, beside
it, an embedding (`spec.output.embedding`): a candidate whose embeddings move into a new cluster for 30% of
the requests is rolled back by outlier-rate while PSI on its score passes; a candidate with the same
embedding distribution is promoted. One `modelrollout run --local` with traffic through the local router."""
from __future__ import annotations

import pytest

from modelrollout.models import proc as _proc
from tests.integration.test_local import LocalRunProcess, rollout

STEPS = [{"shadow": {"duration": "6s"}}, {"canary": {"weight": 50, "duration": "6s"}}]
CHECKS = [{"name": "emb-outliers", "metric": "outlier-rate", "on": "embedding", "max": 0.05},
          # 5 bins: the canary's windows hold ~60 answers a version, and at 10 bins (6 a bin) a window with no
          # drift fails psi by chance ~4-12% of the time (docs/statistics.md); this check must never Fail
          {"name": "score-psi", "metric": "psi", "on": "prediction", "max": 0.3, "bins": 5}]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("outlier-models")
    common = ["--embedding-field", "embedding", "--dims", "16", "--shift-dims", "6"]
    models = {"v1": ["--seed", "0", *common], "v2-same": ["--seed", "1", *common],
              "v2-cluster": ["--seed", "1", *common, "--cluster", "0.3:4"]}
    started = {}
    try:
        for name, args in models.items():
            started[name] = _proc.start("modelrollout.models.scorer", ["--version", name, *args], log_dir=logs)
        docs = []
        for name, cand in (("emb-same", "v2-same"), ("emb-cluster", "v2-cluster")):
            d = rollout(name, started["v1"].url, started[cand].url, steps=STEPS, interval="2s", minSamples=40)
            d["spec"]["output"]["embedding"] = "embedding"
            d["spec"]["analysis"]["checks"] = CHECKS
            docs.append(d)
        r = LocalRunProcess(tmp_path_factory.mktemp("outliers"), docs, ("--timeout", "90s"))
        r.start_traffic(rps=60)
        code = r.wait(150)
        yield r, code
    finally:
        for p in started.values():
            p.stop()


def _check(status, name):
    return next(c for c in status["checks"] if c["name"] == name)


def test_a_new_cluster_fails_outlier_rate_while_psi_on_the_score_passes(run):
    r, code = run
    assert code == 3
    status = r.final()["rollouts"]["ci/emb-cluster"]
    assert status["phase"] == "RolledBack", (status.get("message"), r.output[-3000:])
    assert "emb-outliers" in status["message"]
    out = _check(status, "emb-outliers")
    assert out["verdict"] == "Fail" and out["value"] > 0.1 and out["threshold"] == 0.05
    psi = _check(status, "score-psi")
    assert psi["failures"] == 0 and all(w["verdict"] != "Fail" for w in psi["recent"]), psi
    assert any(w["verdict"] == "Pass" for w in psi["recent"])


def test_the_same_embedding_distribution_is_promoted(run):
    r, code = run
    status = r.final()["rollouts"]["ci/emb-same"]
    assert status["phase"] == "Promoted", (status.get("message"), _check(status, "emb-outliers"), r.output[-3000:])
    assert all(w["verdict"] != "Fail" for w in _check(status, "emb-outliers")["recent"])
