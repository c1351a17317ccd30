"""Offline validation of a document against the CRD's structural schema, as the apiserver would do it.

`lint` uses this to report every schema error at once (the apiserver also reports them all), with the
same field paths `kubectl apply` prints. It covers the keywords a structural schema may use: type,
properties, additionalProperties (a schema), required, enum, pattern, minimum/maximum, minLength,
min/maxItems, min/maxProperties, items, x-kubernetes-preserve-unknown-fields, x-kubernetes-list-type map keys, and the CRD's CEL rules
through their Python twins in `CEL_RULES` (a test keeps every rule of the CRD covered).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class SchemaError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


def _has(obj: Any, key: str) -> bool:
    return isinstance(obj, dict) and obj.get(key) is not None


# Python twins of the CEL rules in modelrollout/plugin/crd.py, keyed by the exact rule text.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "has(self.min) || has(self.max)":
        lambda s: _has(s, "min") or _has(s, "max"),
    "has(self.metric) != has(self.prometheus)":
        lambda s: _has(s, "metric") != _has(s, "prometheus"),
    "!has(self.metric) || has(self.max) || has(self.min) || has(self.minPValue)"
    " || has(self.maxRatioToBaseline) || has(self.minRatioToBaseline) || has(self.dynamic)":
        lambda s: not _has(s, "metric") or any(_has(s, k) for k in ("max", "min", "minPValue", "maxRatioToBaseline",
                                                                      "minRatioToBaseline", "dynamic")),
    "!has(self.metric) || !(self.metric in ['disparate-impact', 'equal-opportunity']) || has(self.segment)":
        lambda s: not _has(s, "metric") or s["metric"] not in ("disparate-impact", "equal-opportunity")
        or _has(s, "segment"),
    "[has(self.webhook), has(self.slack), has(self.pagerduty)].filter(x, x).size() == 1":
        lambda s: sum(_has(s, k) for k in ("webhook", "slack", "pagerduty")) == 1,
    "[has(self.configMap), has(self.url), has(self.requests)].filter(x, x).size() == 1":
        lambda s: sum(_has(s, k) for k in ("configMap", "url", "requests")) == 1,
    "has(self.url) != has(self.urlFrom)":
        lambda s: _has(s, "url") != _has(s, "urlFrom"),
    "!has(self.url)":
        lambda s: not _has(s, "url"),
    "!has(self.routingKey)":
        lambda s: not _has(s, "routingKey"),
    "!(has(self.url) && has(self.urlFrom))":
        lambda s: not (_has(s, "url") and _has(s, "urlFrom")),
    "!has(self.candidate) || has(self.strategy)":
        lambda s: not _has(s, "candidate") or _has(s, "strategy"),
    "!has(self.strategy) || !self.strategy.steps.exists(s, has(s.interleave))"
    " || (has(self.output) && has(self.output.kind) && self.output.kind == 'ranking')":
        lambda s: not _has(s, "strategy")
        or not any(_has(step, "interleave") for step in s["strategy"].get("steps") or [])
        or (_has(s, "output") and s["output"].get("kind") == "ranking"),
    "!has(self.analysis) || !has(self.analysis.checks)"
    " || !self.analysis.checks.exists(c, has(c.metric) && c.metric == 'attribution-tau')"
    " || (has(self.output) && has(self.output.attributions))":
        lambda s: not _has(s, "analysis") or not _has(s["analysis"], "checks")
        or not any(_has(c, "metric") and c["metric"] == "attribution-tau" for c in s["analysis"]["checks"])
        or (_has(s, "output") and _has(s["output"], "attributions")),
    "has(self.url) != has(self.static)":
        lambda s: _has(s, "url") != _has(s, "static"),
    "!has(self.timeout) || has(self.url)":
        lambda s: not _has(s, "timeout") or _has(s, "url"),
    "self.metric != 'equal-opportunity' || (has(self.segment) && has(self.minRatioToBaseline))":
        lambda s: s.get("metric") != "equal-opportunity" or (_has(s, "segment") and _has(s, "minRatioToBaseline")),
}

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def validate(value: Any, schema: dict, path: str = "") -> list[SchemaError]:
    """Every violation of `schema` by `value`, in document order (empty when valid)."""
    return list(_validate(value, schema, path))


def _validate(value: Any, schema: dict, path: str) -> Iterator[SchemaError]:
    if value is None:
        return  # absent/null optional fields are dropped by the apiserver before validation
    want = schema.get("type")
    if want and not _TYPES[want](value):
        yield SchemaError(path, f"Invalid value: {_show(value)}: must be of type {want}")
        return
    errors = list(_scalar(value, schema, path))
    if isinstance(value, dict):
        errors += _object(value, schema, path)
    elif isinstance(value, list):
        errors += _array(value, schema, path)
    yield from errors
    if errors:
        return  # like the apiserver, judge the rules only on a node whose own schema holds
    for rule in schema.get("x-kubernetes-validations", ()):
        check = CEL_RULES.get(rule["rule"])
        if check is None:
            continue
        try:
            ok = check(value)
        except (KeyError, TypeError, AttributeError):
            ok = True  # the rule's inputs are malformed: their own schema errors say so
        if not ok:
            where = _join(path, rule["fieldPath"].lstrip(".")) if rule.get("fieldPath") else path
            yield SchemaError(where, f"Invalid value: {rule['message']}")


def _scalar(value: Any, schema: dict, path: str) -> Iterator[SchemaError]:
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(_show(v) for v in schema["enum"])
        yield SchemaError(path, f"Unsupported value: {_show(value)}: supported values: {allowed}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield SchemaError(path, f"Invalid value: {_show(value)}: should match '{schema['pattern']}'")
        if len(value) < schema.get("minLength", 0):
            yield SchemaError(path, f"Invalid value: {_show(value)}: should be at least "
                                    f"{schema['minLength']} chars long")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            yield SchemaError(path, f"Invalid value: {value}: should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            yield SchemaError(path, f"Invalid value: {value}: should be less than or equal to {schema['maximum']}")


def _object(value: dict, schema: dict, path: str) -> Iterator[SchemaError]:
    props = schema.get("properties", {})
    # `kubectl apply` drops keys whose value is null (`- pause:`) before sending, so they count as absent.
    nulls = [_key(k) for k, v in value.items() if v is None]
    value = {k: v for k, v in value.items() if v is not None}
    hint = (f" ({', '.join(nulls)}: an empty value is dropped by kubectl apply; write {{}} for an empty object)"
            if nulls else "")
    for key in schema.get("required", ()):
        if value.get(key) is None:
            yield SchemaError(_join(path, key), "Required value" + hint)
    n = len(value)
    if n < schema.get("minProperties", 0):
        yield SchemaError(path, f"Invalid value: {n}: should have at least {schema['minProperties']} "
                                f"properties{hint}")
    if "maxProperties" in schema and n > schema["maxProperties"]:
        yield SchemaError(path, f"Too many: {n}: must have at most {schema['maxProperties']} items")
    strict = bool(props) and not schema.get("x-kubernetes-preserve-unknown-fields", False)
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        name = _key(key)
        if name in props:
            yield from _validate(item, props[name], _join(path, name))
        elif isinstance(extra, dict):
            yield from _validate(item, extra, _join(path, name))
        elif strict:
            yield SchemaError(_join(path, name or '""'), "unknown field")     # an empty key is named too


def _key(key: Any) -> str:
    """A mapping key as JSON sees it: YAML's boolean `on:` key becomes "true", as kubectl sends it."""
    if key is True:
        return "true"
    if key is False:
        return "false"
    return str(key)


def _array(value: list, schema: dict, path: str) -> Iterator[SchemaError]:
    if len(value) < schema.get("minItems", 0):
        yield SchemaError(path, f"Invalid value: {len(value)}: should have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        yield SchemaError(path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
    items = schema.get("items")
    if items:
        for i, item in enumerate(value):
            yield from _validate(item, items, f"{path}[{i}]")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys", ())
        seen: dict[tuple[str, ...], int] = {}
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            values = tuple(item.get(name) for name in keys)
            k = tuple(repr(v) for v in values)       # a key value may be a list or mapping (a wrong type)
            if k in seen:
                shown = ", ".join(f"{name}: {_show(v)}" for name, v in zip(keys, values, strict=True))
                yield SchemaError(f"{path}[{i}]", f"Duplicate value: map[{shown}]")
            seen[k] = i
