"""LatencyHistogram: call latencies in fixed log-spaced buckets."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .base import check_mergeable, SummaryError
from .codec import _count, _decoder, _get
from .exact import ExactSum
from .sample import _first_extreme, _floats, _SMALL_BATCH

LATENCY_MIN = 1e-4
LATENCY_MAX = 60.0
BUCKETS_PER_DECADE = 20
_N_BOUNDS = math.ceil(BUCKETS_PER_DECADE * math.log10(LATENCY_MAX / LATENCY_MIN)) + 1
LATENCY_BOUNDS = LATENCY_MIN * 10.0 ** (np.arange(_N_BOUNDS) / BUCKETS_PER_DECADE)
"""Upper bounds (seconds) of the finite buckets: 0.1 ms · 10^(i/20), up to ≥ 60 s (factor 1.122)."""


class LatencyHistogram:
    """Latency counts over fixed log-spaced buckets from 0.1 ms to 60 s (20 per decade).

    Bucket 0 holds [0, 0.1 ms], bucket i holds (bound[i−1], bound[i]], the last one > 60 s.
    `quantile` interpolates log-linearly inside the bucket and clamps to the exact min/max, so its
    relative error is below the bucket ratio 10^(1/20) − 1 ≈ 12%.
    """

    def __init__(self) -> None:
        self._counts = np.zeros(LATENCY_BOUNDS.size + 1, dtype=np.int64)
        self._sum = ExactSum()
        self.invalid = 0
        self.min: float | None = None
        self.max: float | None = None

    def add(self, seconds: float) -> None:
        try:
            s = float(seconds)
        except (TypeError, ValueError, OverflowError):
            self.invalid += 1
            return
        if not math.isfinite(s) or s < 0:
            self.invalid += 1
            return
        self._counts[int(np.searchsorted(LATENCY_BOUNDS, s, side="left"))] += 1
        self._sum.add(s)
        self.min = s if self.min is None else min(self.min, s)
        self.max = s if self.max is None else max(self.max, s)

    def add_many(self, seconds: Any) -> None:
        """Add latencies in order: the same histogram as `add` one at a time."""
        if not isinstance(seconds, np.ndarray) and len(seconds) <= _SMALL_BATCH:
            for x in seconds:
                self.add(x)
            return
        vs = _floats(seconds)
        ok = np.isfinite(vs) & (vs >= 0)
        self.invalid += int(vs.size - ok.sum())
        vs = vs[ok]
        if vs.size == 0:
            return
        self._counts += np.bincount(np.searchsorted(LATENCY_BOUNDS, vs, side="left"),
                                    minlength=self._counts.size).astype(np.int64)
        self._sum.add_many(vs)
        self.min = _first_extreme(self.min, vs, True)
        self.max = _first_extreme(self.max, vs, False)

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    @property
    def sum(self) -> float:
        return self._sum.value

    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """(upper bounds in seconds with +inf last, cumulative counts) — Prometheus `le` buckets."""
        return np.append(LATENCY_BOUNDS, np.inf), np.cumsum(self._counts)

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds (None when empty); ValueError if q is outside [0, 1]."""
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be a number in [0, 1], got {q!r}")
        total = self.count
        if total == 0:
            return None
        rank = q * total
        cum = np.cumsum(self._counts)
        i = int(np.searchsorted(cum, max(rank, 1e-12), side="left"))
        i = min(i, self._counts.size - 1)
        below = cum[i - 1] if i else 0
        frac = (rank - below) / self._counts[i] if self._counts[i] else 1.0
        lo = LATENCY_BOUNDS[i - 1] if i >= 1 else LATENCY_MIN / 10 ** (1 / BUCKETS_PER_DECADE)
        hi = LATENCY_BOUNDS[i] if i < LATENCY_BOUNDS.size else max(self.max or LATENCY_MAX, LATENCY_MAX)
        lo, hi = max(lo, self.min), min(hi, self.max)
        if hi <= lo:
            return float(min(max(lo, self.min), self.max))
        v = lo * (hi / lo) ** frac if lo > 0 else lo + (hi - lo) * frac
        return float(min(max(v, self.min), self.max))

    def merge(self, other: "LatencyHistogram") -> "LatencyHistogram":
        check_mergeable(self, other)
        out = LatencyHistogram()
        out._counts = self._counts + other._counts
        out._sum = self._sum.merged(other._sum)
        out.invalid = self.invalid + other.invalid
        mins = [v for v in (self.min, other.min) if v is not None]
        maxs = [v for v in (self.max, other.max) if v is not None]
        out.min, out.max = (min(mins) if mins else None), (max(maxs) if maxs else None)
        return out

    def to_dict(self) -> dict[str, Any]:
        nz = np.nonzero(self._counts)[0]
        return {"type": "latency", "buckets": {str(int(i)): int(self._counts[i]) for i in nz},
                "sum": self._sum.to_list(), "invalid": self.invalid, "min": self.min, "max": self.max}

    @_decoder("latency histogram")
    def from_dict(cls, d: Mapping[str, Any]) -> "LatencyHistogram":
        where = "latency histogram"
        h = cls()
        for k, v in _get(d, "buckets", dict, where).items():
            try:
                i = int(k)
            except ValueError as e:
                raise SummaryError(f"{where}.buckets: bucket index must be an integer, got {k!r}") from e
            if not 0 <= i < h._counts.size or isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SummaryError(f"{where}.buckets[{k}]: expected index < {h._counts.size} and count ≥ 0")
            h._counts[i] = v
        h._sum = ExactSum.from_list(d.get("sum"), f"{where}.sum")
        h.invalid = _count(d, "invalid", where)
        for f in ("min", "max"):
            v = d.get(f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise SummaryError(f"{where}.{f}: expected a number or null, got {v!r}")
            setattr(h, f, None if v is None else float(v))
        if h.count and (h.min is None or h.max is None):
            raise SummaryError(f"{where}: min and max are required when buckets are non-empty")
        return h
