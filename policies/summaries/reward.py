"""RewardSums: the numeric rewards reported through /feedback for one version in one window (exact)."""
from __future__ import annotations

import math
from typing import Any, Mapping

from .base import check_mergeable, SummaryError
from .codec import _count, _decoder, _expect_type
from .exact import ExactSum


class RewardSums:
    """Count, exact sum and exact sum of squares of the rewards (non-finite rewards count as invalid)."""

    def __init__(self) -> None:
        self.n = 0
        self.invalid = 0
        self._sum = ExactSum()
        self._sumsq = ExactSum()

    def add(self, reward: Any) -> None:
        try:
            x = float(reward)
        except (TypeError, ValueError, OverflowError):
            self.invalid += 1
            return
        if isinstance(reward, bool) or not math.isfinite(x) or not math.isfinite(x * x):
            self.invalid += 1
            return
        self.n += 1
        self._sum.add(x)
        self._sumsq.add(x * x)

    @property
    def sum(self) -> float:
        return self._sum.value

    @property
    def sumsq(self) -> float:
        return self._sumsq.value

    def mean(self) -> float | None:
        return self.sum / self.n if self.n else None

    def variance(self) -> float | None:
        """Sample variance (denominator n − 1), from the exact sums; None with fewer than 2 rewards."""
        if self.n < 2:
            return None
        s, q = self._sum.fraction(), self._sumsq.fraction()
        return max(float((q - s * s / self.n) / (self.n - 1)), 0.0)

    def merge(self, other: "RewardSums") -> "RewardSums":
        check_mergeable(self, other)
        out = RewardSums()
        out.n, out.invalid = self.n + other.n, self.invalid + other.invalid
        out._sum, out._sumsq = self._sum.merged(other._sum), self._sumsq.merged(other._sumsq)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "reward", "n": self.n, "invalid": self.invalid, "sum": self._sum.to_list(),
                "sumsq": self._sumsq.to_list()}

    @_decoder("reward sums")
    def from_dict(cls, d: Mapping[str, Any]) -> "RewardSums":
        where = "reward sums"
        _expect_type(d, "reward", where)
        s = cls()
        s.n, s.invalid = _count(d, "n", where), _count(d, "invalid", where)
        s._sum = ExactSum.from_list(d.get("sum"), f"{where}.sum")
        s._sumsq = ExactSum.from_list(d.get("sumsq"), f"{where}.sumsq")
        if s.n == 0 and (s._sum.partials or s._sumsq.partials):
            raise SummaryError(f"{where}: sums without rewards (n is 0)")
        return s
