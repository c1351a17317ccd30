"""Input expectations (`spec.expectations`): what the live inputs must look like for a window to judge a model.

In the spirit of Great Expectations, per watched feature (read at `spec.features.path` in each request):

    expectations:
      rows: {min: 100}                 # live requests per analysis window (both versions); max too
      features:
        - {name: amount, type: number, maxNullRate: 0.01, min: 0, max: 10000}
        - {name: country, type: string, in: [FR, DE, US], mostly: 0.99}

`maxNullRate` bounds the share of rows whose feature is null or missing; `type`, `min`/`max` and `in` hold for
at least the share `mostly` (default 1) of the non-null values. This module parses them and classifies one
value (`issue`); the router classifies every live request's raw values before the privacy settings apply
(`router.privacy`), so expectations work on hashed and dropped features too. `policies.input_checks` judges a
window. Pure: no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from policies.privacy import canonical_text
from policies.specreader import Reader, SpecError

TYPES = ("number", "integer", "string", "boolean")
"""`type` values. Booleans reach the router's record as the strings "true"/"false" (`router.extract.scalar`)."""
INPUT_CHECK = "input-expectations"
"""The name (and metric) under which the expectations' verdict appears among the checks in status; no check of
the spec may take it."""
EXPECTATION_NAMES = {"null": "notNull", "type": "type", "range": "range", "in": "in", "rows": "rows"}
"""How each kind of issue is named in status, Events and metrics."""
_FEATURE_KEYS = ("name", "type", "maxNullRate", "min", "max", "in", "mostly")
_KEYS = ("rows", "features")
MAX_ALLOWED = 1000
"""Values an `in` list may hold."""


@dataclass(frozen=True)
class FeatureExpectation:
    name: str
    type: str | None = None
    max_null_rate: float | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    """The `in` values as `canonical_text` (42 and "42" alike), sorted; None when not checked."""
    mostly: float = 1.0

    @property
    def checks_values(self) -> bool:
        return self.type is not None or self.min is not None or self.max is not None or self.allowed is not None


@dataclass(frozen=True)
class ExpectationsSpec:
    rows_min: int | None = None
    rows_max: int | None = None
    features: tuple[FeatureExpectation, ...] = ()

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


def parse_expectations(r: Reader | None, features_path: str | None) -> ExpectationsSpec | None:
    """`spec.expectations` (None when absent); SpecError names the field."""
    if r is None:
        return None
    _known(r, _KEYS)
    rows = r.sub("rows")
    rows_min = rows_max = None
    if rows is not None:
        _known(rows, ("min", "max"))
        rows_min = rows.num("min", None, lo=0, integer=True)
        rows_max = rows.num("max", None, lo=0, integer=True)
        if rows_min is None and rows_max is None:
            raise SpecError(rows.path, "expected a bound: min or max")
        if rows_min is not None and rows_max is not None and rows_min > rows_max:
            raise SpecError(rows.at("max"), f"expected max >= min {rows_min}, got {rows_max}")
    features = []
    seen: set[str] = set()
    raw = r.list("features")
    if len(raw) > 64:
        raise SpecError(r.at("features"), f"expected at most 64 features, got {len(raw)}")
    for i, item in enumerate(raw):
        features.append(_feature(Reader(item, f"{r.at('features')}[{i}]"), seen))
    if features and features_path is None:
        raise SpecError(r.at("features"), "feature expectations read the request's features: set spec.features.path")
    if not features and rows is None:
        raise SpecError(r.path, "expected rows or features")
    return ExpectationsSpec(rows_min, rows_max, tuple(features))


def _known(r: Reader, keys: tuple[str, ...]) -> None:
    for k in r.data:
        if k not in keys:
            raise SpecError(r.at(str(k)), f"unknown field; expected one of {', '.join(keys)}")


def _feature(r: Reader, seen: set[str]) -> FeatureExpectation:
    _known(r, _FEATURE_KEYS)
    name = r.str("name", required=True)
    if name in seen:
        raise SpecError(r.at("name"), f"duplicate feature {name!r}")
    seen.add(name)
    lo, hi = r.num("min"), r.num("max")
    if lo is not None and hi is not None and lo > hi:
        raise SpecError(r.at("max"), f"expected max >= min {lo:g}, got {hi:g}")
    allowed = None
    values = r.list("in")
    if "in" in r.data:
        if not values or len(values) > MAX_ALLOWED:
            raise SpecError(r.at("in"), f"expected a list of 1 to {MAX_ALLOWED} allowed values, got {len(values)}")
        for j, v in enumerate(values):
            if not isinstance(v, str):
                raise SpecError(f"{r.at('in')}[{j}]", f"expected a string (numbers as '42', booleans as 'true'), "
                                                      f"got {v!r}")
        allowed = tuple(sorted({canonical_text(v) for v in values}))
    exp = FeatureExpectation(name, type=r.str("type", choices=TYPES), max_null_rate=r.num("maxNullRate", lo=0.0, hi=1.0),
                             min=lo, max=hi, allowed=allowed, mostly=r.num("mostly", 1.0, lo=0.0, hi=1.0))
    if exp.type in ("string", "boolean") and (lo is not None or hi is not None):
        raise SpecError(r.at("type"), f"min and max hold numbers; type is {exp.type!r}")
    if exp.max_null_rate is None and not exp.checks_values:
        raise SpecError(r.path, f"feature {name!r} needs an expectation: type, maxNullRate, min, max or in")
    if "mostly" in r.data and not exp.checks_values:
        raise SpecError(r.at("mostly"), "mostly applies to type, min, max and in")
    return exp


def issue(exp: FeatureExpectation, value: Any) -> str | None:
    """The first expectation `value` breaks (`policies.summaries.ISSUE_KINDS`: null, type, range, in), or None.

    `value` is as the router records a feature: a number, a string (booleans as "true"/"false") or None
    (null, missing, or not a scalar)."""
    if value is None:
        return "null"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    t = exp.type
    if t is not None:
        if t == "number":
            ok = number
        elif t == "integer":
            ok = number and (isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()))
        elif t == "string":
            ok = isinstance(value, str)
        else:
            ok = value in ("true", "false") or isinstance(value, bool)
        if not ok:
            return "type"
    if exp.min is not None or exp.max is not None:
        if not number:
            return "type"
        if not math.isfinite(value) or (exp.min is not None and value < exp.min) or (
                exp.max is not None and value > exp.max):
            return "range"
    if exp.allowed is not None and canonical_text(value) not in exp.allowed:
        return "in"
    return None


def issues(spec: ExpectationsSpec, features: Mapping[str, Any] | None) -> dict[str, str] | None:
    """{feature: issue kind} of one request's recorded features (a feature absent is null), or None when every
    expectation holds."""
    out = None
    get = features.get if features else None
    for exp in spec.features:
        kind = issue(exp, get(exp.name) if get is not None else None)
        if kind is not None:
            if out is None:
                out = {}
            out[exp.name] = kind
    return out
