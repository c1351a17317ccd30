"""PairedSummary: shadow pairs (primary and shadow output on the same request)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .base import check_mergeable, SummaryError
from .codec import _count, _decoder, _get
from .exact import _add_exact, ExactSum
from .sample import _floats, _SMALL_BATCH

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
        check_mergeable(self, other)
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
