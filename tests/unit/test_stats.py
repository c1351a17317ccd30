"""Every statistic against an independent numpy/scipy computation of the definitions in docs/statistics.md."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import cdist, jensenshannon

from policies import stats as S

RTOL = 1e-9


def _ref_props(b, c, bins=10):
    q = np.unique(np.quantile(b, np.linspace(0, 1, bins + 1)))
    interior = q[1:-1]
    pb = np.bincount(np.searchsorted(interior, b, side="right"), minlength=interior.size + 1) / b.size
    pc = np.bincount(np.searchsorted(interior, c, side="right"), minlength=interior.size + 1) / c.size
    return pb, pc


def _eps(p):
    p = p.copy()
    p[p == 0] = 1e-4
    return p


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(42)
    return rng.normal(0, 1, 3000), rng.normal(0.15, 1.1, 2500)


@pytest.fixture(scope="module")
def large():
    rng = np.random.default_rng(7)
    return rng.normal(0, 1, 30000), rng.normal(0.02, 1, 20000)


def test_psi_matches_definition(samples):
    """psi is Σ (c% − b%) ln(c%/b%) over the baseline's quantile bins with zeros replaced by 1e-4."""
    b, c = samples
    pb, pc = map(_eps, _ref_props(b, c))
    r = S.psi(b, c)
    assert r.value == pytest.approx(np.sum((pc - pb) * np.log(pc / pb)), rel=RTOL)
    assert (r.bins, r.n_baseline, r.n_candidate, r.p_value) == (10, 3000, 2500, None)


def test_kl_js_hellinger_match_definitions(samples):
    """kl is KL(c‖b) with epsilon, js is scipy's base-2 JS distance, hellinger is sqrt(1 − BC)."""
    b, c = samples
    pb, pc = _ref_props(b, c)
    eb, ec = _eps(pb), _eps(pc)
    assert S.kl(b, c).value == pytest.approx(np.sum(ec * np.log(ec / eb)), rel=RTOL)
    assert S.js(b, c).value == pytest.approx(jensenshannon(pb, pc, base=2), rel=RTOL)
    assert S.hellinger(b, c).value == pytest.approx(np.sqrt(1 - np.sum(np.sqrt(pb * pc))), rel=RTOL)


def test_bin_edges_and_counts_follow_design(samples):
    """Edges are unique quantiles with ±inf ends and counts use searchsorted(interior, x, 'right')."""
    b, c = samples
    e = S.bin_edges(b, bins=7)
    q = np.unique(np.quantile(b, np.linspace(0, 1, 8)))
    assert e[0] == -np.inf and e[-1] == np.inf
    np.testing.assert_array_equal(e[1:-1], q[1:-1])
    counts = S.binned_counts(c, e)
    np.testing.assert_array_equal(counts, np.bincount(np.searchsorted(q[1:-1], c, side="right"), minlength=7))
    assert counts.sum() == c.size


def test_ties_collapse_bins():
    """A baseline with few distinct values uses fewer bins (unique edges), reported in bins."""
    b = np.repeat([1.0, 2.0, 3.0], 100)
    c = np.repeat([1.0, 2.0, 3.0, 4.0], 50)
    r = S.psi(b, c, bins=10)
    pb, pc = map(_eps, _ref_props(b, c))
    assert r.bins == pb.size < 10
    assert r.value == pytest.approx(np.sum((pc - pb) * np.log(pc / pb)), rel=RTOL)


def test_given_edges_are_used(samples):
    """Frozen edges passed by the caller replace the baseline's quantile edges."""
    b, c = samples
    edges = np.array([-np.inf, -1.0, 0.0, 1.0, np.inf])
    pb = S.binned_counts(b, edges) / b.size
    pc = S.binned_counts(c, edges) / c.size
    r = S.psi(b, c, edges=edges)
    assert r.bins == 4
    assert r.value == pytest.approx(np.sum((pc - pb) * np.log(pc / pb)), rel=RTOL)


