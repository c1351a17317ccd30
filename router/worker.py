"""The router's worker process: everything that is not the request path, i.e. recording and shadow calls.

The request path must only answer. Folding outcomes into summaries costs a few hundred microseconds per
batch of vectorised adds, writing the prediction log means serialising every record, and a mirrored call
costs about what the primary call costs (a write, a read, a parse, a record). On the router's event loop
that work stalls live requests: with it there, the p99 at one connection was 4-6x the p50, and a shadow
took 30-50% of the throughput (`python -m bench.router`). So the router hands all of it to one worker
process: the request path appends each outcome record, and each mirror to make, to a list; every
`BATCH_SECONDS` one pickled batch goes down a pipe. The worker folds the records into the buckets
(`Recorder`), writes the prediction log (`PredictionLog`), makes the shadow calls (`router.shadow.
ShadowCaller`: bounded, reused connections per candidate, capped concurrency, mirrors queued, calls it could
not time fairly marked) and records them the same way, and answers the router's questions: the windows for
`/summaries` and its counters for `/metrics`. It never builds a `Router`: this module does not import
router.core (router.core imports it).

Bounds: the worker holds at most `shadow_max_inflight` mirrors (waiting for a connection or in flight) and
drops and counts beyond that; the router drops and counts a mirror when no worker runs or more than
MAX_BACKLOG / 2 bytes wait for its pipe, and a record (counted as a log drop) beyond MAX_BACKLOG. A worker
that dies is restarted after a second; what it had not yet written is lost (like a replica's memory) and
counted, and its counters as last scraped are kept. `--no-worker` keeps all of it on the router's event loop.

Wire format, both ways: 4-byte big-endian length, then a pickle (protocol 5) of a list of messages, in the
order they were made. Both ends are this module, on a private pipe between a router and the child it
started. To the worker: `Configure` (first, once), `AddTarget`, `Forget`, `Record`, `Exchange` (a transparent
answer recorded from its raw bytes, router.exchange), `Mirror` (router.shadow), and the questions
`WindowsQuery`, `MergedWindowsQuery`, `MetricsQuery`, `UnsignedQuery`, `Drain`, each with a query id that the
worker's `Reply` carries back. The pipe is FIFO and the worker handles messages in order, so a question is
answered with every record and exchange handed over before it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import sys
import time
from typing import Any

from policies.errors import RouterError
from policies.outcome import Outcome
from router.exchange import Exchange, record_exchange
from router.feedback import UnsignedIds
from router.metrics import RouterMetrics
from router.predlog import LogCounters, open_log
from router.privacy import Privacy
from router.recorder import Recorder, keep_folding
from router.settings import RouterSettings
from router.shadow import Mirror, ShadowCaller, ShadowTarget

log = logging.getLogger("modelrollout.router")

MAX_BACKLOG = 32 * 1024 * 1024
"""Bytes of jobs waiting for the worker's pipe beyond which mirrors are dropped and counted."""
QUERY_TIMEOUT = 5.0
"""Seconds the router waits for the worker's windows or metrics."""
RESTART_DELAY = 1.0
BATCH_SECONDS = 0.002
"""Mirrors handed over within this time go to the worker in one write (one wake-up for it): at one request
in flight that is 5-10 requests per write instead of one. Delays the mirrors' start, not their timing."""


class WorkerUnavailable(RouterError):
    """The router's worker is not running, did not answer in time, or failed to answer (temporary)."""


@dataclasses.dataclass(frozen=True)
class Failed:
    """The worker's answer to a command it could not carry out (a bug, not the client's fault)."""
    detail: str


# --- messages -------------------------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class Configure:
    """The router's settings: the first message a worker receives."""
    settings: RouterSettings


@dataclasses.dataclass(slots=True)
class AddTarget:
    """A rollout the records and mirrors that follow may name by `wid`."""
    wid: int
    target: ShadowTarget


@dataclasses.dataclass(slots=True)
class Forget:
    """Rollouts no longer served: their ids may be dropped once the messages sent before are handled."""
    wids: list[int]


@dataclasses.dataclass(slots=True)
class Record:
    """An outcome record to fold and log."""
    wid: int
    record: Outcome

    def __reduce__(self):       # positional: pickles faster than a slots dataclass's state
        return (Record, (self.wid, self.record))


@dataclasses.dataclass(slots=True)
class UnsignedQuery:
    """The payload of the feedback id kept for a transparent answer's request id (None when none)."""
    qid: int
    request_id: str


