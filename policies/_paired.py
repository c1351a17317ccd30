"""Paired statistics: both versions answered the same request (the shadow step), so compare per request.

Definitions in docs/statistics.md ("Paired tests (shadow)"); every value is reproducible with numpy and
scipy (`tests/unit/test_paired.py` checks each against `scipy.stats.wilcoxon`, `scipy.stats.binomtest`
and direct loop implementations of RBO and NDCG).

- `signed_rank_p(d, alternative)`: the Wilcoxon signed-rank p-value of `scipy.stats.wilcoxon(d)` with
  zeros dropped, exact null distribution for at most 50 differences without ties or zeros, else the
  normal approximation with the tie correction and no continuity correction.
- `wilcoxon_shift(d, tolerance)`: the paired shift (Hodges–Lehmann pseudo-median of d) and the signed-rank
  test of |shift| <= tolerance.
- `mcnemar(n00, n01, n10, n11, tolerance)`: the paired difference of positive rates; the exact binomial
  McNemar test (tolerance 0) or the Agresti–Min adjusted Wald test of |difference| <= tolerance.
- `rbo(a, b, p)`, `ndcg(reference, other, k)`: agreement of two rankings of the same request.
- `mean_agreement(n, total, total_sq, minimum)`: the mean per-request agreement and its z-test against
  `minimum`.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ._result import StatError, StatResult, as_sample

EXACT_MAX_N = 50
"""At most this many differences (zeros included, as scipy counts them) and no ties or zeros: exact
null distribution; otherwise the normal approximation."""
WALSH_MAX_N = 4096
"""The Hodges–Lehmann estimate uses all n(n+1)/2 Walsh averages up to this many differences (the summary's
reservoir holds at most 2,048 by default); beyond it, the median of the differences."""
_Z95 = 1.959963984540054


def _phi(x: float) -> float:
    """The standard normal CDF, accurate in the far lower tail (erfc does not round to 0 before 1e-300)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@lru_cache(maxsize=64)
def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(W+ <= w) for w = 0 .. n(n+1)/2 under the null (no ties): W+ is a sum of a random subset of 1..n."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    top = 0
    for r in range(1, n + 1):
        counts[r:top + r + 1] += counts[:top + 1].copy()
        top += r
    return np.cumsum(counts) / 2.0 ** n


def _ranks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) of `a` and the sizes of its tie groups."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, s.size])
    avg = starts + (sizes + 1) / 2.0
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(avg, sizes)
    return ranks, sizes


def signed_rank_p(d: Any, alternative: str = "two-sided") -> tuple[float, float]:
    """(W+, p) of the Wilcoxon signed-rank test on differences d: `scipy.stats.wilcoxon(d,
    alternative=alternative)` with zero_method 'wilcox' (zeros dropped) and method 'exact' when there are
    at most 50 differences and no ties or zeros, else 'asymptotic' with correction=False. With no non-zero
    difference the test has no information: p = 1."""
    if alternative not in ("two-sided", "greater", "less"):
        raise StatError(f"alternative: expected two-sided, greater or less, got {alternative!r}")
    d = np.asarray(d, dtype=np.float64)
    total = d.size
    nz = d[d != 0]
    n = nz.size
    if n == 0:
        return 0.0, 1.0
    ranks, ties = _ranks(np.abs(nz))
    w_plus = float(ranks[nz > 0].sum())
    if total <= EXACT_MAX_N and n == total and not (ties > 1).any():
        cdf = _signed_rank_cdf(n)
        lo = float(cdf[int(math.ceil(w_plus))])                               # P(W+ <= w)
        hi = 1.0 - (float(cdf[int(math.floor(w_plus)) - 1]) if w_plus >= 1 else 0.0)   # P(W+ >= w)
        p = {"less": lo, "greater": hi, "two-sided": min(1.0, 2.0 * min(lo, hi))}[alternative]
        return w_plus, float(min(max(p, 0.0), 1.0))
    mean = n * (n + 1) / 4.0
    var = (n * (n + 1) * (2 * n + 1) - float(np.sum(ties.astype(np.float64) ** 3 - ties)) / 2.0) / 24.0
    if var <= 0:
        return w_plus, 1.0
    z = (w_plus - mean) / math.sqrt(var)
    if alternative == "greater":
        p = _phi(-z)
    elif alternative == "less":
        p = _phi(z)
    else:
        p = 2.0 * _phi(-abs(z))
    return w_plus, float(min(max(p, 0.0), 1.0))


