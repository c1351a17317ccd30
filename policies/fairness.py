"""Group-fairness ratios over segment counts (disparate impact, equal opportunity).

Both are min over segments of a rate divided by the max over segments of that rate, so 1.0 is
parity and the four-fifths rule is ``value >= 0.8``. Segments with no observations are left out
(listed in ``detail["empty_segments"]``); fewer than two segments with data is an error.
"""
from __future__ import annotations

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
