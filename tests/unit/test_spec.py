"""The ModelRollout spec parser: the public example parses; every rejection names the field path."""
import copy
from pathlib import Path

import pytest

from policies.spec import SpecError, load_documents, parse_duration, parse_rollout

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rollouts" / "fraud-scorer.yaml"


@pytest.fixture
def doc():
    return load_documents(EXAMPLE.read_text(), str(EXAMPLE))[0]


def test_design_example_parses_as_written(doc):
    """The README's example (examples/rollouts/fraud-scorer.yaml) is accepted and every field lands where users expect."""
    spec = parse_rollout(doc).spec
    assert (spec.name, spec.namespace) == ("fraud-scorer", "ml")
    assert spec.baseline.version == "v1" and spec.candidate.url == "http://fraud-v2.ml.svc:8080"
    assert [s.kind for s in spec.steps] == ["shadow", "canary", "canary", "pause", "canary"]
    assert [s.weight for s in spec.steps] == [0, 5, 25, 0, 50]
    assert spec.steps[0].duration == 1800 and spec.steps[3].duration is None
    assert spec.analysis.interval == 60 and spec.analysis.min_samples == 200
    names = [c.name for c in spec.analysis.checks]
    assert names == ["score-psi", "score-ks", "nan-or-5xx", "latency", "age-drift", "calibrated",
                     "business", "fairness"]
    by_name = {c.name: c for c in spec.analysis.checks}
    assert by_name["age-drift"].feature == "age"          # `on:` survives YAML 1.1's on=true reading
    assert by_name["score-ks"].action == "pause" and by_name["score-ks"].min_p_value == 0.01
    assert by_name["nan-or-5xx"].immediate is True
    assert by_name["calibrated"].dynamic.sigmas == 3
    assert "{{candidate}}" in by_name["business"].prometheus.query
    assert spec.notifications[0].on == ("RolledBack", "Paused")
    assert spec.stickiness_header == "x-user-id"
    assert spec.watched_features() == ("age",) and spec.segments() == ("gender",)
    assert spec.privacy.sticky_key == "hash" and spec.privacy.inputs == "drop"
    assert spec.privacy.segment_mode("gender") == "hash" and spec.privacy.feature_mode("age") == "keep"


def test_service_is_optional_and_parses_to_name_and_port(doc):
    """Without spec.service a rollout has no Service of its own; with it, name and port are kept."""
    assert parse_rollout(doc).spec.service is None
    d = copy.deepcopy(doc)
    d["spec"]["service"] = {"name": "fraud", "port": 8080}
    service = parse_rollout(d).spec.service
    assert (service.name, service.port) == ("fraud", 8080)
    # the same name in another namespace, or outside the cluster, is another host
    d["spec"]["service"]["name"] = "fraud-v2"
    for url in ("http://fraud-v2.other.svc:8080", "http://fraud-v2.example.com", "http://fraud-v20.ml.svc"):
        d["spec"]["candidate"]["url"] = url
        assert parse_rollout(d).spec.service.name == "fraud-v2"


def test_attribution_check_parses_with_its_path(doc):
    """An attribution-tau check is accepted once output.attributions names where the response keeps them."""
    d = copy.deepcopy(doc)
    d["spec"]["output"]["attributions"] = "explanation.shap"
    d["spec"]["analysis"]["checks"].append({"name": "why-changed", "metric": "attribution-tau", "min": 0.6,
                                            "action": "warn"})
    spec = parse_rollout(d).spec
    assert spec.output.attributions == "explanation.shap"
    why = spec.analysis.checks[-1]
    assert (why.metric, why.min, why.action, why.feature) == ("attribution-tau", 0.6, "warn", None)
    assert parse_rollout(doc).spec.output.attributions is None


def test_kubectl_json_spelling_of_on_is_accepted(doc):
    """After kubectl's YAML→JSON step the `on` key arrives as the string "true"; it means the same."""
    d = copy.deepcopy(doc)
    for check in d["spec"]["analysis"]["checks"]:
        if True in check:
            check["true"] = check.pop(True)
    spec = parse_rollout(d).spec
    assert spec.watched_features() == ("age",)


