"""Attribution drift: the mergeable per-feature importance summary, its extraction and the attribution-tau check."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from policies.checks import Observations, evaluate
from policies.spec import parse_spec
from policies.status import Verdict
from policies.summaries import AttributionSummary, SummaryError, VersionWindow
from router.extract import attribution_values

FEATURES = ("age", "amount", "gender", "hour")


def attributions(rng, weights):
    """SHAP-like values: feature i contributes weights[i] * N(0, 1)."""
    return {f: float(w * rng.standard_normal()) for f, w in zip(FEATURES, weights)}


def summary(n, weights, seed=0, max_features=64):
    rng = np.random.default_rng(seed)
    s = AttributionSummary(max_features)
    for _ in range(n):
        s.add(attributions(rng, weights))
    return s


def test_importance_is_the_mean_absolute_attribution():
    """Importance per feature is sum |a| over the predictions that carried attributions; ranking sorts by it."""
    s = AttributionSummary()
    s.add({"age": 0.5, "amount": -2.0})
    s.add({"age": -0.25, "hour": 0.1})
    s.add({})
    assert s.n == 3
    assert s.importance() == pytest.approx({"age": 0.25, "amount": 2.0 / 3, "hour": 0.1 / 3})
    assert s.ranking() == ["amount", "age", "hour"]
    assert s.counts() == {"age": 2, "amount": 1, "hour": 1}


def test_non_numeric_attributions_are_skipped_not_fatal():
    """NaN, infinities, strings and booleans of one feature leave the other features' values counted."""
    s = AttributionSummary()
    s.add({"age": float("nan"), "amount": 1.0, "gender": "f", "hour": True, "x": float("inf")})
    assert s.importance() == {"amount": 1.0}
    with pytest.raises(SummaryError, match="mapping"):
        s.add([("age", 1.0)])


def test_merge_is_exact_and_order_free():
    """Merging replicas' summaries gives the same sums, counts and ranking as one summary of all predictions."""
    rng = np.random.default_rng(3)
    records = [attributions(rng, (1.0, 0.5, 0.3, 0.1)) for _ in range(300)]
    whole, parts = AttributionSummary(), [AttributionSummary() for _ in range(3)]
    for i, r in enumerate(records):
        whole.add(r)
        parts[i % 3].add(r)
    a = parts[0].merge(parts[1]).merge(parts[2])
    b = parts[2].merge(parts[0].merge(parts[1]))
    assert a.to_dict() == b.to_dict() == whole.to_dict()
    assert a.ranking() == list(FEATURES)


def test_feature_count_is_bounded():
    """Beyond max_features new features are counted as dropped, and a merge keeps the most important ones."""
    s = AttributionSummary(max_features=2)
    s.add({"a": 1.0, "b": 2.0, "c": 3.0})
    assert s.features() == ["a", "b"] and s.dropped == 1
    t = AttributionSummary(max_features=2)
    t.add({"c": 10.0, "d": 0.1})
    m = s.merge(t)
    assert m.features() == ["b", "c"]
    assert m.dropped == 1 + 2          # c from s, then a and d at the merge
    assert m.n == 2


def test_round_trip_through_json():
    """from_dict(to_dict()) rebuilds the same summary, through strict JSON."""
    s = summary(50, (1.0, 0.5, 0.3, 0.1), seed=1)
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    back = AttributionSummary.from_dict(d)
    assert back.to_dict() == s.to_dict()
    assert back.importance() == s.importance()


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d.__setitem__("type", "numeric"), "type must be 'attribution'"),
    (lambda d: d.__setitem__("n", -1), "n: must be >= 0"),
    (lambda d: d["features"]["age"].__setitem__("abs_sum", [float("nan")]), "abs_sum"),
    (lambda d: d["features"]["age"].__setitem__("abs_sum", [-1.0]), "cannot be negative"),
    (lambda d: d["features"]["age"].__setitem__("count", 10**6), "exceeds n"),
    (lambda d: d.__setitem__("features", []), "features"),
])
def test_malformed_dicts_are_rejected_with_the_field(mutate, where):
    """A corrupt summary from a replica raises SummaryError naming the field, never another exception."""
    d = summary(5, (1.0, 0.5, 0.3, 0.1)).to_dict()
    mutate(d)
    with pytest.raises(SummaryError, match=where):
        AttributionSummary.from_dict(d)


