"""Reading the tables `modelrollout analyze` compares: CSV and JSONL rows as columns of raw values, and the
error every reader raises on bad input."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from policies.errors import InvalidInput

__all__ = ["InputError", "_read_csv", "_read_jsonl"]


class InputError(InvalidInput, ValueError):
    """Bad input file, column or option; the message names it."""


def _read_csv(path: Path) -> dict[str, list[Any]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise InputError(f"{path}: empty CSV (no header row)")
        cols: dict[str, list[Any]] = {n: [] for n in reader.fieldnames}
        for line, row in enumerate(reader, start=2):
            if None in row:
                raise InputError(f"{path}: line {line} has more fields than the header")
            for n in cols:
                cols[n].append(row.get(n))
    return cols


def _read_jsonl(path: Path) -> dict[str, list[Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: line {line_no} is not valid JSON: {e.msg}") from e
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {line_no} must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    names = sorted({k for r in rows for k in r})
    return {n: [r.get(n) for r in rows] for n in names}
