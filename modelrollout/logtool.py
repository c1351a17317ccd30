"""`modelrollout log erase --dir D --subject VALUE [--field F] [--key-file K]`: remove every record of one
person from a prediction log.

A record is the subject's when the value at `--field` (default `sticky`, the stickiness key; or a dotted path
into the line such as `features.user_id`, `segments.customer`, `input.user.id`) equals VALUE, or equals
VALUE's keyed hash under one of the `--key-file` keys (the router's `--hash-key-file`, old keys after a
rotation too). Every other record with the request id of one of those (the shadow answer, the other
interleaved answer, the feedback) goes with it. Each file holding any is rewritten without them
atomically (`router.predlog.rewrite`: write, fsync, rename, under the lock a live router's writer honours),
so what is left is a log `replay` reads as before. A line that is not JSON is removed only when it
contains VALUE or one of its hashes.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from policies.outcome import OutcomeError
from policies.outcome.record import parse_line
from policies.privacy import canonical_text, is_hashed, keyed_hash
from router.predlog import LogError, log_files, rewrite


@dataclass
class Erased:
    files: int = 0
    """Log files read."""
    rewritten: list[str] = field(default_factory=list)
    matched: int = 0
    """Records whose field matched the subject."""
    linked: int = 0
    """Other records sharing their request ids."""
    broken: int = 0
    """Lines that were not JSON and held the subject's value or hash."""
    hashed_unmatched: int = 0
    """Records whose field holds a hash, when no key was given to match it."""

    @property
    def removed(self) -> int:
        return self.matched + self.linked + self.broken


def value_at(line: dict, path: Sequence[str]) -> Any:
    v: Any = line
    for part in path:
        if isinstance(v, dict):
            v = v.get(part)
        elif isinstance(v, list) and part.isdigit() and int(part) < len(v):
            v = v[int(part)]
        else:
            return None
    return v


def erase(directory: str | Path, subject: str, field_path: str = "sticky", keys: Sequence[bytes] = ()) -> Erased:
    """Remove every record of `subject` from the log files of `directory` (see the module)."""
    files = log_files([directory])
    path = tuple(p for p in field_path.split(".") if p)
    if not path:
        raise LogError(f"--field: expected a field of the log lines such as sticky or features.user_id, got "
                       f"{field_path!r}")
    wanted = {subject} | {keyed_hash(k, subject) for k in keys}
    needles = [w.encode() for w in wanted]
    out = Erased(files=len(files))

    def matches(line: dict) -> bool:
        v = value_at(line, path)
        return v is not None and not isinstance(v, (dict, list)) and canonical_text(v) in wanted

    ids: set[str] = set()
    for f in files:                          # first pass: the subject's request ids, across files
        try:
            with open(f, "rb") as fh:
                for raw in fh:
                    try:
                        line = parse_line(raw)
                    except OutcomeError:
                        continue
                    rid = line.get("request_id")
                    if matches(line) and isinstance(rid, str) and rid:
                        ids.add(rid)
                    elif not keys and is_hashed(value_at(line, path)):
                        out.hashed_unmatched += 1
        except FileNotFoundError:            # deleted by retention meanwhile
            continue

    def drop(_: int, raw: bytes) -> bool:
        if not raw.strip():
            return False
        try:
            line = parse_line(raw)
        except OutcomeError:
            if any(n in raw for n in needles):
                out.broken += 1
                return True
            return False
        if matches(line):
            out.matched += 1
            return True
        rid = line.get("request_id")
        if isinstance(rid, str) and rid in ids:
            out.linked += 1
            return True
        return False

    for f in files:
        _, removed = rewrite(f, drop)
        if removed:
            out.rewritten.append(f.name)
    return out


def _erase_main(args: argparse.Namespace) -> int:
    keys = []
    for k in args.key_file or ():
        try:
            key = Path(k).read_bytes().strip()
        except OSError as e:
            print(f"modelrollout log erase: --key-file {k}: cannot read: {e.strerror}", file=sys.stderr)
            return 2
        if not key:
            print(f"modelrollout log erase: --key-file {k}: empty", file=sys.stderr)
            return 2
        keys.append(key)
    if not Path(args.dir).is_dir():
        print(f"modelrollout log erase: --dir {args.dir}: not a directory", file=sys.stderr)
        return 2
    try:
        result = erase(args.dir, args.subject, args.field, keys)
    except LogError as e:
        print(f"modelrollout log erase: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"modelrollout log erase: {e}", file=sys.stderr)
        return 1
    if result.hashed_unmatched and not keys:
        print(f"modelrollout log erase: warning: {result.hashed_unmatched} record(s) hold a keyed hash at "
              f"{args.field}; give the router's key with --key-file to match the subject there", file=sys.stderr)
    print(f"erased {result.removed} record(s) from {len(result.rewritten)} of {result.files} file(s): "
          f"{result.matched} matched {args.field}, {result.linked} shared their request ids"
          + (f", {result.broken} unreadable line(s) held the subject" if result.broken else ""))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelrollout log", description="Prediction log maintenance.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("erase", help="remove every record of one subject (data-protection erasure)",
                       description=__doc__.split("\n\n")[0].replace("`", ""))
    e.add_argument("--dir", required=True, help="the log directory (predictions-*.jsonl)")
    e.add_argument("--subject", required=True, help="the value identifying the person (e.g. the user id)")
    e.add_argument("--field", default="sticky", help="where the value is in a log line: sticky (default), "
                   "request_id, features.NAME, segments.NAME, input.PATH")
    e.add_argument("--key-file", action="append", metavar="FILE",
                   help="the router's --hash-key-file, to match hashed values (repeatable: old keys too)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    return _erase_main(args)


if __name__ == "__main__":
    sys.exit(main())
