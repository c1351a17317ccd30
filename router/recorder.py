"""Per-rollout, per-window mergeable summaries built from outcome records.

The request path appends each outcome record (the same dict the prediction log writes) to a list; `flush()`
folds the list into `policies.summaries` windows keyed by (epoch-aligned bucket start, revision), and drops
windows older than the retention. Because the fold reads only log records, `replay()` rebuilds exactly the
same windows from a prediction log.

Memory is bounded per rollout: at most retention/bucket windows per revision seen in that time (180 for the
default 15m/5s), each holding two VersionWindows, a PairedSummary and an InterleaveSummary. A VersionWindow
holds one NumericSummary per numeric value watched (the score, each numeric feature), 2 x reservoir x 16 B
(64 KiB at the default reservoir of 2,048), plus < 2 KiB of histograms and counts. A score rollout with one
watched numeric feature therefore needs about 4 x 64 KiB = 0.26 MiB per busy window, at most ~46 MiB at
15m/5s; `--reservoir` and `--retention` trade that against sample size and history.
"""
from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, Iterable

from policies.spec import RolloutSpec
from policies.summaries import InterleaveSummary, PairedSummary, VersionWindow, key_from_request_id

ARMS = ("baseline", "candidate")


class Windows:
    """Everything one replica recorded for one rollout, revision and bucket."""
    __slots__ = ("start", "end", "revision", "baseline", "candidate", "paired", "interleave")

    def __init__(self, start: float, end: float, revision: str, output_kind: str, reservoir: int):
        self.start, self.end, self.revision = start, end, revision
        self.baseline = VersionWindow.new(output_kind, capacity=reservoir)
        self.candidate = VersionWindow.new(output_kind, capacity=reservoir)
        self.paired: PairedSummary | None = None
        self.interleave: InterleaveSummary | None = None

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "revision": self.revision,
                "baseline": self.baseline.to_dict(), "candidate": self.candidate.to_dict(),
                "paired": self.paired.to_dict() if self.paired is not None else None,
                "interleave": self.interleave.to_dict() if self.interleave is not None else None}


def _positive(spec: RolloutSpec, output: Any) -> bool:
    if spec.output.kind == "score":
        return isinstance(output, (int, float)) and output >= spec.output.threshold
    if spec.output.positive is not None:
        return str(output) == spec.output.positive
    return bool(output) and str(output).lower() not in ("0", "false", "no", "negative")


def _truthy(label: Any, spec: RolloutSpec) -> bool:
    if isinstance(label, bool):
        return label
    if isinstance(label, (int, float)):
        return label >= (spec.output.threshold if spec.output.kind == "score" and 0 < label < 1 else 1)
    return _positive(spec, label)


def fold(w: Windows, rec: dict, spec: RolloutSpec) -> None:
    """Add one outcome record to its window."""
    role = rec.get("role")
    arm = rec.get("arm")
    if role == "feedback":
        if "clicks" in rec:
            outcome = rec.get("outcome")
            if outcome is not None:
                if w.interleave is None:
                    w.interleave = InterleaveSummary()
                w.interleave.add(_WINNER[outcome])
        elif arm in ARMS:
            output, label = rec.get("output"), rec.get("label")
            predicted, actual = _positive(spec, output), _truthy(label, spec)
            correct = predicted == actual if spec.output.kind == "score" else str(output) == str(label)
            getattr(w, arm).segments.add_label(rec.get("segments") or {"all": "all"}, correct=correct,
                                               label_positive=actual, predicted_positive=predicted)
        return
    if arm not in ARMS:
        return
    vw: VersionWindow = getattr(w, arm)
    key = key_from_request_id(str(rec.get("request_id", "")))
    vw.requests += 1
    error = rec.get("error")
    if error:
        vw.add_error(error)
    if rec.get("status") is not None:
        vw.latency.add(rec.get("latency_ms", 0.0) / 1000.0)
    output = rec.get("output")
    if output is not None:
        vw.observe_prediction(output, key)
        segments = rec.get("segments")
        if segments:
            vw.segments.add(segments, positive=_positive(spec, output))
    for name, value in (rec.get("features") or {}).items():
        if value is not None:
            vw.observe_feature(name, value, key)
    primary = rec.get("primary_output")
    if role == "shadow" and output is not None and primary is not None:
        if w.paired is None:
            w.paired = PairedSummary()
        kind = spec.output.kind
        if kind == "score":
            w.paired.add(primary, output)
        elif kind == "ranking":
            w.paired.add_categorical(str(primary[0]) if primary else "", str(output[0]) if output else "")
        elif kind == "class":
            w.paired.add_categorical(str(primary), str(output))


_WINNER = {"win": "candidate", "loss": "baseline", "tie": "tie"}


class Recorder:
    """Windows of every rollout this replica serves, kept for `retention_seconds`."""

    def __init__(self, bucket_seconds: float = 5.0, retention_seconds: float = 900.0, reservoir: int = 2048):
        self.bucket = bucket_seconds
        self.retention = retention_seconds
        self.reservoir = reservoir
        self._pending: deque[tuple[RolloutSpec, dict]] = deque()
        self._windows: dict[str, dict[tuple[float, str], Windows]] = {}

    def configure(self, spec: RolloutSpec) -> None:
        self._windows.setdefault(spec.key, {})

    def add(self, spec: RolloutSpec, record: dict) -> None:
        """Queue one outcome record (cheap: the fold happens in `flush`)."""
        self._pending.append((spec, record))

    def bucket_start(self, t: float) -> float:
        return math.floor(t / self.bucket) * self.bucket

    def flush(self, now: float | None = None) -> None:
        """Fold every queued record into its window; drop windows older than the retention."""
        pending = self._pending
        while pending:
            spec, rec = pending.popleft()
            self._fold(spec, rec)
        if now is not None:
            self.prune(now)

    async def fold_queued(self, chunk: int = 16) -> None:
        """Fold queued records `chunk` at a time, yielding to the event loop in between, so recording
        never stalls requests for more than one chunk's worth of work."""
        pending = self._pending
        while pending:
            for _ in range(min(chunk, len(pending))):
                spec, rec = pending.popleft()
                self._fold(spec, rec)
            await asyncio.sleep(0)

    def prune(self, now: float) -> None:
        limit = now - self.retention
        for windows in self._windows.values():
            for k in [k for k, w in windows.items() if w.end < limit]:
                del windows[k]

    def _fold(self, spec: RolloutSpec, rec: dict) -> None:
        start = self.bucket_start(rec["time"])
        revision = rec.get("revision") or spec.revision
        windows = self._windows.setdefault(spec.key, {})
        w = windows.get((start, revision))
        if w is None:
            w = windows[(start, revision)] = Windows(start, start + self.bucket, revision, spec.output.kind, self.reservoir)
        fold(w, rec, spec)

    def windows(self, key: str, start: float | None = None, end: float | None = None) -> list[dict]:
        """Windows of rollout `key` with start <= window.start and window.end <= end, oldest first."""
        self.flush()
        out = []
        for (_, _), w in sorted(self._windows.get(key, {}).items()):
            if (start is None or start <= w.start) and (end is None or w.end <= end):
                out.append(w.to_dict())
        return out


def replay(records: Iterable[dict], spec: RolloutSpec, bucket_seconds: float = 5.0,
           reservoir: int = 2048) -> list[dict]:
    """The windows a router would have served for `spec`, rebuilt from its prediction log records."""
    rec = Recorder(bucket_seconds, float("inf"), reservoir)
    for r in records:
        if r.get("rollout") == spec.name and r.get("namespace") == spec.namespace:
            rec.add(spec, r)
    return rec.windows(spec.key)
