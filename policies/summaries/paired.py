"""PairedSummary: shadow pairs (primary and shadow output on the same request)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import _check_key, check_mergeable, SummaryError
from .codec import _b64, _count, _decoder, _get, _unb64
from .exact import _add_exact, ExactSum
from .sample import _BottomK, _check_keys, _check_sample, _floats, _merged_capacity, _SMALL_BATCH

AGREEMENT_NAME_MAX = 64
"""Ranking agreements tracked per summary (one per distinct `rbo:P` / `ndcg:K` the spec's checks name)."""


class PairedSummary:
    """Shadow pairs (primary and shadow output on the same request).

    Numeric pairs keep exact sums for mean |Δ| and Pearson correlation; categorical pairs count
    agreement. Pairs with a missing/non-finite side count as invalid. For the paired tests
    (docs/statistics.md "Paired tests (shadow)") it also keeps, all mergeable:

    - `decisions`: the 2×2 table of class decisions, [neither, candidate only, baseline only, both]
      positive (McNemar);
    - a bottom-k sample of the paired deltas d = shadow − primary keyed by request (Wilcoxon): merging keeps
      the smallest keys of the union, a uniform sample of the window's pairs;
    - per ranking agreement (`rbo:0.9`, `ndcg:10`): the count, exact sum and exact sum of squares of the
      per-request values.
    """

    _SUMS = ("x", "y", "xx", "yy", "xy", "absdiff")

    def __init__(self, capacity: int = 2048) -> None:
        self.n_numeric = 0
        self.n_categorical = 0
        self.agree = 0
        self.invalid = 0
        self._s = {k: ExactSum() for k in self._SUMS}
        self.decisions = np.zeros(4, dtype=np.int64)
        self._deltas = _BottomK(capacity)
        self._agreements: dict[str, list] = {}      # name -> [n, ExactSum sum, ExactSum sum of squares]

    @property
    def capacity(self) -> int:
        return self._deltas.capacity

    def add(self, primary: float, shadow: float, key: float | None = None, threshold: float | None = None) -> None:
        """One numeric pair; with `key` its delta joins the sample, with `threshold` its class decisions
        (score >= threshold) join the 2×2 table."""
        k = None if key is None else _check_key(key)
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
        for name, t in terms.items():
            self._s[name].add(t)
        if k is not None:
            self._deltas.add(k, y - x)
        if threshold is not None:
            self.decisions[2 * (x >= threshold) + (y >= threshold)] += 1

    def add_many(self, primaries: Any, shadows: Any, keys: Any = None, threshold: float | None = None) -> None:
        """Add numeric pairs in order: the same summary as `add` one at a time."""
        if not isinstance(primaries, np.ndarray) and len(primaries) <= _SMALL_BATCH:
            if len(primaries) != len(shadows):
                raise SummaryError(f"shadows: expected one per primary ({len(primaries)}), got {len(shadows)}")
            ks = [None] * len(primaries) if keys is None else [_check_key(k) for k in keys]
            if len(ks) != len(primaries):
                raise SummaryError(f"keys: expected one per pair ({len(primaries)}), got {len(ks)}")
            for a, b, k in zip(primaries, shadows, ks):
                self.add(a, b, k, threshold)
            return
        x, y = _floats(primaries), _floats(shadows)
        if x.size != y.size:
            raise SummaryError(f"shadows: expected one per primary ({x.size}), got {y.size}")
        ks = None if keys is None else _check_keys(keys, x.size)
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
            if ks is not None:
                self._deltas.add_many(ks[ok], y[ok] - x[ok])
            if threshold is not None:
                cells = 2 * (x[ok] >= threshold) + (y[ok] >= threshold)
                self.decisions += np.bincount(cells.astype(np.int64), minlength=4)

    def add_categorical(self, primary: str, shadow: str, positives: tuple[bool, bool] | None = None) -> None:
        """One class (or top-item) pair; `positives` (baseline positive, candidate positive) adds its
        decisions to the 2×2 table."""
        if primary is None or shadow is None:
            self.invalid += 1
            return
        self.n_categorical += 1
        self.agree += str(primary) == str(shadow)
        if positives is not None:
            self.add_decision(*positives)

    def add_decision(self, baseline_positive: bool, candidate_positive: bool) -> None:
        self.decisions[2 * bool(baseline_positive) + bool(candidate_positive)] += 1

    def add_agreement(self, name: str, value: float) -> None:
        """One request's ranking agreement (in [0, 1]) under `name` (e.g. `rbo:0.9`)."""
        v = float(value)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise SummaryError(f"agreement {name}: expected a number in [0, 1], got {value!r}")
        row = self._agreements.get(name)
        if row is None:
            if len(self._agreements) >= AGREEMENT_NAME_MAX:
                raise SummaryError(f"more than {AGREEMENT_NAME_MAX} ranking agreements in one summary")
            row = self._agreements[name] = [0, ExactSum(), ExactSum()]
        row[0] += 1
        row[1].add(v)
        row[2].add(v * v)

    @property
    def n(self) -> int:
        return self.n_numeric + self.n_categorical

    @property
    def n_decisions(self) -> int:
        return int(self.decisions.sum())

    def deltas(self) -> np.ndarray:
        """The sampled paired deltas (shadow − primary), in key order (at most `capacity`)."""
        return self._deltas.view()[1]

    def delta_keys(self) -> np.ndarray:
        return self._deltas.view()[0]

    def agreement(self, name: str) -> tuple[int, float, float]:
        """(count, sum, sum of squares) of the per-request agreements under `name`; zeros when none."""
        row = self._agreements.get(name)
        if row is None:
            return 0, 0.0, 0.0
        return row[0], row[1].value, row[2].value

    def agreement_names(self) -> list[str]:
        return sorted(self._agreements)

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
        a_empty, b_empty = self._deltas.size == 0, other._deltas.size == 0
        cap = _merged_capacity(self.capacity, a_empty, other.capacity, b_empty)
        out = PairedSummary(cap)
        out.n_numeric, out.n_categorical = self.n_numeric + other.n_numeric, self.n_categorical + other.n_categorical
        out.agree, out.invalid = self.agree + other.agree, self.invalid + other.invalid
        out._s = {k: self._s[k].merged(other._s[k]) for k in self._SUMS}
        out.decisions = self.decisions + other.decisions
        out._deltas = self._deltas.merged(other._deltas, cap)
        for name in sorted(set(self._agreements) | set(other._agreements)):
            a, b = self._agreements.get(name), other._agreements.get(name)
            if a is None or b is None:
                row = a if a is not None else b
                out._agreements[name] = [row[0], row[1].merged(ExactSum()), row[2].merged(ExactSum())]
            else:
                out._agreements[name] = [a[0] + b[0], a[1].merged(b[1]), a[2].merged(b[2])]
        if len(out._agreements) > AGREEMENT_NAME_MAX:
            raise SummaryError(f"more than {AGREEMENT_NAME_MAX} ranking agreements in one summary")
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "paired", "n_numeric": self.n_numeric, "n_categorical": self.n_categorical,
                             "agree": self.agree, "invalid": self.invalid,
                             "sums": {k: s.to_list() for k, s in self._s.items()}}
        # The paired tests' parts are absent while empty: an older reader sees no change.
        if self.decisions.any():
            d["decisions"] = [int(v) for v in self.decisions]
        if self._deltas.size:
            keys, vals = self._deltas.view()
            d["deltas"] = {"capacity": self.capacity, "keys": _b64(keys), "values": _b64(vals)}
        if self._agreements:
            d["agreements"] = {k: {"n": r[0], "sum": r[1].to_list(), "sumsq": r[2].to_list()}
                               for k, r in sorted(self._agreements.items())}
        return d

    @_decoder("paired summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "PairedSummary":
        where = "paired summary"
        deltas = d.get("deltas")
        if deltas is not None and not isinstance(deltas, Mapping):
            raise SummaryError(f"{where}.deltas: expected an object or null")
        s = cls(_count(deltas, "capacity", f"{where}.deltas") or 1 if deltas else 2048)
        for f in ("n_numeric", "n_categorical", "agree", "invalid"):
            setattr(s, f, _count(d, f, where))
        if s.agree > s.n_categorical:
            raise SummaryError(f"{where}: agree ({s.agree}) exceeds n_categorical ({s.n_categorical})")
        sums = _get(d, "sums", dict, where)
        s._s = {k: ExactSum.from_list(sums.get(k), f"{where}.sums.{k}") for k in cls._SUMS}
        decisions = d.get("decisions")
        if decisions is not None:
            if not isinstance(decisions, list) or len(decisions) != 4 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in decisions):
                raise SummaryError(f"{where}.decisions: expected 4 counts [neither, candidate only, baseline only, "
                                   f"both], got {decisions!r}")
            if sum(decisions) > s.n:
                raise SummaryError(f"{where}.decisions: {sum(decisions)} decisions but only {s.n} pairs")
            s.decisions = np.array(decisions, dtype=np.int64)
        if deltas:
            keys, vals = _unb64(deltas, "keys"), _unb64(deltas, "values")
            if keys.size != vals.size or keys.size > s.capacity or keys.size > s.n_numeric:
                raise SummaryError(f"{where}.deltas: keys ({keys.size}) and values ({vals.size}) must have equal "
                                   f"length <= capacity ({s.capacity}) and <= n_numeric ({s.n_numeric})")
            _check_sample(keys, vals, f"{where}.deltas")
            s._deltas.add_many(keys, vals)
        agreements = d.get("agreements") or {}
        if not isinstance(agreements, Mapping) or len(agreements) > AGREEMENT_NAME_MAX:
            raise SummaryError(f"{where}.agreements: expected an object of at most {AGREEMENT_NAME_MAX} entries")
        for name, row in agreements.items():
            at = f"{where}.agreements.{name}"
            n = _count(row, "n", at)
            s._agreements[str(name)] = [n, ExactSum.from_list(row.get("sum"), f"{at}.sum"),
                                        ExactSum.from_list(row.get("sumsq"), f"{at}.sumsq")]
        return s
