"""Exact sums: Shewchuk partials, batched through integers, so every derived mean is correctly rounded."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Iterable

import numpy as np

from .base import SummaryError

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
