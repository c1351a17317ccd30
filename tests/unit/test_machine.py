"""The rollout state machine, transition by transition, including the peers' reported failures."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from policies.machine import (
    Command, Decision, Emit, Notify, decide, invalid_spec_status, step_routing,
)
from policies.spec import SpecError, parse_spec
from policies.status import RECENT_LIMIT, CheckResult, Phase, RolloutStatus, Routing, Verdict

T0 = 1_800_000_000.0


def make_spec(steps=None, checks=None, candidate="v2", **analysis):
    an = {"interval": "1m", "minSamples": 10, "failureLimit": 2, "inconclusiveLimit": 3}
    an.update(analysis)
    an["checks"] = checks if checks is not None else [
        {"name": "score-psi", "metric": "psi", "max": 0.2},
        {"name": "errors", "metric": "error-rate", "max": 0.01, "immediate": True},
        {"name": "lat", "metric": "latency-p99", "maxRatioToBaseline": 1.3, "action": "warn"},
        {"name": "ks", "metric": "ks", "minPValue": 0.01, "action": "pause"},
    ]
    raw = {
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": candidate, "url": "http://c:1"},
        "strategy": {"steps": steps if steps is not None else [
            {"shadow": {"duration": "10m"}},
            {"canary": {"weight": 10, "duration": "5m"}},
            {"pause": {}},
            {"canary": {"weight": 50, "duration": "5m"}},
        ]},
        "analysis": an,
    }
    return parse_spec(raw, "fraud", "ml", generation=1)


def res(name, verdict, value=0.05, threshold=0.2, action="rollback", calibrating=False, aa=None, reason=None):
    v = Verdict(verdict)
    op = ">" if v is Verdict.FAIL else "<="
    return CheckResult(name, "psi", value, threshold, v, 500, reason=reason or f"{name} {value} {op} {threshold}",
                       action=action, calibrating=calibrating, aa_value=aa)


def all_pass(spec):
    return [res(c.name, "Pass", action=c.action) for c in spec.analysis.checks]


def with_verdict(spec, name, verdict, **kw):
    kw.pop("action", None)
    return [res(c.name, verdict, action=c.action, **kw) if c.name == name
            else res(c.name, "Pass", action=c.action) for c in spec.analysis.checks]


def start(spec, now=T0):
    return decide(spec, None, None, now)


def run_windows(spec, status, now, n, results_fn, step=60.0):
    d = None
    for _ in range(n):
        now += step
        d = decide(spec, status, results_fn(spec), now)
        status = d.status
    return d, now


def kinds(actions, cls):
    return [a for a in actions if isinstance(a, cls)]


# --- start and steps ---------------------------------------------------------------------------

def test_first_decision_enters_the_shadow_step_mirroring_all_traffic():
    """A new rollout starts at step 0: a shadow step mirrors everything with candidate weight 0."""
    spec = make_spec()
    d = start(spec)
    s = d.status
    assert s.phase is Phase.SHADOWING and s.current_step == 0
    assert s.routing.shadow is True and s.routing.candidate_weight == 0
    assert s.revision == spec.revision
    assert s.routing == Routing(0, shadow=True)
    assert any(isinstance(a, Notify) and a.phase == "Shadowing" for a in d.actions)


def test_step_does_not_advance_before_its_duration_even_when_checks_pass():
    """A step advances only once its duration has passed."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 9, all_pass)
    assert d.status.current_step == 0 and d.status.phase is Phase.SHADOWING
    assert (d.status.step_started_at, d.status.step_duration) == (T0, 600.0)
    assert d.status.step_left(now) == 60.0


def test_status_holds_facts_not_clocks():
    """Between windows and transitions the status is the same whatever the time: no "14s left" text. The
    step's start and duration are stored, so whoever shows the status computes the time left."""
    spec = make_spec()
    s = start(spec).status
    assert s.to_status()["stepDurationSeconds"] == 600 and s.to_status()["stepStartedAt"]
    later = [decide(spec, s, None, T0 + t).status for t in (1, 14.5, 59)]
    assert all(x.to_status() == s.to_status() for x in later)
    assert [x.step_left(T0 + t) for x, t in zip(later, (1, 14.5, 59))] == [599, 585.5, 541]
    paused = decide(make_spec(steps=[{"pause": {}}]), None, None, T0).status
    assert paused.step_duration is None and paused.step_left(T0 + 5) is None


def test_step_advances_when_duration_passed_and_all_checks_passed():
    """Duration passed + every check passed its last window → next step with its routing."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10, all_pass)
    assert d.status.current_step == 1 and d.status.phase is Phase.PROGRESSING
    assert d.status.routing.candidate_weight == 10 and d.status.routing.shadow is False
    assert d.status.routing == Routing(10)


def test_missing_analysis_never_advances_a_step():
    """With checks defined, a step whose duration passed but that saw no analysis window does not advance."""
    spec = make_spec()
    s = start(spec).status
    d = decide(spec, s, None, T0 + 3600)
    assert d.status.current_step == 0
    assert "waiting for a passing window" in d.status.message


def test_inconclusive_last_window_blocks_advancing():
    """An Inconclusive last window (missing data) never lets a step advance."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10, all_pass)
    s = d.status  # now at step 1, canary 10% for 5m
    d, now = run_windows(spec, s, now, 4, all_pass)
    d, now = run_windows(spec, d.status, now, 1, lambda sp: with_verdict(sp, "score-psi", "Inconclusive"))
    assert d.status.current_step == 1
    d, now = run_windows(spec, d.status, now, 1, all_pass)
    assert d.status.current_step == 2


