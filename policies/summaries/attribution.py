"""AttributionSummary: per-feature mean |attribution|, mergeable."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import check_mergeable, SummaryError
from .codec import _count, _decoder, _expect_type, _get
from .exact import ExactSum

class AttributionSummary:
    """Per-feature exact sums of |attribution| and counts: each feature's mean importance, mergeable.

    ``n`` counts predictions that carried attributions; a feature's importance is its sum of |a| over
    ``n`` (a feature a prediction did not attribute counts as 0 there, as in SHAP). At most
    ``max_features`` features are tracked: attributions of further features are counted in ``dropped``.
    Merging keeps the ``max_features`` features with the largest sums (ties by name): exact, and
    independent of merge order, while the union has ≤ max_features features.
    """

    def __init__(self, max_features: int = 64) -> None:
        if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
            raise SummaryError(f"max_features must be a positive integer, got {max_features!r}")
        self.max_features = max_features
        self.n = 0
        self.dropped = 0
        self._sums: dict[str, ExactSum] = {}
        self._counts: dict[str, int] = {}

    def add(self, attributions: Mapping[str, Any]) -> None:
        """One prediction's attributions `{feature: number}`; non-finite or non-numeric entries are skipped."""
        if not isinstance(attributions, Mapping):
            raise SummaryError(f"attributions must be a mapping of feature to number, got "
                               f"{type(attributions).__name__}")
        self.n += 1
        for name, v in attributions.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            name = str(name)
            s = self._sums.get(name)
            if s is None:
                if len(self._sums) >= self.max_features:
                    self.dropped += 1
                    continue
                s = self._sums[name] = ExactSum()
                self._counts[name] = 0
            s.add(abs(float(v)))
            self._counts[name] += 1

    def features(self) -> list[str]:
        return sorted(self._sums)

    def counts(self) -> dict[str, int]:
        """Predictions that attributed each feature."""
        return dict(self._counts)

    def importance(self) -> dict[str, float]:
        """Mean |attribution| per feature over the ``n`` predictions."""
        return {k: s.value / self.n for k, s in self._sums.items()} if self.n else {}

    def ranking(self) -> list[str]:
        """Features from most to least important (ties by name)."""
        imp = self.importance()
        return sorted(imp, key=lambda k: (-imp[k], k))

    def merge(self, other: "AttributionSummary") -> "AttributionSummary":
        check_mergeable(self, other)
        out = AttributionSummary(min(self.max_features, other.max_features))
        out.n = self.n + other.n
        out.dropped = self.dropped + other.dropped
        sums = {k: s.merged(other._sums[k]) if k in other._sums else ExactSum(s.partials)
                for k, s in self._sums.items()}
        sums.update({k: ExactSum(s.partials) for k, s in other._sums.items() if k not in sums})
        counts = {k: self._counts.get(k, 0) + other._counts.get(k, 0) for k in sums}
        out._keep(sums, counts)
        return out

    def _keep(self, sums: dict[str, ExactSum], counts: dict[str, int]) -> None:
        """Keep the max_features largest sums (ties by name); the rest count as dropped."""
        order = sorted(sums, key=lambda k: (-sums[k].fraction(), k))
        keep = order[:self.max_features]
        self.dropped += sum(counts[k] for k in order[self.max_features:])
        self._sums = {k: sums[k] for k in keep}
        self._counts = {k: counts[k] for k in keep}

    def to_dict(self) -> dict[str, Any]:
        return {"type": "attribution", "max_features": self.max_features, "n": self.n, "dropped": self.dropped,
                "features": {k: {"count": self._counts[k], "abs_sum": s.to_list()}
                             for k, s in sorted(self._sums.items())}}

    @_decoder("attribution summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "AttributionSummary":
        where = "attribution summary"
        _expect_type(d, "attribution", where)
        s = cls(_count(d, "max_features", where) or 1)
        s.n = _count(d, "n", where)
        s.dropped = _count(d, "dropped", where)
        sums: dict[str, ExactSum] = {}
        counts: dict[str, int] = {}
        for name, f in _get(d, "features", dict, where).items():
            at = f"{where}.features[{name!r}]"
            count = _count(f, "count", at)
            if count > s.n:
                raise SummaryError(f"{at}.count: {count} exceeds n {s.n}")
            total = ExactSum.from_list(_get(f, "abs_sum", list, at), f"{at}.abs_sum")
            if total.value < 0:
                raise SummaryError(f"{at}.abs_sum: a sum of absolute values cannot be negative")
            sums[str(name)], counts[str(name)] = total, count
        s._keep(sums, counts)
        return s
