"""`modelrollout analyze BASELINE CANDIDATE --paired`: the paired tests on two files of answers to the
same requests (row i of each file, or the rows with equal `--id`).

Per column: numbers → shadow-wilcoxon (the paired shift against `--tolerance`) and shadow-mcnemar
(decisions at `--decision-threshold`); rankings (lists) → shadow-rbo and shadow-ndcg (mean agreement
against `--min`); text → shadow-mcnemar when `--positive` names the positive class. A result is a change
when its p-value is below `--alpha` (definitions: docs/statistics.md "Paired tests (shadow)"). Exit status:
0 no change, 1 a change in at least one result, 2 bad input.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from policies import _paired
from policies._result import StatError

from ._files import InputError, _read_csv, _read_jsonl

PAIRED_METRICS = ("shadow-wilcoxon", "shadow-mcnemar", "shadow-rbo", "shadow-ndcg")
DEFAULTS = {"numeric": ("shadow-wilcoxon", "shadow-mcnemar"), "ranking": ("shadow-rbo", "shadow-ndcg"),
            "categorical": ("shadow-mcnemar",)}
COMPATIBLE = {"numeric": {"shadow-wilcoxon", "shadow-mcnemar"}, "ranking": {"shadow-rbo", "shadow-ndcg"},
              "categorical": {"shadow-mcnemar"}}


def _rows(path_str: str) -> dict[str, list[Any]]:
    """Raw columns, values as read (JSON lists stay lists; a CSV cell holding a JSON list is parsed)."""
    path = Path(path_str)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            cols = _read_csv(path)
            for name, values in cols.items():
                cols[name] = [_csv_cell(v) for v in values]
            return cols
        if suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        if suffix in (".parquet", ".pq"):
            try:
                import pyarrow.parquet as pq
            except ImportError as e:                            # pyarrow is the optional extra `parquet`
                raise InputError(f"{path}: reading Parquet needs pyarrow, which is not installed; install the "
                                 f"extra: pip install 'modelrollout[parquet]'") from e
            try:
                table = pq.read_table(path)
            except Exception as e:                              # pyarrow raises several unrelated types
                raise InputError(f"{path}: not a readable Parquet file: {e}") from e
            return {n: table.column(n).to_pylist() for n in table.column_names}
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text: {e}") from e
    except csv.Error as e:
        raise InputError(f"{path}: malformed CSV: {e}") from e
    raise InputError(f"{path}: unsupported file type {suffix or '(none)'} for --paired; expected .csv, .jsonl "
                     f"or .parquet")


def _csv_cell(v: Any) -> Any:
    if isinstance(v, str) and v.startswith("["):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _kind(values: list[Any], path: str, name: str) -> str:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        raise InputError(f"{path}: column {name!r} is empty")
    if all(isinstance(v, (list, tuple)) for v in present):
        return "ranking"
    try:
        for v in present:
            if isinstance(v, bool) or not math.isfinite(float(v)):
                raise ValueError
        return "numeric"
    except (TypeError, ValueError):
        return "categorical"


def _pairs(b: dict[str, list[Any]], c: dict[str, list[Any]], id_column: str | None, paths: tuple[str, str]
           ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The two files' rows in matching order: by position, or joined on `id_column` (rows of one file only
    are left out)."""
    lengths = [len(next(iter(x.values()), [])) for x in (b, c)]
    if id_column is None:
        if lengths[0] != lengths[1]:
            raise InputError(f"--paired: {paths[0]} has {lengths[0]} rows but {paths[1]} has {lengths[1]}; pair "
                             f"them by position (equal row counts) or by --id COLUMN")
        return b, c
    for path, cols in zip(paths, (b, c)):
        if id_column not in cols:
            raise InputError(f"{path}: no --id column {id_column!r}")
    index = {str(k): i for i, k in enumerate(c[id_column])}
    keep = [(i, index[str(k)]) for i, k in enumerate(b[id_column]) if str(k) in index]
    if not keep:
        raise InputError(f"--id {id_column}: no value appears in both files")
    return ({n: [v[i] for i, _ in keep] for n, v in b.items()}, {n: [v[j] for _, j in keep] for n, v in c.items()})


