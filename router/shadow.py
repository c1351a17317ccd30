"""Shadow calls: mirrors reach the candidate the way primary calls reach the baseline.

The primary path reaches the baseline over a few keep-alive connections, one request at a time on each. A
shadow that released its mirrors in batches (one per 2 ms hand-over to the worker) as hundreds of calls at
once opened a burst of new connections per batch: a model server with a small listen backlog (Python's
http.server: 5) dropped the SYNs it could not queue, the kernel retried them a second later, and the
candidate's p99 read ~1 s against the baseline's 10 ms — the gate measured the router's calling pattern, not
the model. So `ShadowCaller`:

* keeps at most `shadow_concurrency` calls in flight per candidate, i.e. at most that many connections,
  reused (the upstream pool keeps them idle between calls);
* opens new connections at most `CONNECTS_AT_ONCE` at a time, so even a cold start or a burst never
  overflows a small accept queue;
* queues the mirrors beyond that (they wait for a free connection; the wait is not latency) up to
  `shadow_max_inflight` held at once, and drops and counts the rest;
* times only from the request written on an established connection to the answer's arrival, taken from the
  kernel's receive timestamp (router.upstream, `kernel_timestamps`): a worker at idle CPU priority that is
  starved, or busy folding, when the answer arrives still times the model, not its own wait;
* leaves out of the latency — counting them instead, as `latency_excluded` in the outcome record — the calls
  it could not time fairly: "connect" (a set-up slow enough that the server's accept queue was overflowing)
  and, in the worker, "stalled" for a call timed by its own clock (https, or no kernel timestamps) while its
  event loop did not run (`LoopWatch`).

This module also holds what the request path and the shadow share to turn an answer into an outcome record
(`read_output`, `record_call`: the `policies.outcome.Outcome` of a call), so both record the same way; the
worker process uses it without the request path's Router (router/worker.py).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from policies.outcome import Outcome
from policies.spec import RolloutSpec
from router.extract import attribution_values, get_path, is_missing, output_value
from router.metrics import RouterMetrics
from router.routing import CANDIDATE
from router.settings import RouterSettings
from router.upstream import Answer, Upstreams

log = logging.getLogger("modelrollout.router")

JSON = "application/json"
CONNECTS_AT_ONCE = 4
"""New connections being set up to one candidate at once, at most (below any listen backlog)."""
STALL_MIN = 0.002
"""A call is "stalled" when its event loop did not run for at least this long while it was in flight..."""
STALL_SHARE = 0.2
"""...and that was at least this share of its measured latency (a 2 ms stall in a 100 ms call is noise)."""

_TARGET_IDS = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ShadowTarget:
    """What recording a call to one of a rollout's versions needs (sent to the worker once per target)."""
    spec: RolloutSpec
    output_path: tuple[str, ...]
    attributions_path: tuple[str, ...] | None
    embedding_path: tuple[str, ...] | None = None
    features_path: tuple[str, ...] | None = None
    features: tuple[str, ...] = ()
    """The watched features (read at `features_path` of a request)."""
    segments: tuple[str, ...] = ()
    """The segment fields of fairness checks."""
    wid: int = field(default_factory=lambda: next(_TARGET_IDS))
    """Names this target to the worker (unique in the router process)."""


@dataclass(slots=True)
class Mirror:
    """One request to mirror to the candidate, with what its record pairs it with."""
    wid: int
    request_id: str
    body: bytes
    time: float
    features: dict | None
    segments: dict | None
    primary_output: Any

    def __reduce__(self):       # positional: pickles faster than a slots dataclass's state
        return (Mirror, (self.wid, self.request_id, self.body, self.time, self.features, self.segments,
                         self.primary_output))


