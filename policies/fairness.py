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


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials at normal quantile z."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1.0 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def ratio_bounds(counts: Mapping[str, tuple[int, int]], confidence: float = FAIRNESS_CONFIDENCE
                 ) -> tuple[float, float]:
    """Simultaneous (lower, upper) bounds on min rate / max rate over the segments with data.

    Each segment's rate gets a two-sided Wilson interval at level 1 − (1−confidence)/S (Bonferroni over the
    S segments), so all S intervals hold together with probability >= `confidence`. Then
    min_s r_s <= min_s U_s and max_s r_s >= max_s L_s, so the ratio lies in
    [min_s L_s / max_s U_s, min_s U_s / max_s L_s] (the upper bound is capped at 1, a ratio's maximum).
    """
    rows = {s: (n, k) for s, (n, k) in counts.items() if n > 0}
    if len(rows) < 2:
        raise StatError(f"needs at least two segments with data, got {len(rows)}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / (2 * len(rows)))
    ivs = [wilson(k, n, z) for n, k in rows.values()]
    lows, highs = [lo for lo, _ in ivs], [hi for _, hi in ivs]
    upper = 1.0 if max(lows) <= 0 else min(1.0, min(highs) / max(lows))
    lower = 0.0 if max(highs) <= 0 else min(lows) / max(highs)
    return lower, upper


def describe_counts(counts: Mapping[str, tuple[int, int]], what: str = "positive") -> str:
    """`x 3/40 positive, y 5/38 positive` — the evidence behind a fairness ratio."""
    return ", ".join(f"{s} {k}/{n} {what}" for s, (n, k) in sorted(counts.items()))
