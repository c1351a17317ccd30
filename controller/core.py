"""The cluster-independent reconcile step: gather the evidence of the window due, judge it, decide.

Both shells use it: the Kubernetes controller (`controller.kube`) and local mode (`modelrollout.local`), and
replay runs it on a recorded log. It reads evidence through an `EvidenceSource` (`controller.evidence`)
but does not act: it returns the `Decision` and the shell writes status, Events and notifications once.

Every failure to read evidence becomes an Inconclusive verdict of the checks it left without data, with
the failure as the reason; never a Pass and never an exception out of `step` (provider timeouts are
bounded: argo-rollouts#2892). `docs/architecture.md` ("Controller") describes the loop.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from controller.evidence import (
    PROMETHEUS, Evidence, EvidenceSource, Failure, FailureKind, describe, empty_observations,
)
from policies import golden as golden_checks
from policies.api import Phase
from policies.expectations import INPUT_CHECK
from policies.checks import Observations, evaluate
from policies.errors import ModelRolloutError, verdict_for
from policies import postpromotion
from policies.machine import Command, Decision, decide
from policies.spec import Rollout, RolloutSpec
from policies.status import CheckResult, RolloutStatus, Verdict

log = logging.getLogger("modelrollout.core")

__all__ = ["analysis_window", "next_wakeup", "gather", "judge", "evaluate_window", "step",
           "reconcile_step", "golden_due", "run_golden"]


WAKE_MARGIN = 0.02
"""Seconds a timer waits past its deadline, so the reconcile it starts finds the window due."""


def analysis_window(spec: RolloutSpec, status: RolloutStatus, now: float) -> tuple[float, float] | None:
    """(start, end) of the analysis window due at `now`, or None when no analysis is due.

    Due once `interval` has passed since the last window (or since the step started); not before the
    rollout has started on the current revision, never after it finished, and never for a rollout without
    checks (nothing to judge: its steps run on their durations, and no window is recorded in its status).
    """
    if not spec.analysis.checks or _golden_step(spec, status):
        return None        # the golden step judges the golden set (`golden_due`), not live windows
    if status.phase.is_terminal or status.revision != spec.revision or status.revision is None:
        return None
    last = status.last_analysis_at if status.last_analysis_at is not None else status.step_started_at
    if last is None:
        return None
    if now - last < spec.analysis.interval:
        return None
    return last, now


def next_wakeup(spec: RolloutSpec, status: RolloutStatus, now: float) -> float | None:
    """Seconds until this rollout needs a reconcile again without any event (None: only on an event).

    The earlier of the next analysis window (rollouts with checks) and the end of the current step's
    duration, if that end is still ahead (once it has passed, the step advances on that reconcile or
    waits for a passing window or a command, which a timer cannot bring sooner); None for a terminal
    rollout and for one that waits on a command alone (e.g. a `pause: {}` step without checks). These
    deadlines are the controller's timers: nothing else in the status changes with time, so between
    them a rollout needs no reconcile. `WAKE_MARGIN` is added so a timer never fires just before its
    deadline (the work queue runs on the monotonic clock, decisions on the wall clock)."""
    if status.phase.is_terminal:
        later = postpromotion.next_wakeup(spec, status, now)    # a promoted version judged on delayed labels
        return None if later is None else later + WAKE_MARGIN
    if status.phase is Phase.VERIFYING and _golden_step(spec, status):
        last = status.last_analysis_at if status.step_windows else None
        return WAKE_MARGIN if last is None else max(0.0, last + spec.analysis.interval - now) + WAKE_MARGIN
    wait: float | None = None
    if spec.analysis.checks:
        last = status.last_analysis_at if status.last_analysis_at is not None else status.step_started_at
        wait = spec.analysis.interval if last is None else last + spec.analysis.interval - now
    if status.step_started_at is not None and status.current_step < len(spec.steps):
        step_ = spec.steps[status.current_step]
        if step_.duration is not None:
            end = status.step_started_at + step_.duration - now
            if end > 0:
                wait = end if wait is None else min(wait, end)
    return None if wait is None else max(0.0, wait) + WAKE_MARGIN


def _golden_step(spec: RolloutSpec, status: RolloutStatus) -> bool:
    i = status.current_step
    return 0 <= i < len(spec.steps) and spec.steps[i].kind == "golden"


def golden_due(spec: RolloutSpec, status: RolloutStatus, now: float) -> bool:
    """Whether the golden set is to be answered now: the golden step runs (phase Verifying) on the current
    revision and has no run yet, or its last run was inconclusive `interval` ago."""
    if status.phase is not Phase.VERIFYING or status.revision != spec.revision or not _golden_step(spec, status):
        return False
    if status.step_windows == 0 or status.last_analysis_at is None:
        return True
    return now - status.last_analysis_at >= spec.analysis.interval


def run_golden(spec: RolloutSpec, runner) -> tuple[CheckResult, ...]:
    """The golden checks' verdicts on one run of the golden set by `runner` (`controller.golden.GoldenRunner`);
    whatever keeps the set from being answered makes them Inconclusive with the reason, never Pass."""
    if runner is None:
        return golden_checks.unavailable(spec, "this controller runs no golden sets (no router client)")
    try:
        run = runner.run(spec)
    except ModelRolloutError as e:
        log.warning("%s: golden set: %s", spec.key, e)
        return golden_checks.unavailable(spec, str(e))
    except Exception as e:  # noqa: BLE001 - a bug must pause, not crash, the loop
        log.exception("%s: running the golden set failed", spec.key)
        return golden_checks.unavailable(spec, f"golden run failed: {type(e).__name__}: {e}")
    return golden_checks.judge(spec, run)


def gather(source: EvidenceSource | Callable[..., Observations], spec: RolloutSpec, start: float,
           end: float) -> Evidence:
    """`source.gather`, with a bug in the source turned into a failure of every check (logged with its trace).

    A plain callable `source(spec, start, end) -> Observations` (a reader of recorded windows that cannot
    fail) is taken as a source without failures."""
    try:
        evidence = source.gather(spec, start, end) if hasattr(source, "gather") else Evidence(
            source(spec, start, end))
    except Exception as e:  # noqa: BLE001 - a bug or outage in evidence must pause, not crash, the loop
        log.exception("%s: gathering observations failed", spec.key)
        return Evidence(empty_observations(spec, start, end), (Failure(
            "evidence", "(none)", FailureKind.ERROR, f"observations unavailable: {type(e).__name__}: {e}",
            tuple(c.name for c in spec.analysis.checks)),))
    for f in evidence.failures:
        log.warning("%s: %s evidence: %s (%s)", spec.key, f.source, f, f.kind.value)
    return evidence


def judge(spec: RolloutSpec, status: RolloutStatus, evidence: Evidence) -> tuple[CheckResult, ...]:
    """The checks' verdicts on `evidence`; a check a failure left without evidence is Inconclusive with
    that failure as its reason (PromQL checks keep their verdicts when only routers failed, and so on)."""
    lost_inputs = spec.expectations is not None and any(
        f.source != PROMETHEUS for f in evidence.failures)
    if lost_inputs:     # inputs read from routers that failed are not evidence of broken inputs
        spec = replace(spec, expectations=None)
    try:
        results = evaluate(spec, evidence.observations, status)
    except Exception as e:  # noqa: BLE001
        if verdict_for(e) is None:
            log.exception("%s: evaluating the observations failed", spec.key)
        why = f"evaluation failed: {type(e).__name__}: {e}"
        if evidence.failures:
            why = f"{describe(evidence.failures)}; {why}"
        return _all_inconclusive(spec, why)
    if lost_inputs:
        results += (CheckResult(INPUT_CHECK, INPUT_CHECK, None, None, Verdict.INCONCLUSIVE, 0, action="pause",
                                reason=f"{INPUT_CHECK}: {describe(evidence.failures)}"),)
    if not evidence.failures:
        return results
    checks = {c.name: c for c in spec.analysis.checks}
    out = []
    for r in results:
        lost = [f for f in evidence.failures if r.name in checks and f.affects(checks[r.name])]
        out.append(replace(r, verdict=Verdict.INCONCLUSIVE, reason=f"{r.name}: {describe(lost)}") if lost else r)
    return tuple(out)


def _all_inconclusive(spec: RolloutSpec, reason: str) -> tuple[CheckResult, ...]:
    return tuple(CheckResult(c.name, c.metric, None, None, Verdict.INCONCLUSIVE, 0, reason=f"{c.name}: {reason}",
                             action=c.action, immediate=c.immediate) for c in spec.analysis.checks)


def evaluate_window(spec: RolloutSpec, status: RolloutStatus, window: tuple[float, float],
                    source: EvidenceSource) -> tuple[CheckResult, ...]:
    """Gather and judge one window; every failure to read evidence is an Inconclusive with its reason."""
    if not spec.analysis.checks:
        return ()   # nothing to judge: the steps run on their durations alone
    start, end = window
    return judge(spec, status, gather(source, spec, start, end))


def step(spec: RolloutSpec, status: RolloutStatus, now: float, source: EvidenceSource,
         command: Command | None = None, golden=None) -> Decision:
    """One reconcile of one rollout: run the golden set if due (`golden`: its runner), else evaluate a
    window if one is due, then `policies.machine.decide`.

    The spec runs resolved against `status.stable` (the candidate is compared with the stable)."""
    spec = spec.resolved(status.stable)
    if golden_due(spec, status, now):
        results: tuple[CheckResult, ...] | None = run_golden(spec, golden)
    else:
        window = analysis_window(spec, status, now)
        results = evaluate_window(spec, status, window, source) if window is not None else None
    return decide(spec, status, results, now, command, labels=label_window(spec, status, now, source))


def label_window(spec: RolloutSpec, status: RolloutStatus, now: float,
                 source: EvidenceSource) -> postpromotion.LabelWindow | None:
    """After a promotion with `spec.postPromotion`: the label counts of the window due, per version (the
    routers keep the previous stable as the baseline arm meanwhile), or why they could not be read."""
    due = postpromotion.window_due(spec, status, now)
    if due is None:
        return None
    judging = postpromotion.judging_spec(spec, status.post_promotion)
    evidence = gather(source, judging, *due)
    if evidence.failures:
        return postpromotion.LabelWindow(*due, failure=describe(evidence.failures))
    obs = evidence.observations
    return postpromotion.LabelWindow(*due, obs.baseline.segments, obs.candidate.segments)


def reconcile_step(rollout: Rollout, now: float, source: EvidenceSource, command: Command | None = None,
                   golden=None) -> Decision:
    """`step` on a parsed ModelRollout document (its status as written, a dict or a `RolloutStatus`)."""
    return step(rollout.spec, RolloutStatus.from_status(rollout.status), now, source, command, golden)

