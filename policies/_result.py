"""The result and error types every statistic in `policies` returns or raises.

Kept in their own module so the private statistic modules and the public facade
(`policies.stats`) share them without import cycles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import StatisticsError

import numpy as np


class StatError(StatisticsError, ValueError):
    """Input a statistic cannot be computed on (empty, NaN, wrong shape, ...).

    The message names the argument and the problem, e.g. ``"candidate has 3 NaN values"``.
    """


@dataclass(frozen=True)
class StatResult:
    """One statistic computed on a baseline and a candidate sample.

    ``value`` follows the exact definition in docs/statistics.md; ``estimate``/``ci_low``/``ci_high``
    (when not None) describe the population value after removing small-sample bias.
    """

    metric: str
    value: float
    p_value: float | None
    n_baseline: int
    n_candidate: int
    bins: int | None = None
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (numpy scalars converted to Python numbers)."""
        return {
            "metric": self.metric,
            "value": _py(self.value),
            "p_value": _py(self.p_value),
            "n_baseline": int(self.n_baseline),
            "n_candidate": int(self.n_candidate),
            "bins": self.bins,
            "estimate": _py(self.estimate),
            "ci_low": _py(self.ci_low),
            "ci_high": _py(self.ci_high),
            "detail": {k: _py(v) for k, v in self.detail.items()},
        }


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Mapping):
        return {str(k): _py(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_py(x) for x in v]
    return v


def _vector(x: Any, name: str) -> np.ndarray:
    """A non-empty 1-D float64 array (finiteness not yet checked), or StatError naming ``name``."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise StatError(f"{name} must be numbers; could not convert: {e}") from e
    if arr.ndim != 1:
        raise StatError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise StatError(f"{name} is empty")
    return arr


def as_sample(x: Any, name: str) -> np.ndarray:
    """A finite, non-empty 1-D float64 array, or StatError naming ``name`` and the problem."""
    arr = _vector(x, name)
    check_finite(arr, name)
    return arr


def sorted_sample(x: Any, name: str) -> np.ndarray:
    """`as_sample`, sorted ascending; finiteness is checked on the sorted ends (NaN and +inf sort
    last, −inf first), so validation costs O(1) after the sort."""
    s = np.sort(_vector(x, name))
    if not (np.isfinite(s[0]) and np.isfinite(s[-1])):
        check_finite(s, name)
    return s


def as_matrix(x: Any, name: str) -> np.ndarray:
    """A finite 2-D float64 array with at least one row, or StatError."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise StatError(f"{name} must be a 2-D array of numbers; could not convert: {e}") from e
    if arr.ndim != 2:
        raise StatError(f"{name} must be 2-D (rows x dimensions), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise StatError(f"{name} is empty")
    if arr.shape[1] == 0:
        raise StatError(f"{name} has 0 dimensions")
    check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        parts = []
        if n_nan:
            parts.append(f"{n_nan} NaN value{'s' if n_nan != 1 else ''}")
        if n_inf:
            parts.append(f"{n_inf} infinite value{'s' if n_inf != 1 else ''}")
        raise StatError(f"{name} has {' and '.join(parts)}")
