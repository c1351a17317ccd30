"""The paired statistics (policies/_paired.py) against independent computations: `scipy.stats.wilcoxon`,
`scipy.stats.binomtest`, the Agresti–Min interval written out, and loop implementations of RBO (Webber et
al. 2010, eq. 32) and NDCG@k; plus the invariants every input must keep (hypothesis)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats as sps

from policies._paired import hodges_lehmann, mcnemar, mean_agreement, ndcg, rbo, signed_rank_p, wilcoxon_shift
from policies._result import StatError


# --- Wilcoxon signed-rank ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [5, 12, 30, 50, 51, 200, 2048])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_signed_rank_p_equals_scipy_wilcoxon(n, alternative):
    """Continuous differences (exact up to 50, normal approximation beyond) give scipy's p-value."""
    rng = np.random.default_rng(n)
    d = rng.normal(0.15, 1.0, n)
    w, p = signed_rank_p(d, alternative)
    ref = sps.wilcoxon(d, alternative=alternative)
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    assert w == pytest.approx(float(np.sum(sps.rankdata(np.abs(d))[d > 0])))


@pytest.mark.parametrize("n", [14, 40, 300])
def test_signed_rank_p_with_ties_and_zeros_equals_scipy(n):
    """Ties and zeros (dropped): scipy's normal approximation with its tie correction, no continuity
    correction (above 13 differences scipy does not switch to a permutation test)."""
    rng = np.random.default_rng(100 + n)
    d = np.round(rng.normal(0.2, 1.0, n), 1)
    d[:3] = 0.0
    for alternative in ("two-sided", "greater", "less"):
        assert signed_rank_p(d, alternative)[1] == pytest.approx(
            sps.wilcoxon(d, alternative=alternative).pvalue, rel=1e-9)


def test_signed_rank_all_zero_has_no_information():
    assert signed_rank_p(np.zeros(20))[1] == 1.0


def test_wilcoxon_shift_tests_the_tolerance():
    """p against tolerance t is 2·min(p_greater(d − t), p_less(d + t)), each scipy's; t = 0 is the plain
    two-sided test; the equivalence p-value is the larger of the two one-sided tests toward the inside."""
    rng = np.random.default_rng(3)
    d = rng.normal(0.03, 0.05, 400)
    t = 0.02
    r = wilcoxon_shift(d, t)
    greater = sps.wilcoxon(d - t, alternative="greater").pvalue
    less = sps.wilcoxon(d + t, alternative="less").pvalue
    assert r.p_value == pytest.approx(min(1.0, 2 * min(greater, less)), rel=1e-9)
    assert r.detail["p_equivalent"] == pytest.approx(
        max(sps.wilcoxon(d + t, alternative="greater").pvalue, sps.wilcoxon(d - t, alternative="less").pvalue),
        rel=1e-9)
    assert wilcoxon_shift(d, 0.0).p_value == pytest.approx(sps.wilcoxon(d).pvalue, rel=1e-9)


def test_hodges_lehmann_is_the_median_of_walsh_averages():
    rng = np.random.default_rng(4)
    d = rng.normal(0.1, 1.0, 60)
    walsh = sorted((d[i] + d[j]) / 2 for i in range(60) for j in range(i, 60))
    est, lo, hi = hodges_lehmann(d)
    assert est == pytest.approx(float(np.median(walsh)))
    k = math.floor(60 * 61 / 4 - 1.959963984540054 * math.sqrt(60 * 61 * 121 / 24))
    assert (lo, hi) == (pytest.approx(walsh[k - 1]), pytest.approx(walsh[-k]))


def test_hodges_lehmann_interval_covers_the_true_shift():
    """Over 400 samples of 200 differences the 95% interval covers the true pseudo-median 93-97% of the time."""
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(400):
        _, lo, hi = hodges_lehmann(rng.normal(0.4, 1.0, 200))
        covered += lo <= 0.4 <= hi
    assert 0.93 <= covered / 400 <= 0.97


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=80), st.floats(-3, 3),
       st.floats(0, 1))
def test_wilcoxon_shift_invariants(values, shift, tolerance):
    """p-values lie in [0, 1]; shifting every difference shifts the estimate."""
    d = np.array(values)
    r = wilcoxon_shift(d, tolerance)
    assert 0.0 <= r.p_value <= 1.0 and 0.0 <= r.detail["p_equivalent"] <= 1.0
    assert r.ci_low <= r.estimate <= r.ci_high
    assert wilcoxon_shift(d + shift, tolerance).estimate == pytest.approx(r.estimate + shift, abs=1e-9)