@dataclasses.dataclass(slots=True)
class WindowsQuery:
    qid: int
    key: str
    start: float | None
    end: float | None


@dataclasses.dataclass(slots=True)
class MergedWindowsQuery:
    """Analysis windows of several rollouts, each merged (`Recorder.merged_windows`)."""
    qid: int
    items: list[tuple[str, str, float, float]]


@dataclasses.dataclass(slots=True)
class MetricsQuery:
    qid: int


@dataclasses.dataclass(slots=True)
class Drain:
    """Finish the shadow calls (bounded), fold and write every record, fsync the log; then answer True."""
    qid: int


@dataclasses.dataclass(slots=True)
class Reply:
    """The worker's answer to the question with this query id."""
    qid: int
    value: Any


@dataclasses.dataclass(slots=True)
class WorkerCounters:
    """The worker's answer to `MetricsQuery`."""
    metrics: dict
    """Its `RouterMetrics.snapshot()`."""
    done: int
    """Mirrors finished (recorded or dropped) of those received."""
    records: int
    """Records received."""
    log: LogCounters
    """The prediction log's counters (records written and dropped, files deleted by retention)."""


def _frame(payload: Any) -> bytes:
    data = pickle.dumps(payload, protocol=5)
    return len(data).to_bytes(4, "big") + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return pickle.loads(await reader.readexactly(size))


