"""Embedding drift: unbiased MMD² with an RBF kernel and a permutation p-value; centroid cosine.

Two methods compute the same statistic (docs/statistics.md "MMD"):

* ``exact``: the kernel matrix, built in row blocks of ``BLOCK`` rows so memory stays
  O(BLOCK · N); all permutations are one product K @ A (A = label indicators, one column per
  permutation). Cost O(N² (d + P)). σ² = median over all pairs (bᵢ, cⱼ) of ‖bᵢ − cⱼ‖² / 2.
* ``rff``: random Fourier features φ(x) = √(2/D) cos(Wx + u), W ~ N(0, I/σ²), u ~ U(0, 2π), so
  φ(x)·φ(y) is an unbiased estimate of the RBF kernel. The unbiased MMD² of that kernel needs
  only per-group feature sums, so P permutations cost O(P · N · D) instead of O(P · N²). The
  permutation test is exact for the feature kernel (a valid p-value at any D); the statistic
  approximates the exact one (error measured by bench/stats.py, see ``APPROXIMATION_NOTE``).
  Cost O(N · d · D) for the features (float32) + O(P · N · D) for the permutations. When σ² is
  not given it is the median over pairs of a random subset of at most ``SIGMA_SUBSAMPLE`` rows
  of each sample (pass ``sigma2`` for an exactly reproducible run).

The p-value reaches any level. ``permutations_for(level)`` sizes the permutation count so that the
smallest attainable permutation p-value, 1/(1+P), is a twentieth of the level, within a cost budget
(``PERMUTATION_BUDGET`` kernel-row operations). When fewer than ``MIN_EXCEEDANCES`` permuted statistics
reach the observed one, the permutation p-value only says "below about 10/(1+P)", so the reported p is
the upper tail of a Pearson type III (shifted gamma) law fitted to the permutation statistics' mean,
variance and skewness (the null law of the unbiased MMD² is a weighted sum of centred chi-squares:
right-skewed, with a left tail below 0, which the Pearson III matches by its first three moments). The
detail says which was used (``p_method``), the permutation p-value and its Monte-Carlo standard error.
See docs/statistics.md "MMD".

``method="auto"`` uses ``exact`` when N = n + m ≤ ``EXACT_MAX_N``, else ``rff``.
Randomness: numpy ``default_rng(seed)``; the exact method draws P times ``rng.permutation(N)``
(the first n indices of each form the baseline group), the rff method first draws the σ²
subsets (if needed), then W, then u, then the same permutations.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._result import StatError, StatResult, as_matrix

EXACT_MAX_N = 5000
BLOCK = 2048
RFF_FEATURES = 2048
SIGMA_SUBSAMPLE = 1000
MIN_PERMUTATIONS = 100
MAX_PERMUTATIONS = 2000
MIN_EXCEEDANCES = 10
"""Below this many permuted statistics >= the observed one, p comes from the Pearson III tail fit."""
PERMUTATION_BUDGET = 4e9
"""Upper bound on the permutation work: N² (exact) or N · features (rff) times the permutation count."""
APPROXIMATION_NOTE = (
    "rff, 2048 features, measured by bench/stats.py on 10k x 768 embeddings per side (drift of 0.05 in 64 "
    "dimensions, exact MMD² 8.2e-5): relative error of the statistic vs the exact one 0.7%-7.2% over five "
    "feature draws (mean 3.8%); on 600 x 32 (--quick) 0.3%-30% (mean 10%). The error is relative to the drift "
    "signal, so it is largest when MMD² is near its noise floor. The p-value is a valid permutation p-value "
    "for the feature kernel at any feature count; pass method='exact' when the statistic itself must match."
)


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    np.maximum(d, 0.0, out=d)
    return d


def median_sigma2(b: np.ndarray, c: np.ndarray) -> float:
    """σ² = median over all pairs (bᵢ, cⱼ) of ‖bᵢ − cⱼ‖² / 2."""
    return float(np.median(_sq_dists(b, c))) / 2.0


def _indicators(n: int, m: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Column 0 = observed labels (first n rows are the baseline), then one column per permutation."""
    total = n + m
    a = np.zeros((total, permutations + 1))
    a[:n, 0] = 1.0
    for p in range(1, permutations + 1):
        a[rng.permutation(total)[:n], p] = 1.0
    return a


def _unbiased(sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray, trx: np.ndarray, try_: np.ndarray,
              n: int, m: int) -> np.ndarray:
    return (sxx - trx) / (n * (n - 1)) + (syy - try_) / (m * (m - 1)) - 2.0 * sxy / (n * m)