def analyze_paired(baseline: str, candidate: str, metrics: Sequence[str] = (), columns: Sequence[str] = (),
                   id_column: str | None = None, tolerance: float = 0.0, minimum: float = 0.9,
                   alpha: float = 0.05, decision_threshold: float = 0.5, positive: str | None = None,
                   k: int = 10, p: float = 0.9) -> list[dict[str, Any]]:
    for m in metrics:
        if m not in PAIRED_METRICS:
            raise InputError(f"--metric {m!r}: with --paired expected one of {', '.join(PAIRED_METRICS)}")
    if not (0 < alpha < 1):
        raise InputError(f"--alpha: expected a number in (0, 1), got {alpha}")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise InputError(f"--tolerance: expected a finite number >= 0, got {tolerance}")
    b, c = _pairs(_rows(baseline), _rows(candidate), id_column, (baseline, candidate))
    names = list(columns) or [n for n in b if n in c and n != id_column]
    if not names:
        raise InputError(f"{baseline} and {candidate} share no column")
    results = []
    for name in names:
        for path, cols in ((baseline, b), (candidate, c)):
            if name not in cols:
                raise InputError(f"{path}: no column {name!r}; columns are {', '.join(sorted(cols)) or 'none'}")
        kind = _kind(b[name], baseline, name)
        if _kind(c[name], candidate, name) != kind:
            raise InputError(f"column {name!r} is {kind} in {baseline} but not in {candidate}")
        both = [(x, y) for x, y in zip(b[name], c[name]) if x not in (None, "") and y not in (None, "")]
        for metric in metrics or DEFAULTS[kind]:
            if metric not in COMPATIBLE[kind]:
                raise InputError(f"--metric {metric} does not apply to {kind} column {name!r}; use one of "
                                 f"{', '.join(sorted(COMPATIBLE[kind]))}")
            if kind == "categorical" and positive is None:
                if metrics:
                    raise InputError(f"shadow-mcnemar on text column {name!r} needs --positive CLASS")
                continue
            try:
                results.append(_one(metric, name, kind, both, tolerance, minimum, alpha, decision_threshold,
                                    positive, k, p))
            except StatError as e:
                raise InputError(f"column {name!r}, metric {metric}: {e}") from e
    return results


def _one(metric: str, name: str, kind: str, pairs: list[tuple[Any, Any]], tolerance: float, minimum: float,
         alpha: float, decision_threshold: float, positive: str | None, k: int, p: float) -> dict[str, Any]:
    row: dict[str, Any] = {"metric": metric, "column": name, "pairs": len(pairs), "alpha": alpha}
    if metric == "shadow-wilcoxon":
        x = np.array([float(a) for a, _ in pairs])
        y = np.array([float(b) for _, b in pairs])
        r = _paired.wilcoxon_shift(y - x, tolerance)
        row.update(threshold=tolerance, rule="|paired shift| > tolerance shown at p < alpha")
    elif metric == "shadow-mcnemar":
        if kind == "numeric":
            dec = [(float(a) >= decision_threshold, float(b) >= decision_threshold) for a, b in pairs]
        else:
            dec = [(str(a) == positive, str(b) == positive) for a, b in pairs]
        cells = [0, 0, 0, 0]
        for bp, cp in dec:
            cells[2 * bp + cp] += 1
        r = _paired.mcnemar(*cells, tolerance)
        row.update(threshold=tolerance, rule="|positive-rate change| > tolerance shown at p < alpha",
                   candidate_only=cells[1], baseline_only=cells[2])
    else:
        values = []
        for a, b in pairs:
            if metric == "shadow-rbo":
                values.append(_paired.rbo(a, b, p))
            elif a:
                values.append(_paired.ndcg(a, b, k))
        arr = np.array(values)
        r = _paired.mean_agreement(metric, arr.size, float(arr.sum()), float((arr * arr).sum()), minimum)
        row.update(threshold=minimum, rule="mean agreement < min shown at p < alpha",
                   parameter=f"p={p:g}" if metric == "shadow-rbo" else f"k={k}")
    row.update(value=r.value, p_value=r.p_value, estimate=r.estimate, ci_low=r.ci_low, ci_high=r.ci_high,
               change=bool(r.p_value < alpha))
    return row


def table(results: list[dict[str, Any]]) -> str:
    def f(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "CHANGE" if v else "ok"
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    head = ["column", "metric", "pairs", "value", "95% CI", "p_value", "threshold", "change"]
    rows = [[r["column"], r["metric"], f(r["pairs"]), f(r["value"]), f"[{f(r['ci_low'])}, {f(r['ci_high'])}]",
             f(r["p_value"]), f(r["threshold"]), f(r["change"])] for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *rows])