def hodges_lehmann(d: np.ndarray) -> tuple[float, float, float]:
    """The pseudo-median of d (median of the Walsh averages (dᵢ + dⱼ)/2, i <= j) and its 95% confidence
    interval by inverting the signed-rank test (normal approximation): the k-th smallest and largest Walsh
    averages, k = floor(n(n+1)/4 − 1.96·sqrt(n(n+1)(2n+1)/24)), at least 1."""
    n = d.size
    if n > WALSH_MAX_N:
        m = float(np.median(d))
        return m, m, m
    i, j = np.triu_indices(n)
    walsh = (d[i] + d[j]) / 2.0
    est = float(np.median(walsh))
    m = walsh.size
    k = int(math.floor(n * (n + 1) / 4.0 - _Z95 * math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)))
    k = min(max(k, 1), m)
    part = np.partition(walsh, (k - 1, m - k))
    return est, float(part[k - 1]), float(part[m - k])


def wilcoxon_shift(deltas: Any, tolerance: float = 0.0) -> StatResult:
    """The paired score shift θ (pseudo-median of d = candidate − baseline) against a tolerance t >= 0.

    value = estimate = the Hodges–Lehmann estimate of θ; ci_low/ci_high its 95% interval.
    p_value tests H0: |θ| <= t: 2·min(p_greater(d − t), p_less(d + t)), capped at 1 (with t = 0 the
    two-sided `scipy.stats.wilcoxon(d)`). detail["p_equivalent"] tests the reverse H0: |θ| >= t (two one-sided
    tests: max(p_greater(d + t), p_less(d − t))), small when the shift is shown to be inside ±t."""
    d = as_sample(deltas, "deltas")
    if isinstance(tolerance, bool) or not math.isfinite(float(tolerance)) or tolerance < 0:
        raise StatError(f"tolerance: expected a finite number >= 0, got {tolerance!r}")
    t = float(tolerance)
    if t == 0:
        _, p = signed_rank_p(d, "two-sided")
    else:
        p = min(1.0, 2.0 * min(signed_rank_p(d - t, "greater")[1], signed_rank_p(d + t, "less")[1]))
    p_eq = max(signed_rank_p(d + t, "greater")[1], signed_rank_p(d - t, "less")[1])
    est, lo, hi = hodges_lehmann(d)
    detail = {"tolerance": t, "p_equivalent": p_eq, "mean": float(d.mean()),
              "sd": float(d.std(ddof=1)) if d.size > 1 else 0.0, "zeros": int(np.sum(d == 0))}
    return StatResult("shadow-wilcoxon", est, p, d.size, d.size, estimate=est, ci_low=lo, ci_high=hi,
                      detail=detail)


