"""After the promotion: the transitions of `status.postPromotion` (pure; `policies.machine` calls them).

A promotion of a rollout with `spec.postPromotion` starts the state `Judging`: until `since + duration` the
routers keep both arms (the previous stable as baseline, the promoted version as candidate, 100% of the
traffic to the candidate; `judging_spec`), so every label that arrives is credited to the version that made
the prediction, and the controller reads a window of label counts every `postPromotion.interval`
(`window_due`, a `LabelWindow`). `advance` adds the window to the cumulative counts, judges them
(`policies.regret.judge`) and ends in

* `Regretted` once a check failed `failureLimit` consecutive windows (the caller raises the Event and, with
  `action: rollback`, restores the previous stable);
* `Confirmed` when the duration is over without a regret (or the spec dropped `postPromotion`).

A window whose evidence could not be read is not counted and its span is read again with the next window
(the routers keep `--retention` of windows), so no label is counted twice or lost to a short outage.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from policies.api import Phase, Verdict
from policies.regret import PostPromotionSpec, add_counts, judge
from policies.spec import RolloutSpec, VersionRef
from policies.status import RECENT_LIMIT, CheckState, PostPromotionState, RolloutStatus, WindowValue

JUDGING, CONFIRMED, REGRETTED = "Judging", "Confirmed", "Regretted"
_PHASES = (Phase.PROMOTED, Phase.STABLE)
"""Phases in which a promoted version is still judged (a spec that drops its candidate after the promotion
turns Promoted into Stable for the same version)."""


@dataclass(frozen=True)
class LabelWindow:
    """The label counts of one post-promotion window, per arm (`SegmentCounts` or None), or why they could
    not be read (`failure`)."""
    start: float
    end: float
    baseline: Any = None
    candidate: Any = None
    failure: str | None = None


def begin(spec: RolloutSpec, previous: VersionRef, promoted: VersionRef, now: float) -> PostPromotionState | None:
    """The state a promotion starts (None without `spec.postPromotion`, or when nothing changed version)."""
    pp = spec.post_promotion
    if pp is None or previous == promoted:
        return None
    checks = tuple(CheckState(c.name, c.metric, action=pp.action) for c in pp.checks)
    return PostPromotionState(JUDGING, previous, promoted, now, now + pp.duration, checks=checks,
                              message=f"judging {promoted.version} on delayed labels against the previous stable "
                                      f"{previous.version} until the end of postPromotion.duration")


def judging(status: RolloutStatus) -> PostPromotionState | None:
    """The post-promotion state while it judges (phase Promoted or Stable), else None."""
    st = status.post_promotion
    if st is None or not st.judging or status.phase not in _PHASES:
        return None
    if status.stable is not None and status.stable != st.promoted:
        return None
    return st


def judging_spec(spec: RolloutSpec, st: PostPromotionState) -> RolloutSpec:
    """The spec routers and evidence run while judging: the previous stable is the baseline arm and the
    promoted version the candidate (its revision, so records and labels stay in the rollout's windows);
    no analysis checks (the post-promotion checks are judged on cumulative counts, not per window)."""
    return replace(spec, baseline=st.previous, candidate=st.promoted, spec_baseline=None, no_candidate=False,
                   analysis=replace(spec.analysis, checks=()))


def window_due(spec: RolloutSpec, status: RolloutStatus, now: float) -> tuple[float, float] | None:
    """(start, end) of the post-promotion window due at `now`: every `interval`, and a last one at `until`."""
    st, pp = judging(status), spec.post_promotion
    if st is None or pp is None:
        return None
    last = st.last_analysis_at if st.last_analysis_at is not None else st.since
    if now - last < pp.interval and now < st.until:
        return None
    return last, now


def next_wakeup(spec: RolloutSpec, status: RolloutStatus, now: float) -> float | None:
    """Seconds until the next post-promotion window (or its end), None when not judging."""
    st, pp = judging(status), spec.post_promotion
    if st is None or pp is None:
        return None
    last = st.last_analysis_at if st.last_analysis_at is not None else st.since
    return max(0.0, min(last + pp.interval, st.until) - now)


def advance(pp: PostPromotionSpec | None, st: PostPromotionState, labels: LabelWindow | None,
            now: float) -> PostPromotionState:
    """Fold one window into the counts and judge them; Regretted, Confirmed or still Judging."""
    if pp is None:
        return replace(st, state=CONFIRMED, message="spec.postPromotion was removed: judging ended")
    if labels is not None and labels.failure is not None:
        st = replace(st, message=f"labels of the window not read ({labels.failure}); read again with the next")
    elif labels is not None:
        counts = {"baseline": add_counts((st.counts or {}).get("baseline"), labels.baseline),
                  "candidate": add_counts((st.counts or {}).get("candidate"), labels.candidate)}
        results = {j.name: j for j in judge(pp, counts)}
        checks = []
        for c in pp.checks:
            old = next((x for x in st.checks if x.name == c.name), None) or CheckState(c.name, c.metric)
            j = results[c.name]
            verdict = Verdict(j.verdict)
            failures = old.failures + 1 if verdict is Verdict.FAIL else (0 if verdict is Verdict.PASS else
                                                                           old.failures)
            recent = (old.recent + (WindowValue(labels.end, j.value, verdict, j.threshold, j.samples),))
            checks.append(CheckState(c.name, c.metric, j.value, j.threshold, verdict, j.samples, failures,
                                     old.inconclusive + 1 if verdict is Verdict.INCONCLUSIVE else 0, j.reason,
                                     pp.action, recent[-RECENT_LIMIT:],
                                     evidence={"previousValue": j.baseline_value}))
        st = replace(st, counts=counts, checks=tuple(checks), windows=st.windows + 1,
                     last_analysis_at=labels.end, message="; ".join(c.reason for c in checks))
        failing = [c for c in checks if c.failures >= pp.failure_limit]
        if failing:
            why = "; ".join(f"{c.reason} for {c.failures} window{'s' if c.failures != 1 else ''}" for c in failing)
            return replace(st, state=REGRETTED, message=f"promotion of {st.promoted.version} regretted: {why}")
    if now >= st.until:
        return replace(st, state=CONFIRMED, message=f"{st.promoted.version} kept its promotion: no postPromotion "
                                                    f"check failed in {st.windows} window(s) of delayed labels")
    return st
