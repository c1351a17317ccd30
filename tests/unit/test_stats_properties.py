"""Property tests (hypothesis) of the drift statistics and the interleaving helpers."""
from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats as sps

from policies import stats as S
from policies.interleaving import credit, interleave_test, team_draft

floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(floats, min_size=1, max_size=200)
counts = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12)


@settings(max_examples=80, deadline=None)
@given(samples, samples, st.integers(min_value=1, max_value=20))
def test_psi_is_sum_of_both_kls_and_nonnegative(b, c, bins):
    """psi = kl(c‖b) + kl(b‖c) over the same bins, and psi ≥ 0."""
    e = S.bin_edges(b, bins)
    p = S.psi(b, c, edges=e).value
    kcb = S.kl_from_counts(S.binned_counts(b, e), S.binned_counts(c, e)).value
    kbc = S.kl_from_counts(S.binned_counts(c, e), S.binned_counts(b, e)).value
    assert p >= 0
    assert p == pytest.approx(kcb + kbc, rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(samples)
def test_sample_against_itself_is_zero(b):
    """Any sample against itself gives 0 for every distance and p = 1 for the tests."""
    for m in ("psi", "kl", "js", "hellinger", "wasserstein"):
        assert S.compute(m, b, b).value == pytest.approx(0.0, abs=1e-7)
    r = S.ks(b, b)
    assert r.value == 0 and r.p_value == 1.0


@settings(max_examples=60, deadline=None)
@given(counts.filter(lambda x: sum(x) > 0), st.data())
def test_divergences_from_counts_bounded(b, data):
    """js and hellinger are in [0, 1]; estimates and CIs are ordered and non-negative."""
    c = data.draw(st.lists(st.integers(0, 1000), min_size=len(b), max_size=len(b)).filter(lambda x: sum(x) > 0))
    for f in (S.js_from_counts, S.hellinger_from_counts, S.psi_from_counts):
        r = f(b, c)
        assert r.estimate >= 0 and 0 <= r.ci_low <= r.ci_high
        if f is not S.psi_from_counts:
            assert 0 <= r.value <= 1 + 1e-12


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_ks_and_wasserstein_agree_with_scipy(b, c):
    """ks and wasserstein equal scipy on arbitrary finite samples."""
    ref = sps.ks_2samp(b, c)
    r = S.ks(b, c)
    assert r.value == pytest.approx(ref.statistic, rel=1e-9) and r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    sd = np.std(b)
    w = sps.wasserstein_distance(b, c) / (sd if sd > 0 else 1.0)
    assert S.wasserstein(b, c).value == pytest.approx(w, rel=1e-9, abs=1e-12)


item_lists = st.lists(st.sampled_from([f"i{k}" for k in range(15)]), max_size=12, unique=True)


@settings(max_examples=100, deadline=None)
@given(item_lists, item_lists, st.integers(0, 2**32))
def test_team_draft_invariants(a, b, seed):
    """Merged list has no duplicates, each item comes from its team's ranking, team sizes differ by ≤ 1,
    and each team's items appear in that team's own preference order."""
    merged, teams = team_draft(a, b, random.Random(seed))
    assert len(merged) == len(set(merged)) == len(teams)
    assert abs(teams.count("a") - teams.count("b")) <= 1
    for team, ranking in (("a", a), ("b", b)):
        picked = [item for item, t in zip(merged, teams) if t == team]
        assert all(item in ranking for item in picked)
        assert [ranking.index(x) for x in picked] == sorted(ranking.index(x) for x in picked)


def test_team_draft_prefix_of_identical_rankings():
    """When both rankers agree the merged list is their ranking (interleaving is invisible to users)."""
    r = ["x", "y", "z", "w"]
    for seed in range(20):
        merged, teams = team_draft(r, r, random.Random(seed))
        assert merged == r


def test_team_draft_length_and_fair_coin():
    """length truncates the list and the first pick goes to each team about half the time."""
    firsts = [team_draft(["a1", "a2"], ["b1", "b2"], random.Random(s), length=1)[1][0] for s in range(400)]
    assert all(len(team_draft(["a1", "a2"], ["b1", "b2"], random.Random(s), length=1)[0]) == 1 for s in range(5))
    assert 150 < firsts.count("a") < 250


def test_credit_counts_clicks_per_team():
    """The team whose items got more clicks wins the impression; equal or no clicks is a tie."""
    teams = {"x": "a", "y": "b", "z": "a"}
    assert credit(teams, ["x", "z", "y"]) == "a"
    assert credit(teams, ["y"]) == "b"
    assert credit(teams, ["x", "y"]) == "tie"
    assert credit(teams, []) == "tie"
    assert credit(teams, ["unknown"]) == "tie"


def test_interleave_test_matches_binomial():
    """interleave value is Δ = (wins + ties/2)/n − 0.5 and p is the two-sided binomial on wins vs losses."""
    r = interleave_test(60, 40, 100)
    assert r.value == pytest.approx((60 + 50) / 200 - 0.5)
    assert r.p_value == pytest.approx(sps.binomtest(60, 100, 0.5).pvalue, rel=1e-12)
    assert r.ci_low < r.value < r.ci_high


def test_interleave_test_bad_and_tied_input():
    """No impressions or negative counts raise; all-tie input is p = 1 with a reason."""
    with pytest.raises(S.StatError, match="no impressions"):
        interleave_test(0, 0, 0)
    with pytest.raises(S.StatError, match="losses must be a non-negative integer"):
        interleave_test(1, -1, 0)
    r = interleave_test(0, 0, 5)
    assert r.p_value == 1.0 and r.value == 0.0 and "tie" in r.detail["reason"]