def _count(x: Any, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0:
        raise StatError(f"{name}: expected a count (integer >= 0), got {x!r}")
    return int(x)


def mcnemar(n00: int, n01: int, n10: int, n11: int, tolerance: float = 0.0) -> StatResult:
    """Paired class decisions: n01 = baseline negative and candidate positive, n10 = the reverse.

    value = Δ = (n01 − n10)/n, the candidate's positive rate minus the baseline's on the same requests.
    With tolerance t = 0, p_value is the exact McNemar test: `scipy.stats.binomtest(n01, n01 + n10, 0.5)`
    (two-sided; 1 without discordant pairs). With t > 0 it tests H0: |Δ| <= t with the Agresti–Min
    adjusted Wald statistic: 0.5 added to every cell (n' = n + 2), Δ' = (n01' − n10')/n',
    se = sqrt((n01' + n10') − (n01' − n10')²/n') / n', p = 2·min(1 − Φ((Δ' − t)/se), Φ((Δ' + t)/se)) capped
    at 1. estimate = Δ', ci_low/ci_high = Δ' ∓ 1.96·se; detail["p_equivalent"] = max(1 − Φ((Δ' + t)/se),
    Φ((Δ' − t)/se)) tests H0: |Δ| >= t; detail["p_exact"] the exact McNemar p-value."""
    c = [_count(v, k) for v, k in ((n00, "n00"), (n01, "n01"), (n10, "n10"), (n11, "n11"))]
    n = sum(c)
    if n == 0:
        raise StatError("no paired decisions")
    if isinstance(tolerance, bool) or not math.isfinite(float(tolerance)) or tolerance < 0:
        raise StatError(f"tolerance: expected a finite number >= 0, got {tolerance!r}")
    t = float(tolerance)
    b, cc = c[2], c[1]
    if b + cc == 0:
        p_exact = 1.0
    else:
        from scipy.stats import binomtest
        p_exact = float(binomtest(cc, b + cc, 0.5).pvalue)
    nn = n + 2.0
    bb, ca = b + 0.5, cc + 0.5
    adj = (ca - bb) / nn
    se = math.sqrt(max((ca + bb) - (ca - bb) ** 2 / nn, 0.0)) / nn
    if se > 0:
        p_tol = min(1.0, 2.0 * min(_phi(-(adj - t) / se), _phi((adj + t) / se)))
        p_eq = max(_phi(-(adj + t) / se), _phi((adj - t) / se))
    else:
        p_tol, p_eq = 1.0, 1.0
    p = p_exact if t == 0 else p_tol
    detail = {"tolerance": t, "p_exact": p_exact, "p_equivalent": p_eq, "discordant": b + cc,
              "baseline_only": b, "candidate_only": cc, "discordance": (b + cc) / n,
              "baseline_positive_rate": (c[2] + c[3]) / n, "candidate_positive_rate": (c[1] + c[3]) / n}
    return StatResult("shadow-mcnemar", (cc - b) / n, p, n, n, estimate=adj, ci_low=adj - _Z95 * se,
                      ci_high=adj + _Z95 * se, detail=detail)


def _dedupe(ranking: Sequence[Any]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in ranking:
        s = str(item)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p < 1.0:
        raise StatError(f"p: expected a number in (0, 1), got {p!r}")
    return float(p)


def rbo(a: Sequence[Any], b: Sequence[Any], p: float = 0.9) -> float:
    """Rank-biased overlap, extrapolated (Webber, Moffat & Zobel 2010, eq. 32) of two rankings of the same
    request; items compare as text, repeated items count at their first place. With S the shorter list
    (length s) and L the longer (length l), X_d = |S[:d] ∩ L[:d]| (S whole for d > s):

      RBO = (1 − p)/p · (Σ_{d=1..l} X_d/d · p^d + Σ_{d=s+1..l} X_s (d − s)/(s d) · p^d)
            + ((X_l − X_s)/l + X_s/s) · p^l

    1 for identical lists (and when the shorter is a prefix of the longer), 0 for disjoint ones; both empty
    is 1, one empty 0."""
    p = _check_p(p)
    x, y = _dedupe(a), _dedupe(b)
    if len(x) > len(y):
        x, y = y, x
    s, l = len(x), len(y)
    if s == 0:
        return 1.0 if l == 0 else 0.0
    seen_s: set[str] = set()
    seen_l: set[str] = set()
    overlap = 0
    total = 0.0
    pd = 1.0
    x_s = 0
    for d in range(1, l + 1):
        pd *= p
        item_l = y[d - 1]
        if d <= s:
            item_s = x[d - 1]
            if item_s == item_l:
                overlap += 1
            else:
                overlap += (item_s in seen_l) + (item_l in seen_s)
            seen_s.add(item_s)
            seen_l.add(item_l)
            if d == s:
                x_s = overlap
        else:
            overlap += item_l in seen_s
            total += x_s * (d - s) / (s * d) * pd
        total += overlap / d * pd
    return float(min(max((1 - p) / p * total + ((overlap - x_s) / l + x_s / s) * pd, 0.0), 1.0))


def ndcg(reference: Sequence[Any], other: Sequence[Any], k: int = 10) -> float:
    """NDCG@k of `other` with the reference ranking's order as graded relevance: the item at the reference's
    0-based place i < k has relevance k − i, every other item 0; DCG@k(list) = Σ_{j < min(k, len)}
    rel(list[j]) / log2(j + 2); NDCG = DCG(other) / DCG(reference) in [0, 1], 1 when the top k agree in
    order. Items compare as text, repeated items count at their first place. An empty reference raises."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise StatError(f"k: expected an integer >= 1, got {k!r}")
    ref, oth = _dedupe(reference)[:k], _dedupe(other)[:k]
    if not ref:
        raise StatError("reference ranking is empty")
    rel = {item: k - i for i, item in enumerate(ref)}
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(rel.values()))
    got = sum(rel.get(item, 0) / math.log2(j + 2) for j, item in enumerate(oth))
    return float(got / ideal)


def mean_agreement(metric: str, n: int, total: float, total_sq: float, minimum: float) -> StatResult:
    """The mean of n per-request agreements in [0, 1] (from their sum and sum of squares) against `minimum`:
    se = sqrt(var / n) with var = (Σx² − (Σx)²/n)/(n − 1); p_value = Φ((mean − minimum)/se) tests
    H0: mean >= minimum (small when the mean is shown below it), detail["p_equivalent"] = 1 − that tests
    H0: mean <= minimum. With se = 0 the p-values are 0 or 1 by the sign of mean − minimum (1 at equality)."""
    if n < 2:
        raise StatError(f"{metric}: need at least 2 pairs, got {n}")
    mean = total / n
    var = max((total_sq - total * total / n) / (n - 1), 0.0)
    se = math.sqrt(var / n)
    if se > 0:
        z = (mean - minimum) / se
        p, p_eq = _phi(z), _phi(-z)
    else:
        p = 0.0 if mean < minimum else 1.0
        p_eq = 0.0 if mean > minimum else 1.0
    return StatResult(metric, mean, p, n, n, estimate=mean, ci_low=mean - _Z95 * se, ci_high=mean + _Z95 * se,
                      detail={"minimum": minimum, "p_equivalent": p_eq, "sd": math.sqrt(var)})
