"""`modelrollout lint` / `kubectl modelrollout lint`: offline validation against the CRD schema and the spec parser."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from modelrollout import plugin
from modelrollout.plugin.crd import schema
from modelrollout.plugin.lint import lint_document, lint_text
from modelrollout.plugin.schema import validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rollouts" / "fraud-scorer.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def paths(problems) -> list[str]:
    return [p.path for p in problems]


@pytest.mark.parametrize("path", [EXAMPLE, *sorted((ROOT / "manifests" / "examples").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_shipped_examples_lint_clean(path):
    """Every example rollout the project ships passes lint with no problem."""
    result = lint_text(path.read_text(), str(path))
    assert result.documents >= 1
    assert result.problems == []


def test_bare_on_key_is_accepted_as_yaml_reads_it():
    """A bare `on:` key (read by YAML 1.1 as boolean true) is valid in checks and notifications."""
    doc = example()
    assert True in doc["spec"]["analysis"]["checks"][0]
    assert True in doc["spec"]["notifications"][0]
    assert lint_document(doc) == []


@pytest.mark.parametrize("mutate, path, words", [
    (lambda d: d["spec"]["strategy"]["steps"][1]["canary"].update(weight=150),
     "spec.strategy.steps[1].canary.weight", "less than or equal to 100"),
    (lambda d: d["spec"]["analysis"].update(interval="1 minute"), "spec.analysis.interval", "should match"),
    (lambda d: d["spec"]["output"].update(kind="probability"), "spec.output.kind", "supported values"),
    (lambda d: d["spec"].pop("baseline"), "spec.baseline", "Required value"),
    (lambda d: d["spec"].pop("strategy"), "spec.strategy", "a candidate needs spec.strategy.steps"),
    (lambda d: d["spec"]["analysis"]["checks"][0].update(action="explode"),
     "spec.analysis.checks[0].action", "supported values"),
    (lambda d: d["spec"]["analysis"]["checks"][0].update(metric="entropy"),
     "spec.analysis.checks[0].metric", "supported values"),
    (lambda d: d["spec"]["strategy"]["steps"].append({"canary": {"weight": 1}, "pause": {}}),
     "spec.strategy.steps[5]", "at most 1"),
    (lambda d: d["spec"]["strategy"]["steps"].append({"rollout": {}}), "spec.strategy.steps[5].rollout",
     "unknown field"),
    (lambda d: d["spec"]["analysis"]["checks"][0].pop("max"), "spec.analysis.checks[0]", "needs a threshold"),
    (lambda d: d["spec"]["analysis"]["checks"].append(dict(d["spec"]["analysis"]["checks"][0])),
     "spec.analysis.checks[8]", "Duplicate value"),
    (lambda d: d["spec"]["candidate"].update(url="fraud-v2:8080"), "spec.candidate.url", "should match"),
    (lambda d: d["spec"]["analysis"]["checks"][0].update(minPValue=2), "spec.analysis.checks[0].minPValue",
     "less than or equal to 1"),
    (lambda d: d["spec"].update(service={"name": "Fraud", "port": 8080}), "spec.service.name", "should match"),
    (lambda d: d["spec"].update(service={"name": "fraud", "port": 0}), "spec.service.port",
     "greater than or equal to 1"),
    (lambda d: d["spec"].update(service={"name": "fraud"}), "spec.service.port", "Required value"),
    # the golden step: exactly one source (the CRD's rule), and before any traffic (the parser)
    (lambda d: d["spec"]["strategy"]["steps"].insert(0, {"golden": {"url": "https://g.test/set.json",
                                                                   "configMap": {"name": "g", "key": "k"}}}),
     "spec.strategy.steps[0].golden", "expected exactly one of configMap, url, requests"),
    (lambda d: d["spec"]["strategy"]["steps"].append({"golden": {"configMap": {"name": "g", "key": "k"}}}),
     "spec.strategy.steps[5].golden", "must come before any shadow, canary or interleave step (step 0 is shadow)"),
    (lambda d: d["spec"]["strategy"]["steps"].insert(0, {"golden": {"requests": [{"expected": 1}]}}),
     "spec.strategy.steps[0].golden.requests[0].request", "Required value"),
])
def test_schema_errors_name_the_field(mutate, path, words):
    """Each kind of bad spec is reported with the field path the apiserver would print and why."""
    doc = example()
    mutate(doc)
    problems = lint_document(doc, "f.yaml")
    hits = [p for p in problems if p.path == path]
    assert hits, f"no problem at {path}: {[str(p) for p in problems]}"
    assert any(words in p.message for p in hits), [str(p) for p in hits]


def test_spec_parser_errors_beyond_the_schema_are_reported():
    """Rules only the parser knows (interleaving needs a ranking output) still fail lint with their path."""
    doc = example()
    doc["spec"]["analysis"]["checks"][0]["on"] = doc["spec"]["analysis"]["checks"][0].pop(True)
    doc["spec"]["analysis"]["checks"][0]["metric"] = "chi2"   # chi2 on a score output: only the parser says no
    problems = lint_document(doc)
    assert [(p.layer, p.path) for p in problems] == [("spec", "spec.analysis.checks[0].metric")]
    assert "chi2 compares categories" in problems[0].message


def test_all_schema_errors_reported_at_once():
    """Several independent mistakes are all reported in one run, like the apiserver does."""
    doc = example()
    doc["spec"]["strategy"]["steps"][1]["canary"]["weight"] = -1
    doc["spec"]["timeout"] = "soon"
    doc["spec"]["output"]["kind"] = "vector"
    assert {"spec.strategy.steps[1].canary.weight", "spec.timeout", "spec.output.kind"} <= set(paths(
        lint_document(doc)))


def test_not_yaml_and_no_rollout_are_errors():
    """Broken YAML and files with no ModelRollout fail lint with a message instead of a traceback."""
    assert "not valid YAML" in lint_text("a: [1, 2", "x.yaml").problems[0].message
    assert "no ModelRollout document" in lint_text("kind: ConfigMap\napiVersion: v1\n", "x.yaml").problems[0].message


def test_other_kinds_in_a_stream_are_skipped():
    """A multi-document file with Services and rollouts lints only the rollouts."""
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n" + EXAMPLE.read_text()
    result = lint_text(text)
    assert result.documents == 1 and result.problems == []


def test_cli_exit_codes_and_output(tmp_path, capsys):
    """lint exits 0 on valid files and 1 with every error printed (file, document, name, path) otherwise."""
    assert plugin.main(["lint", str(EXAMPLE)]) == 0
    assert "1 ModelRollout document(s) valid" in capsys.readouterr().out
    bad = example()
    bad["spec"]["strategy"]["steps"][0] = {"shadow": {"duration": "forever"}}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    assert plugin.main(["lint", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}[0] (fraud-scorer): spec.strategy.steps[0].shadow.duration" in err
    assert plugin.main(["lint", str(f), "-o", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["documents"] == 1
    assert out["errors"][0]["path"] == "spec.strategy.steps[0].shadow.duration"


def test_missing_file_is_a_clear_error(capsys):
    """A file that cannot be read is reported by name with exit code 1."""
    assert plugin.main(["lint", "/nonexistent/rollout.yaml"]) == 1
    assert "/nonexistent/rollout.yaml: cannot read" in capsys.readouterr().err


def test_validator_accepts_status_written_by_controller():
    """The status the controller writes (RolloutStatus.to_status, with nulls) satisfies the CRD's status schema."""
    from policies.status import CheckState, Phase, RolloutStatus, Routing, Verdict, WindowValue

    st = RolloutStatus(phase=Phase.PROGRESSING, current_step=2, routing=Routing(25),
                       checks=(CheckState("score-psi", "psi", 0.04, 0.2, Verdict.PASS, 5120,
                                          recent=(WindowValue(1.0, 0.04, Verdict.PASS),)),
                               CheckState("new")))
    doc = copy.deepcopy(example())
    doc["status"] = json.loads(json.dumps(st.to_status()))
    assert validate(doc, schema()) == []