def test_a_wider_tolerance_is_never_more_significant_on_continuous_data():
    """Without ties (continuous differences) W+ of d − t falls and of d + t rises as t grows, so the p-value
    against the tolerance never falls. (With ties the tie-corrected normal approximation can move a little
    either way.)"""
    rng = np.random.default_rng(14)
    for n in (10, 40, 60, 300):
        for _ in range(30):
            d = rng.normal(rng.normal(0, 0.5), 1, n)
            ps = [wilcoxon_shift(d, t).p_value for t in (0.0, 0.05, 0.2, 0.5, 1.0)]
            assert all(b >= a - 1e-12 for a, b in zip(ps, ps[1:])), ps


def test_wilcoxon_shift_rejects_bad_tolerance():
    with pytest.raises(StatError, match="tolerance"):
        wilcoxon_shift([1.0, 2.0], -0.1)
    with pytest.raises(StatError, match="NaN"):
        wilcoxon_shift([1.0, math.nan], 0.1)


# --- McNemar -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cells", [(50, 10, 5, 35), (400, 0, 7, 93), (10, 0, 0, 10), (300, 31, 12, 157)])
def test_mcnemar_exact_equals_binomtest(cells):
    n00, n01, n10, n11 = cells
    r = mcnemar(*cells)
    ref = sps.binomtest(n01, n01 + n10, 0.5).pvalue if n01 + n10 else 1.0
    assert r.p_value == pytest.approx(ref, rel=1e-12)
    assert r.value == pytest.approx((n01 - n10) / sum(cells))


def test_mcnemar_with_a_tolerance_is_the_agresti_min_wald_test():
    n00, n01, n10, n11 = 500, 60, 25, 415
    t = 0.02
    r = mcnemar(n00, n01, n10, n11, t)
    n = n00 + n01 + n10 + n11 + 2
    b, c = n10 + 0.5, n01 + 0.5
    delta = (c - b) / n
    se = math.sqrt((b + c) - (c - b) ** 2 / n) / n
    upper = sps.norm.sf((delta - t) / se)
    lower = sps.norm.cdf((delta + t) / se)
    assert r.p_value == pytest.approx(min(1, 2 * min(upper, lower)), rel=1e-9)
    assert (r.ci_low, r.ci_high) == (pytest.approx(delta - 1.959964 * se), pytest.approx(delta + 1.959964 * se))


def test_mcnemar_wald_interval_covers_the_true_difference():
    """Over 1,000 simulated 2x2 tables of 300 pairs the adjusted 95% interval covers Δ 93-97% of the time."""
    rng = np.random.default_rng(8)
    probs = np.array([0.55, 0.08, 0.04, 0.33])        # Δ = 0.08 − 0.04
    covered = 0
    for _ in range(1000):
        r = mcnemar(*[int(v) for v in rng.multinomial(300, probs)])
        covered += r.ci_low <= 0.04 <= r.ci_high
    assert 0.93 <= covered / 1000 <= 0.97


@settings(max_examples=100, deadline=None)
@given(st.tuples(*[st.integers(0, 200)] * 4).filter(lambda c: sum(c) > 0), st.floats(0, 0.3))
def test_mcnemar_invariants(cells, tolerance):
    """Swapping the versions negates Δ and keeps every p-value; concordant pairs change n, not the exact p."""
    n00, n01, n10, n11 = cells
    r, s = mcnemar(n00, n01, n10, n11, tolerance), mcnemar(n00, n10, n01, n11, tolerance)
    assert s.value == pytest.approx(-r.value) and s.p_value == pytest.approx(r.p_value)
    assert 0 <= r.p_value <= 1 and -1 <= r.value <= 1
    assert mcnemar(n00 + 7, n01, n10, n11).p_value == pytest.approx(mcnemar(n00, n01, n10, n11).p_value)


# --- ranking agreement ---------------------------------------------------------------------------------

def rbo_reference(s: list, t: list, p: float) -> float:
    """Webber, Moffat & Zobel (2010), eq. 32, term by term with set intersections at every depth."""
    s, t = list(dict.fromkeys(s)), list(dict.fromkeys(t))
    short, long_ = (s, t) if len(s) <= len(t) else (t, s)
    ls, ll = len(short), len(long_)
    if ls == 0:
        return 1.0 if ll == 0 else 0.0
    x = [len(set(short[:d]) & set(long_[:d])) for d in range(1, ll + 1)]
    xs, xl = x[ls - 1], x[ll - 1]
    total = sum(x[d - 1] / d * p ** d for d in range(1, ll + 1))
    total += sum(xs * (d - ls) / (ls * d) * p ** d for d in range(ls + 1, ll + 1))
    return (1 - p) / p * total + ((xl - xs) / ll + xs / ls) * p ** ll


