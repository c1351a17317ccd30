"""The golden step: its spec, the golden set's format, the pure judging of paired answers, and the state
machine around it (Verifying before any traffic, rollback naming the check, pause on missing answers)."""
from __future__ import annotations

import json

import pytest

from controller import core
from policies.golden import GoldenAnswer, GoldenRun, correct, judge, unavailable
from policies.golden_spec import GoldenCase, parse_set
from policies.machine import Emit, decide
from policies.spec import SpecError, parse_spec
from policies.status import Phase, Routing, RolloutStatus, Verdict
from policies.summaries import SummaryError

T0 = 1_800_000_000.0


def make(golden=None, steps=None, kind="score", checks=None, **an):
    g = {"requests": [{"request": {"features": {"x": 1}}, "expected": 0.3}]} if golden is None else golden
    raw = {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
           "output": {"kind": kind},
           "strategy": {"steps": steps if steps is not None else [{"golden": g}, {"shadow": {"duration": "10m"}}]},
           "analysis": {"interval": "1m", "minSamples": 10, "inconclusiveLimit": 2, **an,
                        "checks": checks if checks is not None else [{"name": "psi", "metric": "psi", "max": 0.2}]}}
    return parse_spec(raw, "fraud", "ml", generation=1)


def ok(output):
    return GoldenAnswer(200, None, output)


def run_of(spec_cases, base, cand):
    return GoldenRun(tuple(spec_cases), tuple(base), tuple(cand))


def verdicts(results):
    return {r.name: (r.verdict, r.value, r.threshold) for r in results}


# --- spec --------------------------------------------------------------------------------------------

def test_golden_step_parses_sources_and_thresholds():
    s = make({"configMap": {"name": "fraud-golden", "key": "set.jsonl"}, "maxAbsDelta": 0.05,
              "maxMeanAbsDelta": 0.01, "minAccuracy": 0.9, "minAgreement": 0.95, "maxErrorRate": 0.1})
    g = s.golden
    assert (g.config_map, g.key, g.url) == ("fraud-golden", "set.jsonl", None)
    assert [c.name for c in s.golden_checks] == ["golden-errors", "golden-agreement", "golden-max-abs-delta",
                                                 "golden-mean-abs-delta", "golden-accuracy"]
    assert [(c.min, c.max) for c in s.golden_checks] == [(None, 0.1), (0.95, None), (None, 0.05), (None, 0.01),
                                                         (0.9, None)]
    assert all(c.action == "rollback" and c.immediate for c in s.golden_checks)
    assert s.steps[0].describe() == "golden set configmap/fraud-golden[set.jsonl]"
    assert make({"url": "https://example.test/golden.json"}).golden.url == "https://example.test/golden.json"
    # only the errors check unless asked: a candidate failing known-good requests is broken
    assert [c.name for c in make().golden_checks] == ["golden-errors"]


@pytest.mark.parametrize("golden, path, words", [
    ({}, "spec.strategy.steps[0].golden", "exactly one source"),
    ({"url": "https://x.test/g", "requests": [{"request": {}}]}, "spec.strategy.steps[0].golden", "url, requests"),
    ({"configMap": {"name": "g"}}, "spec.strategy.steps[0].golden.configMap.key", "required"),
    ({"url": "ftp://x/g"}, "spec.strategy.steps[0].golden.url", "http://"),
    ({"requests": [{"expected": 1}]}, "spec.strategy.steps[0].golden.requests[0].request", "required"),
    ({"requests": [{"request": {}, "label": 1}]}, "spec.strategy.steps[0].golden.requests[0].label", "unknown"),
    ({"requests": [{"request": {}}], "minAccuracy": 1.5}, "spec.strategy.steps[0].golden.minAccuracy", "<= 1.0"),
    ({"requests": [{"request": {}}], "duration": "1m"}, "spec.strategy.steps[0].golden.duration", "no duration"),
])
def test_golden_step_rejects_bad_fields_by_path(golden, path, words):
    with pytest.raises(SpecError) as e:
        make(golden)
    assert e.value.path == path and words in e.value.message


def test_golden_step_must_come_before_any_traffic():
    g = {"golden": {"requests": [{"request": {}}]}}
    with pytest.raises(SpecError) as e:
        make(steps=[{"shadow": {"duration": "1m"}}, g])
    assert e.value.path == "spec.strategy.steps[1].golden" and "before any shadow, canary or interleave" in str(e.value)
    with pytest.raises(SpecError) as e:
        make(steps=[{"canary": {"weight": 5}}, g])
    assert "step 0 is canary" in str(e.value)
    with pytest.raises(SpecError) as e:
        make(steps=[g, g, {"shadow": {"duration": "1m"}}])
    assert e.value.path == "spec.strategy.steps[1].golden" and "at most one" in str(e.value)
    assert make(steps=[{"pause": {"duration": "1m"}}, g, {"canary": {"weight": 5}}]).steps[1].kind == "golden"


