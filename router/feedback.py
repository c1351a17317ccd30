"""Request ids the router issued, remembered for a bounded time so feedback can be joined to them once.

Feedback for an id the router never issued (forged), forgot (expired or evicted) or already credited
(replayed) is refused, so clicks or labels cannot be replayed to tilt a result.

The table holds up to `max_ids` entries (default 200,000). Each entry is kept as one small bytes value
(about 150 B) in a plain dict, which the garbage collector never has to scan: a table of Python objects
this size would add tens of milliseconds to every full collection, i.e. to the router's tail latency.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from policies.errors import RouterError

_USED = b""


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
    propensity: float = 1.0
    """The probability with which the router chose `arm` for this request (the canary weight's share)."""

    def pack(self) -> bytes:
        teams = list(self.teams.items()) if self.teams is not None else None   # item ids may be ints
        return orjson.dumps((self.rollout_key, self.revision, self.arm, self.version, self.output, self.segments,
                             teams, self.issued_at, self.propensity))

    @classmethod
    def unpack(cls, data: bytes) -> "Issued":
        key, revision, arm, version, output, segments, teams, issued_at, propensity = orjson.loads(data)
        return cls(key, revision, arm, version, output, segments,
                   {item: team for item, team in teams} if teams is not None else None, issued_at, propensity)


class FeedbackRefused(RouterError):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class IssuedIds:
    """Issued ids with a time-to-live; about `max_ids` entries at most (oldest forgotten first).

    Entries live in `SEGMENTS` + 1 plain dicts filled in turn; the oldest dict is dropped whole when the
    table is full or its newest entry is past the TTL. Python containers of 200k items (a deque, an
    OrderedDict) would themselves be scanned by the collector; dicts of str -> bytes are not.
    """

    SEGMENTS = 16

    def __init__(self, ttl_seconds: float, max_ids: int):
        self.ttl = ttl_seconds
        self.max_ids = max_ids
        self._per_segment = max(1, -(-max_ids // self.SEGMENTS))
        self._segments: deque[dict[str, bytes]] = deque([{}])
        self._newest: deque[float] = deque([0.0])      # latest issue time in each segment
        self._older = 0                                 # entries in every segment but the newest

    def __len__(self) -> int:
        return self._older + len(self._segments[-1])

    def issue(self, request_id: str, entry: Issued) -> None:
        segment = self._segments[-1]
        if len(segment) >= self._per_segment:
            self._older += len(segment)
            segment = {}
            self._segments.append(segment)
            self._newest.append(entry.issued_at)
            while self._older + len(segment) > self.max_ids - self._per_segment and len(self._segments) > 1:
                self._drop_oldest()
        segment[request_id] = entry.pack()
        self._newest[-1] = max(self._newest[-1], entry.issued_at)

    def _drop_oldest(self) -> None:
        self._older -= len(self._segments.popleft())
        self._newest.popleft()

    def expire(self, now: float) -> None:
        """Forget whole segments whose newest id is older than the TTL."""
        while len(self._segments) > 1 and self._newest[0] < now - self.ttl:
            self._drop_oldest()
        if len(self._segments) == 1 and self._newest[0] < now - self.ttl:
            self._segments[0].clear()

    def claim(self, request_id: str, rollout_key: str, now: float) -> Issued:
        """The entry of `request_id`, now marked used; raises FeedbackRefused (404 unknown/expired, 409 reused)."""
        for segment in reversed(self._segments):
            data = segment.get(request_id)
            if data is not None:
                break
        else:
            raise FeedbackRefused(404, "unknown request_id",
                                  f"request_id {request_id!r} was not issued by this router for rollout "
                                  f"{rollout_key} within the last {self.ttl:g}s")
        if data == _USED:
            raise FeedbackRefused(409, "duplicate feedback",
                                  f"feedback for request_id {request_id!r} was already accepted")
        entry = Issued.unpack(data)
        if entry.rollout_key != rollout_key:
            raise FeedbackRefused(404, "unknown request_id",
                                  f"request_id {request_id!r} was not issued by this router for rollout "
                                  f"{rollout_key} within the last {self.ttl:g}s")
        if now - entry.issued_at > self.ttl:
            raise FeedbackRefused(404, "expired request_id",
                                  f"request_id {request_id!r} is older than the feedback window of {self.ttl:g}s")
        segment[request_id] = _USED
        return entry