def test_a_missing_result_counts_as_inconclusive():
    """A check with no result in a window is Inconclusive, never a silent pass (flagger#1581)."""
    spec = make_spec()
    s = start(spec).status
    results = [r for r in all_pass(spec) if r.name != "score-psi"]
    d = decide(spec, s, results, T0 + 60)
    st = d.status.check("score-psi")
    assert st.verdict is Verdict.INCONCLUSIVE and "no result" in st.reason
    d = decide(spec, d.status, results, T0 + 700)
    assert d.status.current_step == 0


def test_warn_checks_do_not_block_advancing():
    """A warn-action check failing does not stop the step from advancing; it emits a Warning event."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10,
                         lambda sp: with_verdict(sp, "lat", "Fail", action="warn"))
    assert d.status.current_step == 1
    assert d.status.phase is Phase.PROGRESSING


def test_warn_check_emits_event_once_per_streak():
    """warn = Event only: one Warning event when the streak reaches the limit, not one per window."""
    spec = make_spec()
    s = start(spec).status
    events = []
    now = T0
    for _ in range(5):
        now += 60
        d = decide(spec, s, with_verdict(spec, "lat", "Fail", action="warn"), now)
        s = d.status
        events += [a for a in d.actions if isinstance(a, Emit) and a.reason == "CheckWarning"]
    assert len(events) == 1
    assert s.phase is Phase.SHADOWING


def test_pause_step_waits_for_promote():
    """A `pause: {}` step holds the previous weight and waits for promote however long it takes."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10, all_pass)
    d, now = run_windows(spec, d.status, now, 5, all_pass)
    s = d.status
    assert s.current_step == 2 and s.phase is Phase.PAUSED and s.pause_reason == "step"
    assert s.routing.candidate_weight == 10
    d, now = run_windows(spec, s, now, 30, all_pass)
    assert d.status.current_step == 2 and d.status.phase is Phase.PAUSED
    d = decide(spec, d.status, None, now + 1, Command("promote", id="p1"))
    assert d.status.current_step == 3 and d.status.phase is Phase.PROGRESSING
    assert d.status.routing.candidate_weight == 50


def test_pause_step_with_duration_advances_by_itself():
    """A pause step with a duration continues once the duration passed and checks passed."""
    spec = make_spec(steps=[{"canary": {"weight": 5, "duration": "1m"}}, {"pause": {"duration": "2m"}},
                            {"canary": {"weight": 20, "duration": "1m"}}])
    d, now = run_windows(spec, start(spec).status, T0, 1, all_pass)
    assert d.status.current_step == 1 and d.status.phase is Phase.PAUSED
    d, now = run_windows(spec, d.status, now, 2, all_pass)
    assert d.status.current_step == 2 and d.status.routing.candidate_weight == 20


def test_last_step_done_promotes_to_full_traffic():
    """After the last step passes, the candidate serves 100% and the phase is the terminal Promoted."""
    spec = make_spec(steps=[{"canary": {"weight": 10, "duration": "2m"}}])
    d, now = run_windows(spec, start(spec).status, T0, 2, all_pass)
    s = d.status
    assert s.phase is Phase.PROMOTED and s.phase.is_terminal
    assert s.routing.candidate_weight == 100 and not s.routing.shadow
    assert s.routing == Routing(100)
    assert s.condition("Completed").status == "True"
    n = [a for a in d.actions if isinstance(a, Notify)]
    assert n and n[0].phase == "Promoted" and n[0].severity == "info"


def test_interleave_step_sets_interleave_routing():
    """An interleave step routes with interleave on and phase Interleaving."""
    raw_steps = [{"interleave": {"duration": "1m"}}]
    spec = parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                       "candidate": {"version": "v2", "url": "http://c:1"},
                       "output": {"kind": "ranking"}, "strategy": {"steps": raw_steps}}, "r", "ml")
    s = start(spec).status
    assert s.phase is Phase.INTERLEAVING and s.routing.interleave and s.routing.candidate_weight == 0


def test_no_checks_advances_on_time_alone():
    """A rollout without checks advances by time only."""
    spec = make_spec(checks=[])
    s = start(spec).status
    d = decide(spec, s, None, T0 + 600)
    assert d.status.current_step == 1
    assert d.status.step_windows == 0 and d.status.last_analysis_at is None


def test_step_routing_of_a_leading_pause_is_all_baseline():
    """A pause step with no earlier traffic step keeps everything on the baseline."""
    spec = make_spec(steps=[{"pause": {}}, {"canary": {"weight": 5}}])
    assert step_routing(spec.steps, 0).candidate_weight == 0
    assert start(spec).status.phase is Phase.PAUSED


# --- failures and rollback ---------------------------------------------------------------------

def test_rollback_after_failure_limit_consecutive_fails_with_reason():
    """failureLimit consecutive Fail windows → RolledBack, weight 0, shadow off, reason with value,
    threshold and windows in message, history, a Warning event and an error notification (a drift check)."""
    spec = make_spec()
    s = start(spec).status
    d = decide(spec, s, with_verdict(spec, "score-psi", "Fail", value=0.31), T0 + 60)
    assert d.status.phase is Phase.SHADOWING and d.status.check("score-psi").failures == 1
    d = decide(spec, d.status, with_verdict(spec, "score-psi", "Fail", value=0.31), T0 + 120)
    s = d.status
    assert s.phase is Phase.ROLLED_BACK
    assert s.routing.candidate_weight == 0 and not s.routing.shadow and not s.routing.interleave
    assert "score-psi 0.31 > 0.2 for 2 windows" in s.message
    assert "score-psi 0.31 > 0.2 for 2 windows" in s.history[-1].reason
    assert any(isinstance(a, Emit) and a.type == "Warning" and "0.31 > 0.2" in a.message for a in d.actions)
    assert any(isinstance(a, Notify) and a.phase == "RolledBack" and a.severity == "error" for a in d.actions)
    assert s.condition("Degraded").status == "True"
    assert s.drift == "score-psi 0.31/0.2" and s.to_status()["drift"] == "score-psi 0.31/0.2"


