"""The ModelRollout CRD on a real kube-apiserver, driven by the real kubectl: what users `kubectl apply`."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from modelrollout.plugin.lint import lint_document
from policies.spec import parse_rollout
from policies.status import CheckState, Condition, HistoryEntry, Phase, RolloutStatus, Routing, Verdict, WindowValue

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "crd.yaml"
EXAMPLE = ROOT / "examples" / "rollouts" / "fraud-scorer.yaml"


def install_crd(kubectl) -> None:
    """Apply manifests/crd.yaml and wait until the API serves it (idempotent across test modules)."""
    kubectl("apply", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/modelrollouts.modelrollout.io")


@pytest.fixture(scope="module")
def crd(kubectl):
    install_crd(kubectl)


def example_text(namespace: str) -> str:
    return EXAMPLE.read_text().replace("namespace: ml", f"namespace: {namespace}")


def get(kubectl, namespace, name="fraud-scorer") -> dict:
    return json.loads(kubectl("get", "modelrollout", name, "-n", namespace, "-o", "json").stdout)


def patch_status(kubectl, namespace, status: dict, name="fraud-scorer"):
    return kubectl("patch", "modelrollout", name, "-n", namespace, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": status}))


def sample_status() -> dict:
    st = RolloutStatus(
        phase=Phase.PROGRESSING, observed_generation=1, current_step=2, routing=Routing(25),
        checks=(CheckState("score-psi", "psi", 0.04, 0.2, Verdict.PASS, 5120,
                           recent=(WindowValue(1.7e9, 0.05, Verdict.PASS), WindowValue(1.7e9 + 60, 0.04, Verdict.PASS))),
                CheckState("latency")),
        conditions=(Condition("Progressing", "True", "StepStarted", "canary 25% for 30m", 1.7e9),),
        history=(HistoryEntry(1.7e9, 1, "StepAdvanced", "canary 5% passed"),),
        revision="v2@http://fraud-v2.ml.svc:8080", step_started_at=1.7e9, message="canary 25%: 12m left")
    return {**json.loads(json.dumps(st.to_status())), "drift": "score-psi 0.04/0.2"}


def test_design_example_applies_as_written_and_on_keys_survive(crd, kubectl, namespace):
    """The README's example (examples/rollouts/fraud-scorer.yaml) applies unchanged, and its bare `on:` keys are stored, not pruned."""
    out = kubectl("apply", "-f", "-", input=example_text(namespace))
    assert "modelrollout.modelrollout.io/fraud-scorer created" in out.stdout
    obj = get(kubectl, namespace)
    checks = obj["spec"]["analysis"]["checks"]
    # kubectl's YAML 1.1 reading turns a bare `on:` key into the JSON key "true"
    assert checks[0]["true"] == "prediction" and checks[4]["true"] == "feature:age"
    assert obj["spec"]["notifications"][0]["true"] == ["RolledBack", "Paused"]
    stored = parse_rollout(obj).spec
    written = parse_rollout(yaml.safe_load(example_text(namespace))).spec
    assert stored == dataclasses.replace(written, generation=1)
    assert stored.watched_features() == ("age",)


def test_quoted_on_key_is_stored_as_on(crd, kubectl, namespace):
    """Writing `"on":` (quoted) stores the key "on", which the parser reads the same way."""
    text = example_text(namespace).replace("on: prediction", '"on": prediction').replace(
        "on: feature:age", '"on": "feature:age"')
    kubectl("apply", "-f", "-", input=text)
    obj = get(kubectl, namespace)
    assert obj["spec"]["analysis"]["checks"][4]["on"] == "feature:age"
    assert parse_rollout(obj).spec.analysis.checks[4].feature == "age"


BAD_SPECS = [
    ("weight: 5,", "weight: 150,", "spec.strategy.steps[1].canary.weight"),
    ("interval: 1m", "interval: 1 minute", "spec.analysis.interval"),
    ("kind: score", "kind: probability", "spec.output.kind"),
    ("  candidate: {version: v2, url: http://fraud-v2.ml.svc:8080}\n", "  candidate: {version: v2}\n",
     "spec.candidate.url"),
    ("action: rollback}", "action: explode}", "spec.analysis.checks[0].action"),
    ("- pause: {}", "- pause: {}\n      - hold: {}", "spec.strategy.steps[4].hold"),
    ("{name: score-psi, metric: psi, on: prediction, max: 0.2, action: rollback}",
     "{name: score-psi, metric: psi, on: prediction, action: rollback}", "spec.analysis.checks[0]"),
    ("- pause: {}", "- pause:", "spec.strategy.steps[3]"),
    ("min: 0.8}", "min: 0.8}\n      - {name: why, metric: attribution-tau, min: 0.6, action: warn}", "spec.output"),
]


@pytest.mark.parametrize("old, new, path", BAD_SPECS,
                         ids=["weight", "duration", "output-kind", "candidate-without-url", "action", "step-kind",
                              "no-threshold", "null-step", "attribution-without-path"])
