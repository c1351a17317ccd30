"""The pure parts of spec.fallback and spec.postPromotion: parsing, the cumulative label verdicts and the
state machine's post-promotion transitions (regret with alert or rollback, confirmation)."""
from __future__ import annotations

import json

import pytest

from policies.machine import Command, Emit, Notify, decide
from policies.postpromotion import LabelWindow, judging, judging_spec, window_due
from policies.regret import judge
from policies.spec import SpecError, parse_spec
from policies.status import Phase, RolloutStatus
from policies.summaries.segments import SegmentCounts

T0 = 1_800_000_000.0


def spec_with(**more):
    raw = {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
           "strategy": {"steps": [{"canary": {"weight": 50, "duration": "1m"}}]},
           "analysis": {"interval": "1m", "minSamples": 10, "failureLimit": 2, "checks": []}, **more}
    return parse_spec(raw, "fraud", "ml", generation=1)


# --- spec.fallback -------------------------------------------------------------------------------------

def test_fallback_url_and_static_parse():
    s = spec_with(fallback={"url": "http://heuristic.ml.svc:8080/predict", "timeout": "500ms"})
    assert (s.fallback.kind, s.fallback.url, s.fallback.timeout) == ("url", "http://heuristic.ml.svc:8080/predict", 0.5)
    s = spec_with(fallback={"static": {"prediction": 0.1, "source": "fallback"}})
    assert s.fallback.kind == "static" and json.loads(s.fallback.static) == {"prediction": 0.1, "source": "fallback"}
    assert spec_with().fallback is None


@pytest.mark.parametrize("fallback, path, words", [
    ({}, "spec.fallback", "exactly one of url"),
    ({"url": "http://x:1", "static": {"prediction": 1}}, "spec.fallback", "exactly one of url"),
    ({"url": "ftp://x"}, "spec.fallback.url", "http://"),
    ({"static": {"score": 0.1}}, "spec.fallback.static", "spec.output.path 'prediction'"),
    ({"static": 0.5}, "spec.fallback.static", "JSON object"),
    ({"static": {"prediction": float("nan")}}, "spec.fallback.static", "JSON object"),
    ({"static": {"prediction": 1}, "timeout": "1s"}, "spec.fallback.timeout", "url only"),
    ({"url": "http://x:1", "timeout": "0s"}, "spec.fallback.timeout", "positive"),
    ({"url": "http://x:1", "retries": 3}, "spec.fallback.retries", "unknown field"),
])
def test_bad_fallback_is_rejected_with_its_path(fallback, path, words):
    with pytest.raises(SpecError) as e:
        spec_with(fallback=fallback)
    assert e.value.path == path and words in str(e.value), str(e.value)


# --- spec.postPromotion ----------------------------------------------------------------------------------

PP = {"duration": "1h", "action": "rollback", "interval": "2m", "minSamples": 20, "failureLimit": 2,
      "checks": [{"name": "acc", "metric": "accuracy", "maxDrop": 0.02},
                 {"name": "eo", "metric": "equal-opportunity", "segment": "gender", "minRatioToBaseline": 0.9}]}


def test_post_promotion_parses_with_defaults_from_the_analysis():
    s = spec_with(postPromotion=PP)
    pp = s.post_promotion
    assert (pp.duration, pp.action, pp.interval, pp.min_samples, pp.failure_limit) == (3600, "rollback", 120, 20, 2)
    assert [c.name for c in pp.checks] == ["acc", "eo"] and pp.checks[0].max_drop == 0.02
    assert "gender" in s.segments()             # the routers extract the segment for the labels
    s = spec_with(postPromotion={"duration": "30m", "checks": [{"name": "acc", "metric": "accuracy"}]})
    assert (s.post_promotion.action, s.post_promotion.interval, s.post_promotion.min_samples) == ("alert", 60, 10)


