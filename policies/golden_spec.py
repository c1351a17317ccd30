"""The `golden` step's settings and the golden set's format (pure: parsing only).

A golden step (`spec.strategy.steps[i].golden`) names a set of requests, each with an optional expected
output, read from a ConfigMap of the rollout's namespace (`configMap: {name, key}`), from a URL (`url`) or
written inline (`requests`). Before any user traffic reaches the candidate, both versions answer every
request of the set (through the router, the way they answer live requests) and the checks of
`policies.golden` judge the paired answers. docs/contracts.md "The golden step" describes it.

The set's text (a ConfigMap key, a URL's body) is a JSON array or JSON Lines of objects
`{"request": BODY, "expected": OUTPUT, "id": "..."}`: `request` (required) is the JSON body sent to both
versions' `predictPath`, `expected` (optional) what the model should answer at `spec.output.path`, `id`
(optional) a name shown in the reasons.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from policies.specreader import Reader, SpecError, url_field

GOLDEN_SET_LABEL = "modelrollout.io/golden-set"
"""A ConfigMap the controller reads as a golden set must carry this label with the value "true": a rollout's
author could otherwise have any ConfigMap of the namespace sent to URLs of their choosing (its versions)."""
MAX_CASES = 1000
"""Most requests a golden set may hold."""
MAX_SET_BYTES = 4 * 1024 * 1024
"""Largest golden set text (a ConfigMap holds at most 1 MiB anyway)."""

GOLDEN_METRICS = ("golden-errors", "golden-agreement", "golden-max-abs-delta", "golden-mean-abs-delta",
                  "golden-accuracy")
"""The golden step's checks, each named like its metric (so a user check may not take these names)."""


@dataclass(frozen=True)
class GoldenCase:
    """One request of the golden set."""
    request: Any
    expected: Any = None
    has_expected: bool = False
    id: str = ""


@dataclass(frozen=True)
class GoldenSpec:
    config_map: str | None = None
    key: str | None = None
    url: str | None = None
    requests: tuple[GoldenCase, ...] = ()
    """Inline requests (when neither configMap nor url is given)."""
    max_error_rate: float = 0.0
    """Share of the candidate's golden answers that may fail (5xx, 4xx, timeout, unreachable, NaN or
    unparsable output); 0 by default: a candidate that cannot answer a known-good request is broken."""
    min_agreement: float | None = None
    """Share of the paired answers that must agree (class: equal labels; ranking: same top item; score: same
    decision at `spec.output.threshold`)."""
    max_abs_delta: float | None = None
    """Scores: the largest |candidate − baseline| allowed on any golden request."""
    max_mean_abs_delta: float | None = None
    """Scores: the largest mean |candidate − baseline| allowed over the set."""
    min_accuracy: float | None = None
    """Share of the requests with an expected output the candidate must answer correctly."""
    tolerance: float = 1e-6
    """A numeric output equals a numeric expected output within this absolute tolerance."""

    def describe(self) -> str:
        """Where the set comes from, for the step's label: `golden set configmap/NAME[KEY]`."""
        if self.config_map is not None:
            return f"golden set configmap/{self.config_map}[{self.key}]"
        if self.url is not None:
            return f"golden set {self.url}"
        return f"golden set of {len(self.requests)} inline request(s)"

    def thresholds(self) -> tuple[tuple[str, float | None, float | None], ...]:
        """(check name, min, max) of each golden check this step judges, in order."""
        out: list[tuple[str, float | None, float | None]] = [("golden-errors", None, self.max_error_rate)]
        if self.min_agreement is not None:
            out.append(("golden-agreement", self.min_agreement, None))
        if self.max_abs_delta is not None:
            out.append(("golden-max-abs-delta", None, self.max_abs_delta))
        if self.max_mean_abs_delta is not None:
            out.append(("golden-mean-abs-delta", None, self.max_mean_abs_delta))
        if self.min_accuracy is not None:
            out.append(("golden-accuracy", self.min_accuracy, None))
        return tuple(out)


