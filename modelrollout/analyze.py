"""`modelrollout analyze BASELINE CANDIDATE`: the statistics library's front door on two files.

Reads CSV, JSONL, Parquet or .npy, runs the requested statistics per column and says whether
each one drifted. It is also the reference for the library's correctness: every number it
prints is the `policies.stats` value of the exact definitions in docs/statistics.md.

Columns are numeric (all values parse as numbers), categorical (strings) or embeddings (lists of
numbers, or a 2-D .npy). Default metrics: numeric → psi, ks; categorical → psi, chi2;
embedding → mmd. Drift rule and default threshold per metric (`DEFAULT_THRESHOLDS`):

| metric | drift when | default |
|---|---|---|
| psi | value > threshold | 0.2 |
| kl, js, hellinger, wasserstein | value > threshold | 0.1 |
| ks, chi2, mann-whitney, mmd | p_value < threshold | 0.01 |
| centroid-cosine | baseline cosine − candidate cosine > threshold | 0.05 |

Exit status: 0 no drift, 1 drift in at least one result, 2 bad input (message names the file
and column).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from policies import stats
from policies._result import StatError

from ._files import InputError, _read_csv, _read_jsonl

DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.2, "kl": 0.1, "js": 0.1, "hellinger": 0.1, "wasserstein": 0.1,
    "ks": 0.01, "chi2": 0.01, "mann-whitney": 0.01, "mmd": 0.01, "centroid-cosine": 0.05,
}
P_VALUE_METRICS = frozenset({"ks", "chi2", "mann-whitney", "mmd"})
EMBEDDING_METRICS = frozenset({"mmd", "centroid-cosine"})
DEFAULT_METRICS = {"numeric": ("psi", "ks"), "categorical": ("psi", "chi2"), "embedding": ("mmd",)}
COMPATIBLE = {
    "numeric": {"psi", "kl", "js", "hellinger", "wasserstein", "ks", "chi2", "mann-whitney"},
    "categorical": {"psi", "kl", "js", "hellinger", "chi2"},
    "embedding": set(EMBEDDING_METRICS),
}


@dataclass
class Column:
    kind: str                 # numeric | categorical | embedding
    values: Any               # float array, list of str, or 2-D float array
    missing: int = 0


# --- reading -----------------------------------------------------------------------------------

def _column_from_values(values: list[Any], path: str, name: str) -> Column:
    present = [v for v in values if v is not None and v != ""]
    missing = len(values) - len(present)
    if present and all(isinstance(v, (list, tuple)) for v in present):
        try:
            mat = np.asarray(present, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: column {name!r} mixes lists that are not equal-length numeric vectors") from e
        if mat.ndim != 2:
            raise InputError(f"{path}: column {name!r} holds lists of unequal length; embeddings need one dimension")
        return Column("embedding", mat, missing)
    numbers = []
    for v in present:
        if isinstance(v, bool):
            break
        if isinstance(v, (int, float)):
            numbers.append(float(v))
            continue
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            break
    else:
        arr = np.array(numbers, dtype=np.float64)
        return Column("numeric", arr, missing + int(np.isnan(arr).sum()))
    return Column("categorical", [str(v) for v in present], missing)


def _read_parquet(path: Path) -> dict[str, list[Any]] | dict[str, Column]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:                                   # pyarrow is the optional extra `parquet`
        raise InputError(f"{path}: reading Parquet needs pyarrow, which is not installed; install the extra: "
                         f"pip install 'modelrollout[parquet]' (or convert the file to CSV, JSONL or .npy)") from e
    try:
        table = pq.read_table(path)
    except Exception as e:                                    # pyarrow raises several unrelated types
        raise InputError(f"{path}: not a readable Parquet file: {e}") from e
    out: dict[str, Any] = {}
    import pyarrow as pa
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
            out[name] = Column("numeric", arr, int(np.isnan(arr).sum()))
        else:
            out[name] = col.to_pylist()
    return out


def read_columns(path_str: str) -> dict[str, Column]:
    """Columns of a CSV, JSONL, Parquet or .npy file (1-D .npy → "value", 2-D → "embedding")."""
    path = Path(path_str)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"{path}: not a readable .npy file: {e}") from e
        if arr.dtype.kind not in "iuf":
            raise InputError(f"{path}: .npy must hold numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if arr.ndim == 1:
            return {"value": Column("numeric", arr, int(np.isnan(arr).sum()))}
        if arr.ndim == 2:
            return {"embedding": Column("embedding", arr, int(np.isnan(arr).any(axis=1).sum()))}
        raise InputError(f"{path}: .npy must be 1-D (values) or 2-D (embeddings), got shape {arr.shape}")
    try:
        if suffix == ".csv":
            raw: dict[str, Any] = _read_csv(path)
        elif suffix in (".jsonl", ".ndjson"):
            raw = _read_jsonl(path)
        elif suffix in (".parquet", ".pq"):
            raw = _read_parquet(path)
        else:
            raise InputError(f"{path}: unsupported file type {suffix or '(none)'}; expected .csv, .jsonl, "
                             f".parquet or .npy")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text: {e}") from e
    except csv.Error as e:
        raise InputError(f"{path}: malformed CSV: {e}") from e
    return {n: v if isinstance(v, Column) else _column_from_values(v, str(path), n) for n, v in raw.items()}


# --- analysis ----------------------------------------------------------------------------------

def _parse_thresholds(items: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    common: float | None = None
    per: dict[str, float] = {}
    for item in items:
        name, _, num = item.rpartition("=")
        try:
            value = float(num)
        except ValueError as e:
            raise InputError(f"--threshold {item!r}: expected a number or METRIC=NUMBER") from e
        if not math.isfinite(value) or value < 0:
            raise InputError(f"--threshold {item!r}: must be a finite number ≥ 0")
        if name:
            if name not in DEFAULT_THRESHOLDS:
                raise InputError(f"--threshold {item!r}: unknown metric {name!r}")
            per[name] = value
        else:
            common = value
    return common, per


def _drifted(metric: str, r: stats.StatResult, threshold: float) -> bool:
    if metric in P_VALUE_METRICS:
        return r.p_value is not None and r.p_value < threshold
    if metric == "centroid-cosine":
        return float(r.detail["baseline"]) - r.value > threshold
    return r.value > threshold


def analyze(baseline: str, candidate: str, metrics: Sequence[str] = (), columns: Sequence[str] = (),
            bins: int = 10, thresholds: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One JSON-ready result per (column, metric); raises InputError naming file/column on bad input."""
    for m in metrics:
        if m not in DEFAULT_THRESHOLDS:
            raise InputError(f"--metric {m!r}: unknown; expected one of {', '.join(sorted(DEFAULT_THRESHOLDS))}")
    common, per = _parse_thresholds(thresholds)
    b_cols, c_cols = read_columns(baseline), read_columns(candidate)
    names = list(columns) if columns else [n for n in b_cols if n in c_cols]
    if not names:
        raise InputError(f"{baseline} and {candidate} share no column")
    results = []
    for name in names:
        for path, cols in ((baseline, b_cols), (candidate, c_cols)):
            if name not in cols:
                raise InputError(f"{path}: no column {name!r}; columns are {', '.join(sorted(cols)) or 'none'}")
        b, c = b_cols[name], c_cols[name]
        if b.kind != c.kind:
            raise InputError(f"column {name!r} is {b.kind} in {baseline} but {c.kind} in {candidate}")
        for path, col in ((baseline, b), (candidate, c)):
            if col.missing:
                raise InputError(f"{path}: column {name!r} has {col.missing} missing/NaN values; "
                                 f"drop or fill them before comparing")
            if len(col.values) == 0:
                raise InputError(f"{path}: column {name!r} is empty")
        for metric in metrics or DEFAULT_METRICS[b.kind]:
            if metric not in COMPATIBLE[b.kind]:
                raise InputError(f"--metric {metric} does not apply to {b.kind} column {name!r}; use one of "
                                 f"{', '.join(sorted(COMPATIBLE[b.kind]))}")
            kw: dict[str, Any] = {"bins": bins} if metric in ("psi", "kl", "js", "hellinger", "chi2") else {}
            try:
                r = stats.compute(metric, b.values, c.values, **kw)
            except StatError as e:
                raise InputError(f"column {name!r}, metric {metric}: {e}") from e
            threshold = per.get(metric, common if common is not None else DEFAULT_THRESHOLDS[metric])
            row = {"metric": metric, "column": name, "value": r.value, "p_value": r.p_value,
                   "threshold": threshold, "drift": _drifted(metric, r, threshold),
                   "rule": "p_value < threshold" if metric in P_VALUE_METRICS else
                           "baseline - candidate cosine > threshold" if metric == "centroid-cosine" else
                           "value > threshold",
                   "estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high,
                   "n_baseline": r.n_baseline, "n_candidate": r.n_candidate, "bins": r.bins}
            if "reason" in r.detail:
                row["reason"] = r.detail["reason"]
            if metric == "centroid-cosine":
                row["baseline_value"] = r.detail["baseline"]
            results.append(row)
    return results


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "DRIFT" if v else "ok"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(results: list[dict[str, Any]]) -> str:
    head = ["column", "metric", "value", "p_value", "estimate", "95% CI", "threshold", "drift"]
    rows = [[r["column"], r["metric"], _fmt(r["value"]), _fmt(r["p_value"]), _fmt(r["estimate"]),
             "-" if r["ci_low"] is None else f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
             _fmt(r["threshold"]), _fmt(r["drift"])] for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    notes = [f"note: {r['column']} {r['metric']}: {r['reason']}" for r in results if "reason" in r]
    return "\n".join(lines + notes)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelrollout analyze",
                                description="Compare a candidate sample with a baseline sample (drift statistics).")
    p.add_argument("baseline", help="baseline file: .csv, .jsonl, .parquet or .npy")
    p.add_argument("candidate", help="candidate file, same format family and columns")
    p.add_argument("--metric", action="append", default=[], metavar="M",
                   help=f"statistic to run (repeatable): {', '.join(sorted(DEFAULT_THRESHOLDS))}")
    p.add_argument("--column", action="append", default=[], metavar="C", help="column to compare (repeatable)")
    p.add_argument("--bins", type=int, default=10, help="quantile bins for psi/kl/js/hellinger/chi2 (default 10)")
    p.add_argument("--threshold", action="append", default=[], metavar="T",
                   help="drift threshold for all metrics (T) or one (METRIC=T); repeatable")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    g = p.add_argument_group("paired", "both files answer the same requests (modelrollout/analyze_paired.py)")
    g.add_argument("--paired", action="store_true",
                   help="paired tests per row: shadow-wilcoxon, shadow-mcnemar, shadow-rbo, shadow-ndcg")
    g.add_argument("--id", default=None, metavar="COL", help="pair the rows with equal COL (default: by position)")
    g.add_argument("--tolerance", type=float, default=0.0,
                   help="shadow-wilcoxon/-mcnemar: the tolerated |change| (default 0: any change)")
    g.add_argument("--min", type=float, default=0.9, help="shadow-rbo/-ndcg: the lowest tolerated mean agreement")
    g.add_argument("--alpha", type=float, default=0.05, help="level of the paired tests (default 0.05)")
    g.add_argument("--decision-threshold", type=float, default=0.5,
                   help="shadow-mcnemar on scores: positive when score >= this (default 0.5)")
    g.add_argument("--positive", default=None, help="shadow-mcnemar on text: the positive class")
    g.add_argument("--k", type=int, default=10, help="shadow-ndcg depth (default 10)")
    g.add_argument("--p", type=float, default=0.9, help="shadow-rbo persistence (default 0.9)")
    return p


def _main_paired(args: argparse.Namespace) -> int:
    from . import analyze_paired as paired
    try:
        if args.k < 1 or not 0 < args.p < 1:
            raise InputError(f"--k must be >= 1 and --p in (0, 1); got --k {args.k} --p {args.p}")
        results = paired.analyze_paired(args.baseline, args.candidate, args.metric, args.column, args.id, args.tolerance,
                                 args.min, args.alpha, args.decision_threshold, args.positive, args.k, args.p)
    except InputError as e:
        print(f"modelrollout analyze: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"results": results}, allow_nan=False) if args.json else paired.table(results))
    return 1 if any(r["change"] for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns 0 (no drift), 1 (drift) or 2 (bad input)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                 # argparse already printed usage and the error
        return 0 if e.code == 0 else 2
    if args.paired:
        return _main_paired(args)
    if args.bins < 1:
        print(f"modelrollout analyze: --bins must be a positive integer, got {args.bins}", file=sys.stderr)
        return 2
    try:
        results = analyze(args.baseline, args.candidate, args.metric, args.column, args.bins, args.threshold)
    except InputError as e:
        print(f"modelrollout analyze: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"results": results}, allow_nan=False))
    else:
        print(_table(results))
    return 1 if any(r["drift"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