@pytest.mark.parametrize("mutate, path, expected", [
    (lambda d: d["spec"]["analysis"]["checks"][0].__setitem__("max", "high"),
     "spec.analysis.checks[0].max", "expected a number"),
    (lambda d: d["spec"]["strategy"]["steps"][1]["canary"].__setitem__("weight", 150),
     "spec.strategy.steps[1].canary.weight", "<= 100"),
    (lambda d: d["spec"]["strategy"]["steps"][0]["shadow"].__setitem__("duration", "ten minutes"),
     "spec.strategy.steps[0].shadow.duration", "duration like 30s"),
    (lambda d: d["spec"].pop("strategy"), "spec.strategy.steps", "at least one step"),
    (lambda d: d["spec"]["output"].__setitem__("kind", "regression"), "spec.output.kind", "one of"),
    (lambda d: d["spec"]["candidate"].__setitem__("url", "fraud-v2:8080"), "spec.candidate.url", "http://"),
    (lambda d: d["spec"]["analysis"]["checks"].append({"name": "score-psi", "metric": "psi", "max": 1}),
     "spec.analysis.checks[8].name", "duplicate"),
    (lambda d: d["spec"]["analysis"]["checks"].append({"name": "x", "metric": "psi"}),
     "spec.analysis.checks[8]", "needs a threshold"),
    (lambda d: d["spec"]["strategy"]["steps"].append({"canary": {"weight": 5}, "pause": {}}),
     "spec.strategy.steps[5]", "exactly one of"),
    (lambda d: d["spec"]["strategy"]["steps"].append({"interleave": {}}),
     "spec.strategy.steps[5].interleave", "ranking"),
    (lambda d: d["spec"]["analysis"]["checks"].append({"name": "x", "metric": "psi", "maxRatioToBaseline": 2}),
     "spec.analysis.checks[8].maxRatioToBaseline", "use max or dynamic"),
    (lambda d: d["spec"]["analysis"]["checks"].append({"name": "x", "metric": "psi", "minPValue": 0.01}),
     "spec.analysis.checks[8].minPValue", "psi has no p-value"),
    (lambda d: d["spec"]["analysis"]["checks"].append({"name": "x", "metric": "error-rate",
                                                       "dynamic": {"sigmas": 3}}),
     "spec.analysis.checks[8].dynamic", "drift metrics"),
    (lambda d: d["spec"]["analysis"]["checks"].append({"name": "why", "metric": "attribution-tau", "min": 0.6}),
     "spec.analysis.checks[8].metric", "spec.output.attributions"),
    (lambda d: (d["spec"]["output"].__setitem__("attributions", "shap"),
                d["spec"]["analysis"]["checks"].append({"name": "why", "metric": "attribution-tau", "min": 0.6,
                                                        "on": "feature:age"})),
     "spec.analysis.checks[8].on", "expected 'prediction'"),
    (lambda d: (d["spec"]["output"].__setitem__("attributions", "shap"),
                d["spec"]["analysis"]["checks"].append({"name": "why", "metric": "attribution-tau",
                                                        "minPValue": 0.01})),
     "spec.analysis.checks[8].minPValue", "attribution-tau has no p-value"),
    (lambda d: d["spec"]["output"].__setitem__("attributions", "explanation..shap"),
     "spec.output.attributions", "dotted path"),
    (lambda d: d["spec"]["output"].__setitem__("attributions", ""), "spec.output.attributions", "non-empty string"),
    (lambda d: d["spec"]["output"].__setitem__("attributions", {"path": "shap"}),
     "spec.output.attributions", "non-empty string"),
    (lambda d: d["metadata"].__setitem__("name", "Fraud_Scorer"), "metadata.name", "DNS-1123"),
    (lambda d: d["spec"].__setitem__("service", {"name": "fraud"}), "spec.service.port", "required"),
    (lambda d: d["spec"].__setitem__("service", {"name": "fraud", "port": 70000}), "spec.service.port", "<= 65535"),
    (lambda d: d["spec"].__setitem__("service", {"name": "fraud", "port": "http"}), "spec.service.port",
     "expected an integer"),
    (lambda d: d["spec"].__setitem__("service", {"name": "9fraud", "port": 80}), "spec.service.name",
     "a Service name"),
    (lambda d: d["spec"].__setitem__("service", {"name": "f" * 64, "port": 80}), "spec.service.name",
     "at most 63 characters"),
    (lambda d: d["spec"].__setitem__("service", "fraud"), "spec.service", "expected a mapping"),
    (lambda d: d["spec"].__setitem__("service", {"name": "fraud-v1", "port": 8080}), "spec.baseline.url",
     "send every request back to itself"),
    (lambda d: (d["spec"].__setitem__("service", {"name": "scorer", "port": 80}),
                d["spec"]["candidate"].__setitem__("url", "http://scorer:8080/v2")), "spec.candidate.url",
     "a Service of its own (e.g. scorer-v2)"),
    (lambda d: d.__setitem__("apiVersion", "v1"), "apiVersion", "modelrollout.io/v1alpha1"),
])
def test_bad_specs_name_the_field_and_the_expectation(doc, mutate, path, expected):
    """Every rejection carries the exact field path and what was expected there."""
    d = copy.deepcopy(doc)
    mutate(d)
    with pytest.raises(SpecError) as err:
        parse_rollout(d)
    assert err.value.path == path
    assert expected in str(err.value)


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600),
                                           ("1h30m", 5400), ("1.5s", 1.5), (2, 2.0)])
