"""`spec.postPromotion`: judging a promoted version on the labels that arrive after its promotion.

Labels often come days after the prediction (a chargeback, a churned customer). When a rollout is promoted,
labels keep arriving, both for the promoted version's predictions and for the predictions the previous
stable made during the rollout (feedback ids are signed and self-contained, so any router replica credits
them to the version that answered). For `postPromotion.duration` after the promotion the controller keeps
analysing windows: it adds each window's label counts of both versions to cumulative counts held in
`status.postPromotion.counts`, and judges the promoted version against what the previous stable achieved on
its own labels:

* `accuracy` with `maxDrop` (default 0): Fail when the promoted version's accuracy is shown below the
  previous stable's minus `maxDrop` — the upper end of a one-sided `CONFIDENCE` interval on the difference
  of the two accuracies (Agresti–Caffo: one success and one failure added to each side) is below
  `-maxDrop`; Pass otherwise; Inconclusive while either version has fewer than `minSamples` labels.
* `equal-opportunity` with `segment` and `minRatioToBaseline`: the fairness rule of the rollout's checks
  (docs/statistics.md "Fairness") on the cumulative counts: Fail when the promoted version's simultaneous
  upper bound is below `minRatioToBaseline` x the previous stable's lower bound.

The cumulative counts are looked at once per window, so the bound is one-sided at 99% and a check acts
only after `failureLimit` consecutive failing windows. A regret (`action: alert`) raises a Warning Event
`PromotionRegretted` with the numbers and `modelrollout_rollout_promotion_regretted` (alert
`ModelRolloutPromotionRegretted`); `action: rollback` also makes the previous stable the stable again
(routing 100% to it, phase RolledBack). Pure: parsing, folding counts and verdicts; `policies.postpromotion`
holds the status and the transitions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Mapping

from policies import fairness
from policies._result import StatError
from policies.specreader import Reader, SpecError
from policies.summaries.segments import SegmentCounts

REGRET_METRICS = ("accuracy", "equal-opportunity")
REGRET_ACTIONS = ("alert", "rollback")
CONFIDENCE = 0.99
"""One-sided confidence of the bound on the difference of accuracies."""
_CHECK_KEYS = ("name", "metric", "maxDrop", "minRatioToBaseline", "segment")


@dataclass(frozen=True)
class RegretCheck:
    name: str
    metric: str
    max_drop: float = 0.0
    """accuracy: the tolerated drop below the previous stable's accuracy (absolute, 0-1)."""
    min_ratio_to_baseline: float | None = None
    """equal-opportunity: the lowest tolerated multiple of the previous stable's ratio."""
    segment: str | None = None


@dataclass(frozen=True)
class PostPromotionSpec:
    duration: float
    """Seconds after the promotion during which the promoted version is still judged."""
    action: str = "alert"
    interval: float = 60.0
    min_samples: int = 200
    failure_limit: int = 2
    checks: tuple[RegretCheck, ...] = ()

    def segments(self) -> tuple[str, ...]:
        return tuple(sorted({c.segment for c in self.checks if c.segment}))


def parse_post_promotion(r: Reader | None, interval: float, min_samples: int,
                         failure_limit: int) -> PostPromotionSpec | None:
    """`spec.postPromotion` (None when absent); `interval`, `minSamples` and `failureLimit` default to the
    analysis' own. Raises SpecError naming the field."""
    if r is None:
        return None
    duration = r.duration("duration", required=True)
    if duration <= 0:
        raise SpecError(r.at("duration"), f"expected a positive duration, got {r.data.get('duration')!r}")
    every = r.duration("interval", interval)
    if every <= 0:
        raise SpecError(r.at("interval"), f"expected a positive duration, got {r.data.get('interval')!r}")
    checks = []
    for i, raw in enumerate(r.list("checks")):
        c = Reader(raw, f"{r.at('checks')}[{i}]")
        unknown = sorted(str(k) for k in c.data if k not in _CHECK_KEYS)
        if unknown:
            raise SpecError(c.at(unknown[0]), f"not a field of a postPromotion check; expected "
                                              f"{', '.join(_CHECK_KEYS)} (postPromotion.action says what a "
                                              "failure does)")
        name = c.str("name", required=True)
        if any(x.name == name for x in checks):
            raise SpecError(c.at("name"), f"duplicate check name {name!r}")
        metric = c.str("metric", required=True, choices=REGRET_METRICS)
        segment = c.str("segment")
        if metric == "accuracy":
            if "minRatioToBaseline" in c.data:
                raise SpecError(c.at("minRatioToBaseline"), "applies to equal-opportunity; accuracy takes maxDrop")
            checks.append(RegretCheck(name, metric, max_drop=c.num("maxDrop", 0.0, lo=0.0, hi=1.0),
                                      segment=segment))
        else:
            if "maxDrop" in c.data:
                raise SpecError(c.at("maxDrop"), "applies to accuracy; equal-opportunity takes minRatioToBaseline")
            if segment is None:
                raise SpecError(c.at("segment"), "equal-opportunity needs the segment field to compare")
            checks.append(RegretCheck(name, metric, segment=segment, min_ratio_to_baseline=c.num(
                "minRatioToBaseline", required=True, lo=0.0)))
    if not checks:
        raise SpecError(r.at("checks"), "expected at least one check (accuracy or equal-opportunity)")
    return PostPromotionSpec(duration=duration, action=r.str("action", "alert", choices=REGRET_ACTIONS),
                             interval=every, min_samples=r.num("minSamples", min_samples, lo=1, integer=True),
                             failure_limit=r.num("failureLimit", failure_limit, lo=1, integer=True),
                             checks=tuple(checks))