def test_from_counts_equals_on_samples(samples):
    """Statistics on pre-binned counts equal the ones on the raw samples with the same edges."""
    b, c = samples
    e = S.bin_edges(b)
    cb, cc = S.binned_counts(b, e), S.binned_counts(c, e)
    for name, f in [("psi", S.psi_from_counts), ("kl", S.kl_from_counts), ("js", S.js_from_counts),
                    ("hellinger", S.hellinger_from_counts)]:
        assert f(cb, cc).value == pytest.approx(S.compute(name, b, c).value, rel=RTOL)


def test_categorical_psi_uses_union_of_categories():
    """On categories each value of b ∪ c is a bin and missing ones get 1e-4."""
    b = {"cat": 50, "dog": 40, "bird": 10}
    c = ["cat"] * 30 + ["dog"] * 60 + ["fish"] * 10
    cats = ["bird", "cat", "dog", "fish"]
    pb = _eps(np.array([10, 50, 40, 0]) / 100)
    pc = _eps(np.array([0, 30, 60, 10]) / 100)
    r = S.psi(b, c)
    assert r.bins == len(cats)
    assert r.value == pytest.approx(np.sum((pc - pb) * np.log(pc / pb)), rel=RTOL)


def test_ks_matches_scipy_small_and_large(samples, large):
    """ks returns scipy.stats.ks_2samp's D and p-value, also above scipy's exact-mode size."""
    for b, c in (samples, large):
        ref = sps.ks_2samp(b, c)
        r = S.ks(b, c)
        assert r.value == pytest.approx(ref.statistic, rel=RTOL)
        assert r.p_value == pytest.approx(ref.pvalue, rel=RTOL)


def test_wasserstein_matches_scipy(samples, large):
    """wasserstein is scipy's distance divided by the baseline's population std."""
    for b, c in (samples, large):
        assert S.wasserstein(b, c).value == pytest.approx(sps.wasserstein_distance(b, c) / np.std(b), rel=RTOL)


def test_wasserstein_constant_baseline_is_raw_distance():
    """With std(b) = 0 the raw distance is reported and the reason says so."""
    b = np.full(50, 2.0)
    c = np.array([2.0, 3.0, 4.0])
    r = S.wasserstein(b, c)
    assert r.value == pytest.approx(sps.wasserstein_distance(b, c), rel=RTOL)
    assert "constant" in r.detail["reason"]


def test_chi2_matches_scipy_contingency():
    """chi2 is chi2_contingency on the 2×K table over the union of categories, no correction."""
    b = {"a": 120, "b": 80, "c": 0}
    c = {"a": 90, "b": 100, "d": 15}
    ref = sps.chi2_contingency(np.array([[120, 80, 0], [90, 100, 15]]), correction=False)
    r = S.chi2(b, c)
    assert r.value == pytest.approx(ref.statistic, rel=RTOL)
    assert r.p_value == pytest.approx(ref.pvalue, rel=RTOL)
    assert r.detail["dof"] == 2


def test_chi2_single_category_is_no_test():
    """A single observed category yields statistic 0, p 1 and a reason rather than a crash."""
    r = S.chi2({"a": 5}, {"a": 7, "b": 0})
    assert (r.value, r.p_value) == (0.0, 1.0)
    assert "one category" in r.detail["reason"]


def test_mann_whitney_matches_scipy(samples):
    """mann-whitney is scipy's two-sided U test with U of the baseline as the value."""
    b, c = samples
    ref = sps.mannwhitneyu(b, c, alternative="two-sided")
    r = S.mann_whitney(b, c)
    assert r.value == pytest.approx(ref.statistic, rel=RTOL)
    assert r.p_value == pytest.approx(ref.pvalue, rel=RTOL)
    assert r.detail["effect_size"] == pytest.approx(ref.statistic / (b.size * c.size), rel=RTOL)


def _ref_mmd2(B, C, sigma2):
    k = lambda x, y: np.exp(-cdist(x, y, "sqeuclidean") / (2 * sigma2))  # noqa: E731
    n, m = len(B), len(C)
    return ((k(B, B).sum() - n) / (n * (n - 1)) + (k(C, C).sum() - m) / (m * (m - 1)) - 2 * k(B, C).mean())


