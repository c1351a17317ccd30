"""When the controller reconciles: the watch-event predicate (`controller.kube.triggers.reason`) and the
timers (`controller.core.next_wakeup`), both pure. The apiserver side is in tests/e2e/test_controller_writes.py."""
from __future__ import annotations

import copy

from controller import core
from controller.kube import triggers
from controller.kube.reconciler import clean_status
from policies.machine import Command, decide
from policies.spec import parse_spec

T0 = 1_800_000_000.0
MARGIN = core.WAKE_MARGIN


def make_spec(checks=None, steps=None):
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": "v2", "url": "http://c:1"},
        "strategy": {"steps": steps or [{"canary": {"weight": 10, "duration": "10m"}}, {"pause": {}}]},
        "analysis": {"interval": "1m", "minSamples": 10, "checks": [
            {"name": "errors", "metric": "error-rate", "max": 0.01}] if checks is None else checks},
    }, "fraud", "ml", generation=3)


def obj(status=None, generation=3, rv="100", command=None, labels=None) -> dict:
    meta = {"name": "fraud", "namespace": "ml", "generation": generation, "resourceVersion": rv}
    if command is not None:
        meta["annotations"] = {"modelrollout.io/command": command}
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "spec": {}, "status": status or {}}


def written_status(observed=3, message="step 1/2 (canary 10% for 10m): running"):
    return {"phase": "Progressing", "observedGeneration": observed, "message": message}


# --- watch events ---------------------------------------------------------------------------------------

def test_a_rollout_not_seen_before_is_reconciled():
    assert triggers.reason(None, obj()) == triggers.NEW


def test_a_spec_change_is_recognised_by_its_generation():
    """The apiserver bumps metadata.generation on every spec change, never on a status write."""
    st = written_status()
    assert triggers.reason(obj(st), obj(st, generation=4, rv="101")) == triggers.SPEC
    # a spec change not decided on yet (e.g. while the watch was down): observedGeneration lags
    assert triggers.reason(obj(written_status(observed=2)), obj(written_status(observed=2), rv="101")) == \
        triggers.SPEC


def test_a_new_command_annotation_is_reconciled():
    st = written_status()
    assert triggers.reason(obj(st), obj(st, rv="101", command='{"verb": "promote", "id": "a"}')) == \
        triggers.COMMAND
    assert triggers.reason(obj(st, command='{"verb": "promote", "id": "a"}'),
                           obj(st, rv="101", command='{"verb": "abort", "id": "b"}')) == triggers.COMMAND


def test_the_controllers_own_status_write_is_ignored():
    """By the resourceVersion the write returned, and by content when the event comes before the answer."""
    before, mine = written_status(message="a"), written_status(message="b")
    assert triggers.reason(obj(before), obj(mine, rv="101"), (mine, "101"), clean_status) is None
    assert triggers.reason(obj(before), obj(mine, rv="101"), (mine, None), clean_status) is None
    # the apiserver drops nulls: the written (cleaned) status still matches
    assert triggers.reason(obj(before), obj({**mine, "drift": None}, rv="101"), (mine, None), clean_status) is None


def test_a_status_someone_else_wrote_is_reconciled():
    mine, theirs = written_status(message="mine"), written_status(message="edited by hand")
    assert triggers.reason(obj(mine), obj(theirs, rv="102"), (mine, "101"), clean_status) == triggers.STATUS
    assert triggers.reason(obj(mine), obj(theirs, rv="102")) == triggers.STATUS


def test_changes_that_cannot_alter_a_decision_are_ignored():
    st = written_status()
    assert triggers.reason(obj(st), obj(copy.deepcopy(st), rv="101", labels={"team": "fraud"})) is None
    assert triggers.reason(obj(st, rv="101"), obj(st, rv="101")) is None


# --- timers -----------------------------------------------------------------------------------------------

def test_the_next_timer_is_the_next_window_or_the_step_end_whichever_comes_first():
    spec = make_spec()
    s = decide(spec, None, None, T0).status
    assert core.next_wakeup(spec, s, T0) == 60 + MARGIN
    assert core.next_wakeup(spec, s, T0 + 59.5) == 0.5 + MARGIN
    short = make_spec(steps=[{"canary": {"weight": 10, "duration": "30s"}}, {"pause": {}}])
    assert core.next_wakeup(short, decide(short, None, None, T0).status, T0) == 30 + MARGIN


def test_a_step_end_that_passed_sets_no_timer():
    """A step past its duration waits for a passing window (the next window's timer) or a command: waking
    at once again and again would change nothing."""
    spec = make_spec()
    s = decide(spec, None, None, T0).status
    s = decide(spec, s, None, T0 + 570).status            # no window judged yet; the step ends at T0 + 600
    waiting = decide(spec, s, None, T0 + 650).status       # past the end, no passing window
    assert waiting.current_step == 0 and "waiting for a passing window" in waiting.message
    assert core.next_wakeup(spec, waiting, T0 + 650) == MARGIN     # the first window is overdue: judge it now
    judged = decide(spec, waiting, [], T0 + 650).status            # an empty window: errors has no verdict
    assert core.next_wakeup(spec, judged, T0 + 650) == 60 + MARGIN


def test_a_rollout_without_checks_wakes_only_for_its_step_end():
    spec = make_spec(checks=[])
    s = decide(spec, None, None, T0).status
    assert core.next_wakeup(spec, s, T0 + 100) == 500 + MARGIN
    assert core.analysis_window(spec, s, T0 + 300) is None
    asked = []
    after = core.step(spec, s, T0 + 300, lambda *a: asked.append(a)).status
    assert not asked and after == s                           # nothing to judge: no window, no change
    paused = decide(spec, s, None, T0 + 10, Command("pause", id="p")).status
    assert core.next_wakeup(spec, paused, T0 + 700) is None   # past its end, held by the user: a command ends it
    pause_step = decide(spec, s, None, T0 + 600).status
    assert pause_step.phase.value == "Paused" and core.next_wakeup(spec, pause_step, T0 + 601) is None


def test_a_finished_rollout_sets_no_timer():
    spec = make_spec(checks=[])
    s = decide(spec, None, None, T0, Command("promote", full=True, id="x")).status
    assert s.phase.value == "Promoted" and core.next_wakeup(spec, s, T0) is None