# --- counts ------------------------------------------------------------------------------------------

def add_counts(total: Mapping[str, Any] | None, window: SegmentCounts | None) -> dict[str, Any]:
    """Cumulative label counts (`SegmentCounts.to_dict()["counts"]`) plus one window's."""
    acc = _counts(total)
    if window is not None:
        acc = acc.merge(window)
    return acc.to_dict()["counts"]


def _counts(raw: Mapping[str, Any] | None) -> SegmentCounts:
    if not raw:
        return SegmentCounts(1 << 16)
    return SegmentCounts.from_dict({"type": "segments", "max_values": 1 << 16, "counts": dict(raw)})


@dataclass(frozen=True)
class Judged:
    """One post-promotion check's verdict on the cumulative counts."""
    name: str
    metric: str
    verdict: str                  # Pass | Fail | Inconclusive
    value: float | None           # the promoted version's
    baseline_value: float | None  # the previous stable's
    threshold: float | None
    samples: int
    reason: str


def judge(pp: PostPromotionSpec, counts: Mapping[str, Any]) -> tuple[Judged, ...]:
    """Each check's verdict on the cumulative counts {"baseline": ..., "candidate": ...}: the baseline is
    the previous stable, the candidate the promoted version."""
    base, cand = _counts(counts.get("baseline")), _counts(counts.get("candidate"))
    return tuple(_accuracy(pp, c, base, cand) if c.metric == "accuracy" else _fairness(pp, c, base, cand)
                 for c in pp.checks)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _totals(rows: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """(labelled, correct) over every value of the segment field."""
    return sum(n for n, _ in rows.values()), sum(k for _, k in rows.values())


def _accuracy(pp: PostPromotionSpec, c: RegretCheck, base: SegmentCounts, cand: SegmentCounts) -> Judged:
    (nb, kb), (nc, kc) = (_totals(seg.rows("accuracy", c.segment)) for seg in (base, cand))
    a_b = kb / nb if nb else None
    a_c = kc / nc if nc else None
    threshold = None if a_b is None else a_b - c.max_drop
    for side, n in (("promoted", nc), ("previous stable", nb)):
        if n < pp.min_samples:
            return Judged(c.name, c.metric, "Inconclusive", a_c, a_b, threshold, min(nb, nc),
                          f"{c.name}: {side} version has {n} labels since the promotion < minSamples {pp.min_samples}")
    # Agresti–Caffo interval on the difference of two proportions, one-sided upper bound
    pb, pc = (kb + 1) / (nb + 2), (kc + 1) / (nc + 2)
    se = math.sqrt(pb * (1 - pb) / (nb + 2) + pc * (1 - pc) / (nc + 2))
    upper = (pc - pb) + NormalDist().inv_cdf(CONFIDENCE) * se
    numbers = (f"accuracy {_fmt(a_c)} ({kc}/{nc} labels) vs the previous stable's {_fmt(a_b)} ({kb}/{nb}), "
               f"difference {_fmt(a_c - a_b)}, {CONFIDENCE:.0%} upper bound {_fmt(upper)}")
    if upper < -c.max_drop:
        return Judged(c.name, c.metric, "Fail", a_c, a_b, threshold, min(nb, nc),
                      f"{c.name}: {numbers} < -maxDrop {_fmt(c.max_drop)}")
    return Judged(c.name, c.metric, "Pass", a_c, a_b, threshold, min(nb, nc),
                  f"{c.name}: {numbers}: not shown below -maxDrop {_fmt(c.max_drop)}")


def _fairness(pp: PostPromotionSpec, c: RegretCheck, base: SegmentCounts, cand: SegmentCounts) -> Judged:
    rows_c, rows_b = cand.rows("tpr_counts", c.segment), base.rows("tpr_counts", c.segment)
    nc, nb = sum(v[0] for v in rows_c.values()), sum(v[0] for v in rows_b.values())
    for side, n, rows in (("promoted", nc, rows_c), ("previous stable", nb, rows_b)):
        if n < pp.min_samples or sum(v[1] for v in rows.values()) < fairness.MIN_POSITIVES:
            return Judged(c.name, c.metric, "Inconclusive", None, None, None, min(nb, nc),
                          f"{c.name}: {side} version has too few labelled positives since the promotion "
                          f"({fairness.describe_counts(rows, 'true positive')}; minSamples {pp.min_samples})")
    try:
        v_c, v_b = fairness.equal_opportunity(rows_c).value, fairness.equal_opportunity(rows_b).value
        upper = fairness.ratio_bounds(rows_c)[1]
        lower_b = fairness.ratio_bounds(rows_b)[0]
    except StatError as e:
        return Judged(c.name, c.metric, "Inconclusive", None, None, None, min(nb, nc), f"{c.name}: {e}")
    limit = c.min_ratio_to_baseline * lower_b
    numbers = (f"equal-opportunity {_fmt(v_c)} vs the previous stable's {_fmt(v_b)} (upper bound {_fmt(upper)}, "
               f"{_fmt(c.min_ratio_to_baseline)} x its lower bound {_fmt(lower_b)} = {_fmt(limit)})")
    verdict = "Fail" if upper < limit else "Pass"
    return Judged(c.name, c.metric, verdict, v_c, v_b, limit, min(nb, nc), f"{c.name}: {numbers}")
