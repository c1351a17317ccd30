"""`metric: outlier-rate`: how many more of the candidate's values a model of the baseline finds anomalous than
of the baseline's own held-out values (docs/statistics.md "Outlier rate").

An Isolation Forest (scikit-learn) is fitted on half of the baseline window's sample; its score threshold is
the `CONTAMINATION` quantile of the fitted half's own scores. The baseline's held-out half and the candidate's
sample are scored against it: value = estimate = p_c − p_b, the difference of their outlier fractions, with a
Newcombe (hybrid Wilson score) 95% interval and the one-sided two-proportion z-test of p_c <= p_b. A check
judges it with `max` like the other drift metrics (`policies.thresholds.judge_max`: Fail when the lower
confidence bound exceeds max). Multivariate: on embeddings (or any (n, d) rows) it sees a new cluster that every
per-coordinate statistic, and a score's PSI, can miss. Deterministic: the split is by sample position (the
sample is in key order, a uniform random order), the forest's seed is `SEED`. Pure: no I/O.
"""
from __future__ import annotations

import math

import numpy as np

from ._result import StatError, StatResult

CONTAMINATION = 0.05
"""Share of the fitted half's own scores below the threshold: the baseline flags about this share itself."""
TREES = 100
MAX_SAMPLES = 256
"""Rows each tree is grown on (scikit-learn's default, Liu et al. 2008)."""
SEED = 0
MIN_ROWS = 20
"""Fewest rows per baseline half and in the candidate."""
_Z95 = 1.959963984540054


class JoinedFeatures:
    """Several numeric features of one window joined per request (`on: features:A,B`): the rows are the
    requests every feature's bottom-k sample holds (the samples share their keys, `key_from_request_id`, so a
    request sampled for one feature is sampled for the others it carries), in key order; `n` is the fewest
    values any feature saw (what `minSamples` is held to)."""

    def __init__(self, summaries: list) -> None:
        self.summaries = summaries

    @property
    def n(self) -> int:
        return min((int(s.n) for s in self.summaries), default=0)

    def rows(self) -> np.ndarray:
        keys = None
        for s in self.summaries:
            if not hasattr(s, "keys") or not hasattr(s, "values") or not isinstance(s.values(), np.ndarray):
                raise StatError("outlier-rate on features joins numeric features; one of them is categorical")
            keys = s.keys() if keys is None else np.intersect1d(keys, s.keys())
        if keys is None:
            return np.empty((0, 0))
        cols = [s.values()[np.searchsorted(s.keys(), keys)] for s in self.summaries]
        return np.column_stack(cols) if cols else np.empty((0, 0))


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape[1] == 0:
        raise StatError(f"{name}: expected values or rows of equal length, got shape {a.shape}")
    bad = int((~np.isfinite(a)).any(axis=1).sum())
    if bad:
        raise StatError(f"{name} has {bad} rows with NaN or infinite values")
    return a


def _wilson(x: int, n: int) -> tuple[float, float]:
    p = x / n
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def outlier_rate(baseline: np.ndarray, candidate: np.ndarray) -> StatResult:
    """The outlier-rate statistic of the module doc on a baseline and a candidate sample (values or rows)."""
    from sklearn.ensemble import IsolationForest   # local: the rest of policies imports without scikit-learn

    b, c = _rows(baseline, "baseline"), _rows(candidate, "candidate")
    if b.shape[1] != c.shape[1]:
        raise StatError(f"baseline rows have {b.shape[1]} values, candidate rows {c.shape[1]}")
    fit, held = b[0::2], b[1::2]
    if len(held) < MIN_ROWS or len(c) < MIN_ROWS:
        raise StatError(f"outlier-rate needs {2 * MIN_ROWS} baseline and {MIN_ROWS} candidate rows, got {len(b)} "
                        f"and {len(c)}")
    forest = IsolationForest(n_estimators=TREES, max_samples=min(MAX_SAMPLES, len(fit)), random_state=SEED,
                             n_jobs=1).fit(fit)
    tau = float(np.quantile(forest.score_samples(fit), CONTAMINATION))
    x_b = int((forest.score_samples(held) < tau).sum())
    x_c = int((forest.score_samples(c) < tau).sum())
    n, m = len(held), len(c)
    p_b, p_c = x_b / n, x_c / m
    delta = p_c - p_b
    (lc, uc), (lb, ub) = _wilson(x_c, m), _wilson(x_b, n)
    ci_low = delta - math.sqrt((p_c - lc) ** 2 + (ub - p_b) ** 2)
    ci_high = delta + math.sqrt((uc - p_c) ** 2 + (p_b - lb) ** 2)
    pooled = (x_b + x_c) / (n + m)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    p_value = (1.0 - _phi(delta / se0)) if se0 > 0 else (0.0 if delta > 0 else 1.0)
    return StatResult("outlier-rate", delta, p_value, n, m, estimate=delta, ci_low=ci_low, ci_high=ci_high,
                      detail={"candidate_rate": p_c, "baseline_rate": p_b, "candidate_outliers": x_c,
                              "baseline_outliers": x_b, "threshold": tau, "fit_rows": len(fit), "dims": b.shape[1]})
