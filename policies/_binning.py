"""Quantile bins frozen from the baseline, and counts over them (docs/statistics.md "Binning").

edges = unique(quantile(b, linspace(0, 1, bins + 1))), first/last edge → −∞/+∞, bin i = [eᵢ, eᵢ₊₁).
The `*_sorted` variants take already-sorted arrays so one sort per column serves edges, counts,
KS and Wasserstein.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

import numpy as np

from ._result import StatError, as_sample


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise StatError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def edges_from_sorted(b_sorted: np.ndarray, bins: int = 10) -> np.ndarray:
    """Bin edges of a finite baseline, sorted or not (see `bin_edges`)."""
    bins = _check_bins(bins)
    q = np.quantile(b_sorted, np.linspace(0.0, 1.0, bins + 1))
    interior = np.unique(q)[1:-1]
    return np.concatenate(([-np.inf], interior, [np.inf]))


def bin_edges(b: Any, bins: int = 10) -> np.ndarray:
    """Quantile edges of baseline ``b`` (docs/statistics.md "Binning"); first and last are −∞ and +∞.

    A constant baseline gives ``[-inf, inf]``: one bin.
    """
    return edges_from_sorted(as_sample(b, "baseline"), bins)


def check_edges(edges: Any) -> np.ndarray:
    try:
        e = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise StatError(f"edges must be numbers: {err}") from err
    if e.ndim != 1 or e.size < 2:
        raise StatError(f"edges must be a 1-D array of at least 2 values, got shape {e.shape}")
    if np.isnan(e).any():
        raise StatError("edges contain NaN")
    if not (np.diff(e) > 0).all():
        raise StatError("edges must be strictly increasing")
    return e


def binned_counts(x: Any, edges: Any) -> np.ndarray:
    """Counts of ``x`` per bin: bin index = searchsorted(edges[1:-1], x, side="right")."""
    e = check_edges(edges)
    xs = as_sample(x, "sample")
    idx = np.searchsorted(e[1:-1], xs, side="right")
    return np.bincount(idx, minlength=e.size - 1).astype(np.int64)


def counts_from_sorted(x_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Same counts as `binned_counts` for a sorted sample, in O(bins · log n).

    #{x in [eᵢ, eᵢ₊₁)} = #{x < eᵢ₊₁} − #{x < eᵢ}, and #{x < e} = searchsorted(x, e, "left").
    """
    below = np.searchsorted(x_sorted, edges[1:-1], side="left")
    return np.diff(np.concatenate(([0], below, [x_sorted.size]))).astype(np.int64)


def category_counts(x: Any, name: str) -> dict[str, int]:
    """Counts per category from a mapping (category → count) or an iterable of labels."""
    if isinstance(x, Mapping):
        out: dict[str, int] = {}
        for k, v in x.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise StatError(f"{name} count for {k!r} must be a non-negative integer, got {v!r}")
            out[str(k)] = out.get(str(k), 0) + int(v)
        if sum(out.values()) == 0:
            raise StatError(f"{name} is empty (all counts are 0)")
        return out
    if isinstance(x, (str, bytes)):
        raise StatError(f"{name} must be a mapping of counts or a sequence of labels, got a string")
    if not isinstance(x, Iterable):
        raise StatError(f"{name} must be a mapping of counts or a sequence of labels, got {type(x).__name__}")
    counts = Counter(str(v) for v in x)
    if not counts:
        raise StatError(f"{name} is empty")
    return dict(counts)


def aligned_counts(b: Mapping[str, int], c: Mapping[str, int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts of both samples over the sorted union of their categories (zero-total ones dropped)."""
    cats = sorted(k for k in set(b) | set(c) if b.get(k, 0) + c.get(k, 0) > 0)
    bc = np.array([b.get(k, 0) for k in cats], dtype=np.int64)
    cc = np.array([c.get(k, 0) for k in cats], dtype=np.int64)
    return cats, bc, cc
