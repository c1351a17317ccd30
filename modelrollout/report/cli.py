"""`modelrollout report`: load a run record (or rebuild one from a prediction log) and write its page."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .page import write_report
from .run import RecordError, read_record


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
    return read_record(path, text)


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
