"""`spec.fallback`: what the router answers when the version it chose fails.

A fallback is either a URL (a heuristic service, a rules engine: the request body is POSTed to it and its
JSON answer is served) or a static answer (a JSON value served as it is). The router uses it when the chosen
version's call fails in one of `FALLBACK_REASONS` (5xx, timeout, unreachable, an answer without a valid
prediction at `spec.output.path`: NaN, not JSON). The failure still counts against the version: its outcome
record and the summaries are exactly those without a fallback; the fallback is counted apart
(`modelrollout_router_fallback_total`) and flagged on the record (`fallback: served | failed`).

Pure parsing: the router (`router/fallback.py`) carries it out.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from policies.jsonpath import get_path, split_path
from policies.specreader import Reader, SpecError, url_field

FALLBACK_REASONS = ("http_5xx", "timeout", "unreachable", "invalid_output")
"""The failures of the chosen version that the fallback answers (the error kinds of the outcome record)."""
FALLBACK_HEADER = "x-modelrollout-fallback"
"""The response header of a fallback answer: the reason the version's own answer was not served."""
FALLBACK_RESULTS = ("served", "failed")
"""How a fallback ended: its answer was served, or it failed too (the caller got a 502 `fallback failed`)."""
DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True)
class FallbackSpec:
    """`url`: POST the request body there (the whole URL, path included) and serve its JSON answer; or
    `static`: serve this JSON text. Exactly one is set."""
    url: str | None = None
    static: bytes | None = None
    """The static answer as JSON text (bytes, so the spec stays hashable)."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds the router waits for the fallback URL."""

    @property
    def kind(self) -> str:
        return "url" if self.url is not None else "static"

    def describe(self) -> str:
        return self.url if self.url is not None else f"static answer {self.static.decode()[:80]}"


def _finite(value: Any) -> bool:
    """Whether a JSON value holds no NaN or infinity (they are not JSON)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def parse_fallback(r: Reader | None, output_path: str) -> FallbackSpec | None:
    """`spec.fallback` → FallbackSpec (None when absent); raises SpecError naming the field."""
    if r is None:
        return None
    unknown = sorted(str(k) for k in r.data if k not in ("url", "static", "timeout"))
    if unknown:
        raise SpecError(r.at(unknown[0]), "unknown field; expected url or static (and timeout)")
    has_url, has_static = r.data.get("url") is not None, "static" in r.data
    if has_url == has_static:
        raise SpecError(r.path, "expected exactly one of url (a fallback service) or static (a JSON answer)")
    timeout = r.duration("timeout", DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise SpecError(r.at("timeout"), f"expected a positive duration, got {r.data.get('timeout')!r}")
    if has_url:
        return FallbackSpec(url=url_field(r, "url"), timeout=timeout)
    if "timeout" in r.data:
        raise SpecError(r.at("timeout"), "applies to a fallback url only, not to a static answer")
    static = r.data["static"]
    if not isinstance(static, dict) or not _finite(static):
        raise SpecError(r.at("static"), f"expected a JSON object (the answer clients get, with the prediction at "
                                        f"spec.output.path {output_path!r}), got {static!r}"[:300])
    if get_path(static, split_path(output_path), None) is None:
        raise SpecError(r.at("static"), f"expected the prediction at spec.output.path {output_path!r} in the "
                                        f"static answer, got {static!r}"[:300])
    try:
        text = json.dumps(static, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise SpecError(r.at("static"), f"expected a JSON value, got {static!r}: {e}"[:300]) from None
    return FallbackSpec(static=text)
