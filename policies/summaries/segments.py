"""SegmentCounts: per-segment prediction and label counts, for fairness checks."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .base import check_mergeable, OTHER, SummaryError
from .codec import _count, _decoder, _get

_SEG_FIELDS = ("n", "positives", "n_labelled", "n_correct", "n_label_positive", "n_true_positive")


class SegmentCounts:
    """Per segment field (e.g. "gender") and value: outcome counts for fairness checks.

    Six counters per value: n, positives (predicted positive), and from joined labels
    n_labelled, n_correct, n_label_positive, n_true_positive. At most ``max_values`` distinct
    values per field; the rest count under "__other__".
    """

    def __init__(self, max_values: int = 64) -> None:
        if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 1:
            raise SummaryError(f"max_values must be a positive integer, got {max_values!r}")
        self.max_values = max_values
        self._c: dict[str, dict[str, list[int]]] = {}

    def _row(self, field: str, value: Any) -> list[int]:
        values = self._c.setdefault(str(field), {})
        v = str(value)
        if v not in values and len(values) - (OTHER in values) >= self.max_values:
            v = OTHER
        return values.setdefault(v, [0] * len(_SEG_FIELDS))

    def add_counts(self, segments: Mapping[str, Any], counts: Iterable[int]) -> None:
        """Add the six counters (`_SEG_FIELDS` order) to every field value of ``segments``: ``add`` is
        (1, positive, 0, 0, 0, 0), ``add_label`` (0, 0, 1, correct, label positive, true positive); sums
        of such rows for the same segments, applied in order of first appearance, count exactly as
        applying each one in order does."""
        counts = [int(c) for c in counts]
        if len(counts) != len(_SEG_FIELDS) or min(counts) < 0:
            raise SummaryError(f"counts: expected {len(_SEG_FIELDS)} non-negative integers "
                               f"{list(_SEG_FIELDS)}, got {counts!r}")
        for field, value in segments.items():
            row = self._row(field, value)
            for i, c in enumerate(counts):
                row[i] += c

    def add(self, segments: Mapping[str, Any], positive: bool) -> None:
        """One prediction of a request with these segment values; ``positive`` = predicted positive."""
        for field, value in segments.items():
            row = self._row(field, value)
            row[0] += 1
            row[1] += bool(positive)

    def add_label(self, segments: Mapping[str, Any], correct: bool, label_positive: bool,
                  predicted_positive: bool) -> None:
        """One ground-truth label joined to its prediction."""
        for field, value in segments.items():
            row = self._row(field, value)
            row[2] += 1
            row[3] += bool(correct)
            row[4] += bool(label_positive)
            row[5] += bool(label_positive and predicted_positive)

    def fields(self) -> list[str]:
        return sorted(self._c)

    def rows(self, kind: str, field: str | None) -> dict[str, tuple[int, int]]:
        """`kind` (positives, accuracy or tpr_counts) per value of `field`; with no field, of the "all"
        pseudo-field when counted, else of the first field ({} when nothing was counted)."""
        if field is None:
            fields = self.fields()
            field = "all" if "all" in fields else (fields[0] if fields else None)
            if field is None:
                return {}
        return getattr(self, kind)(field)

    def positives(self, field: str) -> dict[str, tuple[int, int]]:
        """value → (n, positives): the input of `stats.disparate_impact`."""
        return {v: (r[0], r[1]) for v, r in self._c.get(field, {}).items()}

    def accuracy(self, field: str) -> dict[str, tuple[int, int]]:
        """value → (n_labelled, n_correct)."""
        return {v: (r[2], r[3]) for v, r in self._c.get(field, {}).items()}

    def tpr_counts(self, field: str) -> dict[str, tuple[int, int]]:
        """value → (n_label_positive, n_true_positive): the input of `stats.equal_opportunity`."""
        return {v: (r[4], r[5]) for v, r in self._c.get(field, {}).items()}

    def merge(self, other: "SegmentCounts") -> "SegmentCounts":
        check_mergeable(self, other)
        out = SegmentCounts(min(self.max_values, other.max_values))
        for src in (self._c, other._c):
            for field, values in src.items():
                dst = out._c.setdefault(field, {})
                for v, row in values.items():
                    cur = dst.setdefault(v, [0] * len(_SEG_FIELDS))
                    for i, x in enumerate(row):
                        cur[i] += x
        for field, values in out._c.items():
            if len([k for k in values if k != OTHER]) > out.max_values:
                ranked = sorted((k for k in values if k != OTHER), key=lambda k: (-values[k][0], k))
                keep = {k: values[k] for k in ranked[: out.max_values]}
                other_row = list(values.get(OTHER, [0] * len(_SEG_FIELDS)))
                for k in ranked[out.max_values:]:
                    other_row = [a + b for a, b in zip(other_row, values[k])]
                keep[OTHER] = other_row
                out._c[field] = keep
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "segments", "max_values": self.max_values,
                "counts": {f: {v: list(r) for v, r in vals.items()} for f, vals in self._c.items()}}

    @_decoder("segment counts")
    def from_dict(cls, d: Mapping[str, Any]) -> "SegmentCounts":
        where = "segment counts"
        s = cls(_count(d, "max_values", where) or 1)
        for field, vals in _get(d, "counts", dict, where).items():
            if not isinstance(vals, dict):
                raise SummaryError(f"{where}.counts.{field}: expected an object of value -> counts")
            for v, row in vals.items():
                if not isinstance(row, list) or len(row) != len(_SEG_FIELDS) or \
                        not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in row):
                    raise SummaryError(f"{where}.counts.{field}.{v}: expected {len(_SEG_FIELDS)} non-negative "
                                       f"integers {list(_SEG_FIELDS)}")
                s._c.setdefault(str(field), {})[str(v)] = list(row)
        return s