def test_empty_step_value_is_flagged_as_kubectl_apply_sends_it():
    """`- pause:` (null) is reported, with the fix, because kubectl apply drops the null key and the server
    then sees an empty step."""
    text = EXAMPLE.read_text().replace("- pause: {}", "- pause:")
    problems = lint_text(text).problems
    assert [p.path for p in problems] == ["spec.strategy.steps[3]"]
    assert "write {} for an empty object" in problems[0].message


def test_binned_drift_checks_with_windows_too_small_for_their_bins_are_warned_about():
    """A psi/kl/js/hellinger `max` judged on windows that may hold fewer than 10 samples a bin can Fail with no
    drift: lint warns (naming the check, minSamples and what would do), does not fail, and stays quiet for
    enough samples, fewer bins or a calibrated threshold."""
    def warnings_of(min_samples: int, check: dict) -> list:
        doc = example()
        doc["spec"]["analysis"]["minSamples"] = min_samples
        doc["spec"]["analysis"]["checks"] = [check]
        result = lint_text(yaml.safe_dump(doc), "r.yaml")
        assert result.problems == []
        return result.warnings

    (w,) = warnings_of(30, {"name": "score-psi", "metric": "psi", "max": 0.2})
    assert w.path == "spec.analysis.checks[0].max" and w.layer == "planning"
    assert "'score-psi'" in w.message and "minSamples 30" in w.message and "raise minSamples to 100" in w.message
    (w,) = warnings_of(30, {"name": "js", "metric": "js", "max": 0.1, "bins": 5})
    assert "over 5 bins" in w.message and "raise minSamples to 50" in w.message
    assert warnings_of(100, {"name": "score-psi", "metric": "psi", "max": 0.2}) == []
    assert warnings_of(30, {"name": "few-bins", "metric": "psi", "max": 0.2, "bins": 3}) == []
    assert warnings_of(30, {"name": "calibrated", "metric": "psi", "dynamic": {"sigmas": 3}}) == []
    assert warnings_of(30, {"name": "ks", "metric": "ks", "minPValue": 0.01}) == []
