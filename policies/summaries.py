"""Bounded, mergeable per-window summaries that router replicas send the controller.

Each router replica keeps one `VersionWindow` per rollout, version and window; the controller
merges the windows of every replica and runs `policies.stats` on the result. Merging is exact
where it can be:

* counts (requests, errors, categories, segments, histogram buckets, interleave outcomes) add;
* sums are kept as exact partial sums (Shewchuk), so every derived mean/correlation is the
  correctly rounded value of the union whatever the merge order;
* samples are *bottom-k by key*: each value arrives with a key ~ U(0, 1) (the caller's RNG, or
  `key_from_request_id`), the summary keeps the ``capacity`` items with the smallest keys, and a
  merge keeps the bottom k of the union. That is a uniform sample of the union, and merge is
  exactly associative and commutative (keys are assumed distinct; ties break on the value).
  Using the request id as key samples the same requests in every version (coordinated samples).

Memory bound per summary at default capacity (numpy buffers hold up to 2× capacity between
compactions; `to_dict()` always holds ≤ capacity):

| summary | bound |
|---|---|
| NumericSummary(2048) | 2 × 2048 × (8 B key + 8 B value) = 64 KiB (+ 8 B per frozen bin) |
| CategoricalSummary(256 categories) | ≈ 256 × 100 B ≈ 25 KiB (beyond the cap new values count as "__other__") |
| EmbeddingSummary(512, d) | 2 × 512 × (8 + 4·d) B = 3 MiB for d = 768 (float32 vectors) |
| PairedSummary | < 2 KiB (seven exact sums) |
| LatencyHistogram | 119 buckets × 8 B ≈ 1 KiB |
| SegmentCounts(64 values per field) | fields × 64 × 6 ints |
| AttributionSummary(64 features) | ≈ 64 × (name + count + a few exact-sum partials) ≈ 10 KiB (only when used) |
| VersionWindow (score, 10 numeric features) | ≈ 11 × 64 KiB + 1 KiB ≈ 0.7 MiB |

Every summary the router feeds has a batch method (`NumericSummary.add_many`, `CategoricalSummary.add_many`,
`LatencyHistogram.add_many`, `PairedSummary.add_many`, `SegmentCounts.add_counts`,
`VersionWindow.observe_predictions/observe_features`) that builds exactly the summary adding the same
values one at a time in the same order builds (same `to_dict()`), at a fraction of the cost: exact sums
go through integers (`_exact_integers`), samples and bins through numpy.

`to_dict()` is JSON-serialisable (strict JSON: no NaN/inf; arrays are base64 little-endian) and
`from_dict(to_dict(x))` round-trips; `from_dict` raises `SummaryError` naming the bad field.
"""
from __future__ import annotations

import base64
import hashlib
import math
from fractions import Fraction
from typing import Any, Iterable, Mapping

import numpy as np

from .interleaving import interleave_test
from ._result import StatResult
from .errors import StatisticsError

OTHER = "__other__"
ERROR_KINDS = ("http_5xx", "timeout", "unreachable", "invalid_output")
LATENCY_EXCLUSIONS = {
    "stalled": "the router's process timing the call was starved of CPU or busy while the answer waited",
    "connect": "setting up the connection took so long the server's accept queue was overflowing",
}
"""Why a call's latency was left out of a window's latency summary (outcome record field `latency_excluded`)."""
OUTPUT_KINDS = ("score", "class", "embedding", "ranking")


class SummaryError(StatisticsError, ValueError):
    """A summary cannot be built, merged or decoded; the message names the field."""


def key_from_request_id(request_id: str) -> float:
    """A key in [0, 1) from a request id (BLAKE2b, 53 bits): the same request, the same key."""
    h = hashlib.blake2b(request_id.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(h, "little") >> 11) / float(1 << 53)


def _check_key(key: Any) -> float:
    if isinstance(key, bool) or not isinstance(key, (int, float, np.floating, np.integer)):
        raise SummaryError(f"key must be a number in [0, 1), got {key!r}")
    k = float(key)
    if not 0.0 <= k < 1.0:
        raise SummaryError(f"key must be in [0, 1), got {k!r}")
    return k


# --- encoding helpers ------------------------------------------------------------------------

def _b64(a: np.ndarray, dtype: str = "<f8") -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _unb64(d: Mapping[str, Any], field: str, dtype: str = "<f8") -> np.ndarray:
    try:
        raw = base64.b64decode(d[field], validate=True)
        return np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))
    except KeyError as e:
        raise SummaryError(f"missing field {field!r}") from e
    except (TypeError, ValueError) as e:
        raise SummaryError(f"field {field!r} is not base64 of {dtype} values: {e}") from e


