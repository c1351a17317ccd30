"""Request ids the router issued, remembered for a bounded time so feedback can be joined to them once.

Feedback for an id the router never issued (forged), forgot (expired or evicted) or already credited
(replayed) is refused, so clicks or labels cannot be replayed to tilt a result.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Issued:
    """What a prediction's feedback needs: where it went and what it answered."""
    rollout_key: str
    revision: str
    arm: str                       # baseline | candidate | interleave
    version: str
    output: Any
    segments: dict | None
    teams: dict | None             # item id -> "a" (baseline) | "b" (candidate), interleaved requests only
    issued_at: float
    used: bool = False


class FeedbackRefused(Exception):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class IssuedIds:
    """An LRU of issued ids with a time-to-live; at most `max_ids` entries."""

    def __init__(self, ttl_seconds: float, max_ids: int):
        self.ttl = ttl_seconds
        self.max_ids = max_ids
        self._ids: OrderedDict[str, Issued] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def issue(self, request_id: str, entry: Issued) -> None:
        ids = self._ids
        ids[request_id] = entry
        ids.move_to_end(request_id)
        while len(ids) > self.max_ids:
            ids.popitem(last=False)

    def expire(self, now: float) -> None:
        """Forget ids older than the TTL (oldest first, so this stops at the first young one)."""
        ids, limit = self._ids, now - self.ttl
        while ids:
            first = next(iter(ids.values()))
            if first.issued_at >= limit:
                break
            ids.popitem(last=False)

    def claim(self, request_id: str, rollout_key: str, now: float) -> Issued:
        """The entry of `request_id`, marked used; raises FeedbackRefused (404 unknown/expired, 409 reused)."""
        entry = self._ids.get(request_id)
        if entry is None or entry.rollout_key != rollout_key:
            raise FeedbackRefused(404, "unknown request_id",
                                  f"request_id {request_id!r} was not issued by this router for rollout "
                                  f"{rollout_key} within the last {self.ttl:g}s")
        if now - entry.issued_at > self.ttl:
            del self._ids[request_id]
            raise FeedbackRefused(404, "expired request_id",
                                  f"request_id {request_id!r} is older than the feedback window of {self.ttl:g}s")
        if entry.used:
            raise FeedbackRefused(409, "duplicate feedback",
                                  f"feedback for request_id {request_id!r} was already accepted")
        entry.used = True
        return entry