class Worker:
    """The router's side: starts and restarts the worker, batches records and mirrors to it, asks it for
    windows and metrics."""

    def __init__(self, settings: RouterSettings, metrics: RouterMetrics):
        self.settings = settings
        self.metrics = metrics
        self.restarts = 0
        self.lost = 0
        """Mirrors and records handed to workers that died before reporting them done."""
        self.records_dropped = 0
        """Records not handed over: no worker running, or its pipe backlog beyond MAX_BACKLOG."""
        self.log_retired = LogCounters()
        """Prediction log counters of workers that died."""
        self.sent = 0
        """Mirrors handed to the current worker."""
        self.done = 0
        """Of those, how many the worker had finished (recorded or dropped) at its last answer."""
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._outbox: list = []
        self._scheduled = False
        self._known: set[int] = set()
        self._queries: dict[int, asyncio.Future] = {}
        self._qid = 0
        self._snapshot: dict | None = None
        self.records_sent = self.records_done = 0
        self.worker_log = LogCounters()
        self._retired: dict | None = None
        """Counters of the workers that died, summed into one snapshot."""
        self._closing = False
        self._supervisor: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker process (returns once it is spawned; it reads queued jobs when it is ready)."""
        self._closing = False
        reader = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(reader), name="modelrollout-worker")

    async def _spawn(self) -> asyncio.StreamReader:
        proc = await asyncio.create_subprocess_exec(
            # -c, not -m: `main` of the module imported as `router.worker`, so the classes sent over the pipe
            # have the names the router knows (`-m` would also import the package first, then run a second copy
            # as __main__, and say so on stderr)
            sys.executable, "-c", "import sys; from router.worker import main; sys.exit(main())",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 30)
        self._proc, self._stdin, self.pid = proc, proc.stdin, proc.pid
        self._known = set()
        self._outbox.insert(0, Configure(self.settings))
        self._schedule()
        return proc.stdout

    async def _supervise(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                while True:
                    reply = await _read_frame(reader)
                    fut = self._queries.get(reply.qid)
                    if fut is not None and not fut.done():
                        fut.set_result(reply.value)
            except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError, ValueError) as e:
                problem = e
            proc = self._proc
            self._stdin = None
            code = await proc.wait() if proc is not None else None
            for fut in self._queries.values():
                if not fut.done():
                    fut.set_exception(WorkerUnavailable(f"worker exited (code {code})"))
            if self._closing:
                return
            self.lost += self.inflight + self.records_sent - self.records_done
            self.log_retired = self.log_retired.plus(self.worker_log)
            self.worker_log = LogCounters()
            if self._snapshot is not None:
                self._retired = RouterMetrics().combined(
                    s for s in (self._retired, self._snapshot) if s is not None).snapshot()
                self._snapshot = None
            self.sent = self.done = self.records_sent = self.records_done = 0
            log.error("router worker (pid %s) exited with code %s (%s); restarting in %gs", self.pid, code,
                      type(problem).__name__, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)
            if self._closing:
                return
            try:
                reader = await self._spawn()
            except OSError as e:
                log.error("router worker could not start: %s; retrying", e)
                continue
            self.restarts += 1

    async def close(self) -> None:
        """Let the worker finish its shadow calls (bounded by drain_seconds), fold and write every record it
        was sent, fsync its log, and stop it."""
        if self._supervisor is None:
            return
        try:
            await self.query(Drain, timeout=self.settings.drain_seconds + QUERY_TIMEOUT)
        except WorkerUnavailable as e:
            log.error("router worker did not drain: %s", e)
        self._closing = True
        proc = self._proc
        if self._stdin is not None:
            self._stdin.close()
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), QUERY_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._supervisor.cancel()
        await asyncio.gather(self._supervisor, return_exceptions=True)
        self._supervisor = None

    # --- the request path ------------------------------------------------------------------------

    def backlog(self) -> int:
        """Bytes waiting for the worker's pipe; -1 when no worker can take anything."""
        stdin = self._stdin
        if stdin is None or stdin.transport.is_closing():
            return -1
        return stdin.transport.get_write_buffer_size()

    def _target(self, target: ShadowTarget) -> int:
        wid = target.wid
        if wid not in self._known:
            self._known.add(wid)
            self._outbox.append(AddTarget(wid, target))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(BATCH_SECONDS, self._flush)
        return wid

    def record(self, target: ShadowTarget, record: Outcome) -> None:
        """Hand one outcome record to the worker, to fold and log (never blocks; counted as a log drop when
        the worker cannot take it)."""
        backlog = self.backlog()
        if backlog < 0 or backlog > MAX_BACKLOG:
            self.records_dropped += 1
            return
        self._outbox.append(Record(self._target(target), record))
        self.records_sent += 1

    def exchange(self, target: ShadowTarget, exchange: Exchange) -> None:
        """Hand one transparent-mode exchange to the worker to record (and mirror, when `exchange.mirror`):
        dropped and counted like a record when the worker cannot take it; its mirror alone is dropped and
        counted as a mirror would be."""
        backlog = self.backlog()
        if backlog < 0 or backlog > MAX_BACKLOG:
            self.records_dropped += 1
            if exchange.mirror:
                self.metrics.shadow_dropped[(target.spec.name, target.spec.namespace)] += 1
            return
        if exchange.mirror:
            if backlog > MAX_BACKLOG // 2:
                exchange.mirror = False
                self.metrics.shadow_dropped[(target.spec.name, target.spec.namespace)] += 1
            else:
                self.sent += 1
        self._target(target)
        self._outbox.append(exchange)
        self.records_sent += 1

    async def unsigned(self, request_id: str) -> bytes | None:
        """The payload of the feedback id the worker keeps for a transparent answer's `request_id`."""
        return await self.query(UnsignedQuery, request_id)

    def submit(self, target: ShadowTarget, mirror: Mirror) -> None:
        """Hand one mirror to the worker (never blocks; dropped and counted when the worker cannot take it)."""
        backlog = self.backlog()
        if backlog < 0 or backlog > MAX_BACKLOG // 2:
            self.metrics.shadow_dropped[(target.spec.name, target.spec.namespace)] += 1
            return
        self._target(target)
        self._outbox.append(mirror)
        self.sent += 1

    def forget(self, wids) -> None:
        """Targets no longer served: the worker may drop them once the jobs sent before are started."""
        gone = [w for w in wids if w in self._known]
        if gone:
            self._known.difference_update(gone)
            self._outbox.append(Forget(gone))
            self._schedule()

    def _schedule(self) -> None:
        """Flush on the next loop turn (commands; a pending batch timer then finds the outbox empty)."""
        asyncio.get_running_loop().call_soon(self._flush)
        self._scheduled = True

    def _flush(self) -> None:
        # Runs after the callbacks that were ready with it, i.e. after the responses of this turn are written.
        self._scheduled = False
        batch, self._outbox = self._outbox, []
        stdin = self._stdin
        if not batch:
            return
        if stdin is not None:
            try:
                stdin.write(_frame(batch))
                return
            except (RuntimeError, ConnectionError) as e:    # the worker just died: its supervisor restarts it
                log.warning("router worker pipe closed: %s", e)
        self.lost += sum(type(m) is Record or type(m) is Mirror or type(m) is Exchange
                         for m in batch)     # died since handed over

    @property
    def inflight(self) -> int:
        """Mirrors handed over and not known to be finished: queued for the worker, or its calls in flight."""
        return self.sent - self.done

    @property
    def log_counts(self) -> LogCounters:
        """The prediction log's counters of every worker so far, with the records lost before reaching one."""
        total = self.log_retired.plus(self.worker_log)
        total.dropped += self.records_dropped
        return total

    # --- questions -------------------------------------------------------------------------------

    async def query(self, kind: type, *args, timeout: float = QUERY_TIMEOUT) -> Any:
        """Ask the worker `kind(qid, *args)` (WindowsQuery, MetricsQuery, UnsignedQuery, Drain) and return its
        answer."""
        if self._stdin is None:
            raise WorkerUnavailable("the router's worker is not running (restarting)")
        self._qid += 1
        qid = self._qid
        fut = asyncio.get_running_loop().create_future()
        self._queries[qid] = fut
        self._outbox.append(kind(qid, *args))
        self._schedule()
        kind = kind.__name__
        try:
            value = await asyncio.wait_for(fut, timeout)
            if isinstance(value, Failed):
                raise WorkerUnavailable(f"the router's worker failed to answer {kind!r}: {value.detail}")
            return value
        except TimeoutError:
            raise WorkerUnavailable(f"the router's worker did not answer {kind!r} within {timeout:g}s") from None
        finally:
            self._queries.pop(qid, None)

    async def windows(self, key: str, start: float | None, end: float | None) -> list[dict]:
        """The windows of rollout `key` (every record handed over before this call is in them)."""
        return await self.query(WindowsQuery, key, start, end)

    async def merged_windows(self, items: list[tuple[str, str, float, float]]) -> list[list[dict]]:
        """`Recorder.merged_windows` of (key, revision, window start, end) items, in the worker."""
        return await self.query(MergedWindowsQuery, items)

    async def metric_snapshots(self) -> list[dict]:
        """The worker's counters (and those of workers that died) for `RouterMetrics.render`.

        A worker that does not answer in time contributes its last answer: counters never go backwards."""
        try:
            answer: WorkerCounters = await self.query(MetricsQuery, timeout=2.0)
        except WorkerUnavailable as e:
            (log.debug if self._stdin is None else log.warning)("metrics without a fresh worker answer: %s", e)
        else:
            self._snapshot = answer.metrics
            self.done = answer.done
            self.records_done = answer.records
            self.worker_log = answer.log
        return [s for s in (self._retired, self._snapshot) if s is not None]