def test_notification_severity_says_who_or_what_rolled_back():
    """A NaN/5xx (immediate) check's rollback is critical, a drift check's error, a user's abort a warning;
    the severity comes from the acting check and verb, never from the message text."""
    spec = make_spec()
    d = decide(spec, start(spec).status, with_verdict(spec, "errors", "Fail", value=0.2, threshold=0.01), T0 + 60)
    assert d.status.phase is Phase.ROLLED_BACK
    assert [a.severity for a in kinds(d.actions, Notify)] == ["critical"]
    d = decide(spec, start(spec).status, None, T0 + 1, Command("abort", id="a"))
    assert [a.severity for a in kinds(d.actions, Notify)] == ["warning"]
    d = decide(spec, start(spec).status, None, T0 + 1, Command("abort", id="a"))
    assert [(a.phase, a.severity) for a in kinds(d.actions, Notify)] == [("RolledBack", "warning")]


def test_a_pass_breaks_the_failure_streak():
    """Fail, Pass, Fail is not two consecutive failures."""
    spec = make_spec()
    s = start(spec).status
    for i, v in enumerate(["Fail", "Pass", "Fail"]):
        s = decide(spec, s, with_verdict(spec, "score-psi", v), T0 + 60 * (i + 1)).status
    assert s.phase is Phase.SHADOWING and s.check("score-psi").failures == 1


def test_inconclusive_between_fails_does_not_reset_the_streak():
    """A window without data is no evidence of recovery: Fail, Inconclusive, Fail rolls back at limit 2."""
    spec = make_spec()
    s = start(spec).status
    for i, v in enumerate(["Fail", "Inconclusive", "Fail"]):
        s = decide(spec, s, with_verdict(spec, "score-psi", v), T0 + 60 * (i + 1)).status
    assert s.phase is Phase.ROLLED_BACK


def test_immediate_check_acts_on_first_fail():
    """immediate: true rolls back on the first failing window."""
    spec = make_spec()
    s = start(spec).status
    d = decide(spec, s, with_verdict(spec, "errors", "Fail", value=0.2, threshold=0.01), T0 + 60)
    assert d.status.phase is Phase.ROLLED_BACK
    assert "errors 0.2 > 0.01 for 1 window" in d.status.message


def test_per_check_failure_limit_overrides_the_default():
    """A check's own failureLimit replaces analysis.failureLimit."""
    checks = [{"name": "score-psi", "metric": "psi", "max": 0.2, "failureLimit": 3}]
    spec = make_spec(checks=checks)
    s = start(spec).status
    for i in range(2):
        s = decide(spec, s, [res("score-psi", "Fail")], T0 + 60 * (i + 1)).status
    assert s.phase is Phase.SHADOWING
    s = decide(spec, s, [res("score-psi", "Fail")], T0 + 180).status
    assert s.phase is Phase.ROLLED_BACK


