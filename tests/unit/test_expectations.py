"""Input expectations: parsing, classifying one value, the mergeable InputSummary, folding records, judging a
window, and what the state machine does with broken inputs (pause; the window judges nothing else)."""
from __future__ import annotations

import numpy as np
import pytest

from policies.checks import Observations, evaluate
from policies.expectations import INPUT_CHECK, issue, issues
from policies.machine import decide
from policies.outcome import Outcome, rebuild
from policies.spec import SpecError, parse_spec
from policies.status import Phase, Verdict
from policies.summaries import InputSummary, VersionWindow

T0 = 1_800_000_000.0


def make_spec(expectations, checks=None, features_path="features", min_samples=50, privacy=None):
    raw = {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
           "strategy": {"steps": [{"canary": {"weight": 50, "duration": "10m"}}]},
           "analysis": {"interval": "1m", "minSamples": min_samples,
                        "checks": checks or [{"name": "score-psi", "metric": "psi", "max": 0.2}]},
           "expectations": expectations}
    if features_path:
        raw["features"] = {"path": features_path}
    if privacy:
        raw["privacy"] = privacy
    return parse_spec(raw, "fraud", "ml", generation=1)


EXP = {"rows": {"min": 10},
       "features": [{"name": "amount", "type": "number", "maxNullRate": 0.05, "min": 0, "max": 1000},
                    {"name": "country", "type": "string", "in": ["FR", "DE"], "mostly": 0.9}]}


def test_parse_and_watch():
    spec = make_spec(EXP)
    e = spec.expectations
    assert e.rows_min == 10 and e.rows_max is None
    assert [f.name for f in e.features] == ["amount", "country"]
    assert e.features[1].allowed == ("DE", "FR") and e.features[1].mostly == 0.9
    assert spec.watched_features() == ("amount", "country")


@pytest.mark.parametrize("exp,path,needle", [
    ({"features": [{"name": "a", "type": "float"}]}, "spec.expectations.features[0].type", "expected one of"),
    ({"features": [{"name": "a"}]}, "spec.expectations.features[0]", "needs an expectation"),
    ({"features": [{"name": "a", "maxNullRate": 1.5}]}, "spec.expectations.features[0].maxNullRate", "<= 1.0"),
    ({"features": [{"name": "a", "min": 5, "max": 1}]}, "spec.expectations.features[0].max", ">= min"),
    ({"features": [{"name": "a", "type": "string", "max": 1}]}, "spec.expectations.features[0].type", "numbers"),
    ({"features": [{"name": "a", "in": []}]}, "spec.expectations.features[0].in", "1 to"),
    ({"features": [{"name": "a", "maxNullRate": 0.1, "mostly": 0.5}]}, "spec.expectations.features[0].mostly",
     "applies to"),
    ({"features": [{"name": "a", "maxNullRate": 0.1}, {"name": "a", "type": "number"}]},
     "spec.expectations.features[1].name", "duplicate"),
    ({"rows": {}}, "spec.expectations.rows", "min or max"),
    ({"row": {"min": 1}}, "spec.expectations.row", "unknown field"),
    ({}, "spec.expectations", "rows or features"),
])
def test_bad_expectations_name_the_field(exp, path, needle):
    with pytest.raises(SpecError) as e:
        make_spec(exp)
    assert e.value.path == path and needle in str(e.value)


def test_feature_expectations_need_a_features_path_and_the_check_name_is_reserved():
    with pytest.raises(SpecError, match="spec.features.path"):
        make_spec(EXP, features_path=None)
    with pytest.raises(SpecError, match="spec.analysis.checks\\[0\\].name"):
        make_spec(EXP, checks=[{"name": INPUT_CHECK, "metric": "psi", "max": 0.2}])


def test_issue_classifies_null_type_range_and_set():
    amount, country = make_spec(EXP).expectations.features
    assert issue(amount, None) == "null"
    assert issue(amount, "12") == "type"
    assert issue(amount, -1) == "range" and issue(amount, 1000.5) == "range"
    assert issue(amount, 0) is None and issue(amount, 1000) is None
    assert issue(country, "US") == "in" and issue(country, "FR") is None and issue(country, 3) == "type"
    assert issues(make_spec(EXP).expectations, {"amount": 5}) == {"country": "null"}   # absent = null
    assert issues(make_spec(EXP).expectations, None) == {"amount": "null", "country": "null"}


