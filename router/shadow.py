"""Shadow calls in a worker process: the router's event loop only hands mirrored requests off.

A mirrored call costs the router about what the primary call costs: a write, a read, a parse, a record and
its share of folding and logging. Made on the primary's event loop, that work competes with live requests
and shows in their tail latency, and at saturation it took 30-50% of the router's throughput
(`python -m bench.router`). So the router hands each mirror to a worker process: an append to a list on the
request path, one pickled batch per event-loop turn on a pipe. The worker makes the calls with the router's
own code (`Router._start_shadow`), records them in its own windows and metrics, sends its records (serialised) to the router's prediction log in batches, and answers the router's
questions: its windows for `/summaries` (merged exactly with the router's, one window per bucket) and its
counters for `/metrics`.

Bounds: the worker keeps at most `shadow_max_inflight` calls in flight and drops and counts beyond that; the
router drops and counts a mirror when no worker runs or more than `MAX_BACKLOG` bytes wait for its pipe (a
stalled worker). A worker that dies is restarted after a second; mirrors it had in flight are lost, its
counters so far are kept.

Wire format, both ways: 4-byte big-endian length, then a pickle (protocol 5) of a list of messages. Both ends
are this module, on a private pipe between a router and the child it started. Messages to the worker are
jobs `(target_id, request_id, body, time, features, segments, primary_output)` and commands (a tuple whose
first item is a str): `("settings", RouterSettings)`, `("target", id, Target)`, `("forget", [ids])`,
`("windows", qid, key, start, end)`, `("metrics", qid)`, `("drain", qid)`. The worker answers commands that
carry a qid with `(qid, value)`, and sends log lines as `(0, [line, ...])`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from router.metrics import RouterMetrics
from router.predlog import PredictionLog, serialise
from router.settings import RouterSettings

log = logging.getLogger("modelrollout.router")

MAX_BACKLOG = 32 * 1024 * 1024
"""Bytes of jobs waiting for the worker's pipe beyond which mirrors are dropped and counted."""
QUERY_TIMEOUT = 5.0
"""Seconds the router waits for the worker's windows or metrics."""
RESTART_DELAY = 1.0


class ShadowUnavailable(Exception):
    """The shadow worker is not running or did not answer in time (temporary)."""


def _frame(payload: Any) -> bytes:
    data = pickle.dumps(payload, protocol=5)
    return len(data).to_bytes(4, "big") + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return pickle.loads(await reader.readexactly(size))


class ShadowWorker:
    """The router's side: starts and restarts the worker, batches jobs to it, asks it for windows and metrics."""

    def __init__(self, settings: RouterSettings, metrics: RouterMetrics, log: PredictionLog | None = None):
        self.settings = settings
        self.metrics = metrics
        self.log = log
        self.restarts = 0
        self.lost = 0
        """Mirrors handed to workers that died before reporting them finished."""
        self.sent = 0
        """Mirrors handed to the current worker."""
        self.done = 0
        """Of those, how many the worker had finished (recorded or dropped) at its last answer."""
        self.pid: int | None = None
        self.keys: set[str] = set()
        """Rollouts (spec.key) that have had a mirror sent: only their summaries need the worker's windows."""
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._outbox: list = []
        self._scheduled = False
        self._known: set[int] = set()
        self._queries: dict[int, asyncio.Future] = {}
        self._qid = 0
        self._snapshot: dict | None = None
        self._retired: list[dict] = []
        self._closing = False
        self._supervisor: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker process (returns once it is spawned; it reads queued jobs when it is ready)."""
        self._closing = False
        reader = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(reader), name="modelrollout-shadow-worker")

    async def _spawn(self) -> asyncio.StreamReader:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import router.shadow as s, sys; sys.exit(s.main())", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=env, limit=1 << 30)
        self._proc, self._stdin, self.pid = proc, proc.stdin, proc.pid
        self._known = set()
        self._outbox.insert(0, ("settings", self.settings))
        self._schedule()
        return proc.stdout

    async def _supervise(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                while True:
                    qid, value = await _read_frame(reader)
                    if qid == 0:                     # the worker's records, serialised, for our log
                        if self.log is not None:
                            self.log.write_lines(value)
                        continue
                    fut = self._queries.get(qid)
                    if fut is not None and not fut.done():
                        fut.set_result(value)
            except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError, ValueError) as e:
                problem = e
            proc = self._proc
            self._stdin = None
            code = await proc.wait() if proc is not None else None
            for fut in self._queries.values():
                if not fut.done():
                    fut.set_exception(ShadowUnavailable(f"shadow worker exited (code {code})"))
            if self._closing:
                return
            self.lost += self.inflight
            if self._snapshot is not None:
                self._retired.append(self._snapshot)
                self._snapshot = None
            self.sent = self.done = 0
            log.error("shadow worker (pid %s) exited with code %s (%s); restarting in %gs", self.pid, code,
                      type(problem).__name__, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)
            if self._closing:
                return
            try:
                reader = await self._spawn()
            except OSError as e:
                log.error("shadow worker could not start: %s; retrying", e)
                continue
            self.restarts += 1

    async def close(self) -> None:
        """Let the worker finish its calls (bounded by drain_seconds), flush its log, and stop it."""
        if self._supervisor is None:
            return
        try:
            await self.query("drain", timeout=self.settings.drain_seconds + QUERY_TIMEOUT)
        except ShadowUnavailable as e:
            log.error("shadow worker did not drain: %s", e)
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

    def submit(self, target, request_id: str, body: bytes, now: float, features: dict | None,
               segments: dict | None, primary_output: Any) -> None:
        """Hand one mirror to the worker (never blocks; dropped and counted when the worker cannot take it)."""
        stdin = self._stdin
        if stdin is None or stdin.transport.is_closing() or stdin.transport.get_write_buffer_size() > MAX_BACKLOG:
            self.metrics.shadow_dropped[(target.spec.name, target.spec.namespace)] += 1
            return
        wid = target.wid
        if wid not in self._known:
            self._known.add(wid)
            self.keys.add(target.spec.key)
            self._outbox.append(("target", wid, target))
        self._outbox.append((wid, request_id, body, now, features, segments, primary_output))
        self.sent += 1
        if not self._scheduled:
            self._schedule()

    def forget(self, wids) -> None:
        """Targets no longer served: the worker may drop them once the jobs sent before are started."""
        gone = [w for w in wids if w in self._known]
        if gone:
            self._known.difference_update(gone)
            self._outbox.append(("forget", gone))
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        # Runs after the callbacks that were ready with it, i.e. after the responses of this turn are written.
        self._scheduled = False
        batch, self._outbox = self._outbox, []
        stdin = self._stdin
        if not batch or stdin is None:
            return
        try:
            stdin.write(_frame(batch))
        except (RuntimeError, ConnectionError) as e:    # the worker just died: its supervisor restarts it
            self.lost += sum(type(m[0]) is int for m in batch)
            log.warning("shadow worker pipe closed: %s", e)

    @property
    def inflight(self) -> int:
        """Mirrors handed over and not known to be finished: queued for the worker, or its calls in flight."""
        return self.sent - self.done

    # --- questions -------------------------------------------------------------------------------

    async def query(self, kind: str, *args, timeout: float = QUERY_TIMEOUT) -> Any:
        if self._stdin is None:
            raise ShadowUnavailable("shadow worker is not running (restarting)")
        self._qid += 1
        qid = self._qid
        fut = asyncio.get_running_loop().create_future()
        self._queries[qid] = fut
        self._outbox.append((kind, qid, *args))
        self._schedule()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise ShadowUnavailable(f"shadow worker did not answer {kind!r} within {timeout:g}s") from None
        finally:
            self._queries.pop(qid, None)

    async def windows(self, key: str, start: float | None, end: float | None) -> list[dict]:
        """The worker's windows of rollout `key` (empty if it was never sent a mirror for it)."""
        if key not in self.keys:
            return []
        return await self.query("windows", key, start, end)

    async def metric_snapshots(self) -> list[dict]:
        """The worker's counters (and those of workers that died) for `RouterMetrics.render`.

        A worker that does not answer in time contributes its last answer: counters never go backwards."""
        try:
            answer = await self.query("metrics", timeout=2.0)
        except ShadowUnavailable as e:
            (log.debug if self._stdin is None else log.warning)("metrics without a fresh shadow worker answer: %s", e)
        else:
            self._snapshot = answer["metrics"]
            self.done = answer["done"]
        return [*self._retired, *([self._snapshot] if self._snapshot is not None else [])]


