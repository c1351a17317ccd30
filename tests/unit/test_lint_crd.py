"""The CRD manifest: generated from code, in step with policies/spec.py, and fully covered by lint's validator."""
from __future__ import annotations

from pathlib import Path

import yaml

from modelrollout.plugin import crd
from modelrollout.plugin.schema import CEL_RULES
from policies import spec

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "manifests" / "crd.yaml"


def walk(node, path=""):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.get("properties", {}).items():
            yield from walk(v, f"{path}.{k}")
        if "items" in node:
            yield from walk(node["items"], f"{path}[]")


def spec_node(*keys):
    node = crd.spec_schema()
    for k in keys:
        node = node["items"] if k == "[]" else node["properties"][k]
    return node


def test_committed_crd_is_the_generated_one():
    """manifests/crd.yaml equals `python -m modelrollout.plugin.crd` (regenerate it after edits)."""
    assert COMMITTED.read_text() == crd.render()
    assert yaml.safe_load(COMMITTED.read_text()) == crd.crd()


def test_enums_match_the_spec_parser():
    """Output kinds, step kinds, actions, metrics and notification phases are exactly the parser's."""
    assert spec_node("output", "kind")["enum"] == list(spec.OUTPUT_KINDS)
    assert sorted(spec_node("strategy", "steps", "[]")["properties"]) == sorted(spec.STEP_KINDS)
    check = spec_node("analysis", "checks", "[]")
    assert check["properties"]["action"]["enum"] == list(spec.ACTIONS)
    assert check["properties"]["metric"]["enum"] == list(spec.METRICS)
    assert spec_node("notifications", "[]", "on", "[]")["enum"] == list(spec.NOTIFY_PHASES)


def test_on_key_is_declared_under_both_spellings():
    """`on` and the key "true" (kubectl's reading of a bare YAML `on:`) have the same schema, so neither is pruned."""
    check = spec_node("analysis", "checks", "[]")["properties"]
    assert {k: v for k, v in check["on"].items() if k != "description"} == \
        {k: v for k, v in check["true"].items() if k != "description"}
    note = spec_node("notifications", "[]")["properties"]
    assert note["on"]["items"] == note["true"]["items"]


def test_every_cel_rule_has_a_python_twin():
    """lint evaluates every x-kubernetes-validations rule of the CRD, so it never passes what the apiserver rejects."""
    rules = [r["rule"] for _, node in walk(crd.schema()) if isinstance(node, dict)
             for r in node.get("x-kubernetes-validations", ())]
    assert rules
    assert [r for r in rules if r not in CEL_RULES] == []


def test_structural_schema_basics():
    """Every node has a type (a structural schema requirement) and the status keeps a typed phase enum."""
    untyped = [p for p, node in walk(crd.schema())
               if isinstance(node, dict) and "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields")]
    assert untyped == []
    assert crd.status_schema()["properties"]["phase"]["enum"] == list(crd.PHASES)
    from policies.status import Phase
    assert list(crd.PHASES) == [p.value for p in Phase]


def test_printer_columns():
    """`kubectl get mro` shows Phase, Step, Weight, Drift and Age."""
    cols = crd.crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in cols if not c.get("priority")] == ["Phase", "Step", "Weight", "Drift", "Age"]
    assert crd.crd()["spec"]["names"]["shortNames"] == ["mro"]
