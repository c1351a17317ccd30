"""Feedback ids: self-contained, signed tokens, so a click or label posted to any router replica counts.

Each prediction's answer carries `x-feedback-id`: everything crediting its feedback needs (rollout,
candidate revision, the arm and version that answered, the prediction, the segment values, the
interleaving teams, when it was issued, the request id), signed with HMAC-SHA256 under a key every replica
shares (`--feedback-key-file`, a mounted Secret). Any replica verifies it without having seen the
prediction; one it cannot verify (forged, altered, signed with a key rotated out, for another rollout) or
older than the TTL is refused.

Format (docs/contracts.md "Feedback"): `mrf1.KID.PAYLOAD.MAC`, where PAYLOAD is base64url (no padding) of
the JSON array `[rollout, revision, arm, version, issued_at, request_id, output, segments, teams,
propensity]`, KID the first 8 hex digits of SHA-256 of the signing key, and MAC base64url of the first 16
bytes of HMAC-SHA256(key, "mrf1.KID.PAYLOAD"). Tokens are signed, not encrypted: they hold only what the caller sent
or was answered.

Each replica remembers the tokens it accepted (by MAC) until they expire, so a token counts at most once
per replica, and the tokens it issued by request id, so feedback naming a `request_id` works on the replica
that answered it. Both tables hold up to `max_ids` entries as plain dicts of str -> bytes, which the
garbage collector never has to scan (a table of Python objects this size would add tens of milliseconds to
every full collection, i.e. to the router's tail latency).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from policies.errors import RouterError

log = logging.getLogger("modelrollout.router.feedback")

PREFIX = "mrf1"
MAX_OUTPUT_BYTES = 2048
"""A prediction larger than this (as JSON, e.g. an embedding) is left out of its token (`output` null)."""
MAX_TOKEN = 16384
"""Longer `feedback_id`s are refused unread."""
_MAC_BYTES = 16


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
    request_id: str = ""


class FeedbackRefused(RouterError):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class FeedbackKeys:
    """The keys feedback ids are signed and verified with: the first key of the file signs, every key in it
    verifies (one per line, at least 16 bytes each), so keys rotate without refusing ids in flight. The file
    is re-read when it changes (a mounted Secret is updated in place). Without a file, a random key for this
    process only: then only this replica accepts its own ids."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self._stamp: tuple | None = None
        self.keys: dict[str, bytes] = {}
        self.signing = ""
        self.source = "random"
        if self.path is None:
            log.info("no --feedback-key-file: feedback ids are signed with a random key of this process, so "
                     "only this replica accepts them")
            self._use([os.urandom(32)])
        else:
            self.reload()

    def _use(self, keys: list[bytes]) -> None:
        self.keys = {key_id(k): k for k in keys}
        self.signing = key_id(keys[0])
        # keyed HMAC states to copy per message: the key schedule is computed once, not per prediction
        self._macs = {kid: hmac.new(k, digestmod=hashlib.sha256) for kid, k in self.keys.items()}

    def reload(self) -> bool:
        """Read the key file if it changed; True when the keys changed. A missing, unreadable or invalid file
        keeps the keys in use (a random one at start), logged."""
        assert self.path is not None
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            keys = [line.strip() for line in self.path.read_bytes().splitlines() if line.strip()]
            short = [i for i, k in enumerate(keys) if len(k) < 16]
            if not keys or short:
                raise ValueError(f"expected one key of at least 16 bytes per line, got {len(keys)} key(s)"
                                 + (f", line(s) {', '.join(str(i + 1) for i in short)} too short" if short else ""))
        except (OSError, ValueError) as e:
            if not self.keys:
                log.warning("--feedback-key-file %s: %s; feedback ids are signed with a random key of this "
                            "process, so only this replica accepts them", self.path, e)
                self._use([os.urandom(32)])
            else:
                log.error("--feedback-key-file %s: %s; keeping the keys in use", self.path, e)
            return False
        self._use(keys)
        self.source = "file"
        log.info("feedback keys: %d from %s, signing with %s", len(keys), self.path, self.signing)
        return True

    def sign(self, message: bytes, kid: str | None = None) -> bytes:
        mac = self._macs[kid or self.signing].copy()
        mac.update(message)
        return mac.digest()[:_MAC_BYTES]


