"""The bottom-k sampler and the number/key coercions the summaries share."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import _check_key, SummaryError

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
