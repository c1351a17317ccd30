"""CategoricalSummary: counts of a categorical value, capped with an "__other__" bucket."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .base import check_mergeable, OTHER, SummaryError
from .codec import _count, _decoder, _expect_type, _get

class CategoricalSummary:
    """Exact counts per category, at most ``max_categories`` distinct ones.

    Once the cap is reached, values of new categories are counted under "__other__". Merging
    keeps the ``max_categories`` largest counts (ties by name) and folds the rest into
    "__other__": exact (and order-independent) while the union has ≤ max_categories categories.
    """

    def __init__(self, max_categories: int = 256) -> None:
        if isinstance(max_categories, bool) or not isinstance(max_categories, int) or max_categories < 1:
            raise SummaryError(f"max_categories must be a positive integer, got {max_categories!r}")
        self.max_categories = max_categories
        self._counts: dict[str, int] = {}
        self.invalid = 0

    def add(self, value: str, key: float | None = None) -> None:
        """Count one value (``key`` is accepted for symmetry with the sampled summaries); None is invalid."""
        if value is None or isinstance(value, (dict, list)):
            self.invalid += 1
            return
        v = value if isinstance(value, str) else str(value)
        counts = self._counts
        if v not in counts and len(counts) - (OTHER in counts) >= self.max_categories:
            v = OTHER
        counts[v] = counts.get(v, 0) + 1

    def add_many(self, values: Iterable[Any], keys: Any = None) -> None:
        """Count values in order: the same counts as `add` one at a time (``keys`` is ignored)."""
        tally: dict[str, int] = {}
        invalid = 0
        for value in values:
            if value is None or isinstance(value, (dict, list)):
                invalid += 1
                continue
            v = value if isinstance(value, str) else str(value)
            tally[v] = tally.get(v, 0) + 1
        self.invalid += invalid
        counts, cap = self._counts, self.max_categories
        named = len(counts) - (OTHER in counts)
        # Distinct values in order of first appearance: a new category takes a free slot or goes to
        # "__other__", exactly as it would have at its first occurrence.
        for v, c in tally.items():
            if v not in counts:
                if named >= cap:
                    v = OTHER
                elif v != OTHER:
                    named += 1
            counts[v] = counts.get(v, 0) + c

    @property
    def n(self) -> int:
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def merge(self, other: "CategoricalSummary") -> "CategoricalSummary":
        check_mergeable(self, other)
        out = CategoricalSummary(min(self.max_categories, other.max_categories))
        total: dict[str, int] = dict(self._counts)
        for k, v in other._counts.items():
            total[k] = total.get(k, 0) + v
        out._counts = _fold(total, out.max_categories)
        out.invalid = self.invalid + other.invalid
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "max_categories": self.max_categories, "counts": dict(self._counts),
                "invalid": self.invalid}

    @_decoder("categorical summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "CategoricalSummary":
        where = "categorical summary"
        _expect_type(d, "categorical", where)
        s = cls(_count(d, "max_categories", where) or 1)
        counts = _get(d, "counts", dict, where)
        for k, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SummaryError(f"{where}.counts[{k!r}]: expected a non-negative integer, got {v!r}")
        s._counts = _fold({str(k): v for k, v in counts.items()}, s.max_categories)
        s.invalid = _count(d, "invalid", where)
        return s


def _fold(counts: dict[str, int], cap: int) -> dict[str, int]:
    named = sorted(((k, v) for k, v in counts.items() if k != OTHER), key=lambda kv: (-kv[1], kv[0]))
    out = dict(named[:cap])
    other = counts.get(OTHER, 0) + sum(v for _, v in named[cap:])
    if other:
        out[OTHER] = other
    return out
