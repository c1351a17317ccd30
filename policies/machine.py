"""The rollout state machine: one pure step from (spec, status, check results, now, command) to a new status.

`decide` has no clock and no I/O: the controller passes `now`, carries out the returned actions and writes
the returned status once (routing included: the routers follow `status.routing`). Everything it needs
to resume after a crash is in that status. The rules (and the peer failures they rule out) are in
README.md "Verdicts and actions" and docs/contracts.md; the non-obvious choices:

* Missing data never passes: a step advances only after at least one analysis window *in that step*
  in which every blocking (non-`warn`) check passed, and an absent result counts as Inconclusive.
* A Fail that reached its check's limit is acted on in every phase that still sends traffic to the
  candidate, including Paused, so a failed analysis can never let the rollout complete (argo-rollouts#1411).
* `failures` counts consecutive Fail windows; an Inconclusive window neither breaks nor extends the streak
  (a gap in data is not evidence that the candidate recovered).
* Resume starts the evidence afresh (failure and inconclusive streaks reset), so a pause caused by
  Inconclusive windows cannot re-pause on the very next reconcile (argo-rollouts#261).
* A new candidate revision (flagger#30) restarts from step 0 with fresh counters and calibration — also
  from Promoted, RolledBack or Failed: a new revision is a new rollout. `retry` restarts the same revision
  from step 0 with fresh counters but keeps the A/A calibration, which describes the baseline only.
* After a promotion with `spec.postPromotion` the promoted version is still judged on the labels that
  arrive late (`policies.postpromotion`, given to `decide` as `labels`, one window at a time): a check that
  fails its `failureLimit` windows makes the promotion Regretted (Warning Event `PromotionRegretted` with
  the numbers); with `action: rollback` the previous stable is the stable again (phase RolledBack, routing
  100% to it). The phase stays Promoted (or Stable) while it judges, so nothing else changes meanwhile.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from .api import COMMAND_ANNOTATION, Condition as Cond
from . import postpromotion, sequential
from .checks import check_severity
from .errors import InvalidInput
from .expectations import INPUT_CHECK
from .spec import RolloutSpec, SpecError, Step
from .thresholds import applies, failure_limit
from .status import (
    CALIBRATION_LIMIT, RECENT_LIMIT, CheckResult, CheckState, DecidingCheck, Phase, Routing, RolloutStatus,
    Verdict, WindowValue, format_left, worst_check,
)

VERBS = ("promote", "abort", "pause", "resume", "retry")
_ACTION_RANK = {"warn": 0, "pause": 1, "rollback": 2}


class CommandError(InvalidInput, ValueError):
    """A command annotation that cannot be applied as written; the message names the field."""


@dataclass(frozen=True)
class Command:
    """A manual verb from `kubectl modelrollout VERB`, applied at most once per `id` (by `decide`: the
    status remembers the last id applied). An empty id applies on every `decide`."""

    verb: str
    full: bool = False
    id: str = ""

    def __post_init__(self):
        if self.verb not in VERBS:
            raise CommandError(f"command verb: expected one of {', '.join(VERBS)}, got {self.verb!r}")

    @staticmethod
    def from_annotation(text: str) -> "Command":
        """Decode the `modelrollout.io/command` annotation, e.g. `{"verb": "promote", "full": true, "id": "…"}`;
        raises CommandError (a ValueError) naming the field and what was expected.

        An annotation without an id gets one from its text's hash, so it too is applied once."""
        where = COMMAND_ANNOTATION
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise CommandError(f"{where}: expected a JSON object, got {text!r}") from e
        if not isinstance(d, dict):
            raise CommandError(f"{where}: expected a JSON object, got {text!r}")
        full, cid = d.get("full", False), d.get("id", "")
        if not isinstance(full, bool):
            raise CommandError(f"{where}.full: expected true or false, got {full!r}")
        if not isinstance(cid, str):
            raise CommandError(f"{where}.id: expected a string, got {cid!r}")
        verb = d.get("verb")
        if not isinstance(verb, str):
            raise CommandError(f"{where}.verb: expected one of {', '.join(VERBS)}, got {verb!r}")
        return Command(verb, full, cid or "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16])


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the rollout."""
    type: str      # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Notify:
    """A notification for the phase just entered; the shell sends it to the spec's matching sinks."""
    phase: str
    severity: str  # critical | error | warning | info (see `_severity` and `_Machine.rollback`)
    message: str


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    actions: tuple[Any, ...]


def decide(spec: RolloutSpec, status: RolloutStatus | Mapping[str, Any] | None,
           results: Iterable[CheckResult] | None, now: float, command: Command | None = None,
           labels: postpromotion.LabelWindow | None = None) -> Decision:
    """The next status and the actions to carry out. `results=None`: no analysis window this time;
    `labels`: a post-promotion window of label counts (`policies.postpromotion.window_due`), or None."""
    before = RolloutStatus.from_status(status)
    spec = spec.resolved(before.stable)
    m = _Machine(spec, now)
    s = replace(before, observed_generation=spec.generation)
    invalid = s.condition(Cond.INVALID_SPEC)
    was_invalid = invalid is not None and invalid.status == "True"
    if spec.steady:
        # the candidate just promoted stays Promoted; no candidate at all is Stable
        kept = (Phase.STABLE,) if spec.no_candidate else (Phase.STABLE, Phase.PROMOTED)
        if s.revision != spec.revision or s.phase not in kept:
            s = m.steady(s)
    elif s.revision != spec.revision or (s.phase is Phase.FAILED and was_invalid):
        s = m.start(s, fresh_calibration=True)
    elif not s.phase.is_terminal and s.current_step >= len(spec.steps):
        s = replace(s, current_step=len(spec.steps) - 1)   # the spec lost steps under us
    if was_invalid and s.condition(Cond.INVALID_SPEC).status == "True":
        s = m.valid_again(s)
    if command is not None and (not command.id or command.id != s.last_command_id):
        s = m.command(s, command)
        s = replace(s, last_command_id=command.id or s.last_command_id)
    if results is not None and not s.phase.is_terminal:
        if m.in_golden_step(s):
            s = m.golden(s, list(results))
        else:
            s = m.record(s, list(results))
            s = m.act_on_checks(s)
    s = m.after_promotion(s, labels)
    s = m.advance(s)
    s = m.describe(s)
    s = replace(s, step_duration=_step_duration(spec, s))
    s = _conditions(spec, s, now)
    s = replace(s, drift=worst_check(s.checks))
    actions = list(m.actions)
    if s.phase is not before.phase:
        actions.append(Notify(s.phase.value, m.severity or _severity(s), s.message))
    return Decision(s, tuple(actions))


def invalid_spec_status(status: RolloutStatus | Mapping[str, Any] | None, error: SpecError,
                        now: float) -> RolloutStatus:
    """Status for a spec that can never work as written: condition InvalidSpec naming the field.

    Fail-static: a rollout that already runs (a revision, not Failed) keeps its phase, step and routing,
    so nobody changes version because of a bad edit; it only stops advancing and analysing until the spec
    is valid again (then it continues, or restarts from step 0 for a new revision: see `decide`). A rollout
    that never had a valid spec is Failed, with the routing of a fresh one (100% baseline)."""
    s = RolloutStatus.from_status(status)
    if s.revision is not None and s.phase is not Phase.FAILED:
        msg = f"invalid spec, keeping the last valid routing: {error}"
        s = replace(s, message=msg)
    else:
        msg = f"invalid spec: {error}"
        s = replace(s, phase=Phase.FAILED, routing=Routing(), message=msg, pause_reason=None, drift=None)
    if not s.history or s.history[-1].reason != msg:
        s = s.with_history(now, "InvalidSpec", msg)
    s = s.with_condition(Cond.INVALID_SPEC, "True", "InvalidSpec", str(error), now)
    s = s.with_condition(Cond.PROGRESSING, "False", "InvalidSpec", msg, now)
    s = s.with_condition(Cond.DEGRADED, "True", "InvalidSpec", msg, now)
    return s


def step_routing(steps: tuple[Step, ...], i: int) -> Routing:
    """Routing while step `i` runs; a pause step keeps the routing of the step before it."""
    for step in reversed(steps[: i + 1]):
        if step.kind == "golden":
            return Routing()          # the golden set is answered through the router: no user traffic
        if step.kind == "shadow":
            return Routing(0, shadow=True)
        if step.kind == "canary":
            return Routing(step.weight)
        if step.kind == "interleave":
            return Routing(0, interleave=True)
    return Routing()


_STEP_PHASE = {"golden": Phase.VERIFYING, "shadow": Phase.SHADOWING, "canary": Phase.PROGRESSING,
               "interleave": Phase.INTERLEAVING,
               "pause": Phase.PAUSED}


class _Machine:
    """Transitions for one `decide` call; collects the actions they cause."""

    def __init__(self, spec: RolloutSpec, now: float):
        self.spec, self.now = spec, now
        self.actions: list[Any] = []
        self.severity: str | None = None
        """The notification severity a rollback set (who or what acted); else the phase's default."""

    def emit(self, type_: str, reason: str, message: str) -> None:
        self.actions.append(Emit(type_, reason, message))

    def step_label(self, i: int) -> str:
        n = len(self.spec.steps)
        return f"step {i + 1}/{n} ({self.spec.steps[i].describe()})" if i < n else "promotion"

    # --- starting and moving between steps -------------------------------------------------------

    def start(self, s: RolloutStatus, fresh_calibration: bool) -> RolloutStatus:
        # after a promotion (or in a steady state) a new candidate is a new rollout, not a restart
        restart = s.revision is not None and not (s.phase in (Phase.STABLE, Phase.PROMOTED)
                                                  and s.revision != self.spec.revision)
        keep = {} if fresh_calibration else {c.name: c.calibration for c in s.checks}
        checks = tuple(CheckState(c.name, c.metric, action=c.action, calibration=keep.get(c.name, ()))
                       for c in self.spec.analysis.checks + self.spec.golden_checks) + self.input_state(None)
        if not restart:
            why = f"rollout of {self.spec.candidate.version} started"
        elif s.revision != self.spec.revision:
            why = f"new candidate revision {self.spec.revision} (was {s.revision}): restarting from step 1"
        elif s.phase is Phase.FAILED:
            why = "spec is valid again: restarting from step 1"
        else:
            why = "retry: restarting from step 1"
        why += f", compared with {self.baseline_label()}"
        event = "Started" if not restart else ("RevisionChanged" if s.revision != self.spec.revision else "Restarted")
        s = replace(s, revision=self.spec.revision, checks=checks, pause_reason=None, message=why,
                    post_promotion=None)
        s = s.with_history(self.now, event, why)
        self.emit("Normal", event, why)
        if s.conditions:
            s = s.with_condition(Cond.INVALID_SPEC, "False", "SpecValid", "spec is valid", self.now)
        return self.enter_step(s, 0)

    def enter_step(self, s: RolloutStatus, i: int, why: str = "") -> RolloutStatus:
        if i >= len(self.spec.steps):
            return self.promote(s, why or "all steps passed")
        step = self.spec.steps[i]
        s = replace(s, current_step=i, phase=_STEP_PHASE[step.kind], routing=step_routing(self.spec.steps, i),
                    step_started_at=self.now, step_windows=0,
                    pause_reason="step" if step.kind == "pause" else None)
        text = f"{self.step_label(i)} started" + (f": {why}" if why else "")
        s = replace(s, message=text).with_history(self.now, "StepStarted", text)
        self.emit("Normal", "StepStarted", text)
        return s

    def input_state(self, s: RolloutStatus | None, r: CheckResult | None = None) -> tuple[CheckState, ...]:
        """The input expectations' entry among the checks (none without spec.expectations), updated by `r`."""
        if self.spec.expectations is None:
            return ()
        old = (s.check(INPUT_CHECK) if s is not None else None) or CheckState(INPUT_CHECK, INPUT_CHECK,
                                                                               action="pause")
        if r is None:
            return (old,)
        return (_update_check(old, r, self.now),)

    def baseline_label(self) -> str:
        """`the stable v2 (spec.baseline says v1)`, or `the baseline v1` before any promotion."""
        b, written = self.spec.baseline, self.spec.spec_baseline
        if written is None:
            return f"the baseline {b.version}"
        said = written.version if written.version != b.version else f"{written.version} at {written.url}"
        return f"the stable {b.version} (spec.baseline says {said})"

    def steady(self, s: RolloutStatus) -> RolloutStatus:
        """No candidate, or the candidate is the stable: 100% to the stable, nothing analysed, no step."""
        b = self.spec.baseline
        text = f"steady state: {b.version} serves all traffic, no rollout"
        s = replace(s, phase=Phase.STABLE, revision=self.spec.revision, routing=Routing(), checks=(),
                    current_step=0, step_started_at=None, step_windows=0, last_analysis_at=None,
                    pause_reason=None, message=text,
                    post_promotion=s.post_promotion if s.revision == self.spec.revision else None)
        if s.conditions:
            s = s.with_condition(Cond.INVALID_SPEC, "False", "SpecValid", "spec is valid", self.now)
        self.emit("Normal", "Stable", text)
        return s.with_history(self.now, "Stable", text)

    def valid_again(self, s: RolloutStatus) -> RolloutStatus:
        """The spec is valid again for the same revision: go on from where the last valid one left off."""
        text = "spec is valid again: continuing"
        s = s.with_condition(Cond.INVALID_SPEC, "False", "SpecValid", "spec is valid", self.now)
        self.emit("Normal", "SpecValid", text)
        return replace(s, message=text).with_history(self.now, "SpecValid", text)

    def promote(self, s: RolloutStatus, why: str) -> RolloutStatus:
        text = f"promoted {self.spec.candidate.version}: {why}; it is the stable now"
        s = replace(s, phase=Phase.PROMOTED, routing=Routing(100), pause_reason=None, message=text,
                    current_step=len(self.spec.steps), stable=self.spec.candidate,
                    post_promotion=postpromotion.begin(self.spec, self.spec.baseline, self.spec.candidate, self.now))
        self.emit("Normal", "Promoted", text)
        return s.with_history(self.now, "Promoted", text)

    def after_promotion(self, s: RolloutStatus, labels: postpromotion.LabelWindow | None) -> RolloutStatus:
        """While the promoted version is judged on delayed labels: fold `labels`, then regret or confirm."""
        st = postpromotion.judging(s)
        if st is None:
            return s
        new = postpromotion.advance(self.spec.post_promotion, st, labels, self.now)
        s = replace(s, post_promotion=new)
        if new.state == postpromotion.REGRETTED:
            rollback = self.spec.post_promotion is not None and self.spec.post_promotion.action == "rollback"
            if not rollback:
                text = f"{new.message} (action alert: {new.promoted.version} keeps serving)"
                self.emit("Warning", "PromotionRegretted", text)
                return replace(s, message=text).with_history(self.now, "Regretted", text)
            text = f"{new.message}; the previous stable {new.previous.version} serves again"
            self.severity = "error"
            s = replace(s, phase=Phase.ROLLED_BACK, routing=Routing(), stable=new.previous, pause_reason=None,
                        message=text)
            self.emit("Warning", "PromotionRegretted", text)
            return s.with_history(self.now, "Regretted", text)
        if new.state == postpromotion.CONFIRMED:
            self.emit("Normal", "PromotionConfirmed", new.message)
            return replace(s, message=new.message).with_history(self.now, "Confirmed", new.message)
        return s

    def rollback(self, s: RolloutStatus, why: str, severity: str, by_user: bool = False,
                 check: CheckState | None = None) -> RolloutStatus:
        text = f"rolled back at {self.step_label(s.current_step)}: {why}"
        self.severity = severity
        s = replace(s, phase=Phase.ROLLED_BACK, routing=Routing(), pause_reason=None, message=text)
        self.emit("Warning", "Aborted" if by_user else "RolledBack", text)
        return s.with_history(self.now, "RolledBack", text, _deciding(check))

    def pause(self, s: RolloutStatus, reason: str, why: str, check: CheckState | None = None) -> RolloutStatus:
        text = f"paused at {self.step_label(s.current_step)}: {why}"
        s = replace(s, phase=Phase.PAUSED, pause_reason=reason, message=text)
        self.emit("Warning" if reason != "user" else "Normal", "Paused", text)
        return s.with_history(self.now, "Paused", text, _deciding(check))

    def advance(self, s: RolloutStatus) -> RolloutStatus:
        """Time-based transition: the step's duration has passed and its analysis passed."""
        steps = self.spec.steps
        waiting_pause_step = s.phase is Phase.PAUSED and s.pause_reason == "step"
        if not (s.phase.is_active or waiting_pause_step):
            return s
        step = steps[s.current_step]
        if step.kind == "pause" and step.duration is None:
            return s  # waits for promote
        started = s.step_started_at if s.step_started_at is not None else self.now
        if self.now - started < (step.duration or 0.0):
            # a step ends early when every blocking check's sequential test has shown the candidate fine
            blocking = [c for c in self.spec.analysis.checks if c.action != "warn" and applies(c, s.routing)]
            early = sequential.ended_early(self.spec, s, blocking) if step.kind != "pause" else None
            if early is None:
                return s
            return self.enter_step(s, s.current_step + 1, f"{self.step_label(s.current_step)} ended early after "
                                                          f"{format_left(self.now - started)}: {early}")
        if self.blocking_not_passed(s):
            return s
        return self.enter_step(s, s.current_step + 1, f"{self.step_label(s.current_step)} passed")

    def blocking_not_passed(self, s: RolloutStatus) -> list[str]:
        """Blocking checks whose last window in this step was not a Pass (all of them before one); in the
        golden step, the golden checks (the live checks have no traffic of the candidate to judge)."""
        if self.in_golden_step(s):
            blocking = list(self.spec.golden_checks)
        else:
            blocking = [c for c in self.spec.analysis.checks if c.action != "warn" and applies(c, s.routing)]
        if not blocking:
            return []
        if s.step_windows == 0:
            return [c.name for c in blocking]
        out = []
        for c in blocking:
            st = s.check(c.name)
            if st is None or st.verdict is not Verdict.PASS:
                out.append(c.name)
        return out

    # --- analysis windows ------------------------------------------------------------------------

    def record(self, s: RolloutStatus, results: list[CheckResult]) -> RolloutStatus:
        by_name = {r.name: r for r in results}
        checks = []
        for c in self.spec.analysis.checks:
            old = s.check(c.name) or CheckState(c.name, c.metric, action=c.action)
            r = by_name.get(c.name) or CheckResult(
                c.name, c.metric, None, None, Verdict.INCONCLUSIVE, 0,
                reason=f"{c.name}: no result for this window", action=c.action, immediate=c.immediate)
            checks.append(replace(old, reason=r.reason) if r.skipped else _update_check(old, r, self.now))
        golden = {c.name for c in self.spec.golden_checks}
        checks += [st for st in s.checks if st.name in golden]     # the golden step's verdicts stay shown
        inputs = by_name.get(INPUT_CHECK) or CheckResult(
            INPUT_CHECK, INPUT_CHECK, None, None, Verdict.INCONCLUSIVE, 0, action="pause",
            reason=f"{INPUT_CHECK}: no result for this window")
        checks.extend(self.input_state(s, inputs))
        # a window whose inputs are broken judges nothing: it does not count towards the step
        judged = not (self.spec.expectations is not None and inputs.verdict is Verdict.FAIL)
        return replace(s, checks=tuple(checks), last_analysis_at=self.now, step_windows=s.step_windows + judged)

    # --- the golden step -------------------------------------------------------------------------

    def in_golden_step(self, s: RolloutStatus) -> bool:
        steps = self.spec.steps
        return 0 <= s.current_step < len(steps) and steps[s.current_step].kind == "golden"

    def golden(self, s: RolloutStatus, results: list[CheckResult]) -> RolloutStatus:
        """One run of the golden set: record each golden check's verdict; any Fail rolls back at once (the
        set is fixed, a second run would say the same), Inconclusive runs (no router, a router error) are
        retried every interval and pause after `inconclusiveLimit`; all Pass ends the step (`advance`)."""
        by_name = {r.name: r for r in results}
        updated = {}
        for c in self.spec.golden_checks:
            old = s.check(c.name) or CheckState(c.name, c.metric, action=c.action)
            r = by_name.get(c.name) or CheckResult(c.name, c.metric, None, None, Verdict.INCONCLUSIVE, 0,
                                                   reason=f"{c.name}: no result for this run", action=c.action)
            updated[c.name] = _update_check(old, r, self.now)
        checks = tuple(updated.pop(st.name, st) for st in s.checks) + tuple(updated.values())
        s = replace(s, checks=checks, last_analysis_at=self.now, step_windows=s.step_windows + 1)
        golden = [s.check(c.name) for c in self.spec.golden_checks]
        failed = [st for st in golden if st is not None and st.verdict is Verdict.FAIL]
        if failed:
            return self.rollback(s, "golden set failed: " + "; ".join(st.reason for st in failed), "critical",
                                 check=failed[0])
        limit = self.spec.analysis.inconclusive_limit
        stuck = [st for st in golden if st is not None and st.inconclusive >= limit]
        if stuck:
            why = "; ".join(f"{st.reason} ({st.inconclusive} inconclusive runs, limit {limit})" for st in stuck[:1])
            return self.pause(s, "inconclusive", why, check=stuck[0])
        return s

    def act_on_checks(self, s: RolloutStatus) -> RolloutStatus:
        """Apply the most severe action any check has earned; then the inconclusive pause."""
        triggered = []
        for c in self.spec.analysis.checks:
            st = s.check(c.name)
            if st is None or st.verdict is not Verdict.FAIL:
                continue
            limit = failure_limit(self.spec, c.name)
            if st.failures >= limit:
                triggered.append((c, st, limit))
        for c, st, limit in triggered:
            if c.action == "warn" and st.failures == limit:
                self.emit("Warning", "CheckWarning", f"{_for_windows(st)} (action warn)")
        worst = max((c.action for c, _, _ in triggered), key=_ACTION_RANK.get, default=None)
        if worst == "rollback":
            acting = [(c, st) for c, st, _ in triggered if c.action == "rollback"]
            # critical when a check that alerts as critical (NaN outputs, 5xx, immediate) acted, else error
            severity = "critical" if any(check_severity(c) == "critical" for c, _ in acting) else "error"
            return self.rollback(s, "; ".join(_for_windows(st) for _, st in acting), severity,
                                 check=acting[0][1])
        inputs = s.check(INPUT_CHECK) if self.spec.expectations is not None else None
        if inputs is not None and inputs.verdict is Verdict.FAIL and s.phase is not Phase.PAUSED:
            return self.pause(s, "inputs", inputs.reason.removeprefix(f"{INPUT_CHECK}: "), check=inputs)
        if worst == "pause" and s.phase is not Phase.PAUSED:
            pausing = [st for c, st, _ in triggered if c.action == "pause"]
            return self.pause(s, "check", "; ".join(_for_windows(st) for st in pausing), check=pausing[0])
        limit = self.spec.analysis.inconclusive_limit
        stuck = [s.check(c.name) for c in self.spec.analysis.checks if c.action != "warn"]
        stuck = [st for st in stuck if st is not None and st.inconclusive >= limit]
        if stuck and s.phase is not Phase.PAUSED:
            why = "; ".join(f"{st.reason} ({st.inconclusive} inconclusive windows, limit {limit})" for st in stuck)
            return self.pause(s, "inconclusive", why, check=stuck[0])
        return s

    # --- manual verbs ----------------------------------------------------------------------------

    def command(self, s: RolloutStatus, cmd: Command) -> RolloutStatus:
        verb = cmd.verb
        if verb == "retry":
            if s.phase not in (Phase.ROLLED_BACK, Phase.FAILED):
                return self.reject(s, cmd, f"retry applies after a rollback or abort; phase is {s.phase.value}")
            s = replace(s, revision=self.spec.revision)
            return self.start(replace(s, phase=Phase.PENDING), fresh_calibration=False)
        if s.phase.is_terminal:
            return self.reject(s, cmd, f"rollout is {s.phase.value}")
        if verb == "abort":
            return self.rollback(s, "aborted by user", "warning", by_user=True)
        if verb == "promote":
            if cmd.full:
                return self.promote(s, "promoted by user (--full)")
            why = f"promoted by user past {self.step_label(s.current_step)}"
            return self.enter_step(_fresh_streaks(s), s.current_step + 1, why)
        if verb == "pause":
            if s.phase is Phase.PAUSED:
                return self.reject(s, cmd, "already paused")
            return self.pause(s, "user", "paused by user")
        # resume
        if s.phase is not Phase.PAUSED:
            return self.reject(s, cmd, f"not paused (phase {s.phase.value})")
        if s.pause_reason == "step":
            return self.reject(s, cmd, f"{self.step_label(s.current_step)} waits for promote")
        step = self.spec.steps[s.current_step]
        s = _fresh_streaks(s)
        text = f"resumed at {self.step_label(s.current_step)} by user"
        s = replace(s, phase=_STEP_PHASE[step.kind], pause_reason="step" if step.kind == "pause" else None,
                    step_windows=0, message=text)
        self.emit("Normal", "Resumed", text)
        return s.with_history(self.now, "Resumed", text)

    def reject(self, s: RolloutStatus, cmd: Command, why: str) -> RolloutStatus:
        self.emit("Warning", "CommandRejected", f"{cmd.verb} ignored: {why}")
        return s

    # --- the human-readable line -----------------------------------------------------------------

    def describe(self, s: RolloutStatus) -> RolloutStatus:
        """Keep `message` saying what an active rollout waits for, in words that change only with a fact
        (a window's verdicts, a transition), never with the clock: the time left in the step is computed
        by whoever shows it from `stepStartedAt` and `stepDurationSeconds`."""
        if not s.phase.is_active:
            return s
        label = self.step_label(s.current_step)
        if self.in_golden_step(s) and s.phase is Phase.VERIFYING:
            last = [st.reason for st in s.checks if st.name in {c.name for c in self.spec.golden_checks}
                    and st.verdict is Verdict.INCONCLUSIVE]
            why = f" (last run: {last[0]})" if last and s.step_windows else ""
            return replace(s, message=f"{label}: waiting for both versions' answers to the golden set{why}")
        waiting = self.blocking_not_passed(s)
        if waiting:
            return replace(s, message=f"{label}: waiting for a passing window of {', '.join(waiting)}")
        return replace(s, message=f"{label}: running")


def _update_check(old: CheckState, r: CheckResult, now: float) -> CheckState:
    failures, inconclusive = old.failures, old.inconclusive
    if r.verdict is Verdict.FAIL:
        failures, inconclusive = failures + 1, 0
    elif r.verdict is Verdict.PASS:
        failures, inconclusive = 0, 0
    elif not r.calibrating:
        inconclusive += 1
    calibration = old.calibration
    if r.aa_value is not None:
        calibration = (calibration + (float(r.aa_value),))[-CALIBRATION_LIMIT:]
    recent = (old.recent + (WindowValue(now, r.value, r.verdict, r.threshold, r.samples),))[-RECENT_LIMIT:]
    return CheckState(r.name, r.metric, r.value, r.threshold, r.verdict, r.samples, failures, inconclusive,
                      r.reason, r.action, recent, calibration, r.evidence)


def _deciding(st: CheckState | None) -> DecidingCheck | None:
    """The check a transition was decided on, with the value and threshold of its last window."""
    return None if st is None else DecidingCheck(st.name, st.value, st.threshold)


def _fresh_streaks(s: RolloutStatus) -> RolloutStatus:
    return replace(s, checks=tuple(replace(c, failures=0, inconclusive=0, evidence=None) for c in s.checks))


def _for_windows(st: CheckState) -> str:
    n = st.failures
    return f"{st.reason} for {n} window{'s' if n != 1 else ''}"


def _step_duration(spec: RolloutSpec, s: RolloutStatus) -> float | None:
    """The running step's duration, a fact of the spec kept beside `step_started_at` in the status."""
    if s.phase.is_terminal or not 0 <= s.current_step < len(spec.steps):
        return None
    return spec.steps[s.current_step].duration


def _severity(s: RolloutStatus) -> str:
    """The default severity of entering `s.phase` (a rollback sets its own, from who or what acted)."""
    if s.phase is Phase.ROLLED_BACK:
        return "error"          # `rollback` sets its own (critical for NaN/5xx checks); README: rollback = error
    if s.phase is Phase.FAILED:
        return "error"
    if s.phase is Phase.PAUSED:
        return "warning" if s.pause_reason in ("check", "inconclusive", "inputs") else "info"
    return "info"


_ANALYZING_REASONS = {Verdict.PASS: "Passing", Verdict.FAIL: "Failing", Verdict.INCONCLUSIVE: "Inconclusive"}
_PAUSE_REASONS = {"step": "PauseStep", "user": "PausedByUser", "inconclusive": "InconclusiveAnalysis",
                  "check": "CheckFailed", "inputs": "InputsBroken"}


def _conditions(spec: RolloutSpec, s: RolloutStatus, now: float) -> RolloutStatus:
    ph = s.phase
    if ph.is_terminal:
        s = s.with_condition(Cond.PROGRESSING, "False", ph.value, s.message, now)
    else:
        s = s.with_condition(Cond.PROGRESSING, "True", ph.value, s.message, now)
    golden = 0 <= s.current_step < len(spec.steps) and spec.steps[s.current_step].kind == "golden"
    if (spec.analysis.checks or golden) and not ph.is_terminal:
        live = {c.name for c in (spec.golden_checks if golden else spec.analysis.checks) if applies(c, s.routing)}
        verdicts = [c.verdict for c in s.checks if c.verdict is not None and c.name in live]
        if len(verdicts) < len(live):
            s = s.with_condition(Cond.ANALYZING, "True", "WaitingForData", "no analysis window yet", now)
        else:
            worst = Verdict.worst(verdicts)
            bad = [c.reason for c in s.checks if c.verdict is worst and worst is not Verdict.PASS and c.name in live]
            msg = "; ".join(bad) if bad else "all checks passed their last window"
            s = s.with_condition(Cond.ANALYZING, "True", _ANALYZING_REASONS[worst], msg, now)
    else:
        s = s.with_condition(Cond.ANALYZING, "False", ph.value if ph.is_terminal else "NoChecks", "", now)
    if ph is Phase.PAUSED:
        s = s.with_condition(Cond.PAUSED, "True", _PAUSE_REASONS.get(s.pause_reason or "", "Paused"), s.message, now)
    else:
        s = s.with_condition(Cond.PAUSED, "False", "NotPaused", "", now)
    s = s.with_condition(Cond.COMPLETED, "True" if ph is Phase.PROMOTED else "False",
                         Phase.PROMOTED.value if ph is Phase.PROMOTED else "NotPromoted", "", now)
    degraded = ph in (Phase.ROLLED_BACK, Phase.FAILED)
    s = s.with_condition(Cond.DEGRADED, "True" if degraded else "False", ph.value if degraded else "Healthy",
                         s.message if degraded else "", now)
    if s.condition(Cond.INVALID_SPEC) is None:
        s = s.with_condition(Cond.INVALID_SPEC, "False", "SpecValid", "spec is valid", now)
    return s