def test_golden_thresholds_must_fit_the_output_kind_and_names_stay_free():
    with pytest.raises(SpecError) as e:
        make({"requests": [{"request": {}}], "maxAbsDelta": 0.1}, kind="class")
    assert e.value.path.endswith("golden.maxAbsDelta") and "compares scores" in str(e.value)
    with pytest.raises(SpecError) as e:
        make(checks=[{"name": "golden-errors", "metric": "error-rate", "max": 0.1}])
    assert "golden step's check" in str(e.value)


def test_golden_set_text_json_array_and_lines():
    cases = parse_set('[{"request": {"a": 1}, "expected": "ok", "id": "first"}, {"request": [1]}]', "cm")
    assert cases == (GoldenCase({"a": 1}, "ok", True, "first"), GoldenCase([1], None, False, ""))
    lines = parse_set('{"request": {"a": 1}}\n\n{"request": {"a": 2}, "expected": false}\n', "cm")
    assert [c.request for c in lines] == [{"a": 1}, {"a": 2}] and lines[1].has_expected
    for text, where in (("", "cm"), ('{"request": 1}\nnot json', "cm line 2"), ('[{"expected": 1}]', "cm[0].request"),
                        ('{"request": 1, "expected": NaN}', "cm line 1.expected")):
        with pytest.raises(SpecError) as e:
            parse_set(text, "cm")
        assert e.value.path == where
    with pytest.raises(SpecError, match="at most 1000"):
        parse_set("\n".join(['{"request": 1}'] * 1001), "cm")


# --- judging -----------------------------------------------------------------------------------------

def test_scores_within_tolerance_pass_every_check():
    s = make({"requests": [{"request": {}}], "maxAbsDelta": 0.05, "maxMeanAbsDelta": 0.02, "minAccuracy": 0.9,
              "minAgreement": 1.0})
    cases = [GoldenCase({"i": i}, 0.1 * i, True, f"g{i}") for i in range(5)]
    run = run_of(cases, [ok(0.1 * i) for i in range(5)], [ok(0.1 * i + 0.01) for i in range(5)])
    v = verdicts(judge(s, run))
    assert v["golden-errors"] == (Verdict.PASS, 0.0, 0.0)
    assert v["golden-agreement"][0] is Verdict.PASS
    assert v["golden-max-abs-delta"][0] is Verdict.PASS and v["golden-max-abs-delta"][1] == pytest.approx(0.01)
    assert v["golden-mean-abs-delta"][1] == pytest.approx(0.01)
    # accuracy: exact scores expected, tolerance 1e-6 by default: the candidate is 0.01 off on every one
    assert v["golden-accuracy"][:2] == (Verdict.FAIL, 0.0)


def test_a_shifted_candidate_fails_delta_and_accuracy_with_its_numbers():
    s = make({"requests": [{"request": {}}], "maxAbsDelta": 0.05, "minAccuracy": 0.9})
    cases = [GoldenCase({"i": i}, i % 2 == 0, True, f"g{i}") for i in range(10)]
    base = [ok(0.8 if i % 2 == 0 else 0.2) for i in range(10)]
    cand = [ok(0.8 if i % 2 == 0 else 0.2) if i < 6 else ok(0.45 if i % 2 == 0 else 0.55) for i in range(10)]
    results = {r.name: r for r in judge(s, run_of(cases, base, cand))}
    delta = results["golden-max-abs-delta"]
    assert delta.verdict is Verdict.FAIL and delta.value == pytest.approx(0.35) and delta.threshold == 0.05
    assert "0.35 > 0.05" in delta.reason and "4/10 requests over it (g6, g7, g8, ...)" in delta.reason
    acc = results["golden-accuracy"]
    assert acc.verdict is Verdict.FAIL and acc.value == pytest.approx(0.6) and acc.samples == 10
    assert "6/10 expected outputs matched; wrong on g6, g7, g8, ..." in acc.reason and "(baseline 10/10)" in acc.reason


