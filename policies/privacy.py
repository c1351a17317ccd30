"""What the prediction log (and everything folded from the same records) may hold of a request: `spec.privacy`.

One place in the spec says, for each logged field, whether it is kept, replaced by a keyed hash or dropped:

    privacy:
      stickyKey: hash       # the stickiness header's value (a user id): keep | hash | drop, default hash
      inputs: drop          # the request body: keep | hash | drop, default drop
      redact: [features.ssn]  # dotted body fields replaced by "[redacted]" when inputs are kept
      features: keep        # every watched feature: keep | hash | drop, default keep
      segments: keep        # every segment field of a fairness check, default keep
      fields: {zip: hash}   # per name, for features and segments, overriding the two above

`hash` is HMAC-SHA256 under the router's key (a Secret mounted into the router, never in the spec), written
as `"hmac:"` and the first 32 hex digits. The same value always gives the same hash, so equality survives:
fairness and segment checks, categorical drift checks and `modelrollout log erase` (given the key) work on
hashed values; order and distance do not, so a check that needs numbers cannot watch a hashed feature, and
nothing can watch a dropped one (the spec parser, `policies.spec`, rejects both).

Pure: parsing, and the hash of a value (hmac, hashlib); no files, no clocks.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Mapping

from policies.specreader import FIELD_PATH, Reader, SpecError

MODES = ("keep", "hash", "drop")
HASH_PREFIX = "hmac:"
HASH_HEX_DIGITS = 32
REDACTED = "[redacted]"
CATEGORICAL_METRICS = ("psi", "kl", "js", "hellinger", "chi2")
"""Drift metrics that compare categories only, so they still work on hashed values."""


@dataclass(frozen=True)
class PrivacySpec:
    sticky_key: str = "hash"
    inputs: str = "drop"
    redact: tuple[str, ...] = ()
    features: str = "keep"
    segments: str = "keep"
    fields: Mapping[str, str] = field(default_factory=dict)

    def feature_mode(self, name: str) -> str:
        return self.fields.get(name, self.features)

    def segment_mode(self, name: str) -> str:
        return self.fields.get(name, self.segments)

    def __hash__(self) -> int:          # frozen with a mapping field: hash what identifies it
        return hash((self.sticky_key, self.inputs, self.redact, self.features, self.segments,
                     tuple(sorted(self.fields.items()))))


def canonical_text(value: Any) -> str:
    """The text a scalar is hashed and matched as: a string as it is, true/false, an integral number without
    its `.0`, any other number as Python prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def keyed_hash(key: bytes, value: Any) -> str:
    """`hmac:` + the first 32 hex digits of HMAC-SHA256(key, `canonical_text(value)`), so the number 42 and
    the string "42" hash alike (a subject given on a command line must match either)."""
    digest = hmac.new(key, canonical_text(value).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:HASH_HEX_DIGITS]


def is_hashed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(HASH_PREFIX) and len(value) == len(HASH_PREFIX) + HASH_HEX_DIGITS


_PRIVACY_FIELDS = ("stickyKey", "inputs", "redact", "features", "segments", "fields")


def parse_privacy(r: "Reader | None") -> PrivacySpec:
    if r is None:
        return PrivacySpec()
    for k in r.data:
        if k not in _PRIVACY_FIELDS:
            raise SpecError(r.at(str(k)), f"unknown field; expected one of {', '.join(_PRIVACY_FIELDS)}")
    redact = []
    for i, p in enumerate(r.list("redact")):
        if not isinstance(p, str) or not FIELD_PATH.match(p):
            raise SpecError(f"{r.at('redact')}[{i}]", f"expected a dotted path like 'features.ssn', got {p!r}")
        redact.append(p)
    fields: dict[str, str] = {}
    per_field = r.sub("fields")
    if per_field is not None:
        for name, mode in per_field.data.items():
            if not isinstance(name, str) or not name:
                raise SpecError(per_field.path, f"expected field names as keys, got {name!r}")
            if mode not in MODES:
                raise SpecError(per_field.at(name), f"expected one of {', '.join(MODES)}, got {mode!r}")
            fields[name] = mode
    modes = {k: r.str(k, default, choices=MODES) for k, default in
             (("stickyKey", "hash"), ("inputs", "drop"), ("features", "keep"), ("segments", "keep"))}
    if redact and modes["inputs"] != "keep":
        raise SpecError(r.at("redact"), f"redacts kept inputs; spec.privacy.inputs is {modes['inputs']!r}")
    return PrivacySpec(sticky_key=modes["stickyKey"], inputs=modes["inputs"], redact=tuple(redact),
                       features=modes["features"], segments=modes["segments"], fields=fields)


def check_privacy(privacy: PrivacySpec, checks: tuple, path: str) -> None:
    """A check cannot watch a value the privacy settings drop, nor compare numbers they hash."""
    for i, c in enumerate(checks):
        watched = [(c.feature, privacy.feature_mode(c.feature or ""), "features")] + [
            (f, privacy.feature_mode(f), "features") for f in getattr(c, "features", ())]
        for name, mode, kind in watched + [(c.segment, privacy.segment_mode(c.segment or ""), "segments")]:
            if name is None:
                continue
            where = f"spec.privacy.fields.{name}" if name in privacy.fields else f"spec.privacy.{kind}"
            at = f"{path}[{i}].{'on' if kind == 'features' else 'segment'}"
            if mode == "drop":
                raise SpecError(at, f"{name!r} is dropped by {where}, so no check can compare it; hash it to "
                                    "compare without logging its values")
            if mode == "hash" and kind == "features" and c.metric not in CATEGORICAL_METRICS:
                raise SpecError(f"{path}[{i}].metric", f"feature {name!r} is hashed by {where}, which keeps only "
                                f"equality; expected one of {', '.join(CATEGORICAL_METRICS)}, got {c.metric!r}")
