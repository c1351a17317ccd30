"""Which version serves a request: weights from `status.routing`, sticky hashing, the override header.

Pure functions of (routing, key): a sticky key maps to a fixed bucket in [0, 10000) and goes to the
candidate iff bucket < weight·100, so raising the weight only ever moves keys from baseline to candidate.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Mapping

from policies.api import Phase
from policies.spec import Rollout, RolloutSpec, SpecError
from policies.postpromotion import judging, judging_spec
from policies.status import RolloutStatus, stable_from

BUCKETS = 10_000
BASELINE, CANDIDATE = "baseline", "candidate"


@dataclass(frozen=True)
class Routing:
    candidate_weight: float = 0.0
    """Percent of live traffic served by the candidate, 0–100."""
    shadow: bool = False
    interleave: bool = False

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> "Routing":
        """Routing from a ModelRollout status; absent → 100% baseline; Promoted → 100% candidate."""
        status = status or {}
        raw = status.get("routing")
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise SpecError("status.routing", f"expected a mapping, got {type(raw).__name__}")
        weight = raw.get("candidateWeight", 0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 100:
            raise SpecError("status.routing.candidateWeight", f"expected a number in [0, 100], got {weight!r}")
        flags = {}
        for key in ("shadow", "interleave"):
            v = raw.get(key, False)
            if v is None:
                v = False
            if not isinstance(v, bool):
                raise SpecError(f"status.routing.{key}", f"expected true or false, got {v!r}")
            flags[key] = v
        if status.get("phase") == Phase.PROMOTED:
            return cls(100.0, False, False)
        return cls(float(weight), flags["shadow"], flags["interleave"])

    @property
    def promoted(self) -> bool:
        return self.candidate_weight >= 100


def served(rollout: Rollout) -> tuple[RolloutSpec, Routing]:
    """What the router serves for a rollout: its spec resolved against `status.stable` (the baseline arm is
    the stable once a promotion made one; without a candidate both arms are the stable) and the routing.

    100% baseline (the stable) in a steady state, and while the status is about another candidate revision
    than the spec's (the controller has not started the new one yet: nobody meets an unannounced
    candidate). While a promoted version is judged on delayed labels (`status.postPromotion`), the previous
    stable stays the baseline arm and the promoted version serves 100% as the candidate, so each label is
    credited to the version that predicted. Raises SpecError for a malformed `status.routing` or
    `status.stable`."""
    status = rollout.status or {}
    if rollout.spec.post_promotion is not None and status.get("postPromotion") is not None:
        st = judging(RolloutStatus.from_status(status))
        if st is not None:
            return judging_spec(rollout.spec, st), Routing(100.0)
    raw = status.get("stable")
    stable = stable_from(raw)
    if raw is not None and stable is None:
        raise SpecError("status.stable", f"expected {{version, url}} strings, got {raw!r}")
    spec = rollout.spec.resolved(stable)
    routing = Routing.from_status(status)
    revision = status.get("revision")
    if spec.steady or (revision is not None and revision != spec.revision):
        routing = Routing()
    return spec, routing


def sticky_bucket(key: str, salt: str = "") -> int:
    """The fixed bucket in [0, 10000) of a stickiness key (salted per rollout)."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def choose(routing: Routing, bucket: int) -> str:
    """"candidate" iff bucket < weight·100, else "baseline"."""
    return CANDIDATE if bucket < routing.candidate_weight * (BUCKETS // 100) else BASELINE


def pick(routing: Routing, sticky_key: str | None, salt: str, rng: random.Random = random._inst) -> str:
    """The role serving one request: sticky by key when given, else a fresh random bucket."""
    if routing.candidate_weight <= 0:
        return BASELINE
    if routing.candidate_weight >= 100:
        return CANDIDATE
    bucket = sticky_bucket(sticky_key, salt) if sticky_key is not None else int(rng.random() * BUCKETS)
    return choose(routing, bucket)