def test_pause_action_pauses_and_holds_weight():
    """A failing pause-action check pauses the rollout without changing the weight."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10, all_pass)
    s = d.status
    assert s.routing.candidate_weight == 10
    d, now = run_windows(spec, s, now, 2, lambda sp: with_verdict(sp, "ks", "Fail", action="pause"))
    s = d.status
    assert s.phase is Phase.PAUSED and s.pause_reason == "check"
    assert s.routing.candidate_weight == 10
    assert s.condition("Paused").reason == "CheckFailed"
    assert s.routing == Routing(10)


def test_failed_analysis_while_paused_still_rolls_back():
    """A rollback-worthy Fail during any pause rolls back: a failed analysis can never complete (argo#1411)."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10, all_pass)
    d, now = run_windows(spec, d.status, now, 5, all_pass)
    assert d.status.phase is Phase.PAUSED and d.status.pause_reason == "step"
    d, now = run_windows(spec, d.status, now, 2, lambda sp: with_verdict(sp, "score-psi", "Fail"))
    assert d.status.phase is Phase.ROLLED_BACK and d.status.routing.candidate_weight == 0


def test_failing_last_step_never_promotes():
    """On the last step, a failing check at the end of the duration blocks promotion and then rolls back."""
    spec = make_spec(steps=[{"canary": {"weight": 50, "duration": "2m"}}])
    s = start(spec).status
    s = decide(spec, s, all_pass(spec), T0 + 60).status
    d = decide(spec, s, with_verdict(spec, "score-psi", "Fail"), T0 + 120)
    assert d.status.phase is Phase.PROGRESSING
    d = decide(spec, d.status, None, T0 + 10_000)
    assert d.status.phase is Phase.PROGRESSING
    d = decide(spec, d.status, with_verdict(spec, "score-psi", "Fail"), T0 + 10_060)
    assert d.status.phase is Phase.ROLLED_BACK


def test_rollback_beats_pause_when_both_trigger():
    """When a rollback check and a pause check both reach their limits in one window, rollback wins."""
    spec = make_spec()
    s = start(spec).status
    both = lambda sp: [res(c.name, "Fail" if c.name in ("ks", "score-psi") else "Pass", action=c.action)
                       for c in sp.analysis.checks]
    d, _ = run_windows(spec, s, T0, 2, both)
    assert d.status.phase is Phase.ROLLED_BACK


def test_rolled_back_is_absorbing():
    """After rollback, more windows, time and commands other than retry change nothing."""
    spec = make_spec()
    s = decide(spec, start(spec).status, with_verdict(spec, "errors", "Fail"), T0 + 60).status
    d = decide(spec, s, all_pass(spec), T0 + 100_000)
    assert d.status.phase is Phase.ROLLED_BACK and d.status.routing.candidate_weight == 0
    for verb in ("promote", "resume", "pause", "abort"):
        d = decide(spec, s, None, T0 + 200_000, Command(verb, id=verb))
        assert d.status.phase is Phase.ROLLED_BACK
        assert any(isinstance(a, Emit) and a.reason == "CommandRejected" for a in d.actions)


# --- inconclusive ------------------------------------------------------------------------------

def test_inconclusive_limit_pauses_and_never_promotes():
    """inconclusiveLimit consecutive Inconclusive windows pause the rollout (missing data never passes)."""
    spec = make_spec(steps=[{"canary": {"weight": 10, "duration": "1m"}}])
    s = start(spec).status
    d, now = run_windows(spec, s, T0, 3, lambda sp: with_verdict(sp, "score-psi", "Inconclusive",
                                                                reason="score-psi: 12 < minSamples 200"))
    s = d.status
    assert s.phase is Phase.PAUSED and s.pause_reason == "inconclusive"
    assert "12 < minSamples 200" in s.message
    assert s.condition("Paused").reason == "InconclusiveAnalysis"


def test_resume_after_inconclusive_pause_does_not_repause_immediately():
    """After resume, the rollout needs inconclusiveLimit fresh Inconclusive windows to pause again (argo#261)."""
    spec = make_spec()
    incon = lambda sp: with_verdict(sp, "score-psi", "Inconclusive")
    d, now = run_windows(spec, start(spec).status, T0, 3, incon)
    assert d.status.phase is Phase.PAUSED
    d = decide(spec, d.status, None, now + 1, Command("resume", id="r1"))
    assert d.status.phase is Phase.SHADOWING
    d, now = run_windows(spec, d.status, now, 2, incon)
    assert d.status.phase is Phase.SHADOWING
    d, now = run_windows(spec, d.status, now, 1, incon)
    assert d.status.phase is Phase.PAUSED


def test_inconclusive_pause_is_resumable_and_then_advances_with_data():
    """A resumed rollout that gets passing windows advances normally."""
    spec = make_spec()
    incon = lambda sp: with_verdict(sp, "score-psi", "Inconclusive")
    d, now = run_windows(spec, start(spec).status, T0, 3, incon)
    d = decide(spec, d.status, None, now + 1, Command("resume", id="r1"))
    d, now = run_windows(spec, d.status, now, 8, all_pass)
    assert d.status.current_step == 1 and d.status.phase is Phase.PROGRESSING


def test_calibrating_windows_block_advance_but_do_not_pause():
    """Calibration is expected Inconclusive: it does not count towards inconclusiveLimit, but blocks advancing."""
    checks = [{"name": "cal", "metric": "psi", "dynamic": {"sigmas": 3, "minWindows": 30}}]
    spec = make_spec(checks=checks)
    cal = lambda sp: [res("cal", "Inconclusive", calibrating=True, aa=0.01, reason="cal: calibrating")]
    d, now = run_windows(spec, start(spec).status, T0, 15, cal)
    s = d.status
    assert s.phase is Phase.SHADOWING and s.current_step == 0
    assert len(s.check("cal").calibration) == 15


def test_calibration_values_are_bounded():
    """At most 50 A/A values are kept per check."""
    checks = [{"name": "cal", "metric": "psi", "dynamic": {"sigmas": 3}}]
    spec = make_spec(checks=checks, steps=[{"shadow": {"duration": "2h"}}])
    cal = lambda sp: [res("cal", "Pass", aa=0.01)]
    d, _ = run_windows(spec, start(spec).status, T0, 70, cal)
    assert len(d.status.check("cal").calibration) == 50
    assert len(d.status.check("cal").recent) == RECENT_LIMIT == 60


# --- history to draw from ---------------------------------------------------------------------------

def test_each_window_keeps_value_threshold_verdict_and_samples_of_every_check():
    """checks[].recent holds what a chart of value against threshold needs, window by window."""
    spec = make_spec()
    s = start(spec).status
    d = decide(spec, s, with_verdict(spec, "score-psi", "Fail", value=0.31), T0 + 60)
    d = decide(spec, d.status, with_verdict(spec, "score-psi", "Pass", value=0.12, threshold=0.25), T0 + 120)
    w = d.status.check("score-psi").recent
    assert [(x.time, x.value, x.threshold, x.verdict, x.samples) for x in w] == [
        (T0 + 60, 0.31, 0.2, Verdict.FAIL, 500), (T0 + 120, 0.12, 0.25, Verdict.PASS, 500)]
    raw = json.loads(json.dumps(d.status.to_status()))
    assert raw["checks"][0]["recent"][0] == {"time": "2027-01-15T08:01:00Z", "value": 0.31, "threshold": 0.2,
                                              "verdict": "Fail", "samples": 500}
    assert RolloutStatus.from_status(raw) == d.status


def test_history_records_phase_routing_and_the_deciding_check():
    """Every transition carries the phase and routing it left, so weights over time can be drawn from
    history alone; a rollback by a check names the check with its value and threshold."""
    spec = make_spec()
    s = start(spec).status
    assert [(h.action, h.phase, h.routing) for h in s.history] == [
        ("Started", Phase.PENDING, Routing()), ("StepStarted", Phase.SHADOWING, Routing(0, shadow=True))]
    d, now = run_windows(spec, s, T0, 10, all_pass)                      # 10 min: shadow step done
    assert (d.status.history[-1].action, d.status.history[-1].routing) == ("StepStarted", Routing(10))
    assert d.status.history[-1].phase is Phase.PROGRESSING and d.status.history[-1].check is None
    d = decide(spec, d.status, with_verdict(spec, "score-psi", "Fail", value=0.31), now + 60)
    d = decide(spec, d.status, with_verdict(spec, "score-psi", "Fail", value=0.33), now + 120)
    last = d.status.history[-1]
    assert (last.action, last.phase, last.routing) == ("RolledBack", Phase.ROLLED_BACK, Routing())
    assert (last.check.name, last.check.value, last.check.threshold) == ("score-psi", 0.33, 0.2)
    raw = json.loads(json.dumps(d.status.to_status()))
    assert raw["history"][-1]["check"] == {"name": "score-psi", "value": 0.33, "threshold": 0.2}
    assert raw["history"][-1]["routing"] == {"candidateWeight": 0, "shadow": False, "interleave": False}
    assert RolloutStatus.from_status(raw).history == d.status.history


def test_a_pause_by_a_check_names_it_and_a_pause_by_a_user_does_not():
    spec = make_spec()
    s = start(spec).status
    d = decide(spec, s, with_verdict(spec, "ks", "Fail", value=0.001, threshold=0.01), T0 + 60)
    d = decide(spec, d.status, with_verdict(spec, "ks", "Fail", value=0.002, threshold=0.01), T0 + 120)
    assert d.status.phase is Phase.PAUSED and d.status.history[-1].check.name == "ks"
    assert d.status.history[-1].routing == Routing(0, shadow=True)
    d = decide(spec, start(spec).status, None, T0 + 1, Command("pause", id="p"))
    assert d.status.history[-1].action == "Paused" and d.status.history[-1].check is None


def test_history_and_windows_written_before_their_new_fields_still_read():
    """A status an older controller wrote (history without phase or routing, windows without threshold)
    reads with those fields unset, never a crash; malformed values fall back the same way."""
    raw = {"phase": "RolledBack", "checks": [{"name": "a", "recent": [{"time": "2027-01-15T08:01:00Z",
                                                                       "value": 0.3, "verdict": "Fail"},
                                                                      {"time": 5, "samples": "x", "threshold": "y"}]}],
           "history": [{"time": "2027-01-15T08:00:00Z", "step": 1, "action": "RolledBack", "reason": "r"},
                       {"time": 7, "phase": "Nope", "routing": 3, "check": {"value": 1}}]}
    s = RolloutStatus.from_status(raw)
    w = s.check("a").recent
    assert (w[0].threshold, w[0].samples, w[1].threshold, w[1].samples) == (None, None, None, None)
    assert [(h.phase, h.routing, h.check) for h in s.history] == [(None, None, None)] * 2
    assert "routing" not in s.history[0].to_status() and "samples" not in w[0].to_status()


# --- manual verbs ------------------------------------------------------------------------------

def test_promote_moves_one_step():
    """promote advances exactly one step, bypassing the step's duration."""
    spec = make_spec()
    d = decide(spec, start(spec).status, None, T0 + 5, Command("promote", id="a"))
    assert d.status.current_step == 1 and d.status.routing.candidate_weight == 10


def test_promote_full_promotes_now():
    """promote --full makes the candidate serve 100% immediately."""
    spec = make_spec()
    d = decide(spec, start(spec).status, None, T0 + 5, Command("promote", full=True, id="a"))
    assert d.status.phase is Phase.PROMOTED and d.status.routing.candidate_weight == 100


def test_abort_rolls_back_from_any_active_phase():
    """abort rolls back from shadow, canary and a pause step alike (argo#4128: never stuck after abort)."""
    spec = make_spec()
    s0 = start(spec).status
    d, now = run_windows(spec, s0, T0, 10, all_pass)
    s1 = d.status
    d, now = run_windows(spec, s1, now, 5, all_pass)
    s2 = d.status
    assert (s0.phase, s1.phase, s2.phase) == (Phase.SHADOWING, Phase.PROGRESSING, Phase.PAUSED)
    for s in (s0, s1, s2):
        d = decide(spec, s, None, now + 1, Command("abort", id="x"))
        assert d.status.phase is Phase.ROLLED_BACK
        assert d.status.routing == type(d.status.routing)()
        assert "aborted by user" in d.status.message
        assert any(isinstance(a, Notify) and a.severity == "warning" for a in d.actions)


def test_pause_and_resume_by_user():
    """pause holds the rollout (weight unchanged); resume returns to the step's phase."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10, all_pass)
    d = decide(spec, d.status, None, now + 1, Command("pause", id="p"))
    assert d.status.phase is Phase.PAUSED and d.status.pause_reason == "user"
    assert d.status.routing.candidate_weight == 10
    d2, _ = run_windows(spec, d.status, now, 20, all_pass)
    assert d2.status.phase is Phase.PAUSED and d2.status.current_step == 1
    d = decide(spec, d2.status, None, now + 2000, Command("resume", id="q"))
    assert d.status.phase is Phase.PROGRESSING and d.status.current_step == 1


def test_resume_on_pause_step_is_rejected_with_hint():
    """A pause step continues on promote; resume there is refused with an event saying so."""
    spec = make_spec(steps=[{"pause": {}}, {"canary": {"weight": 5}}])
    d = decide(spec, start(spec).status, None, T0 + 1, Command("resume", id="r"))
    assert d.status.phase is Phase.PAUSED
    msg = [a.message for a in d.actions if isinstance(a, Emit) and a.reason == "CommandRejected"]
    assert msg and "waits for promote" in msg[0]


def test_retry_after_rollback_restarts_from_step_zero_with_fresh_counters():
    """retry after a rollback returns to step 0 with zeroed streaks, keeping the baseline calibration."""
    spec = make_spec()
    s = start(spec).status
    s = decide(spec, s, [res(c.name, "Fail" if c.name == "errors" else "Pass", aa=0.02)
                         for c in spec.analysis.checks], T0 + 60).status
    assert s.phase is Phase.ROLLED_BACK
    d = decide(spec, s, None, T0 + 120, Command("retry", id="t"))
    s = d.status
    assert s.phase is Phase.SHADOWING and s.current_step == 0 and s.routing.shadow
    assert all(c.failures == 0 and c.inconclusive == 0 and c.verdict is None for c in s.checks)
    assert s.check("score-psi").calibration == (0.02,)


def test_retry_during_an_active_rollout_is_rejected():
    """retry only applies after a rollback or failure."""
    spec = make_spec()
    d = decide(spec, start(spec).status, None, T0 + 1, Command("retry", id="t"))
    assert d.status.phase is Phase.SHADOWING
    assert any(isinstance(a, Emit) and a.reason == "CommandRejected" for a in d.actions)


def test_a_command_is_applied_once_by_id():
    """The same command id seen again (controller restart) is not applied twice."""
    spec = make_spec()
    s = decide(spec, start(spec).status, None, T0 + 1, Command("promote", id="same")).status
    assert s.current_step == 1 and s.last_command_id == "same"
    s = decide(spec, s, None, T0 + 2, Command("promote", id="same")).status
    assert s.current_step == 1


def test_command_annotation_parsing_names_the_bad_field():
    """The command annotation is parsed strictly, with errors naming the field."""
    c = Command.from_annotation(json.dumps({"verb": "promote", "full": True, "id": "u1"}))
    assert c == Command("promote", True, "u1")
    with pytest.raises(ValueError, match="verb: expected one of promote"):
        Command.from_annotation('{"verb": "destroy"}')
    with pytest.raises(ValueError, match="full: expected true or false"):
        Command.from_annotation('{"verb": "promote", "full": "yes"}')
    with pytest.raises(ValueError, match="expected a JSON object"):
        Command.from_annotation("promote")


def test_command_without_id_gets_one_from_its_text_and_applies_once():
    """An annotation without an id is decoded with an id derived from its text; decide applies it once."""
    text = '{"verb": "pause"}'
    c = Command.from_annotation(text)
    assert c.id.startswith("sha256:") and c == Command.from_annotation(text)
    spec = make_spec()
    s = decide(spec, start(spec).status, None, T0 + 1, c).status
    assert s.phase is Phase.PAUSED and s.last_command_id == c.id
    again = decide(spec, s, None, T0 + 2, c)
    assert again.status.phase is Phase.PAUSED and not kinds(again.actions, Emit)   # not even "already paused"


# --- revisions, restarts, invalid specs -------------------------------------------------------

def test_new_candidate_revision_restarts_from_step_zero_with_fresh_state():
    """A new candidate mid-rollout restarts at step 0 with fresh counters and calibration (flagger#30)."""
    spec = make_spec()
    d, now = run_windows(spec, start(spec).status, T0, 10,
                         lambda sp: [res(c.name, "Pass", aa=0.01) for c in sp.analysis.checks])
    s = decide(spec, d.status, with_verdict(spec, "score-psi", "Fail"), now + 60).status
    assert s.current_step == 1 and s.check("score-psi").failures == 1
    spec2 = make_spec(candidate="v3")
    d = decide(spec2, s, None, now + 61)
    s = d.status
    assert s.revision == spec2.revision and s.current_step == 0 and s.phase is Phase.SHADOWING
    assert all(c.failures == 0 and not c.calibration and c.verdict is None for c in s.checks)
    assert any(isinstance(a, Emit) and a.reason == "RevisionChanged" for a in d.actions)


def test_new_revision_after_terminal_phase_starts_a_new_rollout():
    """Promoted or RolledBack is left only by a new revision (or retry)."""
    spec = make_spec()
    s = decide(spec, start(spec).status, None, T0 + 1, Command("promote", full=True, id="f")).status
    assert s.phase is Phase.PROMOTED
    s = decide(make_spec(candidate="v3"), s, None, T0 + 2).status
    assert s.phase is Phase.SHADOWING and s.current_step == 0


def test_status_round_trip_resumes_identically():
    """A controller killed between reconciles resumes from the JSON status alone."""
    spec = make_spec()
    s = start(spec).status
    d1, now = run_windows(spec, s, T0, 12, lambda sp: with_verdict(sp, "score-psi", "Pass", aa=0.03))
    raw = json.loads(json.dumps(d1.status.to_status()))
    assert RolloutStatus.from_status(raw) == d1.status
    nxt = with_verdict(spec, "score-psi", "Fail")
    a = decide(spec, d1.status, nxt, now + 60)
    b = decide(spec, raw, nxt, now + 60)
    assert a.status.to_status() == b.status.to_status() and a.actions == b.actions


def test_garbage_status_is_tolerated():
    """A hand-edited status with wrong types starts a fresh rollout instead of crashing."""
    spec = make_spec()
    junk = {"phase": "Exploding", "currentStep": "two", "checks": [1, {"name": 3}], "routing": [],
            "history": "x", "stepStartedAt": "yesterday"}
    d = decide(spec, junk, all_pass(spec), T0)
    assert d.status.phase is Phase.SHADOWING and d.status.current_step == 0


def test_history_is_bounded():
    """History keeps the last 50 entries."""
    spec = make_spec(checks=[], steps=[{"canary": {"weight": 1, "duration": "1h"}}])
    s = start(spec).status
    for i in range(40):
        s = decide(spec, s, None, T0 + i, Command("pause", id=f"p{i}")).status
        s = decide(spec, s, None, T0 + i, Command("resume", id=f"r{i}")).status
    assert len(s.history) == 50


def test_invalid_spec_status_of_a_new_rollout_is_failed_with_condition():
    """A spec that was never valid gives phase Failed, routing to baseline, and an InvalidSpec condition
    naming the field."""
    err = SpecError("spec.analysis.checks[2].max", "expected a number, got 'high'")
    out = invalid_spec_status(None, err, T0 + 5).to_status()
    assert out["phase"] == "Failed" and out["routing"]["candidateWeight"] == 0 and out["drift"] is None
    cond = {c["type"]: c for c in out["conditions"]}["InvalidSpec"]
    assert cond["status"] == "True" and "checks[2].max" in cond["message"]
    assert json.loads(json.dumps(out)) == out


def test_invalid_edit_of_a_running_rollout_keeps_phase_step_and_routing():
    """Fail-static: a bad edit mid-canary changes nobody's version: phase, step and routing stay, the
    InvalidSpec condition names the field and the rollout is Degraded."""
    spec = make_spec(steps=[{"canary": {"weight": 30, "duration": "1h"}}, {"canary": {"weight": 60}}])
    s = start(spec).status
    assert s.phase is Phase.PROGRESSING and s.routing.candidate_weight == 30
    out = invalid_spec_status(s, SpecError("spec.analysis.checks[2].max", "expected a number"), T0 + 5)
    assert (out.phase, out.current_step, out.routing, out.revision) == (s.phase, 0, s.routing, s.revision)
    assert out.condition("InvalidSpec").status == "True" and "checks[2].max" in out.condition("InvalidSpec").message
    assert out.condition("Degraded").status == "True" and "keeping the last valid routing" in out.message
    again = invalid_spec_status(out, SpecError("spec.analysis.checks[2].max", "expected a number"), T0 + 9)
    assert len(again.history) == len(out.history)       # one history entry per distinct error


def test_a_fixed_spec_continues_a_running_rollout_where_it_was():
    """The same revision valid again: the rollout goes on at its step (no restart), condition cleared."""
    spec = make_spec()
    s = run_windows(spec, start(spec).status, T0, 11, all_pass)[0].status
    assert s.current_step == 1
    out = invalid_spec_status(s, SpecError("spec.x", "bad"), T0 + 700)
    d = decide(spec, out, None, T0 + 710)
    assert d.status.current_step == 1 and d.status.phase is Phase.PROGRESSING
    assert d.status.condition("InvalidSpec").status == "False"
    assert d.status.condition("Degraded").status == "False"
    assert [a.reason for a in kinds(d.actions, Emit)] == ["SpecValid"]


def test_a_fixed_spec_restarts_a_rollout_that_never_ran():
    """A rollout Failed on its first (invalid) spec starts from step 0 once the spec is valid."""
    spec = make_spec()
    out = invalid_spec_status(None, SpecError("spec.x", "bad"), T0 + 5)
    d = decide(spec, out, None, T0 + 10)
    assert d.status.phase is Phase.SHADOWING
    assert d.status.condition("InvalidSpec").status == "False"


# --- the stable version and the steady state ---------------------------------------------------------

def _no_candidate(**kw):
    spec = make_spec(**kw)
    return replace(spec, candidate=None)


def test_promotion_makes_the_candidate_the_stable():
    """Promoted writes status.stable = the candidate (version and url); routing 100% to it."""
    spec = make_spec()
    s = decide(spec, start(spec).status, None, T0 + 1, Command("promote", full=True, id="f")).status
    assert s.phase is Phase.PROMOTED and s.stable == spec.candidate and s.routing.candidate_weight == 100
    assert s.to_status()["stable"] == {"version": "v2", "url": "http://c:1"}
    assert RolloutStatus.from_status(json.loads(json.dumps(s.to_status()))).stable == spec.candidate
    # the promoted spec is a steady state of its own: it stays Promoted
    assert decide(spec, s, None, T0 + 100).status.phase is Phase.PROMOTED


def test_next_candidate_is_compared_with_the_stable_whatever_spec_baseline_says():
    """After v2 was promoted, candidate v3 starts a new rollout from step 0 against v2, although
    spec.baseline still says v1; status says so."""
    spec = make_spec()
    s = decide(spec, start(spec).status, None, T0 + 1, Command("promote", full=True, id="f")).status
    spec3 = replace(make_spec(candidate="v3"), candidate=replace(spec.candidate, version="v3", url="http://c3:1"))
    d = decide(spec3, s, None, T0 + 2)
    assert d.status.phase is Phase.SHADOWING and d.status.current_step == 0 and d.status.stable == spec.candidate
    assert d.status.revision == "v3@http://c3:1"
    assert "compared with the stable v2 (spec.baseline says v1)" in d.status.history[-2].reason
    assert [a.reason for a in kinds(d.actions, Emit)][:1] == ["Started"]
    # rolled back: 100% to the stable again; promoted: v3 becomes the stable
    rb = decide(spec3, d.status, None, T0 + 3, Command("abort", id="a")).status
    assert rb.phase is Phase.ROLLED_BACK and rb.routing.candidate_weight == 0 and rb.stable == spec.candidate
    pr = decide(spec3, d.status, None, T0 + 3, Command("promote", full=True, id="p3")).status
    assert pr.stable == spec3.candidate


def test_no_candidate_is_a_steady_state():
    """A spec without a candidate: phase Stable, 100% to the stable (or the baseline before any
    promotion), no checks, no analysis, every command rejected; the next candidate starts at step 0."""
    spec = _no_candidate()
    d = decide(spec, None, None, T0)
    s = d.status
    assert s.phase is Phase.STABLE and s.routing == Routing() and s.checks == () and s.revision == "v1@http://b:1"
    assert [a.reason for a in kinds(d.actions, Emit)] == ["Stable"]
    assert s.condition("Progressing").status == "False" and s.condition("Degraded").status == "False"
    assert s.condition("Analyzing").status == "False"
    # analysis results are ignored, time passes, nothing moves
    d2 = decide(spec, s, all_pass(make_spec()), T0 + 3600)
    assert d2.status.phase is Phase.STABLE and d2.status.history == s.history and not d2.actions
    d3 = decide(spec, s, None, T0 + 5, Command("promote", id="x"))
    assert d3.status.phase is Phase.STABLE and kinds(d3.actions, Emit)[0].reason == "CommandRejected"
    d4 = decide(make_spec(), s, None, T0 + 10)
    assert d4.status.phase is Phase.SHADOWING and d4.status.current_step == 0


def test_candidate_equal_to_the_stable_is_a_steady_state():
    """After a rollback of v3, setting the candidate back to the stable v2 is steady: 100% to v2."""
    spec = make_spec()
    s = decide(spec, start(spec).status, None, T0 + 1, Command("promote", full=True, id="f")).status
    spec3 = replace(spec, candidate=replace(spec.candidate, version="v3"))
    s = decide(spec3, s, None, T0 + 2, Command("abort", id="a")).status
    assert s.phase is Phase.ROLLED_BACK
    d = decide(spec, s, None, T0 + 3)
    assert d.status.phase is Phase.STABLE and d.status.routing == Routing() and d.status.stable == spec.candidate
    assert d.status.revision == spec.revision
    # no candidate at all, after the promotion: the stable v2 serves, not spec.baseline v1
    d = decide(replace(spec, candidate=None), s, None, T0 + 4)
    assert d.status.phase is Phase.STABLE and d.status.revision == "v2@http://c:1"
    assert "v2 serves all traffic" in d.status.message


def test_spec_baseline_moved_onto_the_running_candidate_ends_the_rollout_steady():
    """A rollout whose baseline is edited to be the candidate has nothing left to compare: Stable."""
    spec = make_spec()
    s = start(spec).status
    d = decide(replace(spec, baseline=spec.candidate), s, None, T0 + 5)
    assert d.status.phase is Phase.STABLE and d.status.routing == Routing()


def test_conditions_transition_time_moves_only_on_flip():
    """lastTransitionTime of a condition changes only when its status flips."""
    spec = make_spec()
    s = start(spec).status
    t = s.condition("Progressing").last_transition_time
    s = decide(spec, s, all_pass(spec), T0 + 60).status
    assert s.condition("Progressing").last_transition_time == t
    s = decide(spec, s, None, T0 + 61, Command("abort", id="a")).status
    assert s.condition("Progressing").status == "False"
    assert s.condition("Progressing").last_transition_time == T0 + 61
    assert s.to_status()["conditions"][0]["lastTransitionTime"].endswith("Z")


def test_decision_is_pure():
    """decide() does not mutate its inputs and gives the same answer for the same arguments."""
    spec = make_spec()
    s = start(spec).status
    raw = s.to_status()
    copy = json.loads(json.dumps(raw))
    a = decide(spec, raw, all_pass(spec), T0 + 60)
    b = decide(spec, raw, all_pass(spec), T0 + 60)
    assert raw == copy and a == b and isinstance(a, Decision)


def test_a_check_that_does_not_apply_neither_blocks_nor_pauses():
    """shadow-agreement has no evidence during a canary step: skipped results do not block advancing
    and do not count towards inconclusiveLimit."""
    checks = [{"name": "agree", "metric": "shadow-agreement", "min": 0.9},
              {"name": "score-psi", "metric": "psi", "max": 0.2}]
    spec = make_spec(checks=checks, steps=[{"shadow": {"duration": "2m"}},
                                           {"canary": {"weight": 10, "duration": "10m"}},
                                           {"canary": {"weight": 50, "duration": "1m"}}])

    def results(sp, skipped):
        agree = res("agree", "Inconclusive" if skipped else "Pass")
        if skipped:
            from dataclasses import replace
            agree = replace(agree, skipped=True, reason="agree: not applicable without mirroring")
        return [agree, res("score-psi", "Pass")]

    d, now = run_windows(spec, start(spec).status, T0, 2, lambda sp: results(sp, False))
    assert d.status.current_step == 1 and not d.status.routing.shadow
    d, now = run_windows(spec, d.status, now, 10, lambda sp: results(sp, True))
    assert d.status.current_step == 2 and d.status.phase is Phase.PROGRESSING
    assert d.status.check("agree").inconclusive == 0


@pytest.mark.parametrize("junk", [None, "x", 3, -1, 2.5, [], {}, True, float("inf")])
def test_every_status_field_tolerates_junk(junk):
    """Any single status field holding a value of the wrong type never crashes decide()."""
    spec = make_spec()
    good = decide(spec, start(spec).status, all_pass(spec), T0 + 60).status.to_status()
    for key in good:
        raw = dict(good, **{key: junk})
        d = decide(spec, raw, all_pass(spec), T0 + 120)
        assert isinstance(d.status, RolloutStatus)
    nested = dict(good, checks=[dict(good["checks"][0], recent=junk, calibration=junk, failures=junk, value=junk)])
    assert isinstance(decide(spec, nested, all_pass(spec), T0 + 120).status, RolloutStatus)


def test_removing_the_candidate_after_its_promotion_is_stable():
    """Promoted stays while the spec still names the promoted candidate; without a candidate it is Stable."""
    spec = make_spec()
    s = decide(spec, start(spec).status, None, T0 + 1, Command("promote", full=True, id="f")).status
    d = decide(replace(spec, candidate=None), s, None, T0 + 2)
    assert d.status.phase is Phase.STABLE and d.status.stable == spec.candidate
    assert decide(spec, d.status, None, T0 + 3).status.phase is Phase.STABLE   # candidate v2 = the stable
    # resolved before decide (as the controller does): the same
    d = decide(replace(spec, candidate=None).resolved(s.stable), s, None, T0 + 2)
    assert d.status.phase is Phase.STABLE