def _exact(z: np.ndarray, n: int, m: int, sigma2: float, a: np.ndarray) -> np.ndarray:
    total = n + m
    ka = np.empty_like(a)
    rowsum = np.empty(total)
    for start in range(0, total, BLOCK):
        end = min(start + BLOCK, total)
        d = _sq_dists(z[start:end], z)
        d[np.arange(end - start), np.arange(start, end)] = 0.0     # exact zero self-distance
        np.exp(d * (-0.5 / sigma2), out=d)
        ka[start:end] = d @ a
        rowsum[start:end] = d.sum(1)
    sxx = np.einsum("ip,ip->p", a, ka)
    ar = a.T @ rowsum
    t = rowsum.sum()
    # RBF diagonal is exactly 1, so the trace of each group is its size.
    return _unbiased(sxx, t - 2.0 * ar + sxx, ar - sxx, np.full(a.shape[1], float(n)),
                     np.full(a.shape[1], float(m)), n, m)


def _rff(z: np.ndarray, n: int, m: int, a: np.ndarray, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    # Features, their per-block sums and norms run in float32 (the O(N·d·D) projection dominates;
    # float32 rounding, ~1e-7 relative per block of BLOCK rows, is far below the feature
    # approximation itself). Block results accumulate in float64, and the unbiased statistic, a
    # small difference of large sums, is formed in float64.
    total, features = n + m, w.shape[1]
    w32, u32, a32 = w.astype(np.float32), u.astype(np.float32), a.astype(np.float32)
    sx = np.zeros((a.shape[1], features))      # feature sum of the baseline group, per labelling
    s = np.zeros(features)                      # feature sum of all rows
    q = np.empty(total)                         # ‖φ(zᵢ)‖², the feature kernel's diagonal
    scale = np.float32(np.sqrt(2.0 / features))
    for start in range(0, total, BLOCK):
        end = min(start + BLOCK, total)
        phi = z[start:end].astype(np.float32) @ w32
        phi += u32
        np.cos(phi, out=phi)
        phi *= scale
        q[start:end] = np.einsum("ij,ij->i", phi, phi, dtype=np.float64)
        sx += a32[start:end].T @ phi
        s += phi.sum(0, dtype=np.float64)
    sy = s - sx
    trx = a.T @ q
    return _unbiased(np.einsum("pj,pj->p", sx, sx), np.einsum("pj,pj->p", sy, sy),
                     np.einsum("pj,pj->p", sx, sy), trx, q.sum() - trx, n, m)


def chosen_method(n: int, m: int, method: str = "auto") -> str:
    return method if method != "auto" else ("exact" if n + m <= EXACT_MAX_N else "rff")


def permutations_for(level: float, n: int, m: int, method: str = "auto", features: int = RFF_FEATURES) -> int:
    """Permutations for a test at `level`: enough that 1/(1+P) <= level/20, at least `MIN_PERMUTATIONS`,
    at most `MAX_PERMUTATIONS` and within `PERMUTATION_BUDGET`; beyond that the tail fit decides."""
    want = math.ceil(20.0 / max(level, 1e-12)) - 1 if level > 0 else MAX_PERMUTATIONS
    total = n + m
    per = total * total if chosen_method(n, m, method) == "exact" else total * features
    budget = int(PERMUTATION_BUDGET // max(per, 1))
    return int(max(MIN_PERMUTATIONS, min(want, MAX_PERMUTATIONS, budget)))


def tail_p(observed: float, permuted: np.ndarray) -> float:
    """Upper-tail probability of `observed` under a Pearson III law with the permuted values' first three
    moments (a normal tail when the skewness is 0)."""
    from scipy.stats import pearson3

    mu = float(np.mean(permuted))
    sd = float(np.std(permuted, ddof=1)) if permuted.size > 1 else 0.0
    if not (sd > 0):
        return 0.0 if observed > mu else 1.0
    skew = float(np.mean(((permuted - mu) / sd) ** 3))
    return float(pearson3.sf(observed, skew, loc=mu, scale=sd))


def mmd(B: Any, C: Any, sigma2: float | None = None, permutations: int = MIN_PERMUTATIONS, seed: int = 0,
        method: str = "auto", features: int = RFF_FEATURES, level: float | None = None) -> StatResult:
    """Unbiased MMD² (RBF kernel) between embedding sets B and C with a permutation p-value.

    p = (1 + #{permuted ≥ observed}) / (1 + permutations) when at least `MIN_EXCEEDANCES` permuted values
    reach the observed one, else the Pearson III tail fit (module docstring). With `level`, the
    permutation count is `permutations_for(level, …)` (at least `permutations`).
    """
    b = as_matrix(B, "baseline")
    c = as_matrix(C, "candidate")
    n, m = b.shape[0], c.shape[0]
    if b.shape[1] != c.shape[1]:
        raise StatError(f"baseline has {b.shape[1]} dimensions but candidate has {c.shape[1]}")
    if n < 2 or m < 2:
        raise StatError(f"unbiased MMD² needs at least 2 rows per sample, got baseline={n}, candidate={m}")
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)) or permutations < 0:
        raise StatError(f"permutations must be a non-negative integer, got {permutations!r}")
    if method not in ("auto", "exact", "rff"):
        raise StatError(f"method must be 'auto', 'exact' or 'rff', got {method!r}")
    if sigma2 is not None and not (np.isfinite(sigma2) and sigma2 > 0):
        raise StatError(f"sigma2 must be a positive finite number, got {sigma2!r}")
    if isinstance(features, bool) or not isinstance(features, (int, np.integer)) or features < 1:
        raise StatError(f"features must be a positive integer, got {features!r}")
    if level is not None:
        if not (isinstance(level, (int, float)) and 0 < level <= 1):
            raise StatError(f"level must be in (0, 1], got {level!r}")
        permutations = max(permutations, permutations_for(level, n, m, method, features))
    chosen = chosen_method(n, m, method)
    rng = np.random.default_rng(seed)
    if sigma2 is None:
        if chosen == "exact":
            sigma2 = median_sigma2(b, c)
        else:
            ib = rng.choice(n, min(n, SIGMA_SUBSAMPLE), replace=False)
            ic = rng.choice(m, min(m, SIGMA_SUBSAMPLE), replace=False)
            sigma2 = median_sigma2(b[np.sort(ib)], c[np.sort(ic)])
    detail: dict[str, Any] = {"sigma2": float(sigma2), "method": chosen, "permutations": int(permutations),
                              "statistic": "unbiased MMD^2"}
    if sigma2 <= 0:
        detail["reason"] = "all baseline-candidate distances are 0 (identical constant embeddings)"
        return StatResult("mmd", 0.0, 1.0, n, m, detail=detail)
    z = np.vstack((b, c))
    if chosen == "exact":
        a = _indicators(n, m, permutations, rng)
        stats = _exact(z, n, m, sigma2, a)
    else:
        w = rng.standard_normal((b.shape[1], features)) / np.sqrt(sigma2)
        u = rng.uniform(0.0, 2.0 * np.pi, features)
        a = _indicators(n, m, permutations, rng)
        stats = _rff(z, n, m, a, w, u)
        detail["features"] = int(features)
    observed = float(stats[0])
    exceed = int(np.sum(stats[1:] >= observed))
    p_perm = (1.0 + exceed) / (1.0 + permutations)
    detail["p_permutation"] = p_perm
    detail["p_mc_se"] = math.sqrt(p_perm * (1.0 - p_perm) / max(permutations, 1))
    if permutations >= 2 and exceed < MIN_EXCEEDANCES:
        p = min(p_perm, tail_p(observed, stats[1:]))
        detail["p_method"] = f"Pearson III tail fitted to {permutations} permutations ({exceed} reached the observed)"
    else:
        p = p_perm
        detail["p_method"] = f"permutation ({permutations})"
    return StatResult("mmd", observed, p, n, m, detail=detail)


