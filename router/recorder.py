"""Per-rollout, per-window mergeable summaries built from outcome records.

The request path appends each outcome record (the same dict the prediction log writes) to a queue; off the
request path, `fold_queued()`/`flush()` take the queue in batches, group each batch by window and arm, and
add every summary's values with one vectorised `add_many` call (exactly what adding them one at a time
gives). Windows are keyed by (epoch-aligned bucket start, revision); those older than the retention are
dropped. Because the fold reads only log records, `replay()` rebuilds exactly the same windows from a
prediction log.

Memory is bounded per rollout: at most retention/bucket windows per revision seen in that time (180 for the
default 15m/5s), each holding two VersionWindows, a PairedSummary and an InterleaveSummary. A VersionWindow
holds one NumericSummary per numeric value watched (the score, each numeric feature), 2 x reservoir x 16 B
(64 KiB at the default reservoir of 2,048), plus < 2 KiB of histograms and counts. A score rollout with one
watched numeric feature therefore needs about 4 x 64 KiB = 0.26 MiB per busy window, at most ~46 MiB at
15m/5s; `--reservoir` and `--retention` trade that against sample size and history. A rollout with
`spec.output.attributions` adds an AttributionSummary (at most 64 features, ~10 KiB) per version window.
"""
from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, Iterable, Sequence

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
    excluded = rec.get("latency_excluded")
    if excluded:            # the router could not time this call fairly: counted, not in the latency
        vw.latency_excluded[excluded] = vw.latency_excluded.get(excluded, 0) + 1
    elif rec.get("status") is not None:
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
    attributions = rec.get("attributions")
    if attributions and output is not None:
        vw.observe_attributions(attributions)
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


class _ArmBatch:
    """The values of one arm's records in a batch, per summary, in record order."""
    __slots__ = ("requests", "errors", "latencies", "excluded", "outputs", "output_keys", "segment_ops", "features",
                 "attributions")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.excluded: list[str] = []
        self.outputs: list[Any] = []
        self.output_keys: list[float] = []
        self.segment_ops: list[tuple] = []      # predictions and labels share per-field value caps: keep order
        self.features: dict[str, tuple[list[Any], list[float]]] = {}
        self.attributions: list[dict] = []

    def apply(self, vw: VersionWindow) -> None:
        vw.requests += self.requests
        for e in self.errors:
            vw.add_error(e)
        if self.latencies:
            vw.latency.add_many(self.latencies)
        for reason in self.excluded:
            vw.latency_excluded[reason] = vw.latency_excluded.get(reason, 0) + 1
        if self.outputs:
            vw.observe_predictions(self.outputs, self.output_keys)
        if self.segment_ops:
            _add_segment_ops(vw, self.segment_ops)
        for name, (values, keys) in self.features.items():
            vw.observe_features(name, values, keys)
        for a in self.attributions:
            vw.observe_attributions(a)


def _add_segment_ops(vw: VersionWindow, ops: list[tuple]) -> None:
    """Predictions (segments, positive) and labels (segments, correct, actual, predicted), summed per
    distinct segments in order of first appearance (what per-field value caps depend on)."""
    tally: dict[tuple, list] = {}
    for op in ops:
        try:
            key = tuple(op[0].items())
            row = tally.get(key)
        except TypeError:                      # unhashable segment values (from a hand-written log)
            key, row = (id(op),), None
        if row is None:
            row = tally[key] = [op[0], 0, 0, 0, 0, 0, 0]
        if len(op) == 2:
            row[1] += 1
            row[2] += bool(op[1])
        else:
            row[3] += 1
            row[4] += bool(op[1])
            row[5] += bool(op[2])
            row[6] += bool(op[2] and op[3])
    for row in tally.values():
        vw.segments.add_counts(row[0], row[1:])