# --- the worker process ------------------------------------------------------------------------------

class _WorkerProcess:
    """The worker's side: folds records, writes the log, makes shadow calls, answers questions."""

    def __init__(self, settings: RouterSettings, writer: asyncio.StreamWriter):
        self.settings = settings
        self.writer = writer
        self.metrics = RouterMetrics()
        self.recorder = Recorder(settings.bucket_seconds, settings.retention_seconds, settings.reservoir)
        self.log = open_log(settings)
        self.privacy = Privacy(settings.hash_key)
        self.shadows = ShadowCaller(settings, self.metrics, self.keep, watch_stalls=True)
        self.unsigned = UnsignedIds(settings.feedback_ttl_seconds, settings.feedback_max_ids)
        self.targets: dict[int, ShadowTarget] = {}
        self.records = 0
        self.drained = False
        self.tasks = [asyncio.create_task(keep_folding(self.recorder), name="housekeeping")]
        if self.log is not None:
            self.tasks.append(asyncio.create_task(self.log.run(), name="log"))    # ends when the log closes

    def keep(self, target: ShadowTarget, record: Outcome) -> None:
        record = self.privacy.apply(target.spec, record)
        self.recorder.add(target.spec, record)
        if self.log is not None:
            self.log.write(record)

    def answer(self, qid: int, value: Any) -> None:
        self.writer.write(_frame(Reply(qid, value)))

    async def handle(self, batch: list) -> None:
        targets, keep, shadows = self.targets, self.keep, self.shadows
        for m in batch:
            match m:
                case Record(wid, record):
                    self.records += 1
                    target = targets.get(wid)
                    if target is not None:
                        keep(target, record)
                case Exchange(wid):
                    self.records += 1
                    target = targets.get(wid)
                    if target is not None:
                        self.exchange(target, m)
                    elif m.mirror:
                        shadows.received += 1       # nothing to call: done at once
                case Mirror(wid):
                    target = targets.get(wid)
                    if target is not None and not self.drained:
                        shadows.submit(target, m)
                    else:
                        shadows.received += 1       # nothing to call: done at once
                case AddTarget(wid, target):
                    targets[wid] = target
                case Forget(wids):
                    for wid in wids:
                        targets.pop(wid, None)
                case Drain(qid):
                    await self.drain()
                    self.answer(qid, True)
                    await self.writer.drain()
                case WindowsQuery(qid) | MergedWindowsQuery(qid) | MetricsQuery(qid) | UnsignedQuery(qid):
                    try:
                        self.answer(qid, self._ask(m))
                    except Exception as e:          # a bug: answer it, keep recording
                        log.exception("router worker: %s failed", type(m).__name__)
                        self.answer(qid, Failed(f"{type(e).__name__}: {e}"))
                case _:
                    log.error("router worker: unknown message %s", type(m).__name__)

    def exchange(self, target: ShadowTarget, m: Exchange) -> None:
        """Record a transparent-mode exchange as the router records a predict API answer (router.exchange)."""
        mirror = record_exchange(target, m, self.metrics, self.keep, self.unsigned, self.settings.max_body_bytes)
        if m.mirror:
            if mirror is not None and not self.drained:
                self.shadows.submit(target, mirror)
            else:
                self.shadows.received += 1           # a request that is not JSON is not mirrored: done at once

    def _ask(self, m: WindowsQuery | MergedWindowsQuery | MetricsQuery | UnsignedQuery) -> Any:
        match m:
            case WindowsQuery(_, key, start, end):
                return self.recorder.windows(key, start, end)
            case MergedWindowsQuery(_, items):
                return self.recorder.merged_windows(items)
            case UnsignedQuery(_, request_id):
                return self.unsigned.get(request_id)
            case MetricsQuery():
                lg = self.log
                return WorkerCounters(self.metrics.snapshot(), self.shadows.done, self.records,
                                      lg.counters() if lg is not None else LogCounters())

    async def drain(self) -> None:
        """Finish the shadow calls (bounded by drain_seconds), fold and write every record, fsync the log."""
        if self.drained:
            return
        self.drained = True
        for t in self.tasks:
            if t.get_name() != "log":
                t.cancel()
        await self.shadows.drain(self.settings.drain_seconds)
        self.recorder.flush(time.time())
        if self.log is not None:
            await self.log.close()

    async def close(self) -> None:
        await self.drain()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    match await _read_frame(reader):
        case [Configure(settings), *batch]:
            pass
        case _:
            raise SystemExit("router.worker: expected the router's settings first")
    _set_priority(settings.worker_priority)
    logging.basicConfig(level=logging.getLogger("modelrollout").level or logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    worker = _WorkerProcess(settings, writer)
    while True:
        await worker.handle(batch)
        try:
            batch = await _read_frame(reader)
        except asyncio.IncompleteReadError:
            break                                    # the router closed the pipe
    await worker.close()


def _set_priority(priority: str) -> None:
    """"idle": run only when no other process wants the CPU (Linux SCHED_IDLE). Measured: folding and logging
    in a worker at normal priority, or even at nice 19 or SCHED_BATCH, still raised the router's p99 at one
    connection from 0.5 to 1.5 ms on 2 cores, because a waking request-path process waited for the worker's
    time slice; at SCHED_IDLE it preempts the worker at once and the p99 stays 0.5 ms. The cost: under
    sustained full CPU the worker starves, so records wait in the router (bounded, then dropped and counted)
    and summaries lag. An unprivileged process cannot leave SCHED_IDLE, so the choice is made once.

    A Linux scheduling policy belongs to a thread, and threads inherit it when they start, so this sets every
    thread the worker has, once its imports are done (they run at normal priority: a worker restarted while
    the CPU is saturated still comes up). Before, only the main thread was set, and the two threads numpy's
    BLAS starts at import stayed at normal priority."""
    if priority != "idle":
        return
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
        for tid in tasks:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as e:     # not Linux: the lowest nice value is the nearest thing
        log.warning("router worker: SCHED_IDLE unavailable (%s); using nice 19", e)
        os.nice(19)


async def _main() -> None:
    loop = asyncio.get_running_loop()
    # Frames go to a private copy of stdout; fd 1 becomes stderr so a stray print cannot corrupt them.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    await _serve(reader, writer)
    await writer.drain()


def main() -> int:
    import signal
    # The router owns the shutdown: it asks the worker to drain, then closes the pipe. Signals meant for the
    # router's process group must not cut the worker's drain short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    (uvloop.run if uvloop is not None else asyncio.run)(_main())
    return 0