def test_mmd_exact_matches_definition():
    """Exact mmd is the unbiased RBF MMD² with σ² = median pairwise b–c squared distance / 2."""
    rng = np.random.default_rng(3)
    B, C = rng.normal(size=(120, 8)), rng.normal(0.3, 1, size=(90, 8))
    sigma2 = np.median(cdist(B, C, "sqeuclidean")) / 2
    r = S.mmd(B, C, permutations=50)
    assert r.detail["method"] == "exact"
    assert r.detail["sigma2"] == pytest.approx(sigma2, rel=RTOL)
    assert r.value == pytest.approx(_ref_mmd2(B, C, sigma2), rel=1e-8)
    # Shifted enough that no permutation reaches it: the permutation p-value is its floor 1/51, and the
    # reported p comes from the Pearson III tail fit, far below that floor.
    assert r.detail["p_permutation"] == pytest.approx(1 / 51)
    assert r.p_value < 1e-4 and "Pearson III" in r.detail["p_method"]


def test_mmd_reaches_any_level_the_check_is_judged_at():
    """The gate can fail at minPValue 0.001 spread over hundreds of windows: with a level, the permutation
    count grows and beyond its floor the tail fit gives p far below the level for a clear shift; an
    identical pair stays far above it."""
    from policies import _mmd

    rng = np.random.default_rng(11)
    B, C = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    C[:, :8] += 0.5
    level = 0.001 / 200
    shifted = S.mmd(B, C, level=level)
    assert shifted.detail["permutations"] == _mmd.permutations_for(level, 300, 300)
    assert shifted.detail["permutations"] > 100
    assert shifted.p_value < level
    same = S.mmd(B, rng.normal(size=(300, 32)), level=level)
    assert same.p_value > 0.01


def test_mmd_tail_fit_is_calibrated_under_the_null():
    """With no difference, the tail-fitted p-values are not too small: over 300 A/A pairs the fraction
    below 0.01 stays near 1% (well under 4%)."""
    rng = np.random.default_rng(5)
    small = 0
    for i in range(300):
        B, C = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
        small += S.mmd(B, C, permutations=100, seed=i).p_value < 0.01
    assert small / 300 < 0.04


def test_mmd_permutation_p_value_matches_reference():
    """The p-value is (1 + #{permuted ≥ observed})/(1 + P) with the documented permutation stream."""
    rng = np.random.default_rng(4)
    B, C = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
    r = S.mmd(B, C, sigma2=2.0, permutations=30, seed=9)
    z = np.vstack((B, C))
    perm_rng = np.random.default_rng(9)
    perms = [_ref_mmd2(z[idx[:40]], z[idx[40:]], 2.0) for idx in (perm_rng.permutation(70) for _ in range(30))]
    observed = _ref_mmd2(B, C, 2.0)
    assert r.value == pytest.approx(observed, rel=1e-8)
    exceed = sum(p >= observed for p in perms)
    assert r.detail["p_permutation"] == pytest.approx((1 + exceed) / 31)
    if exceed >= 10:     # enough permuted values reach it: the permutation p-value is reported as is
        assert r.p_value == r.detail["p_permutation"]
    else:                # else the Pearson III tail of the permuted values' moments
        from scipy.stats import pearson3

        mu, sd = np.mean(perms), np.std(perms, ddof=1)
        skew = np.mean(((np.array(perms) - mu) / sd) ** 3)
        assert r.p_value == pytest.approx(min(r.detail["p_permutation"], pearson3.sf(observed, skew, mu, sd)))


def test_mmd_rff_approximates_exact():
    """The random-feature method stays close to the exact statistic and still flags a real shift."""
    rng = np.random.default_rng(5)
    B, C = rng.normal(size=(600, 32)), rng.normal(0.25, 1, size=(600, 32))
    exact = S.mmd(B, C, method="exact", permutations=20)
    approx = S.mmd(B, C, method="rff", permutations=20, sigma2=exact.detail["sigma2"])
    assert approx.value == pytest.approx(exact.value, rel=0.1)
    assert approx.p_value < 0.05 and exact.p_value < 0.05