def test_integer_and_boolean_types():
    spec = make_spec({"features": [{"name": "n", "type": "integer"}, {"name": "b", "type": "boolean"}]})
    n, b = spec.expectations.features
    assert issue(n, 3) is None and issue(n, 3.0) is None and issue(n, 3.5) == "type"
    assert issue(b, "true") is None and issue(b, "yes") == "type"


def test_input_summary_merge_is_exact_and_keeps_the_smallest_examples():
    parts = []
    for i in range(3):
        s = InputSummary()
        s.add_rows(10)
        for j in range(4):
            s.add_issue("amount", "range", f"{i * 10 + j}")
        s.add_issue("amount", "null")
        parts.append(s)
    ab_c = parts[0].merge(parts[1]).merge(parts[2])
    a_bc = parts[0].merge(parts[1].merge(parts[2]))
    assert ab_c.to_dict() == a_bc.to_dict() == parts[2].merge(parts[0]).merge(parts[1]).to_dict()
    assert ab_c.rows == 30 and ab_c.count("amount", "range") == 12 and ab_c.count("amount", "null") == 3
    assert ab_c.examples_of("amount", "range") == ["0", "1", "10"]
    assert InputSummary.from_dict(ab_c.to_dict()).to_dict() == ab_c.to_dict()
    w = VersionWindow.new("score")
    w.inputs = ab_c
    assert VersionWindow.from_dict(w.to_dict()).inputs.to_dict() == ab_c.to_dict()


