"""`lint`: what `kubectl apply` and the controller would reject in a YAML file, found offline.

Two layers, both reported with field paths: the CRD's structural schema (what the apiserver rejects,
every error at once) and `policies.spec.parse_rollout` (the semantic rules every component applies,
which stop at the first error). A parser error at a path the schema already flagged is not repeated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from modelrollout.plugin.crd import schema
from modelrollout.plugin.schema import validate
from policies.planning import lint_warnings, small_window_warnings
from policies.reachability import unreachable
from policies.spec import KIND, SpecError, parse_rollout


@dataclass(frozen=True)
class Problem:
    source: str        # file name
    document: int      # 0-based index of the YAML document in the file
    name: str          # metadata.name, or "" when absent
    path: str          # field path, e.g. spec.strategy.steps[1].canary.weight
    message: str
    layer: str         # "yaml" | "schema" | "spec" | "reachability"

    def __str__(self) -> str:
        where = f"{self.source}[{self.document}]" + (f" ({self.name})" if self.name else "")
        return f"{where}: {self.path or '<document>'}: {self.message}"

    def to_dict(self) -> dict:
        return {"file": self.source, "document": self.document, "name": self.name, "path": self.path,
                "message": self.message, "layer": self.layer}


@dataclass
class LintResult:
    documents: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    """Binned drift checks whose windows may be too small for their bins, and with a traffic rate (`lint
    --rate R`) steps too short to tell a check's tolerance from 1.5x of it and windows too short for
    minSamples (policies/planning.py). They do not fail lint."""


def planning_warnings(doc: dict, rate: float | None, source: str = "<input>", index: int = 0) -> list[Problem]:
    """The planning warnings of one valid ModelRollout document: binned drift checks whose windows may be too
    small for their bins, and with `rate` (requests per second) the steps and windows too short to decide."""
    try:
        rollout = parse_rollout(doc)
    except SpecError:
        return []
    found = small_window_warnings(rollout.spec) + (lint_warnings(rollout.spec, rate) if rate is not None else [])
    return [Problem(source, index, rollout.spec.name, f"spec.analysis.checks[{i}]" + (f".{f}" if f else ""),
                    message, "planning") for i, f, message in found]


def lint_document(doc: dict, source: str = "<input>", index: int = 0) -> list[Problem]:
    """Every problem of one ModelRollout document (empty when it would apply and run)."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = str(meta.get("name") or "")
    problems = [Problem(source, index, name, e.path, e.message, "schema") for e in validate(doc, schema())]
    try:
        rollout = parse_rollout(doc)
    except SpecError as e:
        flagged = {p.path for p in problems}
        if not any(e.path == f or e.path.startswith(f + ".") or e.path.startswith(f + "[") for f in flagged):
            problems.append(Problem(source, index, name, e.path, e.message, "spec"))
        return problems
    # Thresholds that cannot act at the planned windows (a gate that can never fail, or never pass).
    for i, u in unreachable(rollout.spec):
        problems.append(Problem(source, index, name, f"spec.analysis.checks[{i}].{u.field}", u.message,
                                "reachability"))
    return problems


def lint_text(text: str, source: str = "<input>", rate: float | None = None) -> LintResult:
    """Lint every ModelRollout document of a YAML stream; other kinds are skipped. With `rate` (requests per
    second) also the planning warnings."""
    result = LintResult()
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        result.problems.append(Problem(source, 0, "", "", f"not valid YAML: {e}", "yaml"))
        return result
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            result.problems.append(Problem(source, i, "", "", f"expected a mapping, got {type(doc).__name__}",
                                           "yaml"))
            continue
        if doc.get("kind") != KIND:
            continue
        result.documents += 1
        problems = lint_document(doc, source, i)
        result.problems += problems
        if not problems:
            result.warnings += planning_warnings(doc, rate, source, i)
    if result.documents == 0 and not result.problems:
        result.problems.append(Problem(source, 0, "", "", f"no {KIND} document found", "yaml"))
    return result
