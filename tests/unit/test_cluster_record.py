"""The run record of a rollout in a cluster, rebuilt from its CR alone (`modelrollout.report.cluster`), and
the dashboard's views of it: pure functions of a ModelRollout document whose status the controller's own
`decide` wrote."""
from __future__ import annotations

import json

from modelrollout.dashboard.views import detail_view, list_view
from modelrollout.report import render_html
from modelrollout.report.cluster import deciding_check, event_row, record_of, rollout_record
from policies.machine import Command, decide
from policies.spec import parse_rollout
from policies.status import CheckResult, Verdict

T0 = 1_800_000_000.0


def doc(status=None, name="fraud"):
    obj = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": name, "namespace": "ml", "creationTimestamp": "2027-01-15T07:59:00Z", "uid": "u1"},
           "spec": {"baseline": {"version": "v1", "url": "http://b:1"},
                    "candidate": {"version": "v2", "url": "http://c:1"},
                    "strategy": {"steps": [{"shadow": {"duration": "3m"}}, {"canary": {"weight": 20, "duration": "10m"}}]},
                    "analysis": {"interval": "1m", "failureLimit": 2, "checks": [
                        {"name": "score-psi", "metric": "psi", "max": 0.2},
                        {"name": "errors", "metric": "error-rate", "max": 0.01}]}}}
    if status is not None:
        obj["status"] = status
    return obj


def run(psi_values, command_at=None):
    """The status `decide` leaves after one window per value of score-psi (errors always passing)."""
    spec = parse_rollout(doc()).spec
    d = decide(spec, None, None, T0)
    for i, v in enumerate(psi_values):
        verdict = Verdict.FAIL if v > 0.2 else Verdict.PASS
        results = [CheckResult("score-psi", "psi", v, 0.2, verdict, 400 + i, reason=f"score-psi {v}"),
                   CheckResult("errors", "error-rate", 0.0, 0.01, Verdict.PASS, 400 + i)]
        cmd = Command("pause", id="p") if command_at == i else None
        d = decide(spec, d.status, results, T0 + 60 * (i + 1), cmd)
    return json.loads(json.dumps(d.status.to_status()))


def test_windows_transitions_and_outcome_of_a_rollback():
    """Every window of every check with its threshold and verdict; transitions with the routing they led to;
    the outcome names the deciding check with its value and threshold."""
    rec = rollout_record(doc(run([0.05, 0.04, 0.06, 0.05, 0.31, 0.35])))
    assert [w["time"] for w in rec["windows"]] == [T0 + 60 * i for i in range(1, 7)]
    psi = [next(r for r in w["checks"] if r["name"] == "score-psi") for w in rec["windows"]]
    assert [(r["value"], r["threshold"], r["verdict"], r["samples"]) for r in psi][-2:] == [
        (0.31, 0.2, "Fail", 404), (0.35, 0.2, "Fail", 405)]
    assert rec["windows"][0]["start"] == T0 and rec["windows"][1]["start"] == T0 + 60
    # window 3 ends the shadow step (3m): windows from then on ran in the 20% canary
    assert [(w["phase"], w["weight"], w["shadow"]) for w in rec["windows"]][2:4] == [
        ("Shadowing", 0, True), ("Progressing", 20, False)]
    assert [(e["action"], e["phase"], e["weight"]) for e in rec["transitions"]] == [
        ("Started", "Pending", 0), ("StepStarted", "Shadowing", 0), ("StepStarted", "Progressing", 20),
        ("RolledBack", "RolledBack", 0)]
    assert rec["outcome"] == {"phase": "RolledBack", "time": T0 + 360, "reason": rec["transitions"][-1]["reason"],
                              "check": "score-psi", "value": 0.35, "threshold": 0.2}
    assert rec["deciding"] == "score-psi" and rec["kept"] == {"windows": 6, "transitions": 4}