def test_bad_specs_are_rejected_with_the_field_path(crd, kubectl, namespace, old, new, path):
    """The apiserver refuses a bad spec and names the field; offline lint flags the same field."""
    text = example_text(namespace)
    assert old in text
    bad = text.replace(old, new, 1)
    out = kubectl("apply", "-f", "-", input=bad, check=False)
    assert out.returncode != 0
    assert path in out.stderr, out.stderr
    problems = lint_document(yaml.safe_load(bad))
    assert any(p.path == path for p in problems), [str(p) for p in problems]
    assert kubectl("get", "mro", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_status_written_by_the_controller_is_accepted(crd, kubectl, namespace):
    """A full RolloutStatus.to_status() (nulls included) passes the status schema and reads back intact."""
    kubectl("apply", "-f", "-", input=example_text(namespace))
    status = sample_status()
    patch_status(kubectl, namespace, status)
    back = get(kubectl, namespace)["status"]
    assert RolloutStatus.from_status(back) == RolloutStatus.from_status(status)
    assert back["checks"][0]["recent"][1]["value"] == 0.04      # free-form check fields are preserved
    bad = patch_status_rejected(kubectl, namespace, {"phase": "Exploded"})
    assert "status.phase" in bad


def patch_status_rejected(kubectl, namespace, status) -> str:
    out = kubectl("patch", "modelrollout", "fraud-scorer", "-n", namespace, "--subresource=status",
                  "--type=merge", "-p", json.dumps({"status": status}), check=False)
    assert out.returncode != 0
    return out.stderr


def test_spec_writes_do_not_touch_status(crd, kubectl, namespace):
    """Status is a subresource: re-applying the spec keeps the controller's status."""
    kubectl("apply", "-f", "-", input=example_text(namespace))
    patch_status(kubectl, namespace, sample_status())
    kubectl("apply", "-f", "-", input=example_text(namespace).replace("duration: 15m", "duration: 20m"))
    obj = get(kubectl, namespace)
    assert obj["status"]["phase"] == "Progressing"
    assert obj["metadata"]["generation"] == 2


def test_get_mro_shows_printer_columns(crd, kubectl, namespace):
    """`kubectl get mro` shows NAME PHASE STEP WEIGHT DRIFT AGE from the status; -o wide adds the versions."""
    kubectl("apply", "-f", "-", input=example_text(namespace))
    patch_status(kubectl, namespace, sample_status())
    lines = kubectl("get", "mro", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "STEP", "WEIGHT", "DRIFT", "AGE"]
    row = lines[1].split()
    assert row[:6] == ["fraud-scorer", "Progressing", "2", "25", "score-psi", "0.04/0.2"]
    wide = kubectl("get", "mro", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-4:] == ["BASELINE", "CANDIDATE", "STABLE", "MESSAGE"]
    assert "v1" in wide[1].split() and "v2" in wide[1].split()


def test_generated_crd_is_a_structural_schema_the_server_accepts(crd, kubectl):
    """The apiserver reports the CRD Established with no NonStructuralSchema condition."""
    obj = json.loads(kubectl("get", "crd", "modelrollouts.modelrollout.io", "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conds.get("Established") == "True"
    assert "NonStructuralSchema" not in conds
    assert obj["status"]["acceptedNames"]["shortNames"] == ["mro"]


def test_lint_and_apiserver_agree_on_the_shipped_examples(crd, kubectl, namespace):
    """Every shipped example that lint passes is also accepted by a server-side dry run."""
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert lint_document(copy.deepcopy(doc)) == []
        doc["metadata"]["namespace"] = namespace
        kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc))


def test_kubectl_explain_describes_the_fields(crd, kubectl):
    """`kubectl explain` documents the spec from the CRD's descriptions, down to a step's weight."""
    out = kubectl("explain", "modelrollout.spec.strategy.steps.canary.weight").stdout
    assert "Percent of live traffic the candidate serves." in out
    out = kubectl("explain", "mro.spec.analysis.checks").stdout
    assert "One analysis check: a metric and its threshold." in out


def test_server_side_apply_merges_checks_by_name(crd, kubectl, namespace):
    """With server-side apply (GitOps tools), checks merge by name: a second manager's check joins the list."""
    out = kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "-", input=example_text(namespace))
    assert "serverside-applied" in out.stdout
    extra = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
             "metadata": {"name": "fraud-scorer", "namespace": namespace},
             "spec": {"analysis": {"checks": [{"name": "score-js", "metric": "js", "max": 0.1}]}}}
    kubectl("apply", "--server-side", "--field-manager=ops", "-f", "-", input=json.dumps(extra))
    names = [c["name"] for c in get(kubectl, namespace)["spec"]["analysis"]["checks"]]
    assert names[:8] == [c.name for c in parse_rollout(yaml.safe_load(example_text(namespace))).spec.analysis.checks]
    assert names[8:] == ["score-js"]


def test_a_steady_spec_is_accepted_and_a_candidate_needs_steps(crd, kubectl, namespace):
    """Without a candidate (or with the baseline as candidate) the apiserver accepts a spec without strategy;
    a candidate without strategy is refused by the CEL rule, naming spec.strategy; lint agrees."""
    doc = yaml.safe_load(example_text(namespace))
    strategy = doc["spec"].pop("strategy")
    del doc["spec"]["candidate"], doc["spec"]["analysis"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    assert lint_document(doc) == []
    both = copy.deepcopy(doc)
    both["spec"].update(candidate=dict(doc["spec"]["baseline"]), strategy=strategy)
    kubectl("apply", "-f", "-", input=yaml.safe_dump(both))     # baseline == candidate: no longer an error
    assert lint_document(both) == []
    doc["spec"]["candidate"] = {"version": "v2", "url": "http://fraud-v2.ml.svc:8080"}
    out = kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert out.returncode != 0 and "spec.strategy" in out.stderr and "needs spec.strategy.steps" in out.stderr, out.stderr
    assert any(p.path == "spec.strategy" for p in lint_document(doc)), [str(p) for p in lint_document(doc)]
