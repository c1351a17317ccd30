"""The spec's privacy settings (`policies.privacy`) applied to outcome records before anything keeps them.

The request path puts what it saw in the record (the watched features, the segments, the stickiness key,
and the request body only when the settings keep or hash it); whoever keeps records (the worker, or the
router with --no-worker) passes each through `Privacy.apply` before folding it into the summaries and
writing it to the prediction log. So the summaries the controller reads, the log and `replay`'s rebuild of
it all hold the same values: kept, `hmac:…` hashes under the router's key, or nothing.

Before that, a live request's watched features are checked against the spec's input expectations
(`policies.expectations.issues`) on their raw values, and what they broke is kept in the record
(`input_issues`): so expectations hold on hashed and dropped features too, and replay folds the same counts.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import orjson

from policies.expectations import ExpectationsSpec, issues as input_issues
from policies.outcome import Outcome
from policies.privacy import PrivacySpec, keyed_hash
from policies.spec import RolloutSpec
from router.extract import redact, split_path


class RecordPrivacy:
    """One rollout's privacy settings, ready to apply under `key`."""

    __slots__ = ("policy", "key", "redact_paths", "noop", "expect")

    def __init__(self, policy: PrivacySpec, key: bytes, expect: ExpectationsSpec | None = None):
        self.policy, self.key = policy, key
        self.expect = expect if expect is not None and expect.features else None
        self.redact_paths = tuple(split_path(p) for p in policy.redact)
        self.noop = (policy.sticky_key == policy.inputs == policy.features == policy.segments == "keep"
                     and not policy.fields and not policy.redact and self.expect is None)

    def _fields(self, values: Mapping[str, Any], mode_of: Callable[[str], str]) -> dict[str, Any]:
        out = {}
        for name, value in values.items():
            mode = mode_of(name)
            if mode == "keep":
                out[name] = value
            elif mode == "hash":
                out[name] = None if value is None else keyed_hash(self.key, value)
        return out

    def apply(self, rec: Outcome) -> Outcome:
        if self.noop:
            return rec
        p, d, changes = self.policy, rec.__dict__, {}
        if self.expect is not None and not d.get("override") and (
                d["role"] == "primary" or (d["role"] == "interleave" and d["arm"] == "baseline")):
            found = input_issues(self.expect, d.get("features"))
            if found:
                changes["input_issues"] = found
        sticky = d.get("sticky")
        if sticky is not None and p.sticky_key != "keep":
            changes["sticky"] = keyed_hash(self.key, sticky) if p.sticky_key == "hash" else None
        features = d.get("features")
        if features and (p.features != "keep" or p.fields):
            changes["features"] = self._fields(features, p.feature_mode)
        segments = d.get("segments")
        if segments and (p.segments != "keep" or p.fields):
            changes["segments"] = self._fields(segments, p.segment_mode)
        body = d.get("input")
        if body is not None:
            if p.inputs == "drop":
                changes["input"] = None
            elif p.inputs == "hash":
                changes["input"] = keyed_hash(self.key, orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode())
            elif self.redact_paths:
                changes["input"] = redact(body, self.redact_paths)
        return rec.replaced(**changes) if changes else rec


class Privacy:
    """`apply(spec, record)` for every rollout, under one key (the router's `--hash-key-file`)."""

    def __init__(self, key: bytes):
        self.key = key
        self._by_policy: dict[tuple, RecordPrivacy] = {}
        self._by_spec: dict[int, tuple[RolloutSpec, RecordPrivacy]] = {}
        """By spec object (kept, so its id is not reused): hashing a spec's privacy settings per record cost more
        than applying them."""

    def of(self, spec: RolloutSpec) -> RecordPrivacy:
        seen = self._by_spec.get(id(spec))
        if seen is not None and seen[0] is spec:     # the same spec object as last time: no hashing
            return seen[1]
        k = (spec.privacy, spec.expectations)
        rp = self._by_policy.get(k)
        if rp is None:
            rp = self._by_policy[k] = RecordPrivacy(spec.privacy, self.key, spec.expectations)
        if len(self._by_spec) >= 4096:
            self._by_spec.clear()
        self._by_spec[id(spec)] = (spec, rp)
        return rp

    def apply(self, spec: RolloutSpec, rec: Outcome) -> Outcome:
        return self.of(spec).apply(rec)