def ndcg_reference(ref: list, other: list, k: int) -> float:
    ref = list(dict.fromkeys(ref))[:k]
    other = list(dict.fromkeys(other))[:k]
    rel = {item: k - i for i, item in enumerate(ref)}
    dcg = sum(rel.get(item, 0) / math.log2(j + 2) for j, item in enumerate(other))
    idcg = sum((k - i) / math.log2(i + 2) for i in range(len(ref)))
    return dcg / idcg


def test_rbo_equals_the_published_formula_on_fixed_seeds():
    rng = np.random.default_rng(11)
    items = [f"i{j}" for j in range(40)]
    for _ in range(200):
        a = list(rng.permutation(items)[: rng.integers(1, 25)])
        b = list(rng.permutation(items)[: rng.integers(1, 25)])
        p = float(rng.choice([0.5, 0.8, 0.9, 0.95]))
        assert rbo(a, b, p) == pytest.approx(rbo_reference(a, b, p), abs=1e-12)


def test_rbo_known_values():
    assert rbo(list("abcdef"), list("abcdef")) == pytest.approx(1.0)
    assert rbo(list("abc"), list("abcdef")) == pytest.approx(1.0)     # a prefix: extrapolated as agreeing
    assert rbo(list("abc"), list("xyz")) == 0.0
    assert rbo([], []) == 1.0 and rbo([], ["a"]) == 0.0
    # the top place weighs most: swapping the first two lowers RBO more than swapping the last two
    assert rbo(list("bacdef"), list("abcdef")) < rbo(list("abcdfe"), list("abcdef"))


def test_ndcg_equals_the_direct_formula_on_fixed_seeds():
    rng = np.random.default_rng(12)
    items = [f"i{j}" for j in range(30)]
    for _ in range(200):
        a = list(rng.permutation(items)[: rng.integers(1, 20)])
        b = list(rng.permutation(items)[: rng.integers(0, 20)])
        k = int(rng.integers(1, 15))
        assert ndcg(a, b, k) == pytest.approx(ndcg_reference(a, b, k), abs=1e-12)


rankings = st.lists(st.sampled_from([f"i{j}" for j in range(12)]), max_size=12)


@settings(max_examples=200, deadline=None)
@given(rankings, rankings, st.floats(0.05, 0.95))
def test_rbo_invariants(a, b, p):
    """RBO is symmetric, in [0, 1], and 1 for a ranking against itself."""
    v = rbo(a, b, p)
    assert 0.0 <= v <= 1.0
    assert v == pytest.approx(rbo(b, a, p), abs=1e-12)
    assert rbo(a, a, p) == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(rankings.filter(bool), rankings, st.integers(1, 12))
def test_ndcg_invariants(a, b, k):
    """NDCG@k is in [0, 1], 1 against itself, and depends only on the top k of each ranking."""
    v = ndcg(a, b, k)
    assert 0.0 <= v <= 1.0 + 1e-12
    assert ndcg(a, a, k) == pytest.approx(1.0)
    top = lambda r: list(dict.fromkeys(r))[:k]  # noqa: E731
    assert v == pytest.approx(ndcg(top(a), top(b), k))
    if len(top(a)) == k and len(top(b)) == k:  # full top k: what follows it does not count
        assert v == pytest.approx(ndcg(top(a) + ["zz"], top(b) + ["yy"], k))


def test_ndcg_needs_a_reference():
    with pytest.raises(StatError, match="reference ranking is empty"):
        ndcg([], ["a"])


def test_mean_agreement_is_a_z_test_against_min():
    rng = np.random.default_rng(13)
    x = rng.beta(8, 2, 500)
    r = mean_agreement("shadow-rbo", x.size, float(x.sum()), float((x * x).sum()), 0.82)
    z = (x.mean() - 0.82) / (x.std(ddof=1) / math.sqrt(x.size))
    assert r.value == pytest.approx(x.mean())
    assert r.p_value == pytest.approx(sps.norm.cdf(z), rel=1e-6)
    assert r.detail["p_equivalent"] == pytest.approx(sps.norm.sf(z), rel=1e-6)