def test_errors_nan_and_unparsable_answers_count_against_the_candidate():
    s = make()
    cases = [GoldenCase({"i": i}, None, False, "") for i in range(4)]
    cand = [ok(0.5), GoldenAnswer(200, "invalid_output"), GoldenAnswer(500, "http_5xx"), GoldenAnswer(422, None)]
    (r,) = judge(s, run_of(cases, [ok(0.5)] * 4, cand))
    assert r.verdict is Verdict.FAIL and r.value == 0.75 and r.threshold == 0.0
    assert "3/4 candidate answers failed (http_422 1, http_5xx 1, invalid_output 1: #1, #2, #3)" in r.reason
    (ok_r,) = judge(make({"requests": [{"request": {}}], "maxErrorRate": 0.8}), run_of(cases, [ok(0.5)] * 4, cand))
    assert ok_r.verdict is Verdict.PASS


def test_class_agreement_and_rankings_top_item():
    s = make({"requests": [{"request": {}}], "minAgreement": 0.9}, kind="class")
    cases = [GoldenCase({"i": i}) for i in range(10)]
    base = [ok("fraud" if i < 5 else "ok") for i in range(10)]
    cand = [ok("fraud" if i < 4 else "ok") for i in range(10)]
    r = {x.name: x for x in judge(s, run_of(cases, base, cand))}["golden-agreement"]
    assert r.verdict is Verdict.PASS and r.value == 0.9 and "9/10 answers agree; they differ on #4" in r.reason
    # a pair where one side failed is no evidence of agreement: judged on the pairs both answered
    cand[0] = GoldenAnswer(None, "timeout")
    r = {x.name: x for x in judge(s, run_of(cases, base, cand))}["golden-agreement"]
    assert r.samples == 9 and r.value == pytest.approx(8 / 9) and r.verdict is Verdict.FAIL
    sr = make({"requests": [{"request": {}}], "minAgreement": 1.0}, kind="ranking")
    rr = judge(sr, run_of(cases[:2], [ok(["a", "b"]), ok(["c", "d"])], [ok(["a", "c"]), ok(["d", "c"])]))
    assert {x.name: x.value for x in rr}["golden-agreement"] == 0.5


def test_nothing_comparable_is_inconclusive_never_pass():
    s = make({"requests": [{"request": {}}], "maxAbsDelta": 0.1, "minAccuracy": 0.5})
    cases = [GoldenCase({"i": 0})]
    v = verdicts(judge(s, run_of(cases, [GoldenAnswer(None, "unreachable")], [ok(0.3)])))
    assert v["golden-max-abs-delta"][0] is Verdict.INCONCLUSIVE          # the baseline never answered
    assert v["golden-accuracy"][0] is Verdict.INCONCLUSIVE               # no expected outputs in the set
    assert all(r.verdict is Verdict.INCONCLUSIVE and "no router" in r.reason for r in unavailable(s, "no router"))


@pytest.mark.parametrize("kind, out, expected, right", [
    ("score", 0.7, True, True), ("score", 0.3, True, False), ("score", 0.3000001, 0.3, True),
    ("score", 0.31, 0.3, False), ("class", "fraud", "fraud", True), ("class", 1, "1", True),
    ("class", True, "true", True), ("ranking", ["a", "b"], "a", True), ("ranking", ["a", "b"], ["a", "b"], True),
    ("ranking", ["a", "b"], ["b", "a"], False), ("embedding", [0.1, 0.2], [0.1, 0.2], True),
    ("embedding", [0.1, 0.2], [0.1], False), ("score", None, 0.3, False),
])
def test_correct_against_expected_outputs(kind, out, expected, right):
    assert correct(kind, 0.5, out, expected, 1e-6) is right


def test_router_answer_decodes_or_names_what_is_malformed():
    cases = [GoldenCase({"i": 0}), GoldenCase({"i": 1})]
    doc = {"answers": [{"baseline": {"status": 200, "error": None, "output": 0.1},
                        "candidate": {"status": None, "error": "timeout", "output": None}}] * 2}
    run = GoldenRun.from_wire(json.loads(json.dumps(doc)), cases)
    assert run.baseline[0].ok and not run.candidate[1].ok and run.candidate[1].failure == "timeout"
    for bad, words in (({"answers": doc["answers"][:1]}, "1 answers for 2"), ({}, "list 'answers'"),
                       ({"answers": [{"baseline": {"status": "200"}, "candidate": {}}] * 2}, "status")):
        with pytest.raises(SummaryError, match=words):
            GoldenRun.from_wire(bad, cases)


# --- the state machine and the reconcile step ----------------------------------------------------------

def results(spec, verdict):
    s_cases = [GoldenCase({"i": 0}, 0.3, True, "g0")]
    out = 0.3 if verdict == "Pass" else 0.9
    return judge(spec, run_of(s_cases, [ok(0.3)], [ok(out)]))


