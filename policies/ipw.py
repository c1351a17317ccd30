"""Off-policy estimates of a version's reward from a log collected under another split (docs/statistics.md
"Reward and off-policy estimates").

Each logged reward rᵢ comes with the arm aᵢ that served the request and the propensity πᵢ, the probability
with which the router chose that arm (the canary weight share; 1 in shadow and interleave steps). For a
target policy that serves `arm` to everyone, over the n logged rewards with weights wᵢ = 1[aᵢ = arm] / πᵢ:

- IPW: V̂ = (1/n) Σ wᵢ rᵢ, unbiased; its 95% interval V̂ ± 1.96·sd(wᵢ rᵢ)/√n.
- self-normalised IPW: V̂_SN = Σ wᵢ rᵢ / Σ wᵢ, biased by O(1/n) but of lower variance; its interval by the
  delta method: V̂_SN ± 1.96·sqrt(Σ wᵢ² (rᵢ − V̂_SN)²) / Σ wᵢ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._result import StatError

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    arm: str
    n: int                      # logged rewards
    matched: int                # of which served by `arm`
    ipw: float
    ipw_low: float
    ipw_high: float
    snipw: float
    snipw_low: float
    snipw_high: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def estimate(rewards: Sequence[float], arms: Sequence[str], propensities: Sequence[float], arm: str) -> Estimate:
    """IPW and self-normalised IPW estimates of the mean reward had every request been served by `arm`."""
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)
    if r.ndim != 1 or r.size == 0 or r.size != p.size or len(arms) != r.size:
        raise StatError(f"expected as many rewards, arms and propensities (got {r.size}, {len(arms)}, {p.size}), "
                        f"at least one")
    if not np.isfinite(r).all():
        raise StatError("rewards must be finite numbers")
    if not ((p > 0) & (p <= 1)).all():
        raise StatError("propensities must be in (0, 1]")
    hit = np.array([a == arm for a in arms], dtype=bool)
    matched = int(hit.sum())
    if matched == 0:
        raise StatError(f"no logged reward was served by {arm!r}: nothing to weight")
    w = np.where(hit, 1.0 / p, 0.0)
    n = r.size
    terms = w * r
    ipw = float(terms.mean())
    sd = float(terms.std(ddof=1)) if n > 1 else math.inf
    half = _Z95 * sd / math.sqrt(n)
    sw = float(w.sum())
    sn = float(terms.sum() / sw)
    sn_half = _Z95 * math.sqrt(float(np.sum(w * w * (r - sn) ** 2))) / sw if matched > 1 else math.inf
    return Estimate(arm, n, matched, ipw, ipw - half, ipw + half, sn, sn - sn_half, sn + sn_half)
