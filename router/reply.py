"""The router's own answers as values: `Reply`, and `error_reply` for the JSON errors of docs/contracts.md."""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

JSON = "application/json"


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON


def error_reply(status: int, error: str, detail: str, headers: list | None = None) -> Reply:
    return Reply(status, orjson.dumps({"error": error, "detail": detail}), headers or [])