def test_the_golden_step_sends_no_traffic_and_passes_on_to_shadow():
    spec = make({"requests": [{"request": {}}], "maxAbsDelta": 0.05})
    d = decide(spec, None, None, T0)
    s = d.status
    assert s.phase is Phase.VERIFYING and s.current_step == 0 and s.routing == Routing()
    assert s.message.startswith("step 1/2 (golden set of 1 inline request(s)): waiting for both versions' answers")
    assert {c.name for c in s.checks} == {"psi", "golden-errors", "golden-max-abs-delta"}
    assert core.golden_due(spec, s, T0) and core.analysis_window(spec, s, T0 + 600) is None
    assert core.next_wakeup(spec, s, T0) == pytest.approx(core.WAKE_MARGIN)
    d = decide(spec, s, results(spec, "Pass"), T0 + 1)
    s = d.status
    assert s.phase is Phase.SHADOWING and s.current_step == 1 and s.routing == Routing(0, shadow=True)
    assert not core.golden_due(spec, s, T0 + 2)
    assert s.check("golden-max-abs-delta").verdict is Verdict.PASS
    # the golden verdicts stay in the status through the next steps' windows
    from tests.unit.test_machine import res
    s = decide(spec, s, [res("psi", "Pass")], T0 + 61).status
    assert s.check("golden-max-abs-delta").verdict is Verdict.PASS and s.check("psi").verdict is Verdict.PASS


def test_a_failing_golden_set_rolls_back_before_shadow_naming_the_check():
    spec = make({"requests": [{"request": {}}], "maxAbsDelta": 0.05})
    s = decide(spec, None, None, T0).status
    d = decide(spec, s, results(spec, "Fail"), T0 + 1)
    s = d.status
    assert s.phase is Phase.ROLLED_BACK and s.routing == Routing() and s.current_step == 0
    assert "golden set failed: golden-max-abs-delta 0.6 > 0.05" in s.message
    last = s.history[-1]
    assert last.action == "RolledBack" and last.check.name == "golden-max-abs-delta" and last.check.value == pytest.approx(0.6)
    assert any(isinstance(a, Emit) and a.reason == "RolledBack" and "golden-max-abs-delta" in a.message
               for a in d.actions)
    assert next(a for a in d.actions if hasattr(a, "severity")).severity == "critical"
    assert s.check("golden-max-abs-delta").verdict is Verdict.FAIL


def test_unanswered_golden_sets_are_retried_every_interval_then_pause():
    spec = make({"requests": [{"request": {}}]})
    s = decide(spec, None, None, T0).status
    s = decide(spec, s, unavailable(spec, "no router replica known"), T0 + 1).status
    assert s.phase is Phase.VERIFYING and "last run: golden-errors: no router replica known" in s.message
    assert not core.golden_due(spec, s, T0 + 30) and core.golden_due(spec, s, T0 + 61)
    assert core.next_wakeup(spec, s, T0 + 1) == pytest.approx(60 + core.WAKE_MARGIN)
    s = decide(spec, s, unavailable(spec, "no router replica known"), T0 + 61).status
    assert s.phase is Phase.PAUSED and s.pause_reason == "inconclusive"
    assert not core.golden_due(spec, s, T0 + 200)


def test_reconcile_step_runs_the_golden_set_through_its_runner():
    spec = make({"requests": [{"request": {"features": {"x": 1}}, "expected": 0.3, "id": "g0"}],
                 "minAccuracy": 1.0})

    class Runner:
        calls = 0

        def run(self, sp):
            Runner.calls += 1
            cases = sp.golden.requests
            return GoldenRun(cases, (ok(0.3),), (ok(0.2),))

    s = RolloutStatus.from_status(decide(spec, None, None, T0).status.to_status())
    d = core.step(spec, s, T0 + 1, source=None, golden=Runner())
    assert Runner.calls == 1 and d.status.phase is Phase.ROLLED_BACK
    assert "golden-accuracy 0 < 1: 0/1 expected outputs matched; wrong on g0 (baseline 1/1)" in d.status.message
    # without a runner the golden checks are Inconclusive, never passed
    d = core.step(spec, s, T0 + 1, source=None, golden=None)
    assert d.status.phase is Phase.VERIFYING and d.status.check("golden-errors").verdict is Verdict.INCONCLUSIVE


