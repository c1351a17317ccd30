"""`modelrollout report`: load a run record (or rebuild one from a prediction log) and write its page."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .page import write_report
from .run import FORMAT, RecordError


def load_record(path: Path, spec_path: Path | None = None) -> dict[str, Any]:
    """A run record from RUN.json, or rebuilt from a prediction log (.jsonl)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecordError(f"{path}: cannot read: {e.strerror}") from e
    first = text.lstrip()[:1]
    if path.suffix == ".jsonl" or (first == "{" and "\n{" in text.strip() and '"format"' not in text[:200]):
        from modelrollout import replay

        return replay.record_from_log(path, spec_path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not JSON (line {e.lineno}): {e.msg}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise RecordError(f"{path}: format: expected {FORMAT!r} (a run record), got {got!r}")
    if not isinstance(doc.get("rollouts"), list):
        raise RecordError(f"{path}: rollouts: expected a list")
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modelrollout report",
                                description="Render the HTML report of a run record or a prediction log.")
    p.add_argument("input", help="RUN.json written by `run --local --record` / the demo, or PREDICTIONS.jsonl")
    p.add_argument("-o", "--output", default="modelrollout-report.html", help="HTML file to write")
    p.add_argument("--spec", help="rollout YAML to replay a prediction log with (checks and decisions)")
    args = p.parse_args(argv)
    from policies.spec import SpecError

    try:
        record = load_record(Path(args.input), Path(args.spec) if args.spec else None)
    except (RecordError, SpecError) as e:
        print(f"modelrollout report: {e}", file=sys.stderr)
        return 2
    out = write_report(record, args.output)
    print(out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