@pytest.mark.parametrize("pp, path, words", [
    ({"checks": [{"name": "a", "metric": "accuracy"}]}, "spec.postPromotion.duration", "required"),
    ({"duration": "1h"}, "spec.postPromotion.checks", "at least one check"),
    ({"duration": "1h", "action": "page", "checks": [{"name": "a", "metric": "accuracy"}]},
     "spec.postPromotion.action", "alert, rollback"),
    ({"duration": "1h", "checks": [{"name": "a", "metric": "psi"}]}, "spec.postPromotion.checks[0].metric",
     "accuracy, equal-opportunity"),
    ({"duration": "1h", "checks": [{"name": "a", "metric": "equal-opportunity", "minRatioToBaseline": 0.9}]},
     "spec.postPromotion.checks[0].segment", "segment"),
    ({"duration": "1h", "checks": [{"name": "a", "metric": "accuracy", "action": "rollback"}]},
     "spec.postPromotion.checks[0].action", "postPromotion.action"),
    ({"duration": "1h", "checks": [{"name": "a", "metric": "accuracy", "maxDrop": 2}]},
     "spec.postPromotion.checks[0].maxDrop", "<= 1"),
    ({"duration": "1h", "checks": [{"name": "a", "metric": "accuracy"}, {"name": "a", "metric": "accuracy"}]},
     "spec.postPromotion.checks[1].name", "duplicate"),
])
def test_bad_post_promotion_is_rejected_with_its_path(pp, path, words):
    with pytest.raises(SpecError) as e:
        spec_with(postPromotion=pp)
    assert e.value.path == path and words in str(e.value), str(e.value)


# --- verdicts on cumulative counts -----------------------------------------------------------------------

def counts(labelled, correct, segments=None):
    """Segment counts of `labelled` labels, `correct` of them right, under {"all": "all"} (or `segments`)."""
    s = SegmentCounts()
    s.add_counts(segments or {"all": "all"}, [0, 0, labelled, correct, 0, 0])
    return s


def judged(base, cand, **pp):
    s = spec_with(postPromotion={"duration": "1h", "minSamples": 50, "checks": [
        {"name": "acc", "metric": "accuracy", **pp}]})
    return judge(s.post_promotion, {"baseline": base.to_dict()["counts"], "candidate": cand.to_dict()["counts"]})[0]


def test_accuracy_fails_only_when_shown_below_the_previous_stable():
    j = judged(counts(400, 360), counts(400, 300))           # 0.90 vs 0.75
    assert j.verdict == "Fail" and (j.value, j.baseline_value) == (0.75, 0.9)
    assert "0.75" in j.reason and "0.9" in j.reason and "300/400" in j.reason
    assert judged(counts(400, 360), counts(400, 356)).verdict == "Pass"     # 0.89: within noise
    assert judged(counts(400, 360), counts(400, 300), maxDrop=0.2).verdict == "Pass"   # tolerated drop
    assert judged(counts(400, 360), counts(30, 10)).verdict == "Inconclusive"    # too few labels
    assert "30 labels" in judged(counts(400, 360), counts(30, 10)).reason


# --- the state machine after a promotion ----------------------------------------------------------------

def promoted(spec, now=T0):
    """A status right after the promotion of v2 (by the user, --full)."""
    s = decide(spec, None, None, now).status
    d = decide(spec, s, None, now + 1, Command("promote", full=True, id="p1"))
    return d.status


def window(start, end, base, cand):
    return LabelWindow(start, end, base, cand)


def test_promotion_starts_judging_with_the_previous_stable_as_baseline():
    spec = spec_with(postPromotion=PP)
    s = promoted(spec)
    assert s.phase is Phase.PROMOTED and s.stable.version == "v2"
    st = judging(s)
    assert (st.state, st.previous.version, st.promoted.version, st.until - st.since) == ("Judging", "v1", "v2", 3600)
    js = judging_spec(spec.resolved(s.stable), st)
    assert (js.baseline.version, js.candidate.version, js.revision) == ("v1", "v2", spec.revision)
    assert window_due(spec, s, T0 + 60) is None and window_due(spec, s, T0 + 121) == (T0 + 1, T0 + 121)
    # the status round-trips through its dict form (the controller writes and re-reads it)
    assert RolloutStatus.from_status(json.loads(json.dumps(s.to_status()))).post_promotion == s.post_promotion


def test_regret_with_rollback_restores_the_previous_stable():
    spec = spec_with(postPromotion=PP)
    s = promoted(spec)
    d = decide(spec, s, None, T0 + 121, labels=window(T0 + 1, T0 + 121, counts(400, 360), counts(400, 300)))
    assert d.status.phase is Phase.PROMOTED and d.status.post_promotion.checks[0].failures == 1
    d = decide(spec, d.status, None, T0 + 241, labels=window(T0 + 121, T0 + 241, counts(100, 90), counts(100, 75)))
    s = d.status
    assert s.phase is Phase.ROLLED_BACK and s.stable.version == "v1" and s.routing.candidate_weight == 0
    assert s.post_promotion.state == "Regretted"
    events = [a for a in d.actions if isinstance(a, Emit) and a.reason == "PromotionRegretted"]
    assert len(events) == 1 and events[0].type == "Warning"
    assert "0.75" in events[0].message and "0.9" in events[0].message and "v1 serves again" in events[0].message
    assert any(isinstance(a, Notify) and a.phase == "RolledBack" for a in d.actions)
    assert s.history[-1].action == "Regretted"
    # it stays so: nothing flips back on the next reconcile, and the cumulative counts were added up
    again = decide(spec, s, None, T0 + 400).status
    assert again.phase is Phase.ROLLED_BACK and again.stable.version == "v1"
    assert s.post_promotion.counts["candidate"]["all"]["all"][2:4] == [500, 375]