def read_output(t: ShadowTarget, answer: Answer) -> tuple[Any, str | None, dict | None]:
    """(prediction, error kind, extras): extras are the record's `attributions` and `embedding` when the spec
    names their paths and the answer has a valid prediction (None when there are none)."""
    if answer.error is not None:
        return None, answer.error, None
    if answer.status != 200:
        return None, None, None      # the model refused the input (4xx): the client's error
    try:
        doc = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None, "invalid_output", None
    raw = get_path(doc, t.output_path)
    value, ok = output_value(t.spec.output.kind, None if is_missing(raw) else raw)
    if not ok:
        return None, "invalid_output", None
    if t.attributions_path is None and t.embedding_path is None:
        return value, None, None
    extras = {}
    if t.attributions_path is not None:
        a = attribution_values(get_path(doc, t.attributions_path))
        if a is not None:
            extras["attributions"] = a
    if t.embedding_path is not None:
        raw = get_path(doc, t.embedding_path)
        e, ok = output_value("embedding", None if is_missing(raw) else raw)
        if ok:
            extras["embedding"] = e
    return value, None, extras or None


def record_call(metrics: RouterMetrics, t: ShadowTarget, now: float, request_id: str, arm: str, version: str,
                role: str, answer: Answer, output: Any, error: str | None, features: dict | None,
                segments: dict | None, primary_output: Any = None, extras: dict | None = None,
                input_doc: Any = None, override: bool = False, sticky: str | None = None,
                propensity: float | None = None, fallback: str | None = None) -> Outcome:
    """Count one model call in `metrics` and return its outcome record (as seen: the spec's privacy settings
    are applied by whoever keeps it, `router.privacy`). An `override` (the caller picked the version) is
    counted apart and its record flagged, so it never enters the analysis. `input_doc`: the request, kept in the
    record unless the spec's privacy drops inputs. `propensity`: the probability with
    which the router chose this arm for the request (None for an override: the caller chose)."""
    spec = t.spec
    excluded = answer.excluded
    more = {}
    if override:
        metrics.overrides[(spec.name, spec.namespace, version, str(answer.status or 0))] += 1
        more["override"] = True
    else:
        metrics.observe(spec.name, spec.namespace, version, role, answer.status, error, answer.latency,
                        output if spec.output.kind == "score" else None, excluded)
    if primary_output is not None:
        more["primary_output"] = primary_output
    if extras:
        more.update(extras)
    if input_doc is not None and spec.privacy.inputs != "drop":
        more["input"] = input_doc       # only when the spec's privacy settings keep or hash it (router.privacy)
    if sticky is not None:
        more["sticky"] = sticky
    if propensity is not None:
        more["propensity"] = propensity
    if excluded is not None:
        more["latency_excluded"] = excluded
    if fallback is not None:
        more["fallback"] = fallback
    return Outcome.answer(now, request_id, spec.name, spec.namespace, spec.revision, version, arm, role,
                          answer.status, error, round(answer.latency * 1000.0, 3), output, features, segments, **more)


class LoopWatch:
    """Notices the stretches when this process's event loop did not run: a ticker every PERIOD seconds,
    running only while someone holds it, remembers each tick that came late by more than a millisecond.

    In the worker (SCHED_IDLE) that is the CPU going to other processes, or the loop busy folding a batch:
    an answer that arrived meanwhile waited to be read, and its call's measured latency includes the wait."""

    PERIOD = 0.002

    def __init__(self, remember: int = 4096):
        self._stalls: deque[tuple[float, float]] = deque(maxlen=remember)
        self._users = 0
        self._task: asyncio.Task | None = None
        self._due = 0.0

    def hold(self) -> None:
        self._users += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="modelrollout-loopwatch")

    def release(self) -> None:
        self._users -= 1

    async def _tick(self) -> None:
        clock, period = time.perf_counter, self.PERIOD
        try:
            self._due = clock() + period
            while self._users > 0:
                await asyncio.sleep(period)
                now = clock()
                if now - self._due > 0.001:
                    self._stalls.append((self._due, now))
                self._due = now + period
        finally:
            self._task = None

    def stalled(self, start: float, end: float) -> float:
        """Seconds between `start` and `end` (perf_counter) during which the loop did not run, as far as seen."""
        total = 0.0
        if self._task is not None and end - self._due > 0.001:      # overdue right now: the tick has not run yet
            total += end - max(self._due, start)
        for s, e in reversed(self._stalls):
            if e <= start:
                break
            total += max(0.0, min(e, end) - max(s, start))
        return total