def fold_many(w: Windows, recs: Sequence[dict], spec: RolloutSpec) -> None:
    """Add outcome records to their window: the same window as `fold` on each record in order.

    Each summary receives its values in record order through one batch call; summaries are independent
    of each other, so only that order matters.
    """
    arms = {arm: _ArmBatch() for arm in ARMS}
    kind = spec.output.kind
    primaries: list[Any] = []
    shadows: list[Any] = []
    base, cand = arms["baseline"], arms["candidate"]
    for rec in recs:
        get = rec.get
        role = get("role")
        arm = get("arm")
        if role == "feedback":
            if "clicks" in rec or arm not in ARMS:
                fold(w, rec, spec)             # interleaving outcomes: a summary of their own
            else:
                output, label = rec.get("output"), rec.get("label")
                predicted, actual = _positive(spec, output), _truthy(label, spec)
                correct = predicted == actual if kind == "score" else str(output) == str(label)
                arms[arm].segment_ops.append((rec.get("segments") or {"all": "all"}, correct, actual, predicted))
            continue
        if arm == "baseline":
            b = base
        elif arm == "candidate":
            b = cand
        else:
            continue
        b.requests += 1
        error = get("error")
        if error:
            b.errors.append(error)
        excluded = get("latency_excluded")
        if excluded:        # the router could not time this call fairly: counted, not in the latency
            b.excluded.append(excluded)
        elif get("status") is not None:
            b.latencies.append(get("latency_ms", 0.0) / 1000.0)
        output = get("output")
        features = get("features")
        key = key_from_request_id(str(get("request_id", ""))) if output is not None or features else 0.0
        if output is not None:
            b.outputs.append(output)
            b.output_keys.append(key)
            attributions = rec.get("attributions")
            if attributions:
                b.attributions.append(attributions)
            segments = get("segments")
            if segments:
                b.segment_ops.append((segments, _positive(spec, output)))
        if features:
            cols = b.features
            for name, value in features.items():
                if value is not None:
                    col = cols.get(name)
                    if col is None:
                        col = cols[name] = ([], [])
                    col[0].append(value)
                    col[1].append(key)
        primary = get("primary_output")
        if role == "shadow" and output is not None and primary is not None:
            if w.paired is None:
                w.paired = PairedSummary()
            if kind == "score":
                primaries.append(primary)
                shadows.append(output)
            elif kind == "ranking":
                w.paired.add_categorical(str(primary[0]) if primary else "", str(output[0]) if output else "")
            elif kind == "class":
                w.paired.add_categorical(str(primary), str(output))
    for arm, b in arms.items():
        b.apply(getattr(w, arm))
    if primaries:
        w.paired.add_many(primaries, shadows)


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

    @property
    def pending(self) -> int:
        """Outcome records queued and not yet folded into a window."""
        return len(self._pending)

    def flush(self, now: float | None = None) -> None:
        """Fold every queued record into its window; drop windows older than the retention."""
        while self._pending:
            self._fold_batch(self._take(len(self._pending)))
        if now is not None:
            self.prune(now)

    async def fold_queued(self, chunk: int = 128, pause: float = 0.001) -> None:
        """Fold what is queued now, `chunk` records at a time (about half a millisecond each), sleeping
        `pause` seconds between chunks.

        A request needs several event-loop turns (read, upstream send, upstream answer, write); with only
        `sleep(0)` between chunks it would wait one chunk per turn. The pause lets requests in flight finish
        between chunks. Records arriving meanwhile wait for the next call, so batches stay large.
        """
        left = len(self._pending)
        while left > 0 and self._pending:
            batch = self._take(min(chunk, left))
            left -= len(batch)
            self._fold_batch(batch)
            await asyncio.sleep(pause if left > 0 else 0)

    def _take(self, n: int) -> list[tuple[RolloutSpec, dict]]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(n, len(pending)))]

    def _fold_batch(self, batch: list[tuple[RolloutSpec, dict]]) -> None:
        groups: dict[tuple[int, float, str], tuple[RolloutSpec, list[dict]]] = {}
        bucket, floor = self.bucket, math.floor
        for spec, rec in batch:
            g = (id(spec), floor(rec["time"] / bucket) * bucket, rec.get("revision") or spec.revision)
            entry = groups.get(g)
            if entry is None:
                groups[g] = (spec, [rec])
            else:
                entry[1].append(rec)
        for (_, start, revision), (spec, recs) in groups.items():
            fold_many(self._window(spec, start, revision), recs, spec)

    def _window(self, spec: RolloutSpec, start: float, revision: str) -> Windows:
        windows = self._windows.setdefault(spec.key, {})
        w = windows.get((start, revision))
        if w is None:
            w = windows[(start, revision)] = Windows(start, start + self.bucket, revision, spec.output.kind,
                                                     self.reservoir)
        return w

    def prune(self, now: float) -> None:
        limit = now - self.retention
        for windows in self._windows.values():
            for k in [k for k, w in windows.items() if w.end < limit]:
                del windows[k]

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