def test_version_window_carries_attributions_only_when_used():
    """Windows without attributions serialise as before (old dicts load); with them they round-trip and merge."""
    plain = VersionWindow.new("score")
    assert plain.attributions is None and "attributions" not in plain.to_dict()
    assert VersionWindow.from_dict(plain.to_dict()).attributions is None
    a, b = VersionWindow.new("score"), VersionWindow.new("score")
    a.observe_attributions({"age": 1.0, "amount": 0.5})
    b.observe_attributions({"age": 3.0})
    back = VersionWindow.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back.attributions.to_dict() == a.attributions.to_dict()
    assert a.merge(b).attributions.importance() == {"age": 2.0, "amount": 0.25}
    assert plain.merge(a).attributions.to_dict() == a.attributions.to_dict()
    bad = a.to_dict()
    bad["attributions"] = {"type": "attribution"}
    with pytest.raises(SummaryError, match="version window.attributions"):
        VersionWindow.from_dict(bad)


def test_extraction_keeps_finite_numbers_only():
    """The router records `{feature: number}` mappings; other shapes record nothing."""
    assert attribution_values({"age": 0.12, "amount": -0.4, "note": "x", "bad": float("nan"), "flag": True}) == \
        {"age": 0.12, "amount": -0.4}
    assert attribution_values([0.1, 0.2]) is None
    assert attribution_values({"note": "x"}) is None
    assert attribution_values(None) is None


# --- the check -----------------------------------------------------------------------------------

def make_spec(check=None, min_samples=200):
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": "v2", "url": "http://c:1"},
        "output": {"kind": "score", "attributions": "attributions"},
        "strategy": {"steps": [{"canary": {"weight": 20, "duration": "10m"}}]},
        "analysis": {"minSamples": min_samples, "checks": [check or {"name": "why-changed",
                                                                      "metric": "attribution-tau",
                                                                      "min": 0.6, "action": "warn"}]},
    }, "fraud", "ml")


def window_with(s: AttributionSummary | None) -> VersionWindow:
    w = VersionWindow.new("score")
    w.attributions = s
    return w


def judge(b, c, **kw):
    return evaluate(make_spec(**kw), Observations(0.0, 60.0, window_with(b), window_with(c)))[0]


def test_same_reasons_pass():
    """Two versions whose features matter in the same order pass (tau 1 >= 0.6)."""
    r = judge(summary(400, (1.0, 0.5, 0.3, 0.1), seed=1), summary(400, (0.9, 0.6, 0.2, 0.1), seed=2))
    assert r.verdict is Verdict.PASS and r.value == pytest.approx(1.0)
    assert r.threshold == 0.6 and r.samples == 400 and r.action == "warn"


def test_reordered_importance_fails_and_names_the_top_features():
    """A candidate ranking the features in reverse fails with tau -1 and a reason listing both top features."""
    r = judge(summary(400, (1.0, 0.5, 0.3, 0.1), seed=1), summary(400, (0.1, 0.3, 0.5, 1.0), seed=2))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(-1.0)
    assert "why-changed" in r.reason and "age, amount, gender" in r.reason and "hour, gender, amount" in r.reason
    assert r.p_value is not None and r.p_value < 0.1


def test_one_swap_of_four_features_is_tau_two_thirds():
    """Swapping the two least important features gives tau (5 - 1) / 6 = 0.667, still above 0.6."""
    r = judge(summary(400, (1.0, 0.5, 0.3, 0.1), seed=1), summary(400, (1.0, 0.5, 0.1, 0.3), seed=2))
    assert r.value == pytest.approx(4 / 6) and r.verdict is Verdict.PASS


def test_too_few_or_missing_attributions_are_inconclusive():
    """Below minSamples, or with no attributions at all, the check never passes."""
    few = judge(summary(50, (1.0, 0.5, 0.3, 0.1)), summary(400, (1.0, 0.5, 0.3, 0.1)))
    assert few.verdict is Verdict.INCONCLUSIVE and "baseline has 50 attributed predictions < minSamples 200" in \
        few.reason
    none = judge(summary(400, (1.0, 0.5, 0.3, 0.1)), None)
    assert none.verdict is Verdict.INCONCLUSIVE and "no attributions in the candidate window" in none.reason
    one = AttributionSummary()
    for _ in range(300):
        one.add({"age": 1.0})
    single = judge(one, one)
    assert single.verdict is Verdict.INCONCLUSIVE and "at least 2" in single.reason


def test_max_bound_applies_too():
    """A max bound (alert when the ranking stays too similar) is judged on the same tau."""
    r = judge(summary(300, (1.0, 0.5, 0.3, 0.1)), summary(300, (1.0, 0.5, 0.3, 0.1), seed=5),
              check={"name": "t", "metric": "attribution-tau", "max": 0.5})
    assert r.verdict is Verdict.FAIL and math.isclose(r.value, 1.0)
