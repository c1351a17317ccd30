"""spec.privacy: parsing with field paths, the checks it rules out, the keyed hash, lint, and the record
transformation the router applies before folding and logging."""
from __future__ import annotations

import copy

import pytest
import yaml

from modelrollout.plugin.lint import lint_text
from policies.outcome import Outcome
from policies.privacy import PrivacySpec, is_hashed, keyed_hash
from policies.spec import SpecError, parse_rollout
from router.privacy import Privacy

BASE = {
    "apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout", "metadata": {"name": "fraud", "namespace": "ml"},
    "spec": {"baseline": {"version": "v1", "url": "http://a"}, "candidate": {"version": "v2", "url": "http://b"},
             "features": {"path": "features"}, "strategy": {"steps": [{"canary": {"weight": 10}}]},
             "analysis": {"checks": [
                 {"name": "fair", "metric": "disparate-impact", "segment": "gender", "min": 0.8},
                 {"name": "age-psi", "metric": "psi", "on": "feature:age", "max": 0.2},
                 {"name": "amount-ks", "metric": "ks", "on": "feature:amount", "minPValue": 0.01}]}},
}


def doc_with(privacy) -> dict:
    d = copy.deepcopy(BASE)
    d["spec"]["privacy"] = privacy
    return d


def test_defaults_hash_the_sticky_key_and_drop_bodies():
    p = parse_rollout(BASE).spec.privacy
    assert p == PrivacySpec() and (p.sticky_key, p.inputs, p.features, p.segments) == ("hash", "drop", "keep", "keep")


def test_every_setting_parses():
    p = parse_rollout(doc_with({"stickyKey": "keep", "inputs": "keep", "redact": ["features.ssn", "card"],
                                "features": "keep", "segments": "hash", "fields": {"age": "hash", "zip": "drop"}})
                      ).spec.privacy
    assert p.redact == ("features.ssn", "card") and p.segment_mode("gender") == "hash"
    assert p.feature_mode("age") == "hash" and p.feature_mode("amount") == "keep" and p.fields["zip"] == "drop"


@pytest.mark.parametrize("privacy, path, words", [
    ({"stickyKey": "encrypt"}, "spec.privacy.stickyKey", "expected one of keep, hash, drop"),
    ({"inputs": True}, "spec.privacy.inputs", "expected a non-empty string"),
    ({"colour": "keep"}, "spec.privacy.colour", "unknown field"),
    ({"fields": {"age": "blur"}}, "spec.privacy.fields.age", "expected one of keep, hash, drop"),
    ({"fields": ["age"]}, "spec.privacy.fields", "expected a mapping"),
    ({"redact": ["a..b"]}, "spec.privacy.redact[0]", "dotted path"),
    ({"inputs": "keep", "redact": "ssn"}, "spec.privacy.redact", "expected a list"),
    ({"redact": ["ssn"]}, "spec.privacy.redact", "inputs is 'drop'"),
    ({"segments": "drop"}, "spec.analysis.checks[0].segment", "'gender' is dropped by spec.privacy.segments"),
    ({"fields": {"age": "drop"}}, "spec.analysis.checks[1].on", "spec.privacy.fields.age"),
    ({"features": "hash"}, "spec.analysis.checks[2].metric", "keeps only equality"),
    ("hash", "spec.privacy", "expected a mapping"),
])
def test_bad_settings_name_their_field(privacy, path, words):
    with pytest.raises(SpecError) as e:
        parse_rollout(doc_with(privacy))
    assert e.value.path == path and words in e.value.message, str(e.value)


def test_hashing_a_feature_leaves_categorical_checks_and_fairness_working():
    d = doc_with({"fields": {"age": "hash", "gender": "hash"}})
    d["spec"]["analysis"]["checks"].pop()                      # the ks check on amount stays numeric
    spec = parse_rollout(d).spec
    assert spec.privacy.feature_mode("age") == "hash"


def test_keyed_hash_keeps_equality_only_under_one_key():
    a = keyed_hash(b"k" * 16, "alice")
    assert is_hashed(a) and a == keyed_hash(b"k" * 16, "alice") != keyed_hash(b"j" * 16, "alice")
    assert a != keyed_hash(b"k" * 16, "alicf")
    assert keyed_hash(b"k" * 16, 42) == keyed_hash(b"k" * 16, "42") == keyed_hash(b"k" * 16, 42.0)
    assert keyed_hash(b"k" * 16, True) == keyed_hash(b"k" * 16, "true")
    assert len(a) == len("hmac:") + 32 and not is_hashed("alice") and not is_hashed(None)


def test_lint_reports_schema_and_parser_problems_of_privacy():
    bad = doc_with({"stickyKey": "encrypt", "fields": {"age": "blur"}})
    problems = lint_text(yaml.safe_dump(bad)).problems
    assert {(p.path, p.layer) for p in problems} >= {("spec.privacy.stickyKey", "schema"),
                                                     ("spec.privacy.fields.age", "schema")}
    semantic = doc_with({"segments": "drop"})
    problems = lint_text(yaml.safe_dump(semantic)).problems
    assert [(p.path, p.layer) for p in problems] == [("spec.analysis.checks[0].segment", "spec")]
    assert lint_text(yaml.safe_dump(doc_with({"fields": {"gender": "hash"}}))).problems == []


def _answer(**more) -> Outcome:
    return Outcome.answer(1.0, "r1", "fraud", "ml", "v2@x", "v1", "baseline", "primary", 200, None, 1.0, 0.4,
                          {"age": 31, "amount": 12.5}, {"gender": "f"}, **more)


def test_record_privacy_keeps_hashes_or_drops_each_field():
    key = b"0123456789abcdef"
    spec = parse_rollout(doc_with({"inputs": "keep", "redact": ["features.amount"], "fields": {"age": "hash"},
                                   "segments": "hash"})).spec
    body = {"features": {"age": 31, "amount": 12.5}}
    rec = _answer(sticky="alice", input=body)
    out = Privacy(key).apply(spec, rec)
    assert out.sticky == keyed_hash(key, "alice")
    assert out.features == {"age": keyed_hash(key, 31), "amount": 12.5}
    assert out.segments == {"gender": keyed_hash(key, "f")}
    assert out.input == {"features": {"age": 31, "amount": "[redacted]"}} and body["features"]["amount"] == 12.5
    assert rec.sticky == "alice" and rec.features["age"] == 31          # the original is untouched
    default = Privacy(key).apply(parse_rollout(BASE).spec, _answer(sticky="alice", input=body))
    assert default.input is None and default.sticky == keyed_hash(key, "alice")
    assert default.features == {"age": 31, "amount": 12.5} and default.segments == {"gender": "f"}
    dropped = parse_rollout(doc_with({"stickyKey": "drop", "inputs": "hash"})).spec
    out = Privacy(key).apply(dropped, _answer(sticky="alice", input=body))
    assert out.sticky is None and is_hashed(out.input) and "sticky" not in out.to_dict()
    assert Outcome.from_json(out.to_json()) == out
