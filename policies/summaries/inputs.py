"""InputSummary: what the input expectations (`spec.expectations`, `policies.expectations`) need of one window.

Per version and window: the rows (live requests whose inputs were checked) and, per expected feature, how many
rows broke each kind of expectation (`ISSUE_KINDS`: null or missing, wrong type, out of range, not in the
allowed set), with at most `EXAMPLES` example values per kind, already as the privacy settings let them be
kept (a hashed feature's examples are `hmac:` hashes, a dropped one's "[redacted]"). Counts add; the examples
of a merge are the `EXAMPLES` smallest of the union (by their JSON text), so merging is exact, associative and
commutative like every other summary.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from .base import check_mergeable, SummaryError
from .codec import _count, _decoder, _expect_type, _get

ISSUE_KINDS = ("null", "type", "range", "in")
"""How a row can break a feature's expectations: null or missing, wrong type, outside [min, max], not allowed."""
EXAMPLES = 3
"""Example values kept per feature and kind."""
EXAMPLE_CHARS = 64
"""Longer example texts are cut to this many characters (and end with "…")."""
MAX_FEATURES = 64
"""Features with counts kept per summary (the spec allows at most 64 expectations)."""


def example_text(value: Any) -> str:
    """The text an example value is kept as: strings quoted, numbers and null as JSON writes them."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=True) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS - 1] + "…"


class InputSummary:
    """Rows checked, and per feature the count of each issue kind and a few examples."""

    def __init__(self) -> None:
        self.rows = 0
        self.counts: dict[str, dict[str, int]] = {}
        self.examples: dict[str, dict[str, list[str]]] = {}

    def add_rows(self, n: int) -> None:
        self.rows += int(n)

    def add_issue(self, feature: str, kind: str, example: str | None = None) -> None:
        """One row whose `feature` broke its expectation of `kind`; `example`: its value as `example_text`."""
        if kind not in ISSUE_KINDS:
            raise SummaryError(f"input issue kind must be one of {', '.join(ISSUE_KINDS)}, got {kind!r}")
        per = self.counts.get(feature)
        if per is None:
            if len(self.counts) >= MAX_FEATURES:
                return
            per = self.counts[feature] = {}
        per[kind] = per.get(kind, 0) + 1
        if example is not None:
            ex = self.examples.setdefault(feature, {}).setdefault(kind, [])
            if example not in ex:
                ex.append(example)
                ex.sort()
                del ex[EXAMPLES:]

    def count(self, feature: str, kind: str) -> int:
        return self.counts.get(feature, {}).get(kind, 0)

    def examples_of(self, feature: str, kind: str) -> list[str]:
        return list(self.examples.get(feature, {}).get(kind, ()))

    def merge(self, other: "InputSummary") -> "InputSummary":
        check_mergeable(self, other)
        out = InputSummary()
        out.rows = self.rows + other.rows
        for src in (self.counts, other.counts):
            for f, per in sorted(src.items()):
                if f not in out.counts and len(out.counts) >= MAX_FEATURES:
                    continue
                dst = out.counts.setdefault(f, {})
                for k, v in per.items():
                    dst[k] = dst.get(k, 0) + v
        for f in sorted(set(self.examples) | set(other.examples)):
            kinds = set(self.examples.get(f, {})) | set(other.examples.get(f, {}))
            for k in sorted(kinds):
                union = set(self.examples.get(f, {}).get(k, ())) | set(other.examples.get(f, {}).get(k, ()))
                out.examples.setdefault(f, {})[k] = sorted(union)[:EXAMPLES]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "inputs", "rows": self.rows,
                "features": {f: {**{k: per[k] for k in ISSUE_KINDS if per.get(k)},
                                 **({"examples": self.examples[f]} if self.examples.get(f) else {})}
                             for f, per in self.counts.items()}}

    @_decoder("input summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "InputSummary":
        where = "input summary"
        _expect_type(d, "inputs", where)
        s = cls()
        s.rows = _count(d, "rows", where)
        for f, per in _get(d, "features", dict, where).items():
            at = f"{where}.features.{f}"
            if not isinstance(per, Mapping):
                raise SummaryError(f"{at}: expected an object of counts per kind")
            counts = {}
            for k, v in per.items():
                if k == "examples":
                    continue
                if k not in ISSUE_KINDS:
                    raise SummaryError(f"{at}: unknown issue kind {k!r}; expected {', '.join(ISSUE_KINDS)}")
                counts[k] = _count(per, k, at)
            s.counts[str(f)] = counts
            ex = per.get("examples") or {}
            if not isinstance(ex, Mapping):
                raise SummaryError(f"{at}.examples: expected an object of lists per kind")
            for k, values in ex.items():
                if k not in ISSUE_KINDS or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise SummaryError(f"{at}.examples.{k}: expected a list of example texts under an issue kind")
                s.examples.setdefault(str(f), {})[k] = sorted(values)[:EXAMPLES]
        return s


def add_batch(summary: InputSummary, rows: int, issues: Iterable[tuple[str, str, str | None]]) -> None:
    """`rows` checked rows and their issues (feature, kind, example text) in record order."""
    summary.add_rows(rows)
    for f, k, ex in issues:
        summary.add_issue(f, k, ex)