class _Table:
    """str -> bytes entries with an issue time, about `max_ids` at most, forgotten oldest first and once
    expired. Entries live in `SEGMENTS` + 1 plain dicts filled in turn; the oldest dict is dropped whole when
    the table is full or every entry in it has expired. Python containers of 200k items (a deque, an
    OrderedDict) would themselves be scanned by the collector; dicts of str -> bytes are not."""

    SEGMENTS = 16

    def __init__(self, max_ids: int):
        self.max_ids = max_ids
        self._per_segment = max(1, -(-max_ids // self.SEGMENTS))
        self._segments: deque[dict[str, bytes]] = deque([{}])
        self._newest: deque[float] = deque([0.0])      # latest issue time of the entries in each segment
        self._older = 0                                 # entries in every segment but the newest

    def __len__(self) -> int:
        return self._older + len(self._segments[-1])

    def get(self, key: str) -> bytes | None:
        for segment in reversed(self._segments):
            value = segment.get(key)
            if value is not None:
                return value
        return None

    def put(self, key: str, value: bytes, issued_at: float) -> None:
        segment = self._segments[-1]
        if len(segment) >= self._per_segment:
            self._older += len(segment)
            segment = {}
            self._segments.append(segment)
            self._newest.append(issued_at)
            while self._older + len(segment) > self.max_ids - self._per_segment and len(self._segments) > 1:
                self._drop_oldest()
        segment[key] = value
        self._newest[-1] = max(self._newest[-1], issued_at)

    def _drop_oldest(self) -> None:
        self._older -= len(self._segments.popleft())
        self._newest.popleft()

    def expire(self, before: float) -> None:
        """Forget whole segments whose newest entry was issued before `before`."""
        while len(self._segments) > 1 and self._newest[0] < before:
            self._drop_oldest()
        if len(self._segments) == 1 and self._newest[0] < before:
            self._segments[0].clear()


def payload(request_id: str, entry: Issued) -> bytes:
    """The JSON array a feedback id carries (PAYLOAD before its base64url)."""
    output = entry.output
    if output is not None and len(orjson.dumps(output, option=orjson.OPT_SERIALIZE_NUMPY)) > MAX_OUTPUT_BYTES:
        output = None
    teams = None
    if entry.teams is not None:
        output = list(entry.teams)                 # the merged ranking; teams in the same order
        teams = "".join(entry.teams.values())
    return orjson.dumps((entry.rollout_key, entry.revision, entry.arm, entry.version, entry.issued_at, request_id,
                         output, entry.segments, teams, entry.propensity), option=orjson.OPT_SERIALIZE_NUMPY)


class UnsignedIds:
    """The feedback ids of answers nobody has seen an id for, kept unsigned by request id: the router's worker
    records transparent-mode answers (whose head left before their prediction was read, so they carry no
    `x-feedback-id`) and keeps their payloads here; feedback naming such a `request_id` asks the worker for
    the payload and the router signs it (`IssuedIds.signed`) — signing only the few ids feedback asks for,
    with the router's keys. Bounded and expiring like `IssuedIds`' tables."""

    def __init__(self, ttl_seconds: float, max_ids: int):
        self.ttl = ttl_seconds
        self._table = _Table(max_ids)
        self._expired = 0.0

    def __len__(self) -> int:
        return len(self._table)

    def issue(self, request_id: str, entry: Issued) -> None:
        """Remember `entry` by request id (no id is returned: nobody will see it)."""
        if entry.issued_at - self._expired >= 1.0:
            self._expired = entry.issued_at
            self._table.expire(entry.issued_at - self.ttl)
        self._table.put(request_id, payload(request_id, entry), entry.issued_at)

    def get(self, request_id: str) -> bytes | None:
        return self._table.get(request_id)


class IssuedIds:
    """Issues signed feedback ids and accepts each at most once (per replica) within the TTL.

    Two bounded tables (`max_ids` entries each): the ids this replica accepted (by MAC), and the ids it
    issued by request id, so that feedback naming only a `request_id` still works on the replica that
    answered (answers whose head left before the prediction was read, in transparent mode, carry no
    `x-feedback-id`)."""

    def __init__(self, ttl_seconds: float, max_ids: int, keys: FeedbackKeys | None = None):
        self.ttl = ttl_seconds
        self.max_ids = max_ids
        self.keys = keys or FeedbackKeys()
        self._used = _Table(max_ids)
        self._issued = _Table(max_ids)
        self._checked = 0.0

    def __len__(self) -> int:
        return len(self._used)

    # --- issuing -----------------------------------------------------------------------------------

    def issue(self, request_id: str, entry: Issued) -> str:
        """The signed feedback id of a prediction (sent back as `x-feedback-id`), also remembered here by
        request id."""
        token = self.signed(payload(request_id, entry))
        self._issued.put(request_id, token.encode("ascii"), entry.issued_at)
        return token

    def signed(self, data: bytes) -> str:
        """The feedback id of a `payload` (signed with the current signing key)."""
        head = f"{PREFIX}.{self.keys.signing}.{_b64(data)}"
        return f"{head}.{_b64(self.keys.sign(head.encode('ascii')))}"

    # --- accepting ---------------------------------------------------------------------------------

    def by_request_id(self, request_id: str, rollout_key: str) -> str:
        """The feedback id this replica issued for `request_id`; FeedbackRefused (404) when it issued none
        (another replica answered it, or it is forgotten)."""
        token = self._issued.get(request_id) if isinstance(request_id, str) else None
        if token is None:
            raise FeedbackRefused(404, "unknown request_id",
                                  f"request_id {request_id!r} was not issued by this router replica for rollout "
                                  f"{rollout_key} within the last {self.ttl:g}s; send feedback_id (the "
                                  f"x-feedback-id header of the answer) to reach any replica")
        return token.decode("ascii")

    def claim(self, token: str, rollout_key: str, now: float) -> Issued:
        """The prediction `token` was issued for, now marked used; raises FeedbackRefused (404 unknown or
        expired, 409 already accepted here)."""
        entry, mac = self._verify(token, rollout_key)
        if now - entry.issued_at > self.ttl:
            raise FeedbackRefused(404, "expired feedback_id", f"feedback_id of request {entry.request_id!r} is older "
                                  f"than the feedback window of {self.ttl:g}s")
        if self._used.get(mac) is not None:
            raise FeedbackRefused(409, "duplicate feedback",
                                  f"feedback for request {entry.request_id!r} was already accepted")
        self._used.put(mac, b"", entry.issued_at)
        return entry

    def _verify(self, token: Any, rollout_key: str) -> tuple[Issued, str]:
        def unknown(why: str) -> FeedbackRefused:
            return FeedbackRefused(404, "unknown feedback_id", f"feedback_id was not issued by a router of this "
                                   f"installation for rollout {rollout_key}: {why}")

        parts = token.split(".") if isinstance(token, str) and len(token) <= MAX_TOKEN else []
        if len(parts) != 4 or parts[0] != PREFIX:
            raise unknown(f"expected {PREFIX}.KEY.PAYLOAD.MAC, the x-feedback-id header of the prediction's answer")
        _, kid, body, mac = parts
        if kid not in self.keys.keys:
            raise unknown(f"signed with an unknown key {kid!r} (rotated out, or another installation's)")
        try:        # the signature first: nothing unsigned is even decoded
            given = _unb64(mac)
            signed = f"{PREFIX}.{kid}.{body}".encode("ascii")
        except (binascii.Error, ValueError):
            raise unknown("not a token this router issued") from None
        if not hmac.compare_digest(given, self.keys.sign(signed, kid)):
            raise unknown("bad signature")
        try:
            key, revision, arm, version, issued_at, request_id, output, segments, teams, propensity = \
                orjson.loads(_unb64(body))
            issued_at, propensity = float(issued_at), float(propensity)
        except (binascii.Error, TypeError, ValueError):
            raise unknown("unreadable payload") from None
        if key != rollout_key:
            raise unknown(f"it was issued for rollout {key}")
        team_map = dict(zip(output, teams)) if isinstance(teams, str) and isinstance(output, list) else None
        return Issued(key, revision, arm, version, output, segments, team_map, issued_at, propensity, request_id), mac

    def expire(self, now: float) -> None:
        """Forget what has expired; re-read the key file (at most once a second)."""
        self._used.expire(now - self.ttl)
        self._issued.expire(now - self.ttl)
        if self.keys.path is not None and now - self._checked >= 1.0:
            self._checked = now
            self.keys.reload()
