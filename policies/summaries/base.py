"""Constants, the error type, the `Summary` protocol and the request-id sampling key."""
from __future__ import annotations

import hashlib
from typing import Any, Mapping, Protocol

import numpy as np

from policies.errors import StatisticsError

OTHER = "__other__"
ERROR_KINDS = ("http_5xx", "timeout", "unreachable", "invalid_output")
LATENCY_EXCLUSIONS = {
    "stalled": "the router's process timing the call was starved of CPU or busy while the answer waited",
    "connect": "setting up the connection took so long the server's accept queue was overflowing",
}
"""Why a call's latency was left out of a window's latency summary (outcome record field `latency_excluded`)."""
OUTPUT_KINDS = ("score", "class", "embedding", "ranking")


class SummaryError(StatisticsError, ValueError):
    """A summary cannot be built, merged or decoded; the message names the field."""


class Summary(Protocol):
    """What every summary here is: mergeable and serialisable.

    `merge(other)` returns a new summary of the union of both (neither operand changes; `other` must be of the
    same type, `check_mergeable`); `to_dict()` is strict JSON and `from_dict(to_dict(s))` rebuilds `s`
    (SummaryError names a bad field). Merging is exact where the docstring of `policies.summaries` says so.
    """

    def merge(self, other: Any) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any: ...


def check_mergeable(summary: Summary, other: Any) -> None:
    """Raise SummaryError unless `other` can merge into `summary` (an instance of its type)."""
    if not isinstance(other, type(summary)):
        raise SummaryError(f"cannot merge {type(summary).__name__} with {type(other).__name__}")


def key_from_request_id(request_id: str) -> float:
    """A key in [0, 1) from a request id (BLAKE2b, 53 bits): the same request, the same key."""
    h = hashlib.blake2b(request_id.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(h, "little") >> 11) / float(1 << 53)


def _check_key(key: Any) -> float:
    if isinstance(key, bool) or not isinstance(key, (int, float, np.floating, np.integer)):
        raise SummaryError(f"key must be a number in [0, 1), got {key!r}")
    k = float(key)
    if not 0.0 <= k < 1.0:
        raise SummaryError(f"key must be in [0, 1), got {k!r}")
    return k
