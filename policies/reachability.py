"""Gates that cannot act: thresholds a check's value or p-value can never cross at the planned windows.

A check whose `max` lies above the largest value its metric can take never fails; one whose `min` lies
above it always fails. A p-value check is judged at the per-window level `a` of `thresholds.window_alpha`
(minPValue spread over the planned windows); a test whose smallest attainable p-value at `minSamples` is
not below `a` passes whatever the data. `lint` refuses such a spec, naming the check, the smallest (or
largest) attainable value and what to change. See docs/statistics.md "Reachable thresholds".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .spec import CheckSpec, RolloutSpec
from .thresholds import failure_limit, fmt, planned_windows, window_alpha

# Value ranges: (lowest, highest) the metric's value can take.
RANGES: dict[str, tuple[float, float]] = {
    "psi": (0.0, math.inf), "kl": (0.0, math.inf), "chi2": (0.0, math.inf), "wasserstein": (0.0, math.inf),
    "js": (0.0, 1.0), "hellinger": (0.0, 1.0), "ks": (0.0, 1.0), "centroid-cosine": (-1.0, 1.0),
    "error-rate": (0.0, 1.0), "latency-p50": (0.0, math.inf), "latency-p90": (0.0, math.inf),
    "latency-p99": (0.0, math.inf), "latency-mean": (0.0, math.inf), "accuracy": (0.0, 1.0),
    "disparate-impact": (0.0, 1.0), "equal-opportunity": (0.0, 1.0), "shadow-agreement": (0.0, 1.0),
    "shadow-mean-abs-delta": (0.0, math.inf), "interleave": (-1.0, 1.0), "attribution-tau": (-1.0, 1.0),
    "shadow-mcnemar": (0.0, 1.0), "shadow-wilcoxon": (0.0, math.inf), "shadow-rbo": (0.0, 1.0),
    "shadow-ndcg": (0.0, 1.0), "outlier-rate": (-1.0, 1.0),
}
"""For shadow-mcnemar and shadow-wilcoxon the range is that of |effect|, which `max` (the tolerance) bounds."""


@dataclass(frozen=True)
class Unreachable:
    check: str
    field: str          # the threshold's field name, e.g. minPValue
    message: str


def smallest_p(metric: str, n: int) -> float:
    """The smallest p-value the metric's test can return with `n` samples per side (0 when unbounded).

    ks and mann-whitney-latency: the exact two-sided permutation floor 2 / C(2n, n); interleave and
    shadow-mcnemar (tolerance 0): the exact two-sided binomial floor 2 · 0.5^n (no ties, every pair
    discordant); chi2 (asymptotic), mmd (tail fit beyond the permutations, see policies/_mmd.py) and the
    other paired tests (normal approximations at minSamples) have none.
    """
    n = max(int(n), 1)
    if metric in ("ks", "mann-whitney-latency"):
        return min(1.0, 2.0 * math.exp(-(math.lgamma(2 * n + 1) - 2 * math.lgamma(n + 1))))
    if metric in ("interleave", "shadow-mcnemar"):
        return min(1.0, 2.0 * 0.5 ** n)
    return 0.0


def check_reachable(spec: RolloutSpec, check: CheckSpec) -> list[Unreachable]:
    out: list[Unreachable] = []
    metric = check.metric
    if metric is None:
        return out
    lo, hi = RANGES.get(metric, (-math.inf, math.inf))
    name = check.name
    if check.max is not None:
        if check.max >= hi:
            out.append(Unreachable(name, "max", f"check {name!r} can never fail: {metric} is at most {fmt(hi)}, "
                                                f"max is {fmt(check.max)}; lower max below {fmt(hi)}"))
        elif check.max < lo:
            out.append(Unreachable(name, "max", f"check {name!r} can never pass: {metric} is at least {fmt(lo)}, "
                                                f"max is {fmt(check.max)}; raise max to {fmt(lo)} or more"))
    if check.min is not None:
        if check.min <= lo:
            out.append(Unreachable(name, "min", f"check {name!r} can never fail: {metric} is at least {fmt(lo)}, "
                                                f"min is {fmt(check.min)}; raise min above {fmt(lo)}"))
        elif check.min > hi:
            out.append(Unreachable(name, "min", f"check {name!r} can never pass: {metric} is at most {fmt(hi)}, "
                                                f"min is {fmt(check.min)}; lower min to {fmt(hi)} or less"))
    if check.min_p_value is not None:
        windows, persistence = planned_windows(spec), failure_limit(spec, name)
        a = window_alpha(check.min_p_value, windows, persistence)
        floor = smallest_p(metric, spec.analysis.min_samples) if not (metric == "shadow-mcnemar" and check.max) else 0.0
        if check.min_p_value <= 0:
            out.append(Unreachable(name, "minPValue", f"check {name!r} can never fail: minPValue is 0"))
        elif floor >= a:
            out.append(Unreachable(
                name, "minPValue",
                f"check {name!r} can never fail: the smallest p-value {metric} can reach with minSamples "
                f"{spec.analysis.min_samples} is {fmt(floor)}, but minPValue {fmt(check.min_p_value)} spread over "
                f"{windows} planned windows ({persistence} in a row) judges at p < {fmt(a)}; raise minSamples, "
                f"raise minPValue or plan fewer windows (a longer analysis.interval)"))
    return out


def unreachable(spec: RolloutSpec) -> list[tuple[int, Unreachable]]:
    """(check index, problem) for every threshold of the spec that cannot act."""
    return [(i, u) for i, c in enumerate(spec.analysis.checks) for u in check_reachable(spec, c)]