def _records(spec, n, null_every=0, bad_country=0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arm = "candidate" if i % 2 else "baseline"
        feats = {"amount": float(rng.uniform(1, 100)), "country": "FR"}
        if null_every and i % null_every == 0:
            del feats["amount"]
        if bad_country and i % bad_country == 0:
            feats["country"] = "US"
        found = issues(spec.expectations, feats)
        out.append(Outcome(T0 + i * 0.01, f"r{i}", "fraud", "ml", spec.revision, "v2" if arm == "candidate" else "v1",
                           arm, "primary", 200, None, 1.0, output=float(rng.uniform()), features=feats,
                           input_issues=found))
    return out


def _obs(spec, records):
    [b] = rebuild(records, spec, bucket_seconds=60)
    return Observations(T0, T0 + 60, b.baseline, b.candidate)


def test_twenty_percent_nulls_fail_the_window_and_name_the_expectation():
    spec = make_spec(EXP)
    results = evaluate(spec, _obs(spec, _records(spec, 400, null_every=5)))
    by = {r.name: r for r in results}
    inp = by[INPUT_CHECK]
    assert inp.verdict is Verdict.FAIL and inp.samples == 400
    assert "amount notNull: 20% of 400 null or missing > maxNullRate 0.05" in inp.reason
    [failing] = inp.evidence["inputs"]["failing"]
    assert failing["feature"] == "amount" and failing["expectation"] == "notNull"
    assert failing["fraction"] == pytest.approx(0.2) and failing["tolerated"] == 0.05
    # the other checks are not judged on broken inputs
    assert by["score-psi"].skipped and by["score-psi"].verdict is Verdict.INCONCLUSIVE
    assert "inputs are broken" in by["score-psi"].reason


def test_examples_are_the_values_the_privacy_settings_keep():
    spec = make_spec(EXP)
    inp = {r.name: r for r in evaluate(spec, _obs(spec, _records(spec, 400, bad_country=4)))}[INPUT_CHECK]
    [failing] = inp.evidence["inputs"]["failing"]
    assert failing["expectation"] == "in" and failing["fraction"] == pytest.approx(0.25)
    assert failing["examples"] == ['"US"']
    # dropped: the record no longer holds the value, the example says so
    recs = [r.replaced(features={k: v for k, v in r.features.items() if k != "country"}) for r in
            _records(spec, 400, bad_country=4)]
    inp = {r.name: r for r in evaluate(spec, _obs(spec, recs))}[INPUT_CHECK]
    assert inp.evidence["inputs"]["failing"][0]["examples"] == ['[redacted]']


def test_within_tolerance_passes_and_few_rows_is_inconclusive():
    spec = make_spec(EXP)
    inp = {r.name: r for r in evaluate(spec, _obs(spec, _records(spec, 400, bad_country=20)))}[INPUT_CHECK]
    assert inp.verdict is Verdict.PASS             # 5% not allowed, mostly 0.9 tolerates 10%
    inp = {r.name: r for r in evaluate(spec, _obs(spec, _records(spec, 20, null_every=2)))}[INPUT_CHECK]
    assert inp.verdict is Verdict.INCONCLUSIVE and "20 rows < minSamples 50" in inp.reason
    inp = {r.name: r for r in evaluate(spec, _obs(spec, _records(spec, 4)))}[INPUT_CHECK]
    assert inp.verdict is Verdict.FAIL and "4 rows < rows.min 10" in inp.reason


def test_broken_inputs_pause_the_rollout_and_the_window_does_not_count():
    spec = make_spec(EXP)
    s = decide(spec, None, None, T0).status
    assert [c.name for c in s.checks] == ["score-psi", INPUT_CHECK]
    ok = evaluate(spec, _obs(spec, _records(spec, 400)), s)
    s = decide(spec, s, ok, T0 + 60).status
    assert s.step_windows == 1 and s.check("score-psi").verdict is Verdict.PASS
    broken = evaluate(spec, _obs(spec, _records(spec, 400, null_every=5)), s)
    d = decide(spec, s, broken, T0 + 120)
    s2 = d.status
    assert s2.phase is Phase.PAUSED and s2.pause_reason == "inputs"
    assert "amount notNull: 20%" in s2.message
    assert s2.step_windows == 1                                   # the broken window counted for nothing
    assert s2.check("score-psi").verdict is Verdict.PASS and s2.check("score-psi").failures == 0
    assert s2.check(INPUT_CHECK).verdict is Verdict.FAIL
    assert any(getattr(a, "reason", "") == "Paused" for a in d.actions)
    paused = next(c for c in s2.conditions if c.type == "Paused")
    assert paused.reason == "InputsBroken"


def test_lint_names_the_new_fields():
    import yaml

    from modelrollout.plugin.lint import lint_document
    doc = yaml.safe_load("""
apiVersion: modelrollout.io/v1alpha1
kind: ModelRollout
metadata: {name: fraud, namespace: ml}
spec:
  baseline: {version: v1, url: http://a:1}
  candidate: {version: v2, url: http://b:1}
  output: {kind: score, path: prediction, embedding: emb}
  features: {path: features}
  strategy: {steps: [{shadow: {duration: 1m}}]}
  analysis: {checks: [{name: o, metric: outlier-rate, on: embedding, max: 0.05}]}
  expectations:
    rows: {min: 10}
    features: [{name: amount, type: number, maxNullRate: 0.05}, {name: country, in: [FR, DE]}]
""")
    assert lint_document(doc) == []
    doc["spec"]["expectations"]["features"][0]["maxNullrate"] = 0.1
    doc["spec"]["expectations"]["features"][1]["in"].append(3)
    found = {(p.path, p.message) for p in lint_document(doc)}
    assert ("spec.expectations.features[0].maxNullrate", "unknown field") in found
    assert any(path == "spec.expectations.features[1].in[2]" and "string" in msg for path, msg in found)


def test_the_router_classifies_raw_values_before_privacy_hashes_or_drops_them():
    """router.privacy: a hashed or dropped feature is still checked on its raw value; the examples the fold
    keeps are what the record holds (the hash), or "[redacted]"."""
    from router.privacy import RecordPrivacy

    spec = make_spec({"features": [{"name": "amount", "type": "number", "min": 0},
                                   {"name": "country", "in": ["FR"]}]},
                     privacy={"features": "hash", "fields": {"amount": "drop"}},
                     checks=[{"name": "c", "metric": "psi", "on": "feature:country", "max": 0.2}])
    rp = RecordPrivacy(spec.privacy, b"k" * 32, spec.expectations)
    rec = Outcome(T0, "r1", "fraud", "ml", spec.revision, "v1", "baseline", "primary", 200, None, 1.0, output=0.5,
                  features={"amount": -3, "country": "US"})
    kept = rp.apply(rec)
    assert kept.input_issues == {"amount": "range", "country": "in"}
    assert "amount" not in kept.features and kept.features["country"].startswith("hmac:")
    shadow = rp.apply(Outcome(T0, "r1", "fraud", "ml", spec.revision, "v2", "candidate", "shadow", 200, None, 1.0,
                              output=0.5, features={"amount": -3, "country": "US"}))
    assert shadow.input_issues is None                       # a mirrored call is not a live input row
    [b] = rebuild([kept] * 60, spec, bucket_seconds=60)
    assert b.baseline.inputs.rows == 60
    assert b.baseline.inputs.examples_of("amount", "range") == ["[redacted]"]
    assert b.baseline.inputs.examples_of("country", "in") == [f'"{kept.features["country"]}"']
