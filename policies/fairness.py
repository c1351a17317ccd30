"""Group-fairness ratios over segment counts (disparate impact, equal opportunity).

Both are min over segments of a rate divided by the max over segments of that rate, so 1.0 is
parity and the four-fifths rule is ``value >= 0.8``. Segments with no observations are left out
(listed in ``detail["empty_segments"]``); fewer than two segments with data is an error.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Mapping

from ._result import StatError, StatResult


def _ratio(metric: str, counts: Mapping[str, tuple[int, int]], what: str) -> StatResult:
    if not isinstance(counts, Mapping):
        raise StatError(f"{metric}: expected a mapping segment -> (n, positives), got {type(counts).__name__}")
    rates: dict[str, float] = {}
    empty: list[str] = []
    total = 0
    for seg, pair in counts.items():
        try:
            n, k = pair
        except (TypeError, ValueError) as e:
            raise StatError(f"{metric}: segment {seg!r} must map to a pair (n, positives), got {pair!r}") from e
        for name, v in (("n", n), ("positives", k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise StatError(f"{metric}: segment {seg!r} {name} must be a non-negative integer, got {v!r}")
        if k > n:
            raise StatError(f"{metric}: segment {seg!r} has {k} positives out of only {n}")
        if n == 0:
            empty.append(str(seg))
            continue
        rates[str(seg)] = k / n
        total += n
    if len(rates) < 2:
        raise StatError(f"{metric} needs at least two segments with {what}, got {len(rates)}")
    hi_seg = max(rates, key=rates.__getitem__)
    lo_seg = min(rates, key=rates.__getitem__)
    if rates[hi_seg] == 0:
        raise StatError(f"{metric} is undefined: no segment has any positive outcome")
    detail = {"rates": rates, "lowest": lo_seg, "highest": hi_seg, "empty_segments": empty}
    return StatResult(metric, rates[lo_seg] / rates[hi_seg], None, total, total, detail=detail)


def disparate_impact(positives: Mapping[str, tuple[int, int]]) -> StatResult:
    """min P(positive | segment) / max P(positive | segment); input segment -> (n, n_positive)."""
    return _ratio("disparate-impact", positives, "observations")


def equal_opportunity(tpr_counts: Mapping[str, tuple[int, int]]) -> StatResult:
    """min TPR / max TPR over segments; input segment -> (n_label_positive, n_true_positive)."""
    return _ratio("equal-opportunity", tpr_counts, "labelled positives")


# --- judging with uncertainty ------------------------------------------------------------------------

FAIRNESS_CONFIDENCE = 0.95
"""Simultaneous confidence of the bounds on a fairness ratio (see `ratio_bounds`)."""
MIN_POSITIVES = 10
"""Fewer positives than this over all segments of a window: too few to judge a ratio of rates."""


def ratio_bounds(counts: Mapping[str, tuple[int, int]], confidence: float = FAIRNESS_CONFIDENCE
                 ) -> tuple[float, float]:
    """Simultaneous (lower, upper) bounds on min rate / max rate over the segments with data.

    For every unordered pair of segments (i, j) the log of the rate ratio gets the Katz interval
    log(r_i / r_j) ± z · sqrt(1/k_i − 1/n_i + 1/k_j − 1/n_j), with 0.5 added to a zero count of positives
    (and 1 to its n), two-sided at level (1 − confidence) / K for the K = S(S−1)/2 pairs (Bonferroni), so
    all K intervals hold together with probability >= `confidence`. The ratio min/max is at most every
    pair's ratio and at least the smallest of them, so it lies in [min over pairs of the lower ends of
    min(r_i/r_j, r_j/r_i), min over pairs of the upper ends] (capped at 1, a ratio's maximum).
    """
    rows = [(n, k) for n, k in counts.values() if n > 0]
    if len(rows) < 2:
        raise StatError(f"needs at least two segments with data, got {len(rows)}")
    pairs = len(rows) * (len(rows) - 1) // 2
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / (2 * pairs))
    adj = [(n + 1, k + 0.5) if k == 0 else (n, k) for n, k in rows]
    lower, upper = math.inf, math.inf
    for i in range(len(adj)):
        for j in range(i + 1, len(adj)):
            (ni, ki), (nj, kj) = adj[i], adj[j]
            log_ratio = math.log((ki / ni) / (kj / nj))
            se = math.sqrt(max(1 / ki - 1 / ni + 1 / kj - 1 / nj, 0.0))
            small = -abs(log_ratio)             # log of min(r_i/r_j, r_j/r_i), the pair's own ratio <= 1
            upper = min(upper, math.exp(min(0.0, small + z * se)))
            lower = min(lower, math.exp(small - z * se))
    return lower, min(1.0, upper)


def describe_counts(counts: Mapping[str, tuple[int, int]], what: str = "positive") -> str:
    """`x 3/40 positive, y 5/38 positive` — the evidence behind a fairness ratio."""
    return ", ".join(f"{s} {k}/{n} {what}" for s, (n, k) in sorted(counts.items()))