def test_local_mode_reads_the_golden_set_from_the_rollout_files_configmaps(tmp_path):
    from controller.golden import GoldenUnavailable
    from modelrollout.local_golden import LocalConfigMaps, config_maps

    f = tmp_path / "rollouts.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: g, namespace: ml}\n"
                 "data: {set.jsonl: '{\"request\": {\"a\": 1}}'}\n---\n"
                 "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    maps = config_maps(f)
    assert maps == {("ml", "g"): {"set.jsonl": '{"request": {"a": 1}}'}}
    read = LocalConfigMaps(maps, str(f))
    assert parse_set(read("ml", "g", "set.jsonl"), "g") == (GoldenCase({"a": 1}),)
    with pytest.raises(GoldenUnavailable, match="ConfigMap ml/other key k: not found in .*rollouts.yaml"):
        read("ml", "other", "k")
    with pytest.raises(GoldenUnavailable, match=r"no such key \(keys: set.jsonl\)"):
        read("ml", "g", "k")


def test_golden_runner_posts_the_set_to_one_replica_and_tries_the_next(tmp_path):
    import httpx

    from controller.golden import GoldenRunner, GoldenUnavailable

    spec = make({"url": "https://sets.test/golden.jsonl", "minAccuracy": 0.5})
    seen = []

    def routers(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.url.path, dict(request.url.params), json.loads(request.content)))
        if request.url.host == "r1":
            return httpx.Response(503, json={"error": "unavailable"})
        answers = [{"baseline": {"status": 200, "error": None, "output": 0.5},
                    "candidate": {"status": 200, "error": None, "output": 0.5}}]
        return httpx.Response(200, json={"answers": answers})

    def sets(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers       # the routers' token never goes to the set's URL
        return httpx.Response(200, text='{"request": {"features": {"x": 1}}, "expected": 0.5, "id": "g0"}\n')

    http = httpx.Client(transport=httpx.MockTransport(routers), headers={"authorization": "Bearer router-token"})
    runner = GoldenRunner(http, lambda s: ["http://r1:8080", "http://r2:8080"],
                          fetch=httpx.Client(transport=httpx.MockTransport(sets)))
    run = runner.run(spec)
    assert [s[0] for s in seen] == ["r1", "r2"]
    assert seen[1][1:] == ("/v1/rollouts/fraud/golden", {"namespace": "ml"},
                           {"revision": "v2@http://c:1", "requests": [{"features": {"x": 1}}]})
    assert verdicts(judge(spec, run))["golden-accuracy"][:2] == (Verdict.PASS, 1.0)
    with pytest.raises(GoldenUnavailable, match="no router replica answered the golden set: http://r1:8080: HTTP 503"):
        GoldenRunner(http, lambda s: ["http://r1:8080"], fetch=httpx.Client(transport=httpx.MockTransport(sets))).run(spec)
    with pytest.raises(GoldenUnavailable, match="no router replica known"):
        GoldenRunner(http, lambda s: [], fetch=httpx.Client(transport=httpx.MockTransport(sets))).run(spec)
    bad = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="{not json\n")))
    with pytest.raises(GoldenUnavailable, match="golden set: https://sets.test/golden.jsonl line 1"):
        GoldenRunner(http, lambda s: ["http://r2:8080"], fetch=bad).run(spec)


def test_replay_judges_the_golden_step_on_the_logged_golden_answers():
    """The router logs golden answers with the role golden (never folded): replay judges the golden step on
    them, run by run, and says so when the log holds none."""
    from policies.outcome import Outcome
    from modelrollout.replay import replay_rollout

    spec = make({"requests": [{"request": {}, "expected": 0.5}, {"request": {}, "expected": 0.5}],
                 "minAccuracy": 1.0}, checks=[{"name": "e", "metric": "error-rate", "max": 0.1}], interval="1s")

    def rec(i, **kw):
        return Outcome.from_json(json.dumps({
            "time": 1000.0 + i, "rollout": "fraud", "namespace": "ml", "request_id": str(i), "arm": "baseline",
            "role": "primary", "version": "v1", "revision": spec.revision, "status": 200, "error": None,
            "latency_ms": 1, "output": 0.5, "features": None, "segments": None, **kw}))
    live = [rec(i) for i in range(20)]
    golden = [rec(1.5, request_id=f"golden-ab12-{i}", role="golden", arm=arm, output=out)
              for i in range(2) for arm, out in (("baseline", 0.5), ("candidate", 0.9 if i else 0.5))]
    st = replay_rollout(spec, live + golden).status
    assert st["phase"] == "RolledBack", st["message"]
    assert "golden-accuracy 0.5 < 1: 1/2 expected outputs matched; wrong on #1 (baseline 2/2)" in st["message"]
    st = replay_rollout(spec, live).status
    assert st["phase"] == "Paused" and st["pauseReason"] == "inconclusive"
    assert "the log holds 0 complete golden run(s)" in st["message"], st["message"]