# --- the worker process ------------------------------------------------------------------------------

async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    from router.core import Router

    first = await _read_frame(reader)
    if not first or first[0][0] != "settings":
        raise SystemExit("router.shadow: expected the router's settings first")
    settings = dataclasses.replace(first[0][1], shadow_worker=False, log_dir=None)
    forward_log = first[0][1].log_dir is not None
    logging.basicConfig(level=logging.getLogger("modelrollout").level or logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s[shadow]: %(message)s")
    router = Router(settings)
    if forward_log:
        router.log = _LogLines(lambda lines: writer.write(_frame((0, lines))))
    tasks = [asyncio.create_task(router.housekeeping(), name="housekeeping")]
    if router.log is not None:
        tasks.append(asyncio.create_task(router.log.run(), name="log"))    # ends when router.drain closes the log
    targets: dict[int, Any] = {}
    drained = False
    received = 0

    def answer(qid: int, value: Any) -> None:
        writer.write(_frame((qid, value)))

    async def drain(qid: int | None) -> None:
        nonlocal drained
        if not drained:
            drained = True
            for t in tasks:
                if t.get_name() != "log":
                    t.cancel()
            await router.drain()
        if qid is not None:
            answer(qid, True)
            await writer.drain()

    batch = first[1:]
    while True:
        for m in batch:
            head = m[0]
            if type(head) is int:
                received += 1
                target = targets.get(head)
                if target is not None and not drained:
                    router._start_shadow(target, *m[1:])
            elif head == "target":
                targets[m[1]] = m[2]
            elif head == "forget":
                for wid in m[1]:
                    targets.pop(wid, None)
            elif head == "windows":
                answer(m[1], router.recorder.windows(m[2], m[3], m[4]))
            elif head == "metrics":
                answer(m[1], {"metrics": router.metrics.snapshot(), "done": received - router.shadow_inflight})
            elif head == "drain":
                await drain(m[1])
        try:
            batch = await _read_frame(reader)
        except asyncio.IncompleteReadError:
            break                                    # the router closed the pipe
    await drain(None)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _LogLines:
    """The worker's prediction log: its records are serialised here and sent to the router's log every 50 ms,
    so a replica keeps one log (one file per hour and size) and the audit trail reads in one place."""

    def __init__(self, send):
        self._send = send
        self._pending: list[dict] = []
        self._closed = False

    def write(self, record: dict) -> None:
        self._pending.append(record)

    def flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self._send([serialise(r) for r in batch])

    async def run(self) -> None:
        while not self._closed:
            await asyncio.sleep(0.05)
            self.flush()

    async def close(self) -> None:
        """Send what is left (before the drain is answered: the router closes its log after that answer)."""
        self._closed = True
        self.flush()


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


if __name__ == "__main__":
    sys.exit(main())