def test_durations_accept_go_style_units(text, seconds):
    """Durations are written like Kubernetes ones and mean seconds inside."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1d", "-1s", True, None, -3])
def test_bad_durations_are_rejected(text):
    """A duration that is not a number with a unit is rejected, not read as zero."""
    with pytest.raises(SpecError):
        parse_duration(text)


def test_yaml_without_a_rollout_is_a_clear_error():
    """A file with no ModelRollout document says so instead of doing nothing."""
    with pytest.raises(SpecError, match="no ModelRollout document"):
        load_documents("apiVersion: v1\nkind: ConfigMap\n", "cm.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_documents("a: [", "broken.yaml")


def test_a_spec_without_candidate_is_a_steady_state(doc):
    """No candidate (and no strategy) parses: nothing to roll out, the baseline (or the stable) serves."""
    d = copy.deepcopy(doc)
    del d["spec"]["candidate"], d["spec"]["strategy"]
    spec = parse_rollout(d).spec
    assert spec.candidate is None and spec.steps == () and spec.steady
    assert spec.revision == "v1@http://fraud-v1.ml.svc:8080"


def test_candidate_equal_to_baseline_is_a_steady_state(doc):
    """baseline == candidate is no longer an error: it is the steady state of that version."""
    d = copy.deepcopy(doc)
    d["spec"]["candidate"] = dict(d["spec"]["baseline"])
    spec = parse_rollout(d).spec
    assert spec.steady and spec.candidate == spec.baseline


def test_resolved_compares_the_candidate_with_the_stable(doc):
    """Once a promotion made a stable, the spec runs with the stable as baseline whatever spec.baseline
    says; without a candidate the stable is the candidate too (steady); resolving twice changes nothing."""
    from policies.spec import VersionRef

    spec = parse_rollout(doc).spec
    assert spec.resolved(None) is spec and not spec.steady
    v0 = VersionRef("v0", "http://fraud-v0.ml.svc:8080")
    r = spec.resolved(v0)
    assert r.baseline == v0 and r.candidate == spec.candidate and r.spec_baseline == spec.baseline
    assert r.resolved(v0) == r and r.revision == spec.revision
    promoted = spec.resolved(spec.candidate)
    assert promoted.steady and promoted.baseline == spec.candidate
    d = copy.deepcopy(doc)
    del d["spec"]["candidate"]
    steady = parse_rollout(d).spec.resolved(v0)
    assert steady.steady and steady.candidate == v0 and steady.revision == f"v0@{v0.url}"
