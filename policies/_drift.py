"""Univariate drift statistics: binned divergences, KS and Wasserstein.

Every statistic's ``value`` follows docs/statistics.md exactly. For the divergences and Wasserstein,
``estimate`` and ``ci_low``/``ci_high`` add a small-sample bias correction, because plug-in
values are biased upward (under no drift E[PSI] ≈ (bins − 1)(1/n + 1/m)):

* Binned divergences (psi, kl, js, hellinger): parametric bootstrap on the bin counts.
  ``BOOTSTRAP_RESAMPLES`` multinomial resamples of each sample's counts (size n, proportions
  as observed, bins fixed, numpy ``default_rng(BOOTSTRAP_SEED)``); bias = mean(resampled) − value;
  estimate = max(value − bias, 0); CI = the 2.5%/97.5% percentile interval of the resampled
  values re-centred on the estimate (shifted by −2·bias), clipped at 0. js and hellinger are
  square roots of divergences: they are corrected on the squared scale, then square-rooted. Cost is O(resamples · bins), independent of n.
* Wasserstein: the same correction from a Poisson bootstrap on at most ``WASSERSTEIN_ATOMS``
  mid-rank quantiles of each sorted sample (the exact sample when smaller), each atom weighted
  Poisson(n / atoms) so the resampling noise is that of the full sample size; the cost is
  bounded for any n.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from ._binning import aligned_counts, category_counts, check_edges, counts_from_sorted, edges_from_sorted
from ._result import StatError, StatResult, as_sample, sorted_sample

EPSILON = 1e-4                 # replaces zero proportions in PSI and KL (docs/statistics.md "Smoothing")
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0
WASSERSTEIN_ATOMS = 1000
KS_EXACT_MAX_N = 10000          # scipy's ks_2samp 'auto' mode is exact up to this size


# --- divergences on count vectors (vectorised over leading axes) -----------------------------

def _props(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum(axis=-1, keepdims=True)


def _eps(p: np.ndarray) -> np.ndarray:
    return np.where(p == 0, EPSILON, p)


def psi_counts(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    pb, pc = _eps(_props(b)), _eps(_props(c))
    return np.sum((pc - pb) * np.log(pc / pb), axis=-1)


def kl_counts(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    pb, pc = _eps(_props(b)), _eps(_props(c))
    return np.sum(pc * np.log(pc / pb), axis=-1)


def js_counts(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return jensenshannon(_props(b), _props(c), base=2, axis=-1)


def hellinger_counts(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    bc = np.sum(np.sqrt(_props(b) * _props(c)), axis=-1)
    return np.sqrt(np.maximum(1.0 - bc, 0.0))


# Distances that are square roots of divergences: corrected on the squared scale, where the
# small-sample bias is additive, then mapped back.
SQUARED_SCALE = frozenset({"js", "hellinger"})

DIVERGENCES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "psi": psi_counts, "kl": kl_counts, "js": js_counts, "hellinger": hellinger_counts,
}


def _check_count_vector(x: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise StatError(f"{name} counts must be numbers: {e}") from e
    if a.ndim != 1 or a.size == 0:
        raise StatError(f"{name} counts must be a non-empty 1-D array, got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any() or (a != np.round(a)).any():
        raise StatError(f"{name} counts must be finite non-negative integers")
    if a.sum() == 0:
        raise StatError(f"{name} is empty (all counts are 0)")
    return a.astype(np.int64)


def from_counts(metric: str, b_counts: Any, c_counts: Any, *, bins_reason: str | None = None,
                categories: list[str] | None = None) -> StatResult:
    """A binned divergence on two count vectors over the same bins, with bootstrap estimate/CI."""
    if isinstance(b_counts, Mapping) or isinstance(c_counts, Mapping):
        cats, b, c = aligned_counts(category_counts(b_counts, "baseline"), category_counts(c_counts, "candidate"))
        categories = cats
    else:
        b = _check_count_vector(b_counts, "baseline")
        c = _check_count_vector(c_counts, "candidate")
        if b.size != c.size:
            raise StatError(f"baseline has {b.size} bins but candidate has {c.size}; counts must share bins")
    fn = DIVERGENCES[metric]
    value = float(fn(b, c))
    nb, nc = int(b.sum()), int(c.sum())
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    bb = rng.multinomial(nb, b / nb, size=BOOTSTRAP_RESAMPLES)
    cc = rng.multinomial(nc, c / nc, size=BOOTSTRAP_RESAMPLES)
    boot = fn(bb, cc)
    if metric in SQUARED_SCALE:
        est, lo, hi = (float(np.sqrt(x)) for x in _bias_corrected(value**2, boot**2))
    else:
        est, lo, hi = _bias_corrected(value, boot)
    detail: dict[str, Any] = {"bias": value - est, "method": "multinomial bootstrap on bin counts"}
    if b.size == 1:
        detail["reason"] = bins_reason or "only one bin: the divergence is 0 by construction"
    if categories is not None:
        detail["categories"] = len(categories)
    return StatResult(metric, value, None, nb, nc, bins=int(b.size), estimate=est, ci_low=lo, ci_high=hi,
                      detail=detail)


def _bias_corrected(value: float, boot: np.ndarray, base: float | None = None) -> tuple[float, float, float]:
    """(estimate, ci_low, ci_high) from bootstrap replicates ``boot`` of a plug-in statistic.

    ``base`` is the statistic on the data the replicates were drawn from (default ``value``).
    bias = mean(boot) − base; estimate = value − bias; the 95% percentile interval of the
    replicates is re-centred on the estimate (shifted by value − base − 2·bias). All clipped at 0.
    """
    base = value if base is None else base
    bias = float(np.mean(boot)) - base
    lo, hi = np.percentile(boot, [2.5, 97.5]) + (value - base - 2.0 * bias)
    return max(value - bias, 0.0), max(float(lo), 0.0), max(float(hi), 0.0)


def binned(metric: str, b: Any, c: Any, bins: int = 10, edges: Any = None) -> StatResult:
    """psi/kl/js/hellinger on numeric samples (quantile bins of b) or on category counts/labels."""
    if categorical_pair(b, c):
        return from_counts(metric, category_counts(b, "baseline"), category_counts(c, "candidate"))
    bv, cv = as_sample(b, "baseline"), as_sample(c, "candidate")
    e = edges_from_sorted(bv, bins) if edges is None else check_edges(edges)   # quantiles need no sort
    return from_counts(metric, _bincount(bv, e), _bincount(cv, e), bins_reason=_one_bin_reason(bv, e))


def _bincount(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(e[1:-1], x, side="right"), minlength=e.size - 1).astype(np.int64)


def _one_bin_reason(bv: np.ndarray, e: np.ndarray) -> str | None:
    if e.size == 2 and bv.min() == bv.max():
        return ("baseline is constant: one bin, so the divergence is 0 whatever the candidate; "
                "use wasserstein or ks to detect a shift")
    return None


def binned_sorted(metric: str, bs: np.ndarray, cs: np.ndarray, bins: int = 10, edges: Any = None) -> StatResult:
    """`binned` for already sorted numeric samples (counts by searching the edges in the samples)."""
    e = edges_from_sorted(bs, bins) if edges is None else check_edges(edges)
    return from_counts(metric, counts_from_sorted(bs, e), counts_from_sorted(cs, e),
                       bins_reason=_one_bin_reason(bs, e))


def _is_categorical(x: Any) -> bool:
    """A mapping of counts, a string array, or a list/tuple whose items are all strings."""
    if isinstance(x, Mapping):
        return True
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "US" or (x.dtype.kind == "O" and x.size > 0 and all(isinstance(v, str) for v in x.flat))
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(v, str) for v in x)
    return False


def categorical_pair(b: Any, c: Any) -> bool:
    """True when both samples are categorical, False when both are numeric, StatError when mixed."""
    kb, kc = _is_categorical(b), _is_categorical(c)
    if kb != kc:
        which = ("baseline", "candidate") if kb else ("candidate", "baseline")
        raise StatError(f"{which[0]} is categorical but {which[1]} is numeric; both must be the same kind")
    return kb


# --- KS ----------------------------------------------------------------------------------------

class Merged:
    """b ∪ c in ascending order with the origin of each value, merged once per column.

    ``diff[i]`` = F_b(zᵢ) − F_c(zᵢ) with counts over the first i + 1 merged values (i < N − 1):
    the integrand of Wasserstein and, at the end of each run of equal values (``deltas != 0``),
    exactly the CDF difference KS maximises.
    """

    def __init__(self, bs: np.ndarray, cs: np.ndarray) -> None:
        z = np.concatenate((bs, cs))
        order = np.argsort(z, kind="stable")       # timsort: two sorted runs merge in linear time
        self.z = z[order]
        from_b = order < bs.size
        self.n1, self.n2 = bs.size, cs.size
        self.deltas = np.diff(self.z)
        # F_b − F_c = nb/n1 − (k − nb)/n2 = nb·(1/n1 + 1/n2) − k/n2, in place to save passes
        diff = np.cumsum(from_b[:-1], dtype=np.float64)
        diff *= 1.0 / self.n1 + 1.0 / self.n2
        diff -= np.arange(1, self.z.size, dtype=np.float64) * (1.0 / self.n2)
        self.diff = diff


def ks_sorted(bs: np.ndarray, cs: np.ndarray, merged: Merged | None = None) -> StatResult:
    """Two-sided two-sample KS = scipy.stats.ks_2samp(b, c) (mode 'auto'), on sorted samples."""
    n1, n2 = bs.size, cs.size
    if max(n1, n2) <= KS_EXACT_MAX_N:
        r = sps.ks_2samp(bs, cs)
        d, p = float(r.statistic), float(r.pvalue)
        method = "scipy ks_2samp mode 'auto'"
    else:
        # Same numbers as scipy: the empirical CDFs (right-continuous counts / n) compared at
        # every observed value, i.e. at the end of each run of equal values in the merged order.
        # p from Smirnov's asymptotic law like scipy's 'asymp' mode.
        mg = merged if merged is not None else Merged(bs, cs)
        at_values = mg.diff[mg.deltas != 0]       # the last merged value has diff 0 (both CDFs are 1)
        lo = min(float(at_values.min()), 0.0) if at_values.size else 0.0
        hi = max(float(at_values.max()), 0.0) if at_values.size else 0.0
        d = float(max(np.clip(-lo, 0, 1), hi))
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        p = float(np.clip(sps.kstwo.sf(d, np.round(en)), 0, 1))
        method = "asymptotic (Smirnov), as scipy ks_2samp mode 'asymp'"
    detail = {"statistic": "D", "method": method}
    return StatResult("ks", d, p, n1, n2, detail=detail)


# --- Wasserstein -----------------------------------------------------------------------------

def _w1_sorted(us: np.ndarray, vs: np.ndarray, merged: Merged | None = None) -> float:
    """scipy.stats.wasserstein_distance(u, v) for sorted u, v.

    Σ |U(x) − V(x)| Δx over the merged values, like scipy. CDF counts come from running sums in
    the merged order instead of searchsorted: they differ from scipy's right-continuous counts
    only inside runs of equal values, where Δx is exactly 0, so the sum is the same.
    """
    mg = merged if merged is not None else Merged(us, vs)
    return float(np.vecdot(np.abs(mg.diff), mg.deltas))


def _atoms(xs: np.ndarray) -> np.ndarray:
    if xs.size <= WASSERSTEIN_ATOMS:
        return xs
    idx = ((np.arange(WASSERSTEIN_ATOMS) + 0.5) * (xs.size / WASSERSTEIN_ATOMS)).astype(np.int64)
    return xs[idx]


def _poisson_weights(rng: np.random.Generator, n: int, atoms: int) -> np.ndarray:
    """Bootstrap weights of ``atoms`` atoms standing for n observations: Poisson(n/atoms) each
    (the Poisson bootstrap), drawn as a normal with that mean and variance when the mean is ≥ 20."""
    lam = n / atoms
    if lam < 20:
        w = rng.poisson(lam, size=(BOOTSTRAP_RESAMPLES, atoms)).astype(np.float64)
    else:
        w = np.maximum(lam + np.sqrt(lam) * rng.standard_normal((BOOTSTRAP_RESAMPLES, atoms)), 0.0)
    w[w.sum(axis=1) == 0, 0] = 1.0      # a resample needs some mass
    return w


def _w1_weighted(ab: np.ndarray, wb: np.ndarray, ac: np.ndarray, wc: np.ndarray) -> np.ndarray:
    """W1 for each row of weights wb (R×Qb), wc (R×Qc) over fixed sorted atoms ab, ac."""
    allv = np.sort(np.concatenate((ab, ac)))
    deltas = np.diff(allv)
    ib = np.searchsorted(ab, allv[:-1], side="right")
    ic = np.searchsorted(ac, allv[:-1], side="right")
    cb = np.concatenate((np.zeros((wb.shape[0], 1)), np.cumsum(wb, axis=1)), axis=1)
    cc = np.concatenate((np.zeros((wc.shape[0], 1)), np.cumsum(wc, axis=1)), axis=1)
    fb = cb[:, ib] / cb[:, -1:]
    fc = cc[:, ic] / cc[:, -1:]
    return np.abs(fb - fc) @ deltas


def wasserstein_sorted(bs: np.ndarray, cs: np.ndarray,
                       merged: Merged | None = None) -> StatResult:
    """wasserstein_distance(b, c) / std(b) on sorted samples, with the atom-bootstrap estimate/CI."""
    raw = _w1_sorted(bs, cs, merged)
    sd = float(np.std(bs))
    scale = sd if sd > 0 else 1.0
    value = raw / scale
    ab, ac = _atoms(bs), _atoms(cs)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    wb = _poisson_weights(rng, bs.size, ab.size)
    wc = _poisson_weights(rng, cs.size, ac.size)
    boot_raw = _w1_weighted(ab, wb, ac, wc)
    base_raw = float(_w1_weighted(ab, np.ones((1, ab.size)), ac, np.ones((1, ac.size)))[0])
    if sd > 0:
        centred = ab - ab.mean()
        tot = wb.sum(axis=1)
        mean = wb @ centred / tot
        boot_sd = np.sqrt(np.maximum(wb @ centred**2 / tot - mean**2, 0.0))
        boot_sd = np.where(boot_sd > 0, boot_sd, scale)
        base_sd = float(np.std(ab))
        boot, base = boot_raw / boot_sd, base_raw / (base_sd if base_sd > 0 else scale)
    else:
        boot, base = boot_raw, base_raw
    est, lo, hi = _bias_corrected(value, boot, base)
    bias = value - est if est > 0 else float(np.mean(boot)) - base
    detail: dict[str, Any] = {"raw_distance": raw, "baseline_std": sd, "bias": bias,
                              "method": "weighted bootstrap on quantile atoms"}
    if sd == 0:
        detail["reason"] = "baseline is constant (std 0): value is the raw distance, not divided by std"
    return StatResult("wasserstein", value, None, bs.size, cs.size, estimate=est, ci_low=lo, ci_high=hi,
                      detail=detail)


# --- one sort per column, many statistics ---------------------------------------------------

NUMERIC_SORTED = {"ks": ks_sorted, "wasserstein": wasserstein_sorted}


PARALLEL_SORT_MIN = 200_000
"""Samples at least this large are sorted concurrently (numpy's sort releases the GIL)."""


def _sort_both(b: Any, c: Any) -> tuple[np.ndarray, np.ndarray]:
    if min(np.size(b), np.size(c)) < PARALLEL_SORT_MIN:
        return sorted_sample(b, "baseline"), sorted_sample(c, "candidate")
    with ThreadPoolExecutor(max_workers=2) as pool:
        fb = pool.submit(sorted_sample, b, "baseline")
        fc = pool.submit(sorted_sample, c, "candidate")
        return fb.result(), fc.result()


def compare_numeric(b: Any, c: Any, metrics: tuple[str, ...] = ("psi", "ks", "js", "wasserstein"),
                    bins: int = 10, edges: Any = None) -> dict[str, StatResult]:
    """Several univariate statistics on one numeric column, sorting each sample once.

    Large samples (≥ PARALLEL_SORT_MIN values) are sorted on two threads, one per sample.
    """
    unknown = [m for m in metrics if m not in DIVERGENCES and m not in NUMERIC_SORTED]
    if unknown:
        raise StatError(f"compare_numeric: unknown metric(s) {unknown}; expected any of "
                        f"{sorted(set(DIVERGENCES) | set(NUMERIC_SORTED))}")
    bs, cs = _sort_both(b, c)
    out: dict[str, StatResult] = {}
    e = None
    merged = None
    for m in metrics:
        if m in DIVERGENCES:
            if e is None:
                e = edges_from_sorted(bs, bins) if edges is None else check_edges(edges)
            out[m] = binned_sorted(m, bs, cs, bins, e)
        else:
            if merged is None:
                merged = Merged(bs, cs)
            out[m] = NUMERIC_SORTED[m](bs, cs, merged)
    return out
