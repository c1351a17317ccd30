"""EmbeddingSummary: a bottom-k sample of embedding vectors and their exact sums."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import _check_key, check_mergeable, SummaryError
from .codec import _b64, _count, _decoder, _expect_type, _unb64
from .sample import _BottomK, _check_sample, _merged_capacity

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
        check_mergeable(self, other)
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