def test_regret_with_alert_keeps_the_promoted_version():
    spec = spec_with(postPromotion={**PP, "action": "alert", "failureLimit": 1})
    s = promoted(spec)
    d = decide(spec, s, None, T0 + 121, labels=window(T0 + 1, T0 + 121, counts(400, 360), counts(400, 300)))
    assert d.status.phase is Phase.PROMOTED and d.status.stable.version == "v2"
    assert d.status.post_promotion.state == "Regretted"
    assert [a.reason for a in d.actions if isinstance(a, Emit)] == ["PromotionRegretted"]


def test_no_regret_is_confirmed_at_the_end_and_a_failed_read_is_not_counted():
    spec = spec_with(postPromotion=PP)
    s = promoted(spec)
    d = decide(spec, s, None, T0 + 121, labels=LabelWindow(T0 + 1, T0 + 121, failure="router timed out"))
    assert d.status.post_promotion.windows == 0 and d.status.post_promotion.last_analysis_at is None
    assert "router timed out" in d.status.post_promotion.message
    d = decide(spec, d.status, None, T0 + 3601,
               labels=window(T0 + 1, T0 + 3601, counts(400, 360), counts(400, 362)))
    s = d.status
    assert s.phase is Phase.PROMOTED and s.post_promotion.state == "Confirmed" and judging(s) is None
    assert [a.reason for a in d.actions if isinstance(a, Emit)] == ["PromotionConfirmed"]


def test_a_new_candidate_ends_the_judging():
    spec = spec_with(postPromotion=PP)
    s = promoted(spec)
    new = parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                      "candidate": {"version": "v3", "url": "http://d:1"},
                      "strategy": {"steps": [{"canary": {"weight": 50, "duration": "1m"}}]},
                      "postPromotion": PP}, "fraud", "ml", generation=2)
    d = decide(new, s, None, T0 + 10)
    assert d.status.post_promotion is None and d.status.phase is Phase.PROGRESSING


def test_the_report_shows_the_fallback_and_the_post_promotion_judging():
    from modelrollout.report.page import render_html
    from modelrollout.report.run import rollout_header

    spec = spec_with(postPromotion=PP, fallback={"url": "http://heuristic.ml.svc:8080/predict"})
    s = promoted(spec)
    s = decide(spec, s, None, T0 + 121, labels=window(T0 + 1, T0 + 121, counts(400, 360), counts(400, 300))).status
    rec = {**rollout_header(spec), "status": s.to_status()}
    html = render_html({"rollouts": [rec], "source": "test"})
    assert "fallback: http://heuristic.ml.svc:8080/predict" in html
    assert "After the promotion" in html and "data-post-promotion='Judging'" in html
    assert "acc (accuracy, maxDrop 0.02)" in html and "eo (equal-opportunity, minRatioToBaseline 0.9 by gender)" in html
    row = html.split("<table class='post-promotion'>")[1].split("</table>")[0]
    assert "0.75" in row and "0.9" in row and "v-Fail" in row


def test_kubectl_modelrollout_status_shows_the_fallback_and_the_judging():
    import io

    from rich.console import Console

    from modelrollout.plugin.render import summary

    raw = {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
           "strategy": {"steps": [{"canary": {"weight": 50, "duration": "1m"}}]},
           "analysis": {"interval": "1m", "minSamples": 10, "checks": []},
           "fallback": {"static": {"prediction": 0}}, "postPromotion": PP}
    spec = parse_spec(raw, "fraud", "ml", generation=1)
    s = promoted(spec)
    s = decide(spec, s, None, T0 + 121, labels=window(T0 + 1, T0 + 121, counts(400, 360), counts(400, 300))).status
    obj = {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": raw, "status": s.to_status()}
    out = io.StringIO()
    Console(file=out, width=200).print(summary(obj, T0 + 200))
    text = out.getvalue()
    assert "Fallback" in text and "static answer" in text
    assert "Judging: v2 against the previous stable v1" in text and "acc Fail 0.75 vs 0.9" in text, text
