"""`metric: outlier-rate`: the statistic against an independent computation of its definition, its A/A
behaviour, a new cluster of embeddings caught while PSI on the score passes, and the spec's rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from policies.checks import Observations, evaluate
from policies.outlier import CONTAMINATION, outlier_rate
from policies.spec import SpecError, parse_spec
from policies.status import Verdict
from policies.summaries import VersionWindow, key_from_request_id
from policies._result import StatError

T0 = 1_800_000_000.0


def test_matches_the_definition_computed_independently():
    rng = np.random.default_rng(3)
    b, c = rng.normal(size=(300, 4)), rng.normal(size=(200, 4)) + 0.5
    r = outlier_rate(b, c)
    fit, held = b[0::2], b[1::2]
    forest = IsolationForest(n_estimators=100, max_samples=150, random_state=0).fit(fit)
    tau = np.quantile(forest.score_samples(fit), CONTAMINATION)
    p_b, p_c = np.mean(forest.score_samples(held) < tau), np.mean(forest.score_samples(c) < tau)
    assert r.value == pytest.approx(p_c - p_b) and r.estimate == r.value
    assert r.detail["baseline_rate"] == pytest.approx(p_b) and r.detail["candidate_rate"] == pytest.approx(p_c)
    assert r.ci_low < r.value < r.ci_high
    assert outlier_rate(b, c).to_dict() == r.to_dict()                     # deterministic


def test_identical_distributions_rarely_look_worse():
    rng = np.random.default_rng(7)
    deltas, lows = [], []
    for _ in range(40):
        r = outlier_rate(rng.normal(size=(512, 8)), rng.normal(size=(512, 8)))
        deltas.append(r.value)
        lows.append(r.ci_low)
    assert abs(np.mean(deltas)) < 0.01                 # the held-out baseline removes the in-sample bias
    assert np.mean(np.array(lows) > 0) <= 0.1          # a 95% lower bound above 0 is rare under A/A


def test_rejects_bad_input_with_the_argument_named():
    with pytest.raises(StatError, match="candidate has 1 rows with NaN"):
        outlier_rate(np.zeros((100, 2)), np.array([[np.nan, 1.0]] + [[0.0, 0.0]] * 50))
    with pytest.raises(StatError, match="needs 40 baseline"):
        outlier_rate(np.zeros((10, 2)), np.zeros((50, 2)))
    with pytest.raises(StatError, match="2 values, candidate rows 3"):
        outlier_rate(np.zeros((100, 2)), np.zeros((100, 3)))


def spec(checks, embedding="embedding"):
    raw = {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
           "output": {"kind": "score", "path": "prediction", **({"embedding": embedding} if embedding else {})},
           "strategy": {"steps": [{"canary": {"weight": 50, "duration": "10m"}}]},
           "analysis": {"interval": "1m", "minSamples": 100, "checks": checks}}
    return parse_spec(raw, "emb", "ml")


CHECKS = [{"name": "emb-outliers", "metric": "outlier-rate", "on": "embedding", "max": 0.05},
          {"name": "score-psi", "metric": "psi", "max": 0.2}]


def window(rng, n, cluster=0.0, arm=""):
    w = VersionWindow.new("score")
    keys = [key_from_request_id(f"{arm}{i}") for i in range(n)]
    w.requests = n
    scores = rng.uniform(size=n)
    w.observe_predictions(list(scores), keys)
    emb = rng.normal(size=(n, 16))
    moved = rng.uniform(size=n) < cluster
    emb[moved, :6] += 5.0                      # a new cluster, far from the baseline's
    w.observe_embeddings(list(emb), keys)
    return w


def test_a_new_cluster_of_embeddings_fails_while_psi_on_the_score_passes():
    rng = np.random.default_rng(11)
    s = spec(CHECKS)
    b, c = window(rng, 1500, arm="b"), window(rng, 1500, cluster=0.25, arm="c")
    by = {r.name: r for r in evaluate(s, Observations(T0, T0 + 60, b, c))}
    assert by["score-psi"].verdict is Verdict.PASS, by["score-psi"].reason
    out = by["emb-outliers"]
    assert out.verdict is Verdict.FAIL, out.reason
    assert out.value > 0.15 and out.threshold == 0.05 and "bias-corrected" in out.reason
    same = {r.name: r for r in evaluate(s, Observations(T0, T0 + 60, b, window(rng, 1500, arm="d")))}
    assert same["emb-outliers"].verdict is Verdict.PASS, same["emb-outliers"].reason


def test_too_few_embeddings_is_inconclusive():
    rng = np.random.default_rng(1)
    by = {r.name: r for r in evaluate(spec(CHECKS), Observations(T0, T0 + 60, window(rng, 50), window(rng, 50)))}
    assert by["emb-outliers"].verdict is Verdict.INCONCLUSIVE and "minSamples" in by["emb-outliers"].reason


@pytest.mark.parametrize("check,embedding,path,needle", [
    ({"name": "o", "metric": "outlier-rate", "on": "embedding", "max": 0.05}, None,
     "spec.analysis.checks[0].on", "spec.output.embedding"),
    ({"name": "o", "metric": "psi", "on": "embedding", "max": 0.05}, "embedding",
     "spec.analysis.checks[0].on", "compared by mmd"),
    ({"name": "o", "metric": "outlier-rate", "min": 0.05}, "embedding", "spec.analysis.checks[0].min", "takes max"),
    ({"name": "o", "metric": "outlier-rate", "minPValue": 0.05}, "embedding", "spec.analysis.checks[0].minPValue",
     "has no p-value"),
])
def test_spec_rules(check, embedding, path, needle):
    with pytest.raises(SpecError) as e:
        spec([check], embedding)
    assert e.value.path == path and needle in str(e.value)


def test_embedding_summary_survives_the_wire():
    rng = np.random.default_rng(2)
    w = window(rng, 100)
    back = VersionWindow.from_dict(w.to_dict())
    assert np.array_equal(back.embedding.matrix(), w.embedding.matrix()) and back.embedding.n == 100
    assert math.isclose(back.merge(w).embedding.n, 200)


def _features_window(rng, n, correlated, arm):
    w = VersionWindow.new("score")
    keys = [key_from_request_id(f"{arm}{i}") for i in range(n)]
    x = rng.normal(size=n)
    y = (x + 0.15 * rng.normal(size=n)) / math.sqrt(1 + 0.15 ** 2) if correlated else rng.normal(size=n)
    w.requests = n
    w.observe_predictions(list(rng.uniform(size=n)), keys)
    w.observe_features("x", list(x), keys)
    w.observe_features("y", list(y), keys)
    return w


def test_features_joined_per_request_catch_a_change_each_feature_alone_misses():
    """The baseline's two features move together; the candidate's are independent with the same marginals:
    PSI on each feature passes, outlier-rate on features:x,y fails."""
    rng = np.random.default_rng(5)
    raw = {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
           "features": {"path": "features"}, "strategy": {"steps": [{"canary": {"weight": 50, "duration": "10m"}}]},
           "analysis": {"minSamples": 100, "checks": [
               {"name": "joint", "metric": "outlier-rate", "on": "features:x,y", "max": 0.05},
               {"name": "x-psi", "metric": "psi", "on": "feature:x", "max": 0.2},
               {"name": "y-psi", "metric": "psi", "on": "feature:y", "max": 0.2}]}}
    s = parse_spec(raw, "j", "ml")
    assert s.watched_features() == ("x", "y")
    b = _features_window(rng, 2000, True, "b")
    by = {r.name: r for r in evaluate(s, Observations(T0, T0 + 60, b, _features_window(rng, 2000, False, "c")))}
    assert by["x-psi"].verdict is Verdict.PASS and by["y-psi"].verdict is Verdict.PASS
    assert by["joint"].verdict is Verdict.FAIL and by["joint"].value > 0.2, by["joint"].reason
    same = {r.name: r for r in evaluate(s, Observations(T0, T0 + 60, b, _features_window(rng, 2000, True, "d")))}
    assert same["joint"].verdict is Verdict.PASS, same["joint"].reason
    with pytest.raises(SpecError, match="features:A,B"):
        parse_spec({**raw, "analysis": {"checks": [{"name": "j", "metric": "psi", "on": "features:x,y",
                                                    "max": 0.2}]}}, "j", "ml")