def test_the_report_page_of_a_cluster_rollout_states_and_draws_the_deciding_check():
    rec = rollout_record(doc(run([0.05, 0.31, 0.35])), [
        {"metadata": {"name": "fraud.2"}, "type": "Warning", "reason": "RolledBack", "message": "m",
         "lastTimestamp": "2027-01-15T08:03:00Z", "count": 1, "reportingInstance": "ctl-a"}])
    page = render_html(record_of([rec], "ml/fraud", T0 + 1000))
    assert "check score-psi: value 0.35, threshold 0.2" in page
    assert '<figure class="check-chart deciding" data-check="score-psi" data-deciding="true">' in page
    assert page.count('class="threshold-line"') == 2 and page.count('data-verdict="Fail"') == 2
    events = page.split("<table class='events'>", 1)[1]
    assert "08:03:00" in events and "ctl-a" in events


def test_a_running_rollout_has_no_outcome_and_a_pause_by_a_user_names_no_check():
    rec = rollout_record(doc(run([0.05, 0.06], command_at=1)))
    assert rec["outcome"] is None and rec["deciding"] is None
    assert rec["transitions"][-1]["action"] == "Paused" and rec["transitions"][-1]["check"] is None
    record = record_of([rec], "ml/fraud", T0 + 500)
    assert (record["started"], record["finished"]) == (T0, T0 + 500)


def test_a_status_written_before_history_kept_routing_is_still_drawn():
    """History without phase/routing (an older controller): the phase comes from the action or the step's
    kind, the weight from the step; windows without threshold draw their values without it."""
    status = {"phase": "RolledBack", "currentStep": 1, "message": "rolled back: score-psi 0.31 > 0.2",
              "checks": [{"name": "score-psi", "metric": "psi", "value": 0.31, "threshold": 0.2, "verdict": "Fail",
                          "failures": 2, "action": "rollback",
                          "recent": [{"time": "2027-01-15T08:04:00Z", "value": 0.31, "verdict": "Fail"}]}],
              "history": [{"time": "2027-01-15T08:00:00Z", "step": 0, "action": "StepStarted", "reason": "a"},
                          {"time": "2027-01-15T08:03:00Z", "step": 1, "action": "StepStarted", "reason": "b"},
                          {"time": "2027-01-15T08:04:00Z", "step": 1, "action": "RolledBack", "reason": "c"}]}
    rec = rollout_record(doc(status))
    assert [(e["phase"], e["weight"], e["shadow"]) for e in rec["transitions"]] == [
        ("Shadowing", 0, True), ("Progressing", 20, False), ("RolledBack", 0, False)]
    assert rec["windows"][0]["checks"][0]["threshold"] is None
    assert (rec["outcome"]["check"], rec["outcome"]["value"], rec["outcome"]["threshold"]) == ("score-psi", 0.31, 0.2)


def test_an_invalid_spec_or_no_status_still_makes_a_record():
    bad = doc()
    bad["spec"]["strategy"]["steps"] = [{"canary": {"weight": 150}}]
    rec = rollout_record(bad)
    assert rec["key"] == "ml/fraud" and rec["windows"] == [] and rec["outcome"] is None
    assert "not yet seen by a controller" in detail_view(bad, [], None)[0]


def test_event_rows_take_the_best_time_the_event_has():
    assert event_row({"eventTime": "2027-01-15T08:00:01.5Z"})["time"] == T0 + 1.5
    assert event_row({"metadata": {"creationTimestamp": "2027-01-15T08:00:02Z"}})["time"] == T0 + 2
    assert event_row({"source": {"host": "h"}})["source"] == "h"


def test_views_list_every_rollout_and_offer_buttons_only_when_asked():
    running = doc(run([0.05]), name="a")
    fresh = doc(name="b")
    html = list_view([running, fresh], "namespace ml", False)
    assert html.count("<tr data-rollout=") == 2 and 'data-phase="Shadowing"' in html
    assert 'href="/rollouts/ml/a"' in html and "1/2 shadow for 3m" in html
    read_only, _ = detail_view(running, [], None)
    assert "<button" not in read_only
    refusals = {("promote", False): None, ("promote", True): None, ("pause", False): None,
                ("resume", False): "not paused", ("abort", False): None, ("retry", False): "not rolled back"}
    with_actions, _ = detail_view(running, [], refusals)
    assert with_actions.count("<button") == 6 and with_actions.count(" disabled>") == 2
    assert 'title="continue a paused rollout — not now: not paused"' in with_actions
    assert deciding_check({"transitions": [], "status": running["status"]}) is None
