"""The spec parser's primitives: `SpecError` (every rejection names its field path) and `Reader`, typed access
to one mapping of a document. `policies.spec` parses the ModelRollout with them, and so do the modules it
delegates parts of the spec to (`policies.notifications`, `policies.privacy`)."""
from __future__ import annotations

import re
from typing import Any, Mapping

from policies.errors import InvalidInput

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
FIELD_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
"""A dotted path into a JSON document, like `features.ssn`."""


class SpecError(InvalidInput, ValueError):
    """A spec that can never work as written: permanent, reported as the `InvalidSpec` condition."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def parse_duration(value: Any, path: str = "duration") -> float:
    """Seconds from `500ms`, `30s`, `5m`, `1h`, `1h30m` (or a bare number of seconds)."""
    if isinstance(value, bool):
        raise SpecError(path, f"expected a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise SpecError(path, f"expected a non-negative duration, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"expected a duration like 30s, 5m or 1h, got {value!r}")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value):
        raise SpecError(path, f"expected a duration like 30s, 5m or 1h, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest of `1h`, `5m`, `30s`, `1.5s` that says `seconds`."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class Reader:
    """Typed access to one mapping that names the path of whatever it rejects."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, Mapping):
            raise SpecError(path, f"expected a mapping, got {type(data).__name__} {data!r}")
        self.data, self.path = data, path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def _get(self, key, required):
        if key == "on" and key not in self.data:
            # YAML 1.1 reads a bare `on:` key as the boolean true (PyYAML), and kubectl's YAML→JSON step
            # turns that into the string "true"; `on` is the public spelling, so accept all three.
            for alias in (True, "true"):
                if alias in self.data:
                    key = alias
                    break
        if key not in self.data or self.data[key] is None:
            if required:
                raise SpecError(self.at(key), "required field is missing")
            return None
        return self.data[key]

    def str(self, key, default=None, required=False, pattern=None, choices=None, what=None):
        v = self._get(key, required)
        if v is None:
            return default
        if not isinstance(v, str) or not v:
            raise SpecError(self.at(key), f"expected a non-empty string, got {v!r}")
        if choices is not None and v not in choices:
            raise SpecError(self.at(key), f"expected one of {', '.join(choices)}, got {v!r}")
        if pattern is not None and not pattern.match(v):
            raise SpecError(self.at(key), f"expected {what or pattern.pattern}, got {v!r}")
        return v

    def num(self, key, default=None, required=False, lo=None, hi=None, integer=False):
        v = self._get(key, required)
        if v is None:
            return default
        kind = "an integer" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            raise SpecError(self.at(key), f"expected {kind}, got {v!r}")
        if v != v:
            raise SpecError(self.at(key), f"expected {kind}, got NaN")
        if lo is not None and v < lo:
            raise SpecError(self.at(key), f"expected {kind} >= {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise SpecError(self.at(key), f"expected {kind} <= {hi}, got {v!r}")
        return int(v) if integer else float(v)

    def bool(self, key, default=False):
        v = self._get(key, False)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise SpecError(self.at(key), f"expected true or false, got {v!r}")
        return v

    def duration(self, key, default=None, required=False):
        v = self._get(key, required)
        return default if v is None else parse_duration(v, self.at(key))

    def sub(self, key, required=False) -> "Reader | None":
        v = self._get(key, required)
        return None if v is None else Reader(v, self.at(key))

    def list(self, key) -> list:
        v = self._get(key, False)
        if v is None:
            return []
        if not isinstance(v, list):
            raise SpecError(self.at(key), f"expected a list, got {type(v).__name__}")
        return v


def url_field(r: Reader, key: str) -> str:
    u = r.str(key, required=True)
    if not (u.startswith("http://") or u.startswith("https://")):
        raise SpecError(r.at(key), f"expected an http:// or https:// URL, got {u!r}")
    return u.rstrip("/")
