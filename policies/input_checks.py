"""Judging a window's live inputs against `spec.expectations` (`policies.expectations`).

`judge(spec, baseline, candidate)` reads the InputSummary of both versions' windows (the inputs are the
callers', whichever version answered) and returns one `CheckResult` named `input-expectations`:

* Fail when any expectation is broken: rows per window outside [rows.min, rows.max]; a feature's share of
  null or missing values above `maxNullRate`; its share of non-null values of the wrong type, outside
  [min, max] or not in `in` above 1 − `mostly`. Shares are plug-in fractions of the window's rows (exact
  counts, every live request counts).
* Inconclusive when the window has fewer than `minSamples` rows (and no row bound failed): too few to judge
  shares on, as for every check.
* Pass otherwise.

`evidence.inputs` lists every broken expectation (feature, expectation, fraction, tolerated, count, examples);
the reason names them. `policies.checks.evaluate` makes a Fail window count for nothing else (the other
checks are not judged on broken inputs) and `policies.machine` pauses the rollout. Pure.
"""
from __future__ import annotations

from typing import Any

from policies.expectations import EXPECTATION_NAMES, INPUT_CHECK, ExpectationsSpec
from policies.spec import RolloutSpec
from policies.status import CheckResult, Verdict
from policies.summaries import InputSummary, VersionWindow
from policies.thresholds import fmt

__all__ = ["INPUT_CHECK", "judge", "merged_inputs"]


def merged_inputs(*windows: VersionWindow | None) -> InputSummary:
    out = InputSummary()
    for w in windows:
        if w is not None and w.inputs is not None:
            out = out.merge(w.inputs)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def failing(exp: ExpectationsSpec, s: InputSummary, min_rows: int) -> tuple[list[dict[str, Any]], bool]:
    """(the broken expectations, whether the shares could be judged: rows >= min_rows)."""
    out: list[dict[str, Any]] = []
    rows = s.rows
    if exp.rows_min is not None and rows < exp.rows_min:
        out.append({"feature": None, "expectation": "rows", "value": rows, "tolerated": exp.rows_min,
                    "detail": f"{rows} rows < rows.min {exp.rows_min}"})
    if exp.rows_max is not None and rows > exp.rows_max:
        out.append({"feature": None, "expectation": "rows", "value": rows, "tolerated": exp.rows_max,
                    "detail": f"{rows} rows > rows.max {exp.rows_max}"})
    judged = rows >= max(min_rows, 1)
    if not judged:
        return out, False
    for f in exp.features:
        nulls = s.count(f.name, "null")
        if f.max_null_rate is not None and nulls / rows > f.max_null_rate:
            out.append(_broken(f.name, "null", nulls, rows, f.max_null_rate, s, "null or missing",
                               f"maxNullRate {fmt(f.max_null_rate)}"))
        present = rows - nulls
        if present <= 0:
            continue
        tolerated = round(1.0 - f.mostly, 12)
        for kind, what in (("type", f"not of type {f.type or 'number'}"),
                           ("range", f"outside [{_bound(f.min)}, {_bound(f.max)}]"),
                           ("in", "not in the allowed set")):
            n = s.count(f.name, kind)
            if n and n / present > tolerated:
                out.append(_broken(f.name, kind, n, present, tolerated, s, what,
                                   f"mostly {fmt(f.mostly)}" if f.mostly < 1 else "none tolerated"))
    return out, True


def _bound(x: float | None) -> str:
    return "…" if x is None else f"{x:g}"


def _broken(feature: str, kind: str, n: int, of: int, tolerated: float, s: InputSummary, what: str,
            bound: str) -> dict[str, Any]:
    fraction = n / of
    examples = s.examples_of(feature, kind)
    ex = f" (e.g. {', '.join(examples)})" if examples else ""
    return {"feature": feature, "expectation": EXPECTATION_NAMES[kind], "fraction": fraction, "tolerated": tolerated,
            "count": n, "of": of, "examples": examples,
            "detail": f"{feature} {EXPECTATION_NAMES[kind]}: {_pct(fraction)} of {of} {what} > {bound}{ex}"}


def judge(spec: RolloutSpec, baseline: VersionWindow | None, candidate: VersionWindow | None) -> CheckResult:
    exp = spec.expectations
    assert exp is not None
    s = merged_inputs(baseline, candidate)
    broken, judged = failing(exp, s, spec.analysis.min_samples)
    evidence = {"inputs": {"rows": s.rows, "failing": [{k: v for k, v in b.items() if k != "detail"}
                                                       for b in broken]}}
    worst = max(broken, key=lambda b: b.get("fraction", 1.0) / max(b.get("tolerated", 0.0) or 1e-9, 1e-9),
                default=None)
    if broken:
        reason = f"{INPUT_CHECK}: inputs broken, the models are not judged on this window: " + "; ".join(
            b["detail"] for b in broken)
        value = worst.get("fraction", worst.get("value"))
        return CheckResult(INPUT_CHECK, INPUT_CHECK, float(value), float(worst["tolerated"]), Verdict.FAIL, s.rows,
                           reason=reason, action="pause", immediate=True, evidence=evidence)
    if not judged:
        return CheckResult(INPUT_CHECK, INPUT_CHECK, None, None, Verdict.INCONCLUSIVE, s.rows,
                           reason=f"{INPUT_CHECK}: {s.rows} rows < minSamples {spec.analysis.min_samples}",
                           action="pause", immediate=True, evidence=evidence)
    shares = [s.count(f.name, "null") / s.rows for f in exp.features if f.max_null_rate is not None]
    value = max(shares, default=0.0)
    return CheckResult(INPUT_CHECK, INPUT_CHECK, value, None, Verdict.PASS, s.rows,
                       reason=f"{INPUT_CHECK}: every expectation holds over {s.rows} rows", action="pause",
                       immediate=True, evidence=evidence)