class _Lane:
    """The mirrors to one candidate: waiting, and the calls in flight."""
    __slots__ = ("base", "queue", "active")

    def __init__(self, base: str):
        self.base = base
        self.queue: deque[tuple[ShadowTarget, Mirror, float]] = deque()
        self.active = 0


class ShadowCaller:
    """Makes the shadow calls of one process (the worker, or the router with --no-worker) and records them
    with `keep(target, record)`."""

    def __init__(self, settings: RouterSettings, metrics: RouterMetrics,
                 keep: Callable[[ShadowTarget, Outcome], None], watch_stalls: bool = False):
        self.settings = settings
        self.metrics = metrics
        self.keep = keep
        self.upstreams = Upstreams(settings.shadow_concurrency, ca_file=settings.upstream_ca, kernel_timestamps=True)
        self.limit = settings.shadow_max_inflight
        self.concurrency = settings.shadow_concurrency
        self.watch = LoopWatch() if watch_stalls else None
        self.held = 0
        """Mirrors waiting for a connection or in flight."""
        self.received = 0
        """Mirrors submitted (dropped ones included)."""
        self.closed = False
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task] = set()

    @property
    def done(self) -> int:
        """Mirrors finished: recorded or dropped."""
        return self.received - self.held

    def opened(self, base: str) -> int:
        """Connections opened to the candidate at `base` so far."""
        return self.upstreams.pool(base).opened

    def submit(self, target: ShadowTarget, mirror: Mirror) -> None:
        self.received += 1
        if self.closed or self.held >= self.limit:
            self.metrics.shadow_dropped[(target.spec.name, target.spec.namespace)] += 1
            return
        base = target.spec.candidate.url
        lane = self._lanes.get(base)
        if lane is None:
            lane = self._lanes[base] = _Lane(base)
        self.held += 1
        lane.queue.append((target, mirror, time.perf_counter()))
        if not self._start(lane):
            self.metrics.shadow_queued[(target.spec.name, target.spec.namespace)] += 1

    def _start(self, lane: _Lane) -> bool:
        """Start a caller on `lane` if a slot is free; new connections only a few at a time."""
        if lane.active >= self.concurrency or lane.active >= self.upstreams.pool(lane.base).live + CONNECTS_AT_ONCE:
            return False
        lane.active += 1
        # Only calls timed by this process's clock need the loop watched (https; no kernel timestamps).
        watched = self.watch is not None and not self.upstreams.pool(lane.base).timed
        if watched:
            self.watch.hold()
        task = asyncio.get_running_loop().create_task(self._run(lane, watched))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, lane: _Lane, watched: bool) -> None:
        try:
            while lane.queue:
                target, mirror, _ = lane.queue.popleft()
                try:
                    await self._call(target, mirror)
                except Exception:
                    log.exception("shadow call failed unexpectedly")
                finally:
                    self.held -= 1
                while lane.queue and self._start(lane):      # connections opened meanwhile: use them
                    pass
        finally:
            lane.active -= 1
            if watched:
                self.watch.release()

    async def _call(self, t: ShadowTarget, m: Mirror) -> None:
        spec = t.spec
        version = spec.candidate
        answer = await self.upstreams.call(version.url, spec.predict_path, m.body,
                                           {"Content-Type": JSON, "x-request-id": m.request_id,
                                            "x-modelrollout-shadow": "true"}, spec.shadow_timeout)
        if self.watch is not None and answer.excluded is None and answer.status is not None and not answer.kernel_timed:
            end = time.perf_counter()
            stall = self.watch.stalled(end - answer.latency, end)
            if stall >= STALL_MIN and stall >= STALL_SHARE * answer.latency:
                answer.excluded = "stalled"
        output, error, extras = read_output(t, answer)
        self.keep(t, record_call(self.metrics, t, m.time, m.request_id, CANDIDATE, version.version, "shadow",
                                 answer, output, error, m.features, m.segments, primary_output=m.primary_output,
                                 extras=extras, propensity=1.0))

    async def drain(self, timeout: float) -> None:
        """Take no more mirrors; wait (at most `timeout` seconds) for the queued and in-flight ones."""
        self.closed = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self.upstreams.close()