def test_mmd_same_distribution_not_significant():
    """Two samples from one distribution give a small MMD² and a non-significant p-value."""
    rng = np.random.default_rng(6)
    B, C = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    r = S.mmd(B, C, permutations=100)
    assert r.p_value > 0.05
    assert abs(r.value) < 0.01


def test_centroid_cosine_matches_definition():
    """centroid-cosine is the mean cosine of candidate rows to the baseline centroid."""
    rng = np.random.default_rng(8)
    B, C = rng.normal(1, 1, size=(50, 6)), rng.normal(0.5, 1, size=(40, 6))
    mu = B.mean(0)
    ref_c = np.mean([x @ mu / (np.linalg.norm(x) * np.linalg.norm(mu)) for x in C])
    ref_b = np.mean([x @ mu / (np.linalg.norm(x) * np.linalg.norm(mu)) for x in B])
    r = S.centroid_cosine(B, C)
    assert r.value == pytest.approx(ref_c, rel=RTOL)
    assert r.detail["baseline"] == pytest.approx(ref_b, rel=RTOL)


def test_fairness_ratios():
    """disparate impact and equal opportunity are min rate / max rate across segments."""
    di = S.disparate_impact({"f": (200, 50), "m": (100, 40), "x": (0, 0)})
    assert di.value == pytest.approx(0.25 / 0.4, rel=RTOL)
    assert di.detail["empty_segments"] == ["x"] and di.detail["lowest"] == "f"
    eo = S.equal_opportunity({"f": (40, 30), "m": (50, 45)})
    assert eo.value == pytest.approx(0.75 / 0.9, rel=RTOL)


@pytest.mark.parametrize("counts, message", [
    ({"f": (10, 0), "m": (10, 0)}, "no segment has any positive"),
    ({"f": (10, 3)}, "at least two segments"),
    ({"f": (10, 11), "m": (5, 1)}, "11 positives out of only 10"),
    ({"f": (10, -1), "m": (5, 1)}, "non-negative integer"),
])
def test_fairness_bad_input_is_named(counts, message):
    """Undefined or malformed fairness input raises StatError saying what is wrong."""
    with pytest.raises(S.StatError, match=message):
        S.disparate_impact(counts)


def test_kendall_tau_on_common_items():
    """kendall_tau compares the order of items present in both rankings, like scipy.stats.kendalltau."""
    a = ["age", "income", "zip", "tenure", "score"]
    b = ["income", "age", "tenure", "zip", "new"]
    common = ["age", "income", "zip", "tenure"]
    ref = sps.kendalltau([a.index(k) for k in common], [b.index(k) for k in common])
    r = S.kendall_tau(a, b)
    assert r.value == pytest.approx(ref.statistic, rel=RTOL)
    assert (r.detail["common"], r.detail["only_a"], r.detail["only_b"]) == (4, 1, 1)


@pytest.mark.parametrize("b, c, message", [
    ([], [1.0], "baseline is empty"),
    ([1.0, 2.0], [1.0, np.nan, np.nan, np.nan], "candidate has 3 NaN values"),
    ([1.0, np.inf], [1.0], "baseline has 1 infinite value"),
    (np.ones((3, 2)), [1.0], "baseline must be 1-D"),
    ([1.0, 2.0], ["x", 1.0], "candidate must be numbers"),
])
def test_degenerate_input_raises_named_error(b, c, message):
    """Empty, NaN, inf and wrongly shaped samples raise StatError naming the sample and problem."""
    for metric in ("psi", "ks", "wasserstein"):
        with pytest.raises(S.StatError, match=message):
            S.compute(metric, b, c)


def test_constant_baseline_psi_is_one_bin_with_reason():
    """A constant baseline gives one bin (PSI 0) and a reason pointing to a shift-sensitive metric."""
    r = S.psi(np.full(100, 3.0), np.full(100, 7.0))
    assert (r.value, r.bins) == (0.0, 1)
    assert "constant" in r.detail["reason"]