def parse_golden(r: Reader, output_kind: str) -> GoldenSpec:
    """`steps[i].golden` → `GoldenSpec`; raises SpecError naming the field."""
    cm = r.sub("configMap")
    url = url_field(r, "url") if r.data.get("url") is not None else None
    inline = r.list("requests")
    given = [k for k, v in (("configMap", cm), ("url", url), ("requests", inline or None)) if v is not None]
    if len(given) != 1:
        raise SpecError(r.path, "expected exactly one source of golden requests: configMap {name, key}, url or "
                                f"requests, got {', '.join(given) if given else 'none'}")
    cases = tuple(_case(c, f"{r.at('requests')}[{i}]") for i, c in enumerate(inline))
    if len(cases) > MAX_CASES:
        raise SpecError(r.at("requests"), f"expected at most {MAX_CASES} requests, got {len(cases)}")
    g = GoldenSpec(
        config_map=cm.str("name", required=True) if cm else None, key=cm.str("key", required=True) if cm else None,
        url=url, requests=cases,
        max_error_rate=r.num("maxErrorRate", 0.0, lo=0.0, hi=1.0),
        min_agreement=r.num("minAgreement", lo=0.0, hi=1.0),
        max_abs_delta=r.num("maxAbsDelta", lo=0.0), max_mean_abs_delta=r.num("maxMeanAbsDelta", lo=0.0),
        min_accuracy=r.num("minAccuracy", lo=0.0, hi=1.0), tolerance=r.num("tolerance", 1e-6, lo=0.0),
    )
    if output_kind not in ("score",):
        for key in ("maxAbsDelta", "maxMeanAbsDelta"):
            if r.data.get(key) is not None:
                raise SpecError(r.at(key), f"|Δ| compares scores; spec.output.kind is {output_kind!r} "
                                           "(use minAgreement)")
    if output_kind == "embedding" and g.min_agreement is not None:
        raise SpecError(r.at("minAgreement"), "agreement compares classes, top items or score decisions; "
                                              "spec.output.kind is 'embedding'")
    return g


def _case(raw: Any, path: str) -> GoldenCase:
    if not isinstance(raw, dict):
        raise SpecError(path, f"expected an object {{request, expected?, id?}}, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in ("request", "expected", "id"))
    if unknown:
        raise SpecError(f"{path}.{unknown[0]}", "unknown field; a golden request has request, expected and id")
    if raw.get("request") is None:
        raise SpecError(f"{path}.request", "required field is missing (the JSON body sent to both versions)")
    cid = raw.get("id", "")
    if not isinstance(cid, (str, int)) or isinstance(cid, bool):
        raise SpecError(f"{path}.id", f"expected a string, got {cid!r}")
    expected = raw.get("expected")
    if isinstance(expected, float) and not math.isfinite(expected):
        raise SpecError(f"{path}.expected", f"expected a finite number, got {expected!r}")
    return GoldenCase(raw["request"], expected, "expected" in raw and expected is not None, str(cid))


def parse_set(text: str, source: str) -> tuple[GoldenCase, ...]:
    """A golden set's text (JSON array or JSON Lines) → its cases; raises SpecError naming the source and
    the line or index of what is wrong."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_SET_BYTES:
        raise SpecError(source, f"golden set larger than {MAX_SET_BYTES} bytes")
    stripped = text.strip()
    if not stripped:
        raise SpecError(source, "golden set is empty")
    items: list[tuple[str, Any]] = []
    if stripped.startswith("["):
        try:
            doc = json.loads(stripped)
        except ValueError as e:
            raise SpecError(source, f"not a JSON array: {e}") from e
        items = [(f"{source}[{i}]", x) for i, x in enumerate(doc)]
    else:
        for n, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((f"{source} line {n}", json.loads(line)))
            except ValueError as e:
                raise SpecError(f"{source} line {n}", f"not a JSON object: {e}") from e
    if not items:
        raise SpecError(source, "golden set is empty")
    if len(items) > MAX_CASES:
        raise SpecError(source, f"expected at most {MAX_CASES} golden requests, got {len(items)}")
    return tuple(_case(x, where) for where, x in items)