def centroid_cosine(B: Any, C: Any) -> StatResult:
    """Mean over cᵢ of cos(cᵢ, mean(B)); detail["baseline"] is the same for the bᵢ."""
    b = as_matrix(B, "baseline")
    c = as_matrix(C, "candidate")
    if b.shape[1] != c.shape[1]:
        raise StatError(f"baseline has {b.shape[1]} dimensions but candidate has {c.shape[1]}")
    centroid = b.mean(axis=0)
    cn = float(np.linalg.norm(centroid))
    if cn == 0:
        raise StatError("baseline centroid is the zero vector; cosine to it is undefined")
    for name, x in (("baseline", b), ("candidate", c)):
        zero = int((np.linalg.norm(x, axis=1) == 0).sum())
        if zero:
            raise StatError(f"{name} has {zero} all-zero row{'s' if zero != 1 else ''}; cosine is undefined")
    cos_c = (c @ centroid) / (np.linalg.norm(c, axis=1) * cn)
    cos_b = (b @ centroid) / (np.linalg.norm(b, axis=1) * cn)
    return StatResult("centroid-cosine", float(cos_c.mean()), None, b.shape[0], c.shape[0],
                      detail={"baseline": float(cos_b.mean()), "difference": float(cos_b.mean() - cos_c.mean())})