def test_compute_rejects_unknown_metric_and_kwargs(samples):
    """compute names an unknown metric or argument instead of guessing."""
    b, c = samples
    with pytest.raises(S.StatError, match="unknown metric 'psy'"):
        S.compute("psy", b, c)
    with pytest.raises(S.StatError, match="permutation"):
        S.compute("mmd", b, c, permutation=3)
    assert S.compute("ks", b, c, bins=5).value == S.ks(b, c).value


def test_compute_covers_design_names():
    """METRICS holds every docs/statistics.md name compute dispatches."""
    assert {"psi", "kl", "js", "hellinger", "ks", "chi2", "wasserstein", "mmd", "centroid-cosine",
            "mann-whitney"} <= S.METRICS


def test_compare_numeric_equals_individual_calls(samples):
    """Sorting once for several statistics gives the same numbers as separate calls."""
    b, c = samples
    out = S.compare_numeric(b, c, ("psi", "ks", "js", "wasserstein", "kl", "hellinger"))
    for name, r in out.items():
        single = S.compute(name, b, c)
        assert r.value == single.value and r.p_value == single.p_value and r.estimate == single.estimate


def test_bias_corrected_estimate_removes_small_sample_bias():
    """Under no drift the PSI estimate is closer to 0 than the plug-in value and its CI covers 0."""
    rng = np.random.default_rng(11)
    values, estimates, covered = [], [], 0
    for _ in range(40):
        r = S.psi(rng.normal(size=300), rng.normal(size=300))
        values.append(r.value)
        estimates.append(r.estimate)
        covered += r.ci_low == 0.0
    assert np.mean(estimates) < 0.5 * np.mean(values)
    assert covered >= 36


def test_estimate_tracks_real_drift():
    """With a real shift the estimate is less biased than the plug-in value and the CI covers the truth."""
    rng = np.random.default_rng(12)
    big = S.psi(rng.normal(size=400_000), rng.normal(0.5, 1, size=400_000)).value
    runs = [S.psi(rng.normal(size=500), rng.normal(0.5, 1, size=500)) for _ in range(40)]
    assert abs(np.mean([r.estimate for r in runs]) - big) < 0.5 * abs(np.mean([r.value for r in runs]) - big)
    assert sum(r.ci_low <= big <= r.ci_high for r in runs) >= 34


def test_mixed_kinds_rejected():
    """A categorical baseline against a numeric candidate is an error naming which is which."""
    with pytest.raises(S.StatError, match="baseline is categorical but candidate is numeric"):
        S.psi(["a", "b"], [1.0, 2.0])


def test_ks_and_wasserstein_large_samples_with_ties():
    """Above scipy's exact-mode size, heavily tied data still gives scipy's D, p and distance."""
    rng = np.random.default_rng(13)
    b, c = np.round(rng.normal(size=15000), 1), np.round(rng.normal(0.05, 1, size=12000), 1)
    ref = sps.ks_2samp(b, c)
    r = S.ks(b, c)
    assert r.value == pytest.approx(ref.statistic, rel=RTOL) and r.p_value == pytest.approx(ref.pvalue, rel=RTOL)
    assert S.wasserstein(b, c).value == pytest.approx(sps.wasserstein_distance(b, c) / np.std(b), rel=RTOL)


def test_compare_numeric_large_samples_match_and_name_errors():
    """Above the parallel-sort size the results still equal scipy and bad input still names the sample."""
    rng = np.random.default_rng(14)
    b, c = rng.normal(size=250_000), rng.normal(0.01, 1, size=260_000)
    out = S.compare_numeric(b, c, ("ks", "wasserstein"))
    ref = sps.ks_2samp(b, c)
    assert out["ks"].value == pytest.approx(ref.statistic, rel=RTOL)
    assert out["wasserstein"].value == pytest.approx(sps.wasserstein_distance(b, c) / np.std(b), rel=RTOL)
    c[:2] = np.nan
    with pytest.raises(S.StatError, match="candidate has 2 NaN values"):
        S.compare_numeric(b, c)