def _get(d: Mapping[str, Any], field: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, Mapping):
        raise SummaryError(f"{where}: expected an object, got {type(d).__name__}")
    if field not in d:
        raise SummaryError(f"{where}: missing field {field!r}")
    v = d[field]
    if isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise SummaryError(f"{where}.{field}: expected {kind}, got {v!r}")
    if not isinstance(v, kind):
        raise SummaryError(f"{where}.{field}: expected {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


def _expect_type(d: Mapping[str, Any], kind: str, where: str) -> None:
    if _get(d, "type", str, where) != kind:
        raise SummaryError(f"{where}: type must be {kind!r}, got {d['type']!r}")


def _count(d: Mapping[str, Any], field: str, where: str) -> int:
    v = _get(d, field, int, where)
    if v < 0:
        raise SummaryError(f"{where}.{field}: must be >= 0, got {v}")
    return v


def _decoder(what: str) -> Any:
    """Wrap a from_dict so malformed input of a kind no explicit check foresaw still surfaces as
    a SummaryError naming the summary, never as an unrelated TypeError/KeyError."""
    def wrap(fn: Any) -> Any:
        def decode(cls: Any, d: Any) -> Any:
            if not isinstance(d, Mapping):
                raise SummaryError(f"{what}: expected an object, got {type(d).__name__}")
            try:
                return fn(cls, d)
            except SummaryError:
                raise
            except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as e:
                raise SummaryError(f"{what}: malformed ({type(e).__name__}: {e})") from e
        decode.__doc__ = fn.__doc__
        return classmethod(decode)
    return wrap


def _opt_float(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


# --- exact sums ----------------------------------------------------------------------------

def _exact_integers(cols: list[np.ndarray]) -> tuple[list[int], int]:
    """([t₀, t₁, …], b) with sum(cols[i]) == tᵢ·2^b exactly, for arrays of finite doubles, b ≥ -1074.

    Each double is m·2^e with an integer |m| < 2^53. m is cut into three pieces of < 2^18 and each
    piece is summed per (column, exponent) with `np.bincount`: float64 sums of < 2^35 such pieces are
    exact integers. Only the distinct exponents (a few dozen) are then combined as Python integers.
    """
    xs = np.concatenate(cols) if len(cols) > 1 else cols[0]
    if xs.size >= 1 << 35:
        raise SummaryError(f"cannot add {xs.size} values at once; add at most 2^35 per batch")
    mant, exp = np.frexp(xs)
    m = (mant * 9007199254740992.0).astype(np.int64)          # · 2^53: exact, |m| < 2^53
    e = exp.astype(np.int64) - 53
    emin = int(e.min())
    base = max(emin, -1074)                                   # every double is a multiple of 2^-1074
    idx = e - emin
    width = int(idx.max()) + 1
    if len(cols) > 1:
        idx += np.repeat(np.arange(len(cols)) * width, [c.size for c in cols])
    bins = width * len(cols)
    p0 = np.bincount(idx, (m & 0x3FFFF).astype(np.float64), bins)
    p1 = np.bincount(idx, ((m >> 18) & 0x3FFFF).astype(np.float64), bins)
    p2 = np.bincount(idx, (m >> 36).astype(np.float64), bins)
    nz = np.flatnonzero((p0 != 0) | (p1 != 0) | (p2 != 0))
    totals = [0] * len(cols)
    for i, a, b, c in zip(nz.tolist(), p0[nz].tolist(), p1[nz].tolist(), p2[nz].tolist()):
        col, j = divmod(i, width)
        v = (int(c) << 36) + (int(b) << 18) + int(a)
        shift = j + emin - base
        totals[col] += v << shift if shift >= 0 else v >> -shift   # exact: v·2^(j+emin) is a multiple of 2^base
    return totals, base


def _add_exact(pairs: list[tuple["ExactSum", np.ndarray]], checked: bool = False) -> None:
    """Add each float array to its exact sum, exactly; one vectorised pass for all of them.
    ``checked``: the caller knows every value is finite."""
    big = []
    for acc, xs in pairs:
        if xs.size == 0:
            continue
        if not checked and not np.isfinite(xs).all():
            bad = xs[~np.isfinite(xs)][0]
            raise SummaryError(f"cannot add non-finite value {float(bad)!r} to an exact sum")
        if xs.size * (len(acc.partials) + 1) <= 48:      # small: one at a time is cheaper
            for x in xs.tolist():
                acc.add(x)
        else:
            big.append((acc, xs))
    if not big:
        return
    totals, base = _exact_integers([xs for _, xs in big])
    for (acc, _), total in zip(big, totals):
        sign, total = (-1.0 if total < 0 else 1.0), abs(total)
        shift = 0
        while total:                 # back as non-overlapping 53-bit chunks, each an exact double
            chunk = total & ((1 << 53) - 1)
            if chunk:
                acc.add(sign * math.ldexp(float(chunk), base + shift))
            total >>= 53
            shift += 53


class ExactSum:
    """A float sum kept exactly as non-overlapping partials (Shewchuk / math.fsum)."""

    __slots__ = ("partials",)

    def __init__(self, partials: Iterable[float] = ()) -> None:
        self.partials: list[float] = []
        for p in partials:
            self.add(p)

    def add(self, x: float) -> None:
        if not math.isfinite(x):
            raise SummaryError(f"cannot add non-finite value {x!r} to an exact sum")
        i = 0
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                self.partials[i] = lo
                i += 1
            x = hi
        self.partials[i:] = [x]

    def add_many(self, xs: np.ndarray) -> None:
        """Add every value of a float array exactly: the same sum as adding them one at a time.

        The batch becomes one exact integer multiple of a power of two (`_exact_integers`), added
        back as at most a few dozen non-overlapping 53-bit chunks.
        """
        _add_exact([(self, np.asarray(xs, dtype=np.float64).ravel())])

    def merged(self, other: "ExactSum") -> "ExactSum":
        out = ExactSum(self.partials)
        for p in other.partials:
            out.add(p)
        return out

    def fraction(self) -> Fraction:
        return sum((Fraction(p) for p in self.partials), Fraction(0))

    @property
    def value(self) -> float:
        return math.fsum(self.partials)

    def to_list(self) -> list[float]:
        """Canonical partials (largest first, each the nearest float to what remains), so equal
        sums serialise identically whatever order the values were added in."""
        rest, out = self.fraction(), []
        while rest:
            v = float(rest)
            out.append(v)
            rest -= Fraction(v)
        return out

    @classmethod
    def from_list(cls, v: Any, where: str) -> "ExactSum":
        if not isinstance(v, list) or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                                              and math.isfinite(p) for p in v):
            raise SummaryError(f"{where}: expected a list of finite numbers (exact-sum partials), got {v!r}")
        return cls(float(p) for p in v)


# --- bottom-k sample ---------------------------------------------------------------------------

class _BottomK:
    """The ``capacity`` items with the smallest keys; items are rows of ``shape`` in ``dtype``."""

    def __init__(self, capacity: int, shape: tuple[int, ...] = (), dtype: str = "f8") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise SummaryError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.shape = shape
        self.keys = np.empty(2 * capacity)
        self.items = np.empty((2 * capacity, *shape), dtype=dtype)
        self.size = 0
        self._compacted = True     # the first `size` items are the bottom k, in key order

    def add(self, key: float, item: Any) -> None:
        if self.size == self.keys.size:
            self.compact()
        self.keys[self.size] = key
        self.items[self.size] = item
        self.size += 1
        self._compacted = False

    def add_many(self, keys: np.ndarray, items: np.ndarray) -> None:
        """Add rows in order; the same sample as adding them one at a time."""
        m = keys.size
        if m == 0:
            return
        if self.size + m <= self.keys.size:
            self.keys[self.size:self.size + m] = keys
            self.items[self.size:self.size + m] = items
            self.size += m
            self._compacted = False
            return
        all_keys = np.concatenate((self.keys[: self.size], keys))
        all_items = np.concatenate((self.items[: self.size], np.asarray(items, dtype=self.items.dtype)))
        order = self._order(all_keys, all_items)[: self.capacity]
        n = order.size
        self.keys[:n], self.items[:n] = all_keys[order], all_items[order]
        self.size = n
        self._compacted = True

    def _order(self, keys: np.ndarray, items: np.ndarray) -> np.ndarray:
        if items.ndim == 1:
            return np.lexsort((items, keys))
        return np.argsort(keys, kind="stable")

    def compact(self) -> None:
        """Keep the bottom ``capacity`` items, in key order (a no-op until the next add)."""
        if self._compacted:
            return
        keys, items = self.keys[: self.size], self.items[: self.size]
        order = self._order(keys, items)[: self.capacity]
        n = order.size
        self.keys[:n], self.items[:n] = keys[order], items[order]
        self.size = n
        self._compacted = True

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        self.compact()
        return self.keys[: self.size].copy(), self.items[: self.size].copy()

    def merged(self, other: "_BottomK", capacity: int) -> "_BottomK":
        k1, i1 = self.view()
        k2, i2 = other.view()
        out = _BottomK(capacity, self.shape, self.items.dtype.str)
        keys = np.concatenate((k1, k2))
        items = np.concatenate((i1, i2))
        order = out._order(keys, items)[:capacity]
        out.keys[: order.size], out.items[: order.size] = keys[order], items[order]
        out.size = order.size
        out._compacted = True
        return out


def _merged_capacity(a_cap: int, a_empty: bool, b_cap: int, b_empty: bool) -> int:
    if a_empty and not b_empty:
        return b_cap
    if b_empty and not a_empty:
        return a_cap
    return min(a_cap, b_cap)


def _check_sample(keys: np.ndarray, values: np.ndarray, where: str) -> None:
    if keys.size and not ((keys >= 0) & (keys < 1)).all():
        raise SummaryError(f"{where}: keys must be in [0, 1)")
    if not np.isfinite(values).all():
        raise SummaryError(f"{where}: sampled values must be finite (non-finite ones are counted as invalid)")


def _number(x: Any) -> float:
    """``x`` as a float, NaN when it is not a number (bools, strings, None, huge ints count as invalid)."""
    t = type(x)
    if t is float:
        return x
    if t is bool or not isinstance(x, (int, float, np.floating, np.integer)):
        return math.nan
    try:
        return float(x)
    except OverflowError:
        return math.nan


_PLAIN_NUMBERS = frozenset((float, int))
_SMALL_BATCH = 8
"""Batches of Python values up to this size are added one at a time: cheaper than numpy's per-call cost."""


def _numbers(xs: Any) -> np.ndarray:
    """A float64 array of ``xs`` with NaN for every entry that is not a number (see `_number`)."""
    if isinstance(xs, np.ndarray) and xs.dtype.kind in "fiu":
        return xs.astype(np.float64).ravel()
    if _PLAIN_NUMBERS.issuperset(map(type, xs)):        # the common case: a list of floats and ints
        try:
            return np.array(xs, dtype=np.float64).ravel()
        except OverflowError:
            pass
    return np.array([_number(x) for x in xs], dtype=np.float64)


def _floats(xs: Any) -> np.ndarray:
    """A float64 array of ``float(x)`` per entry, NaN where that fails (as `LatencyHistogram.add`)."""
    if isinstance(xs, np.ndarray) and xs.dtype.kind in "fiu":
        return xs.astype(np.float64).ravel()
    if _PLAIN_NUMBERS.issuperset(map(type, xs)):
        try:
            return np.array(xs, dtype=np.float64).ravel()
        except OverflowError:
            pass
    out = np.empty(len(xs))
    for i, x in enumerate(xs):
        try:
            out[i] = float(x)
        except (TypeError, ValueError, OverflowError):
            out[i] = math.nan
    return out


def _check_keys(keys: Any, n: int) -> np.ndarray:
    if isinstance(keys, np.ndarray) and keys.dtype.kind in "fiu":
        k = keys.astype(np.float64).ravel()
    elif _PLAIN_NUMBERS.issuperset(map(type, keys)):
        k = np.array(keys, dtype=np.float64).ravel()
    else:
        k = np.array([_check_key(x) for x in keys], dtype=np.float64)
    if k.size != n:
        raise SummaryError(f"keys: expected one key per value ({n}), got {k.size}")
    if k.size and not ((k >= 0.0) & (k < 1.0)).all():
        raise SummaryError(f"key must be in [0, 1), got {float(k[~((k >= 0.0) & (k < 1.0))][0])!r}")
    return k


def _first_extreme(current: float | None, vs: np.ndarray, smallest: bool) -> float | None:
    """min()/max() folded left over ``current`` then ``vs`` (an equal later value, e.g. -0.0 after 0.0,
    never replaces an earlier one), as adding one value at a time does."""
    if vs.size == 0:
        return current
    m = float(vs.min() if smallest else vs.max())
    if current is not None and not (m < current if smallest else m > current):
        return current
    if m == 0.0:                       # only zeros compare equal with different bits: take the first
        return float(vs[int(np.argmax(vs == 0.0))])
    return m


def _half_mask(keys: np.ndarray) -> np.ndarray:
    """A/A split: bit 0 of floor(key · 2³²), independent of which keys made the bottom k."""
    return (np.floor(keys * 2.0**32).astype(np.int64) & 1) == 0


# --- numeric -------------------------------------------------------------------------------

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
        if not isinstance(other, NumericSummary):
            raise SummaryError(f"cannot merge NumericSummary with {type(other).__name__}")
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


# --- categorical ---------------------------------------------------------------------------

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
        if not isinstance(other, CategoricalSummary):
            raise SummaryError(f"cannot merge CategoricalSummary with {type(other).__name__}")
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


# --- embeddings ----------------------------------------------------------------------------

class EmbeddingSummary:
    """Bottom-k sample of embedding vectors (float32), the dimension fixed by the first vector.

    Vectors with NaN/inf, the wrong dimension or that are not numeric count as invalid.
    """

    def __init__(self, capacity: int = 512) -> None:
        self._capacity = capacity
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise SummaryError(f"capacity must be a positive integer, got {capacity!r}")
        self._sample: _BottomK | None = None
        self.n = 0
        self.invalid = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def dim(self) -> int | None:
        return None if self._sample is None else self._sample.shape[0]

    def add(self, vector: Any, key: float) -> None:
        k = _check_key(key)
        try:
            v = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            self.invalid += 1
            return
        if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all() or (self.dim is not None and v.size != self.dim):
            self.invalid += 1
            return
        if self._sample is None:
            self._sample = _BottomK(self._capacity, (v.size,), "f4")
        self.n += 1
        self._sample.add(k, v)

    def matrix(self) -> np.ndarray:
        """The sampled vectors as an (m, dim) float64 array (0 rows when empty)."""
        if self._sample is None:
            return np.empty((0, 0))
        return self._sample.view()[1].astype(np.float64)

    def keys(self) -> np.ndarray:
        return np.empty(0) if self._sample is None else self._sample.view()[0]

    def merge(self, other: "EmbeddingSummary") -> "EmbeddingSummary":
        if not isinstance(other, EmbeddingSummary):
            raise SummaryError(f"cannot merge EmbeddingSummary with {type(other).__name__}")
        if self.dim is not None and other.dim is not None and self.dim != other.dim:
            raise SummaryError(f"cannot merge embeddings of dimension {self.dim} and {other.dim}")
        cap = _merged_capacity(self.capacity, self.n == 0, other.capacity, other.n == 0)
        out = EmbeddingSummary(cap)
        out.n, out.invalid = self.n + other.n, self.invalid + other.invalid
        if self._sample is not None and other._sample is not None:
            out._sample = self._sample.merged(other._sample, cap)
        elif self._sample is not None or other._sample is not None:
            src = self._sample if self._sample is not None else other._sample
            out._sample = src.merged(_BottomK(cap, src.shape, "f4"), cap)
        return out

    def to_dict(self) -> dict[str, Any]:
        keys = self.keys()
        mat = np.empty((0,), dtype=np.float32) if self._sample is None else self._sample.view()[1]
        return {"type": "embedding", "capacity": self.capacity, "n": self.n, "invalid": self.invalid,
                "dim": self.dim, "keys": _b64(keys), "vectors": _b64(mat, "<f4")}

    @_decoder("embedding summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "EmbeddingSummary":
        where = "embedding summary"
        _expect_type(d, "embedding", where)
        s = cls(_count(d, "capacity", where) or 1)
        n, invalid = _count(d, "n", where), _count(d, "invalid", where)
        dim = d.get("dim")
        keys, vecs = _unb64(d, "keys"), _unb64(d, "vectors", "<f4")
        if dim is not None:
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1 or vecs.size != keys.size * dim:
                raise SummaryError(f"{where}: vectors must hold len(keys) × dim = {keys.size} × {dim} values")
            if keys.size > s.capacity or keys.size > n:
                raise SummaryError(f"{where}: {keys.size} sampled vectors exceed capacity or n")
            _check_sample(keys, vecs, where)
            for k, v in zip(keys, vecs.reshape(keys.size, dim)):
                s.add(v, float(k))
        elif keys.size:
            raise SummaryError(f"{where}: dim is missing but {keys.size} vectors are present")
        s.n, s.invalid = n, invalid
        return s


# --- shadow pairs --------------------------------------------------------------------------

class PairedSummary:
    """Shadow pairs (primary and shadow output on the same request).

    Numeric pairs keep exact sums for mean |Δ| and Pearson correlation; categorical pairs count
    agreement. Pairs with a missing/non-finite side count as invalid.
    """

    _SUMS = ("x", "y", "xx", "yy", "xy", "absdiff")

    def __init__(self) -> None:
        self.n_numeric = 0
        self.n_categorical = 0
        self.agree = 0
        self.invalid = 0
        self._s = {k: ExactSum() for k in self._SUMS}

    def add(self, primary: float, shadow: float) -> None:
        try:
            x, y = float(primary), float(shadow)
        except (TypeError, ValueError, OverflowError):
            self.invalid += 1
            return
        if isinstance(primary, bool) or isinstance(shadow, bool) or not (math.isfinite(x) and math.isfinite(y)):
            self.invalid += 1
            return
        terms = {"x": x, "y": y, "xx": x * x, "yy": y * y, "xy": x * y, "absdiff": abs(x - y)}
        if not all(math.isfinite(t) for t in terms.values()):
            self.invalid += 1
            return
        self.n_numeric += 1
        for k, t in terms.items():
            self._s[k].add(t)

    def add_many(self, primaries: Any, shadows: Any) -> None:
        """Add numeric pairs in order: the same summary as `add` one at a time."""
        if not isinstance(primaries, np.ndarray) and len(primaries) <= _SMALL_BATCH:
            if len(primaries) != len(shadows):
                raise SummaryError(f"shadows: expected one per primary ({len(primaries)}), got {len(shadows)}")
            for a, b in zip(primaries, shadows):
                self.add(a, b)
            return
        x, y = _floats(primaries), _floats(shadows)
        if x.size != y.size:
            raise SummaryError(f"shadows: expected one per primary ({x.size}), got {y.size}")
        if not (isinstance(primaries, np.ndarray) and isinstance(shadows, np.ndarray)) and (
                bool in set(map(type, primaries)) or bool in set(map(type, shadows))):
            bools = np.array([type(a) is bool or type(b) is bool for a, b in zip(primaries, shadows)], dtype=bool)
            x[bools] = math.nan
        with np.errstate(over="ignore", invalid="ignore"):
            terms = {"x": x, "y": y, "xx": x * x, "yy": y * y, "xy": x * y, "absdiff": np.abs(x - y)}
        ok = np.ones(x.size, dtype=bool)
        for t in terms.values():
            ok &= np.isfinite(t)
        n_ok = int(ok.sum())
        self.invalid += x.size - n_ok
        if n_ok:
            self.n_numeric += n_ok
            _add_exact([(self._s[k], t[ok]) for k, t in terms.items()])

    def add_categorical(self, primary: str, shadow: str) -> None:
        if primary is None or shadow is None:
            self.invalid += 1
            return
        self.n_categorical += 1
        self.agree += str(primary) == str(shadow)

    @property
    def n(self) -> int:
        return self.n_numeric + self.n_categorical

    @property
    def agreement_rate(self) -> float | None:
        return self.agree / self.n_categorical if self.n_categorical else None

    @property
    def mean_abs_delta(self) -> float | None:
        return self._s["absdiff"].value / self.n_numeric if self.n_numeric else None

    @property
    def correlation(self) -> float | None:
        """Pearson r of primary vs shadow, computed exactly from the sums; None if < 2 pairs or constant."""
        n = self.n_numeric
        if n < 2:
            return None
        f = {k: s.fraction() for k, s in self._s.items()}
        cov = n * f["xy"] - f["x"] * f["y"]
        vx = n * f["xx"] - f["x"] ** 2
        vy = n * f["yy"] - f["y"] ** 2
        if vx <= 0 or vy <= 0:
            return None
        r = float(cov) / math.sqrt(float(vx) * float(vy))
        return max(-1.0, min(1.0, r))

    def merge(self, other: "PairedSummary") -> "PairedSummary":
        if not isinstance(other, PairedSummary):
            raise SummaryError(f"cannot merge PairedSummary with {type(other).__name__}")
        out = PairedSummary()
        out.n_numeric, out.n_categorical = self.n_numeric + other.n_numeric, self.n_categorical + other.n_categorical
        out.agree, out.invalid = self.agree + other.agree, self.invalid + other.invalid
        out._s = {k: self._s[k].merged(other._s[k]) for k in self._SUMS}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "paired", "n_numeric": self.n_numeric, "n_categorical": self.n_categorical,
                "agree": self.agree, "invalid": self.invalid, "sums": {k: s.to_list() for k, s in self._s.items()}}

    @_decoder("paired summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "PairedSummary":
        where = "paired summary"
        s = cls()
        for f in ("n_numeric", "n_categorical", "agree", "invalid"):
            setattr(s, f, _count(d, f, where))
        if s.agree > s.n_categorical:
            raise SummaryError(f"{where}: agree ({s.agree}) exceeds n_categorical ({s.n_categorical})")
        sums = _get(d, "sums", dict, where)
        s._s = {k: ExactSum.from_list(sums.get(k), f"{where}.sums.{k}") for k in cls._SUMS}
        return s


# --- latency -------------------------------------------------------------------------------

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
        if not isinstance(other, LatencyHistogram):
            raise SummaryError(f"cannot merge LatencyHistogram with {type(other).__name__}")
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


# --- segments --------------------------------------------------------------------------------

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
        if not isinstance(other, SegmentCounts):
            raise SummaryError(f"cannot merge SegmentCounts with {type(other).__name__}")
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


# --- interleaving ----------------------------------------------------------------------------

class InterleaveSummary:
    """Per-impression outcomes of the candidate against the baseline in team-draft interleaving."""

    def __init__(self, wins: int = 0, losses: int = 0, ties: int = 0) -> None:
        self.wins, self.losses, self.ties = wins, losses, ties

    def add(self, winner: str) -> None:
        """``winner`` is "candidate", "baseline" or "tie"."""
        if winner == "candidate":
            self.wins += 1
        elif winner == "baseline":
            self.losses += 1
        elif winner == "tie":
            self.ties += 1
        else:
            raise SummaryError(f"winner must be 'candidate', 'baseline' or 'tie', got {winner!r}")

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    def test(self) -> StatResult:
        """`interleave_test` on the tally (raises StatError when there are no impressions)."""
        return interleave_test(self.wins, self.losses, self.ties)

    def merge(self, other: "InterleaveSummary") -> "InterleaveSummary":
        if not isinstance(other, InterleaveSummary):
            raise SummaryError(f"cannot merge InterleaveSummary with {type(other).__name__}")
        return InterleaveSummary(self.wins + other.wins, self.losses + other.losses, self.ties + other.ties)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "interleave", "wins": self.wins, "losses": self.losses, "ties": self.ties}

    @_decoder("interleave summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "InterleaveSummary":
        where = "interleave summary"
        return cls(_count(d, "wins", where), _count(d, "losses", where), _count(d, "ties", where))


# --- feature attributions ---------------------------------------------------------------------

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
        if not isinstance(other, AttributionSummary):
            raise SummaryError(f"cannot merge AttributionSummary with {type(other).__name__}")
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


# --- one version's window -----------------------------------------------------------------

_PREDICTION_TYPES = {"numeric": NumericSummary, "categorical": CategoricalSummary, "embedding": EmbeddingSummary}


def _nested(where: str, decode: Any, d: Any) -> Any:
    """Decode a sub-summary, prefixing any error with its path in the window."""
    try:
        return decode(d)
    except SummaryError as e:
        raise SummaryError(f"{where}: {e}") from e


def _summary_from_dict(d: Any, where: str) -> NumericSummary | CategoricalSummary | EmbeddingSummary:
    if not isinstance(d, Mapping) or not isinstance(d.get("type"), str) or d["type"] not in _PREDICTION_TYPES:
        raise SummaryError(f"{where}: expected a summary object with type in {sorted(_PREDICTION_TYPES)}")
    return _nested(where, _PREDICTION_TYPES[d["type"]].from_dict, d)


class VersionWindow:
    """Everything one replica observed of one version during one window.

    ``requests`` counts every request routed to (or mirrored to) the version, errored or not;
    ``errors`` counts them by kind (`ERROR_KINDS`). The prediction summary depends on the output
    kind: score → NumericSummary, class → CategoricalSummary, embedding → EmbeddingSummary,
    ranking → CategoricalSummary of the top item.
    """

    def __init__(self, output_kind: str, prediction: NumericSummary | CategoricalSummary | EmbeddingSummary,
                 capacity: int = 2048) -> None:
        self.output_kind = output_kind
        self.capacity = capacity
        self.requests = 0
        self.errors: dict[str, int] = {k: 0 for k in ERROR_KINDS}
        self.latency = LatencyHistogram()
        self.latency_excluded: dict[str, int] = {}
        """Calls whose latency the router could not time fairly, by reason (`LATENCY_EXCLUSIONS`): left out
        of `latency`, counted here so a latency check can say the window was not comparable."""
        self.prediction = prediction
        self.features: dict[str, NumericSummary | CategoricalSummary] = {}
        self.segments = SegmentCounts()
        self.attributions: AttributionSummary | None = None
        """Per-feature importance when the model returns attributions (spec.output.attributions), else None."""

    @classmethod
    def new(cls, output_kind: str, capacity: int = 2048, embedding_capacity: int = 512) -> "VersionWindow":
        if output_kind == "score":
            pred: Any = NumericSummary(capacity)
        elif output_kind in ("class", "ranking"):
            pred = CategoricalSummary()
        elif output_kind == "embedding":
            pred = EmbeddingSummary(embedding_capacity)
        else:
            raise SummaryError(f"output kind must be one of {', '.join(OUTPUT_KINDS)}, got {output_kind!r}")
        return cls(output_kind, pred, capacity)

    def add_error(self, kind: str) -> None:
        if kind not in self.errors:
            raise SummaryError(f"error kind must be one of {', '.join(ERROR_KINDS)}, got {kind!r}")
        self.errors[kind] += 1

    def observe_prediction(self, output: Any, key: float) -> None:
        """Add one model output: a score, a class label, an embedding, or a ranking (its top item)."""
        if self.output_kind == "ranking":
            top = output[0] if isinstance(output, (list, tuple)) and output else None
            self.prediction.add(top if top is None else str(top))
        elif self.output_kind == "class":
            self.prediction.add(output)
        else:
            self.prediction.add(output, key)

    def observe_predictions(self, outputs: list[Any], keys: Any) -> None:
        """Add model outputs in order, one key each: the same window as `observe_prediction` one at a time."""
        if self.output_kind == "ranking":
            self.prediction.add_many([str(o[0]) if isinstance(o, (list, tuple)) and o and o[0] is not None
                                      else None for o in outputs])
        elif self.output_kind == "class":
            self.prediction.add_many(outputs)
        elif self.output_kind == "score":
            self.prediction.add_many(outputs, keys)
        else:
            for o, k in zip(outputs, keys):
                self.prediction.add(o, k)

    def observe_features(self, name: str, values: list[Any], keys: Any) -> None:
        """Add values of one input feature in order: the same window as `observe_feature` one at a time."""
        if not values:
            return
        s = self.features.get(name)
        if s is None:
            self.observe_feature(name, values[0], keys[0])
            values, keys = values[1:], keys[1:]
            s = self.features[name]
        if isinstance(s, NumericSummary):
            s.add_many(values, keys)
        else:
            s.add_many(values)

    def observe_feature(self, name: str, value: Any, key: float) -> None:
        """Add one input feature value; its summary kind (numeric/categorical) is set by the first value."""
        s = self.features.get(name)
        if s is None:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            s = self.features[name] = NumericSummary(self.capacity) if numeric else CategoricalSummary()
        if isinstance(s, NumericSummary):
            s.add(value, key)
        else:
            s.add(value)

    def observe_attributions(self, attributions: Mapping[str, Any]) -> None:
        """Add one prediction's per-feature attributions (the summary is created by the first one)."""
        if self.attributions is None:
            self.attributions = AttributionSummary()
        self.attributions.add(attributions)

    def error_count(self) -> int:
        return sum(self.errors.values())

    def error_rate(self) -> float | None:
        """errors / requests, None when there were no requests."""
        return self.error_count() / self.requests if self.requests else None

    def merge(self, other: "VersionWindow") -> "VersionWindow":
        if not isinstance(other, VersionWindow):
            raise SummaryError(f"cannot merge VersionWindow with {type(other).__name__}")
        if self.output_kind != other.output_kind:
            raise SummaryError(f"cannot merge windows of output kinds {self.output_kind!r} and {other.output_kind!r}")
        out = VersionWindow(self.output_kind, self.prediction.merge(other.prediction),
                            max(self.capacity, other.capacity))
        out.requests = self.requests + other.requests
        for src in (self.errors, other.errors):
            for k, v in src.items():
                out.errors[k] = out.errors.get(k, 0) + v
        out.latency = self.latency.merge(other.latency)
        for src in (self.latency_excluded, other.latency_excluded):
            for k, v in src.items():
                out.latency_excluded[k] = out.latency_excluded.get(k, 0) + v
        for name in sorted(set(self.features) | set(other.features)):
            a, b = self.features.get(name), other.features.get(name)
            if a is not None and b is not None and type(a) is not type(b):
                raise SummaryError(f"feature {name!r} is numeric in one window and categorical in the other")
            out.features[name] = a.merge(b) if a is not None and b is not None else (a if a is not None else b)
        out.segments = self.segments.merge(other.segments)
        a, b = self.attributions, other.attributions
        out.attributions = a.merge(b) if a is not None and b is not None else (a if a is not None else b)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {"type": "version_window", "output_kind": self.output_kind, "capacity": self.capacity,
                "requests": self.requests, "errors": dict(self.errors), "latency": self.latency.to_dict(),
                "prediction": self.prediction.to_dict(),
                "features": {k: v.to_dict() for k, v in self.features.items()},
                "segments": self.segments.to_dict()}
        if self.attributions is not None:          # absent when unused: older readers see no change
            d["attributions"] = self.attributions.to_dict()
        if self.latency_excluded:                  # absent when every call was timed fairly
            d["latency_excluded"] = dict(self.latency_excluded)
        return d

    @_decoder("version window")
    def from_dict(cls, d: Mapping[str, Any]) -> "VersionWindow":
        where = "version window"
        kind = _get(d, "output_kind", str, where)
        if kind not in OUTPUT_KINDS:
            raise SummaryError(f"{where}.output_kind: must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
        w = cls(kind, _summary_from_dict(d.get("prediction"), f"{where}.prediction"),
                _count(d, "capacity", where) or 1)
        w.requests = _count(d, "requests", where)
        errors = _get(d, "errors", dict, where)
        for k, v in errors.items():
            if k not in ERROR_KINDS:
                raise SummaryError(f"{where}.errors: unknown error kind {k!r}; expected {', '.join(ERROR_KINDS)}")
            w.errors[k] = _count(errors, k, f"{where}.errors")
        w.latency = _nested(f"{where}.latency", LatencyHistogram.from_dict, _get(d, "latency", dict, where))
        excluded = d.get("latency_excluded") or {}
        if not isinstance(excluded, Mapping):
            raise SummaryError(f"{where}.latency_excluded: expected an object of counts per reason")
        for k in excluded:
            w.latency_excluded[str(k)] = _count(excluded, k, f"{where}.latency_excluded")
        for name, f in _get(d, "features", dict, where).items():
            s = _summary_from_dict(f, f"{where}.features.{name}")
            if isinstance(s, EmbeddingSummary):
                raise SummaryError(f"{where}.features.{name}: features are numeric or categorical, not embeddings")
            w.features[str(name)] = s
        w.segments = _nested(f"{where}.segments", SegmentCounts.from_dict, _get(d, "segments", dict, where))
        if d.get("attributions") is not None:
            w.attributions = _nested(f"{where}.attributions", AttributionSummary.from_dict, d["attributions"])
        return w
