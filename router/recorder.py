"""Per-rollout buckets of mergeable summaries, folded from the router's outcome records.

The request path appends each outcome record (`policies.outcome.Outcome`, the same record the prediction log
writes) to a queue; off the request path, `fold_queued()`/`flush()` take the queue in batches and fold each
batch with `policies.outcome.fold` (one vectorised add per summary). Buckets are keyed by (epoch-aligned
start, revision); those older than the retention are dropped. The fold reads only log records, so
`policies.outcome.rebuild` rebuilds exactly the same buckets from a prediction log.

Memory is bounded per rollout: at most retention/bucket buckets per revision seen in that time (180 for the
default 15m/5s), each as `policies.outcome.bucket` describes (about 4 x 64 KiB = 0.26 MiB for a busy score
rollout with one watched numeric feature, at most ~46 MiB at 15m/5s); `--reservoir` and `--retention` trade
that against sample size and history.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Callable

from policies.outcome import Buckets, Outcome, fold, merge, window_buckets
from policies.spec import RolloutSpec

log = logging.getLogger("modelrollout.router")


class Recorder:
    """Buckets of every rollout this replica serves, kept for `retention_seconds`."""

    def __init__(self, bucket_seconds: float = 5.0, retention_seconds: float = 900.0, reservoir: int = 2048):
        self.bucket = bucket_seconds
        self.retention = retention_seconds
        self.reservoir = reservoir
        self._pending: deque[tuple[RolloutSpec, Outcome]] = deque()
        self._buckets: dict[str, Buckets] = {}

    def configure(self, spec: RolloutSpec) -> None:
        self._rollout(spec)

    def _rollout(self, spec: RolloutSpec) -> Buckets:
        b = self._buckets.get(spec.key)
        if b is None:
            b = self._buckets[spec.key] = Buckets(spec, self.bucket, self.reservoir)
        return b

    def add(self, spec: RolloutSpec, record: Outcome) -> None:
        """Queue one outcome record (cheap: the fold happens in `flush`)."""
        self._pending.append((spec, record))

    def bucket_start(self, t: float) -> float:
        return math.floor(t / self.bucket) * self.bucket

    @property
    def pending(self) -> int:
        """Outcome records queued and not yet folded into a bucket."""
        return len(self._pending)

    def flush(self, now: float | None = None) -> None:
        """Fold every queued record into its bucket; drop buckets older than the retention."""
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

    def _take(self, n: int) -> list[tuple[RolloutSpec, Outcome]]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(n, len(pending)))]

    def _fold_batch(self, batch: list[tuple[RolloutSpec, Outcome]]) -> None:
        # one pass: group by rollout spec, bucket and revision, then fold each group (`Buckets.add`, by spec)
        groups: dict[tuple[int, float, str], tuple[RolloutSpec, list[Outcome]]] = {}
        size, floor = self.bucket, math.floor
        for spec, rec in batch:
            g = (id(spec), floor(rec.time / size) * size, rec.revision or spec.revision)
            entry = groups.get(g)
            if entry is None:
                groups[g] = (spec, [rec])
            else:
                entry[1].append(rec)
        for (_, start, revision), (spec, recs) in groups.items():
            buckets = self._rollout(spec)
            buckets.spec = spec
            fold(buckets.bucket(start, revision), recs, spec)

    def prune(self, now: float) -> None:
        limit = now - self.retention
        for buckets in self._buckets.values():
            buckets.prune(limit)

    def windows(self, key: str, start: float | None = None, end: float | None = None) -> list[dict]:
        """The wire form of rollout `key`'s buckets with start <= bucket.start and bucket.end <= end, oldest
        first (`Bucket.to_wire`)."""
        self.flush()
        buckets = self._buckets.get(key)
        return [b.to_wire() for b in buckets.select(start, end)] if buckets is not None else []

    def merged_window(self, key: str, revision: str, window_start: float, end: float) -> list[dict]:
        """The analysis window from `window_start` to `end` of rollout `key`'s candidate `revision`: its buckets
        (`policies.outcome.window_buckets`) merged into one, in wire form; [] when there is none."""
        buckets = self._buckets.get(key)
        if buckets is None:
            return []
        chosen = window_buckets(buckets.by_key.values(), revision, window_start, end, self.bucket)
        return [merge(chosen, buckets.spec.output.kind).to_wire()] if chosen else []

    def merged_windows(self, items: list[tuple[str, str, float, float]]) -> list[list[dict]]:
        """`merged_window` of every (key, revision, window_start, end), in order (one flush for all)."""
        self.flush()
        return [self.merged_window(*item) for item in items]


async def keep_folding(recorder: Recorder, every: float = 0.1, prune: Callable[[float], None] | None = None) -> None:
    """Fold queued records every `every` seconds (in small chunks) and, every ten rounds, drop old buckets
    and call `prune(now)` for whatever else expires. A failed fold loses that chunk (a bug) and goes on."""
    ticks = 0
    while True:
        await asyncio.sleep(every)
        try:
            await recorder.fold_queued()
        except Exception:
            log.exception("folding outcome records failed")
        ticks += 1
        if ticks % 10 == 0:
            now = time.time()
            recorder.prune(now)
            if prune is not None:
                prune(now)
