"""Drift and comparison statistics of `policies`: one public facade over the private modules.

Every function returns a `StatResult` whose ``value`` (and ``p_value``) follow docs/statistics.md
("Statistics: exact definitions"), so a user can reproduce each number with numpy/scipy.
Degenerate input (empty, NaN/inf, wrong shape) raises `StatError` naming the argument and the
problem; a defined-but-uninformative case (constant baseline, one category) returns a result
with ``detail["reason"]``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ._binning import aligned_counts, bin_edges, binned_counts, category_counts, check_edges, edges_from_sorted
from ._drift import binned, categorical_pair, compare_numeric, from_counts, ks_sorted, wasserstein_sorted
from ._mmd import centroid_cosine, mmd
from ._paired import mcnemar, mean_agreement, ndcg, rbo, signed_rank_p, wilcoxon_shift
from ._result import StatError, StatResult, as_sample, sorted_sample
from .fairness import disparate_impact, equal_opportunity
from .interleaving import credit, interleave_test, team_draft

__all__ = [
    "StatResult", "StatError", "METRICS", "compute", "compare_numeric",
    "bin_edges", "binned_counts",
    "psi", "kl", "js", "hellinger", "psi_from_counts", "kl_from_counts", "js_from_counts", "hellinger_from_counts",
    "ks", "chi2", "wasserstein", "mmd", "centroid_cosine", "mann_whitney",
    "disparate_impact", "equal_opportunity", "kendall_tau",
    "team_draft", "credit", "interleave_test",
    "mcnemar", "wilcoxon_shift", "signed_rank_p", "rbo", "ndcg", "mean_agreement",
]


def psi(b: Any, c: Any, bins: int = 10, edges: Any = None) -> StatResult:
    """Population stability index Σ (c% − b%) ln(c% / b%) over quantile bins of b (zeros → 1e-4).

    Numeric arrays are binned (docs/statistics.md "Binning"); a mapping of counts or a sequence of strings is
    categorical (each category of b ∪ c is a bin). ``estimate``/CI: see `policies._drift`.
    """
    return binned("psi", b, c, bins, edges)


def kl(b: Any, c: Any, bins: int = 10, edges: Any = None) -> StatResult:
    """KL(c ‖ b) = Σ c% ln(c% / b%) over the same bins as `psi` (zeros → 1e-4)."""
    return binned("kl", b, c, bins, edges)


def js(b: Any, c: Any, bins: int = 10, edges: Any = None) -> StatResult:
    """Jensen–Shannon distance, base 2, on the bin proportions (no epsilon)."""
    return binned("js", b, c, bins, edges)


def hellinger(b: Any, c: Any, bins: int = 10, edges: Any = None) -> StatResult:
    """Hellinger distance sqrt(1 − Σ sqrt(b% · c%)) on the bin proportions."""
    return binned("hellinger", b, c, bins, edges)


def psi_from_counts(b_counts: Any, c_counts: Any) -> StatResult:
    """`psi` on counts over shared bins (arrays of equal length, or mappings category → count)."""
    return from_counts("psi", b_counts, c_counts)


def kl_from_counts(b_counts: Any, c_counts: Any) -> StatResult:
    """`kl` (KL(c ‖ b)) on counts over shared bins."""
    return from_counts("kl", b_counts, c_counts)


def js_from_counts(b_counts: Any, c_counts: Any) -> StatResult:
    """`js` on counts over shared bins."""
    return from_counts("js", b_counts, c_counts)


def hellinger_from_counts(b_counts: Any, c_counts: Any) -> StatResult:
    """`hellinger` on counts over shared bins."""
    return from_counts("hellinger", b_counts, c_counts)


def ks(b: Any, c: Any) -> StatResult:
    """Two-sample Kolmogorov–Smirnov: value = D, p_value as scipy.stats.ks_2samp(b, c)."""
    return ks_sorted(sorted_sample(b, "baseline"), sorted_sample(c, "candidate"))


def wasserstein(b: Any, c: Any) -> StatResult:
    """scipy.stats.wasserstein_distance(b, c) / std(b) (population std; raw if std(b) = 0)."""
    return wasserstein_sorted(sorted_sample(b, "baseline"), sorted_sample(c, "candidate"))


def chi2(b_counts: Any, c_counts: Any, bins: int = 10, edges: Any = None) -> StatResult:
    """Chi-squared test of homogeneity: scipy.stats.chi2_contingency(2×K counts, correction=False).

    Categorical input (mappings of counts or sequences of labels) uses the union of categories
    (categories with zero total dropped). Numeric arrays are first binned like `psi`.
    """
    if categorical_pair(b_counts, c_counts):
        cats, b, c = aligned_counts(category_counts(b_counts, "baseline"), category_counts(c_counts, "candidate"))
        how: dict[str, Any] = {"categories": len(cats)}
        k = None
    else:
        bv = as_sample(b_counts, "baseline")
        e = edges_from_sorted(bv, bins) if edges is None else check_edges(edges)
        b = binned_counts(bv, e)
        c = binned_counts(as_sample(c_counts, "candidate"), e)
        keep = (b + c) > 0
        b, c = b[keep], c[keep]
        how = {"binned": "quantile bins of the baseline"}
        k = int(b.size)
    nb, nc = int(b.sum()), int(c.sum())
    if b.size < 2:
        return StatResult("chi2", 0.0, 1.0, nb, nc, bins=k,
                          detail={**how, "dof": 0, "reason": "only one category/bin observed: no test possible"})
    r = sps.chi2_contingency(np.vstack((b, c)), correction=False)
    return StatResult("chi2", float(r.statistic), float(r.pvalue), nb, nc, bins=k, detail={**how, "dof": int(r.dof)})


def mann_whitney(b: Any, c: Any) -> StatResult:
    """scipy.stats.mannwhitneyu(b, c, alternative="two-sided"): value = U of b, p_value.

    ``detail["effect_size"]`` = U / (n·m), the probability a baseline value exceeds a candidate one
    (ties count half); Kayenta pairs the p-value with such an effect-size floor.
    """
    bs = as_sample(b, "baseline")
    cs = as_sample(c, "candidate")
    r = sps.mannwhitneyu(bs, cs, alternative="two-sided")
    detail = {"effect_size": float(r.statistic) / (bs.size * cs.size), "statistic": "U (baseline)"}
    return StatResult("mann-whitney", float(r.statistic), float(r.pvalue), bs.size, cs.size, detail=detail)


def kendall_tau(ranking_a: Sequence[str], ranking_b: Sequence[str]) -> StatResult:
    """Kendall's τ between two rankings (e.g. feature attributions) on the items both contain.

    = scipy.stats.kendalltau(positions in a, positions in b) over the common items; items in
    only one ranking are counted in ``detail``. 1 = same order, −1 = reversed.
    """
    pos: list[dict[str, int]] = []
    for name, r in (("ranking_a", ranking_a), ("ranking_b", ranking_b)):
        if isinstance(r, (str, bytes)) or not isinstance(r, Sequence):
            raise StatError(f"{name} must be a sequence of item ids, got {type(r).__name__}")
        p = {str(item): i for i, item in enumerate(r)}
        if len(p) != len(r):
            raise StatError(f"{name} contains duplicate items")
        pos.append(p)
    common = [k for k in pos[0] if k in pos[1]]
    if len(common) < 2:
        raise StatError(f"kendall_tau needs at least 2 items in both rankings, got {len(common)}")
    r = sps.kendalltau([pos[0][k] for k in common], [pos[1][k] for k in common])
    detail = {"common": len(common), "only_a": len(pos[0]) - len(common), "only_b": len(pos[1]) - len(common)}
    return StatResult("kendall-tau", float(r.statistic), float(r.pvalue), len(ranking_a), len(ranking_b),
                      detail=detail)


_BINNED = {"psi": psi, "kl": kl, "js": js, "hellinger": hellinger, "chi2": chi2}
_PLAIN = {"ks": ks, "wasserstein": wasserstein, "mann-whitney": mann_whitney, "centroid-cosine": centroid_cosine}
METRICS: frozenset[str] = frozenset(_BINNED) | frozenset(_PLAIN) | {"mmd"}


def compute(metric: str, b: Any, c: Any, **kw: Any) -> StatResult:
    """Dispatch by metric name, as in docs/statistics.md (see `METRICS`).

    ``bins``/``edges`` apply to psi, kl, js, hellinger and chi2 and are ignored by the others;
    mmd accepts ``sigma2``, ``permutations``, ``seed``, ``method``, ``features``, ``level``.
    """
    if metric not in METRICS:
        raise StatError(f"unknown metric {metric!r}; expected one of {', '.join(sorted(METRICS))}")
    binning = {k: kw.pop(k) for k in ("bins", "edges") if k in kw}
    if metric == "mmd":
        allowed = {"sigma2", "permutations", "seed", "method", "features", "level"}
        extra = sorted(set(kw) - allowed)
        if extra:
            raise StatError(f"mmd does not accept {extra}; expected any of {sorted(allowed)}")
        return mmd(b, c, **kw)
    if kw:
        raise StatError(f"{metric} does not accept {sorted(kw)}")
    if metric in _BINNED:
        return _BINNED[metric](b, c, **binning)
    return _PLAIN[metric](b, c)
