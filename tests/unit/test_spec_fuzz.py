"""Spec fuzzing: whatever a ModelRollout document holds (valid documents with a value replaced, removed or
added anywhere, or any JSON at all), `parse_rollout` either accepts it or raises a SpecError naming a field
path, never another exception; `lint` never raises and names a path for every problem it finds."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from modelrollout.plugin.lint import lint_document, lint_text
from policies.spec import SpecError, parse_rollout

ROOT = Path(__file__).resolve().parents[2]
RICH = {
    "apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
    "metadata": {"name": "rich", "namespace": "ml", "generation": 3},
    "spec": {
        "baseline": {"version": "v1", "url": "http://a"}, "candidate": {"version": "v2", "url": "https://b"},
        "predictPath": "/p", "output": {"kind": "score", "path": "out.score", "threshold": 0.4,
                                        "attributions": "explain.shap"},
        "features": {"path": "features"}, "timeout": "2s", "shadowTimeout": "1500ms",
        "service": {"name": "fraud", "port": 8080},
        "strategy": {"stickiness": {"header": "x-user-id"},
                     "steps": [{"shadow": {"duration": "10m"}}, {"canary": {"weight": 20, "duration": "5m"}},
                               {"pause": {}}, {"canary": {"weight": 60}}]},
        "analysis": {"interval": "30s", "minSamples": 50, "failureLimit": 3, "inconclusiveLimit": 4, "checks": [
            {"name": "psi", "metric": "psi", "on": "prediction", "max": 0.2, "bins": 12},
            {"name": "ks", "metric": "ks", "minPValue": 0.01, "action": "pause"},
            {"name": "err", "metric": "error-rate", "max": 0.01, "immediate": True},
            {"name": "lat", "metric": "latency-p99", "maxRatioToBaseline": 1.5, "failureLimit": 1},
            {"name": "cal", "metric": "psi", "dynamic": {"sigmas": 3, "minWindows": 5}},
            {"name": "biz", "prometheus": {"query": "sum(x)", "min": 1, "address": "http://prom:9090"}},
            {"name": "fair", "metric": "disparate-impact", "segment": "gender", "min": 0.8},
            {"name": "age", "metric": "chi2", "on": "feature:age", "minPValue": 0.05},
            {"name": "why", "metric": "attribution-tau", "min": 0.5, "action": "warn"},
            {"name": "pair", "metric": "shadow-wilcoxon", "max": 0.05}]},
        "notifications": [
            {"webhook": {"url": "http://hook"}, "on": ["RolledBack"]},
            {"slack": {"urlFrom": {"secretKeyRef": {"name": "chat", "key": "url"}}}},
            {"pagerduty": {"routingKeyFrom": {"secretKeyRef": {"name": "pd", "key": "k"}}}, "on": ["Paused"]}],
        "privacy": {"stickyKey": "hash", "inputs": "keep", "redact": ["features.ssn"], "features": "keep",
                    "segments": "hash", "fields": {"age": "hash"}},
    },
}
BASES = [RICH, yaml.safe_load((ROOT / "examples" / "rollouts" / "fraud-scorer.yaml").read_text())]

SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20) | st.sampled_from(["", "10s", "-5m", "1h30m", "http://x", "feature:", "feature:age",
                                                    "psi", "rollback", "keep", "hash", "drop", "on", "ranking", "NaN",
                                                    "x" * 300, "a..b", "/", "RolledBack", "Pending"]))
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(
    st.text(max_size=12) | st.sampled_from(["on", "name", "metric", "max", "url", "secretKeyRef", "key"]),
    c, max_size=4), max_leaves=12)


def paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(doc))))
        if not where:
            return draw(VALUES) if draw(st.integers(0, 9)) == 0 else doc
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        key = where[-1]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[key] = draw(VALUES)
        elif op == "delete":
            del parent[key]
        elif isinstance(parent[key], dict):
            parent[key][draw(st.text(max_size=10) | st.sampled_from([True, 1, "on", "true"]))] = draw(VALUES)
        elif isinstance(parent[key], list):
            parent[key].append(draw(VALUES))
        else:
            parent[key] = draw(VALUES)
    return doc


def _parse(doc) -> None:
    try:
        parse_rollout(doc)
    except SpecError as e:
        assert e.path, f"SpecError without a field path: {e!r}"
        assert str(e).startswith(e.path + ": ") and e.message, str(e)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_the_parser_answers_every_document_with_a_rollout_or_a_spec_error_with_its_path(doc):
    _parse(doc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_lint_never_raises_and_names_a_path_for_every_problem(doc):
    if not isinstance(doc, dict):
        result = lint_text(yaml.safe_dump(_yaml_safe(doc)))
        assert result.problems
        return
    for p in lint_document(doc):
        assert p.path and p.message, p
        assert p.layer in ("schema", "spec", "reachability"), p


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_any_json_at_all_is_a_spec_error_or_a_rollout(doc):
    _parse(doc)
    _parse({"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout", "metadata": {"name": "x"}, "spec": doc})


def _yaml_safe(v):
    """The value as YAML can write it (NaN and infinities as strings: they are what is being linted)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, list):
        return [_yaml_safe(x) for x in v]
    if isinstance(v, dict):
        return {k: _yaml_safe(x) for k, x in v.items()}
    return v


def test_an_empty_key_is_named_in_the_path():
    """A key "" (which hypothesis found) is reported at a path that names it, not at an empty one."""
    doc = copy.deepcopy(BASES[0])
    doc[""] = 1
    assert [(p.path, p.message) for p in lint_document(doc) if p.message == "unknown field"] == [('""', "unknown field")]
