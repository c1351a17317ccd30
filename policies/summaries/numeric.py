"""NumericSummary: a bottom-k sample, exact moments and the frozen bins of one numeric value."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .base import _check_key, check_mergeable, SummaryError
from .codec import _b64, _count, _decoder, _expect_type, _unb64
from .exact import _add_exact, ExactSum
from .sample import (
    _SMALL_BATCH, _BottomK, _check_keys, _check_sample, _first_extreme, _half_mask, _merged_capacity, _number, _numbers,
)

class NumericSummary:
    """Exact n/sum/sumsq/min/max, an invalid (NaN/inf) count, a bottom-k uniform sample and,
    when ``edges`` are given (frozen from the baseline), exact counts over those bins."""

    def __init__(self, capacity: int = 2048, edges: np.ndarray | None = None) -> None:
        self._sample = _BottomK(capacity)
        self.n = 0
        self.invalid = 0
        self._sum = ExactSum()
        self._sumsq = ExactSum()
        self.min: float | None = None
        self.max: float | None = None
        self.edges: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        if edges is not None:
            e = np.asarray(edges, dtype=np.float64)
            if e.ndim != 1 or e.size < 2 or np.isnan(e).any() or not (np.diff(e) > 0).all():
                raise SummaryError("edges must be a strictly increasing 1-D array of at least 2 values")
            self.edges = e
            self._counts = np.zeros(e.size - 1, dtype=np.int64)

    @property
    def capacity(self) -> int:
        return self._sample.capacity

    def add(self, x: float, key: float) -> None:
        """Record one value; NaN, ±inf and non-numbers count as invalid."""
        k = _check_key(key)
        v = _number(x)
        if not math.isfinite(v):
            self.invalid += 1
            return
        self.n += 1
        self._sum.add(v)
        sq = v * v
        if math.isfinite(sq):
            self._sumsq.add(sq)
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)
        if self._counts is not None:
            self._counts[int(np.searchsorted(self.edges[1:-1], v, side="right"))] += 1
        self._sample.add(k, v)

    def add_many(self, xs: Any, keys: Any) -> None:
        """Record values in order, one key each: the same summary as `add` one at a time.

        ``xs`` is a sequence or array; entries that are not finite numbers count as invalid.
        Every key is checked first, so a bad key raises before anything is recorded.
        """
        if not isinstance(xs, np.ndarray) and len(xs) <= _SMALL_BATCH:
            ks = [_check_key(k) for k in keys]
            if len(ks) != len(xs):
                raise SummaryError(f"keys: expected one key per value ({len(xs)}), got {len(ks)}")
            for x, k in zip(xs, ks):
                self.add(x, k)
            return
        vs = _numbers(xs)
        ks = _check_keys(keys, vs.size)
        ok = np.isfinite(vs)
        n_ok = int(ok.sum())
        self.invalid += vs.size - n_ok
        if n_ok == 0:
            return
        if n_ok < vs.size:
            vs, ks = vs[ok], ks[ok]
        self.n += n_ok
        self.min = _first_extreme(self.min, vs, True)
        self.max = _first_extreme(self.max, vs, False)
        if max(-self.min, self.max) < 1e150:         # no square can overflow: skip the checks
            _add_exact([(self._sum, vs), (self._sumsq, vs * vs)], checked=True)
        else:
            with np.errstate(over="ignore"):
                sq = vs * vs
            _add_exact([(self._sum, vs), (self._sumsq, sq[np.isfinite(sq)])])
        if self._counts is not None:
            idx = np.searchsorted(self.edges[1:-1], vs, side="right")
            self._counts += np.bincount(idx, minlength=self._counts.size).astype(np.int64)
        self._sample.add_many(ks, vs)

    @property
    def sum(self) -> float:
        return self._sum.value

    def mean(self) -> float | None:
        return self._sum.value / self.n if self.n else None

    def std(self) -> float | None:
        """Population standard deviation from the exact sums (None when empty)."""
        if not self.n:
            return None
        s, q = self._sum.fraction(), self._sumsq.fraction()
        var = (self.n * q - s * s) / (self.n * self.n)
        return math.sqrt(max(float(var), 0.0))

    def values(self) -> np.ndarray:
        """The uniform sample (≤ capacity values), in key order (sorted once per change, not per call)."""
        return self._sample.view()[1]

    def keys(self) -> np.ndarray:
        return self._sample.view()[0]

    def counts(self) -> np.ndarray | None:
        """Exact counts over the frozen edges, or None when built without edges."""
        return None if self._counts is None else self._counts.copy()

    def merge(self, other: "NumericSummary") -> "NumericSummary":
        """A new summary of the union of both streams."""
        check_mergeable(self, other)
        a_empty, b_empty = self.n + self.invalid == 0, other.n + other.invalid == 0
        edges = self.edges
        if self.edges is None or other.edges is None:
            if self.edges is not None and not b_empty or other.edges is not None and not a_empty:
                raise SummaryError("cannot merge a NumericSummary with frozen edges and a non-empty one without")
            edges = self.edges if self.edges is not None else other.edges
        elif not np.array_equal(self.edges, other.edges):
            raise SummaryError("cannot merge NumericSummaries with different edges")
        cap = _merged_capacity(self.capacity, a_empty, other.capacity, b_empty)
        out = NumericSummary(cap, edges)
        out._sample = self._sample.merged(other._sample, cap)
        out.n, out.invalid = self.n + other.n, self.invalid + other.invalid
        out._sum, out._sumsq = self._sum.merged(other._sum), self._sumsq.merged(other._sumsq)
        mins = [v for v in (self.min, other.min) if v is not None]
        maxs = [v for v in (self.max, other.max) if v is not None]
        out.min, out.max = (min(mins) if mins else None), (max(maxs) if maxs else None)
        if out._counts is not None:
            out._counts = (self._counts if self._counts is not None else 0) + \
                (other._counts if other._counts is not None else 0)
            out._counts = np.asarray(out._counts, dtype=np.int64)
        return out

    def aa_split(self) -> tuple["NumericSummary", "NumericSummary"]:
        """Two disjoint halves of the sample, split by a key bit (for A/A null calibration).

        Each half carries only its part of the sample (n, sums, min/max and counts over the
        edges are recomputed from it), not the exact stream totals.
        """
        keys, vals = self._sample.view()
        mask = _half_mask(keys)
        halves = []
        for m in (mask, ~mask):
            h = NumericSummary(self.capacity, self.edges)
            h.add_many(vals[m], keys[m])
            halves.append(h)
        return halves[0], halves[1]

    def to_dict(self) -> dict[str, Any]:
        keys, vals = self._sample.view()
        return {"type": "numeric", "capacity": self.capacity, "n": self.n, "invalid": self.invalid,
                "sum": self._sum.to_list(), "sumsq": self._sumsq.to_list(), "min": self.min, "max": self.max,
                "edges": None if self.edges is None else _b64(self.edges),
                "counts": None if self._counts is None else self._counts.tolist(),
                "keys": _b64(keys), "values": _b64(vals)}

    @_decoder("numeric summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "NumericSummary":
        where = "numeric summary"
        _expect_type(d, "numeric", where)
        edges = None if d.get("edges") is None else _unb64(d, "edges")
        s = cls(_count(d, "capacity", where) or 1, edges)
        s.n, s.invalid = _count(d, "n", where), _count(d, "invalid", where)
        s._sum = ExactSum.from_list(d.get("sum"), f"{where}.sum")
        s._sumsq = ExactSum.from_list(d.get("sumsq"), f"{where}.sumsq")
        for f in ("min", "max"):
            v = d.get(f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise SummaryError(f"{where}.{f}: expected a number or null, got {v!r}")
            setattr(s, f, None if v is None else float(v))
        if edges is not None:
            counts = d.get("counts")
            if not isinstance(counts, list) or len(counts) != edges.size - 1 or \
                    not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise SummaryError(f"{where}.counts: expected {edges.size - 1} non-negative integers")
            s._counts = np.array(counts, dtype=np.int64)
        keys, vals = _unb64(d, "keys"), _unb64(d, "values")
        if keys.size != vals.size or keys.size > s.capacity:
            raise SummaryError(f"{where}: keys ({keys.size}) and values ({vals.size}) must have equal length "
                               f"≤ capacity ({s.capacity})")
        if keys.size > s.n:
            raise SummaryError(f"{where}: sample has {keys.size} values but n is {s.n}")
        _check_sample(keys, vals, where)
        s._sample.add_many(keys, vals)
        return s
