"""The append-only prediction log: one JSON line per outcome, the audit trail `modelrollout replay` reads.

A line is `Outcome.to_json()` (`policies.outcome`, `docs/contracts.md`, "Prediction log"); `read_log` is the
one reader of log files, and parses each line with `Outcome.from_json`.

The request path only appends a dict to a list; a background task serialises batches on the event loop, a
chunk at a time, into a few large byte strings already cut where files rotate (by size and by hour), and a
worker thread only opens files and writes those strings, one write call each. The thread runs next to no
Python, so it hardly holds the GIL the event loop needs (a thread looping over lines in Python would keep
the loop waiting up to the 5 ms switch interval at a time). `close()` writes everything left, fsyncs and
closes, so a clean shutdown loses no record.

Retention: the replica's own closed files are deleted, oldest (last written) first, once older than
`max_age` seconds or while all its files together hold more than `max_total` bytes; the file being written
is never deleted. The check runs in the writer thread when a file is opened, when the total passes the
limit, after a failed write (a full disk) and every `sweep_seconds`; deletions are counted by reason
(`LogCounters`, the `modelrollout_router_log_deleted_*` metrics).

Rewriting (`rewrite`, for `modelrollout log erase`): a file is replaced by a new one (write, fsync, rename)
under an exclusive `flock` of the old one. The writer holds a shared lock on its file while it appends and,
once it has the lock, checks that the path still names the file it holds; when a rewrite replaced it, it
opens the new file and appends there. So a live router loses no line to a rewrite, and a rewrite never
copies half a write.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import orjson

from policies.errors import InvalidInput
from policies.outcome import Outcome, OutcomeError

log = logging.getLogger("modelrollout.router")

_OPTION = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE

Segment = tuple[bool, bytes, int]
"""(start a new file first, the bytes of whole lines, how many records they hold)."""

_FILE_TAIL = re.compile(r"\d{8}T\d{2}-\d{4,}\.jsonl")
"""What follows `predictions-<replica>-` in the name of one of that replica's files."""
DELETE_REASONS = ("age", "size")


@dataclass
class LogCounters:
    """A prediction log's counters, as `/metrics` shows them (summed over a router and its workers)."""
    written: int = 0
    dropped: int = 0
    deleted_files: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DELETE_REASONS, 0))
    """Files deleted by retention, by reason (`age`, `size`)."""
    deleted_bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DELETE_REASONS, 0))
    bytes: int = 0
    """Bytes in this replica's log files at the last check (the file being written included)."""

    def plus(self, other: "LogCounters") -> "LogCounters":
        """The sum of two counters (`bytes` is a level, not a count: `other`'s, the newer one)."""
        return LogCounters(self.written + other.written, self.dropped + other.dropped,
                           {k: self.deleted_files.get(k, 0) + other.deleted_files.get(k, 0) for k in DELETE_REASONS},
                           {k: self.deleted_bytes.get(k, 0) + other.deleted_bytes.get(k, 0) for k in DELETE_REASONS},
                           other.bytes)


def log_metrics(c: LogCounters):
    """The prediction log's metric families for `RouterMetrics`' collector."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    m = CounterMetricFamily("modelrollout_router_log_records", "Prediction log records written.")
    m.add_metric([], c.written)
    yield m
    m = CounterMetricFamily("modelrollout_router_log_dropped", "Prediction log records dropped (writer too far "
                            "behind, or a failed write).")
    m.add_metric([], c.dropped)
    yield m
    m = CounterMetricFamily("modelrollout_router_log_deleted_files", "Prediction log files deleted by retention "
                            "(--log-max-age, --log-max-total), by reason.", labels=["reason"])
    for k in DELETE_REASONS:
        m.add_metric([k], c.deleted_files.get(k, 0))
    yield m
    m = CounterMetricFamily("modelrollout_router_log_deleted_bytes", "Bytes of prediction log files deleted by "
                            "retention, by reason.", labels=["reason"])
    for k in DELETE_REASONS:
        m.add_metric([k], c.deleted_bytes.get(k, 0))
    yield m
    g = GaugeMetricFamily("modelrollout_router_log_bytes", "Bytes in this replica's prediction log files at the "
                          "last retention check.")
    g.add_metric([], c.bytes)
    yield g


class PredictionLog:
    """JSONL files `predictions-<replica>-<YYYYmmddTHH>-<seq>.jsonl` in `directory`.

    A file holds at most `max_bytes` (only a single longer line makes it larger) and lines of one UTC hour
    (`clock()`, seconds since the epoch, read once per flush, decides the hour). Retention (see the module):
    `max_total` bytes over all of this replica's files, `max_age` seconds since a closed file's last write
    (None: no limit), checked at least every `sweep_seconds`.
    """

    def __init__(self, directory: str | os.PathLike, replica_id: str, max_bytes: int = 64 * 1024 * 1024,
                 flush_seconds: float = 0.2, max_pending: int = 1_000_000,
                 clock: Callable[[], float] = time.time, chunk: int = 128, piece_bytes: int = 1024 * 1024,
                 max_total: int | None = None, max_age: float | None = None, sweep_seconds: float | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.replica_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in replica_id)
        self.max_bytes = max_bytes
        self.max_total = max_total or None
        self.max_age = max_age or None
        self.sweep_seconds = sweep_seconds if sweep_seconds is not None else (
            min(60.0, max(0.5, self.max_age / 4)) if self.max_age else 60.0)
        """Longest time between two retention checks (a quarter of max_age, at most a minute)."""
        self.deleted_files = dict.fromkeys(DELETE_REASONS, 0)
        self.deleted_bytes = dict.fromkeys(DELETE_REASONS, 0)
        self._total = 0
        """Bytes in this replica's files: counted at each check, plus what was written since."""
        self._next_sweep = 0.0
        self._opened = False
        self._path: Path | None = None
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.clock = clock
        self.chunk = chunk
        """Records serialised between two yields to the event loop (128 take ~0.2-0.6 ms)."""
        self.piece_bytes = piece_bytes
        """Largest byte string joined on the event loop (one copy of this size stalls it ~0.1 ms)."""
        self.written = 0
        self.dropped = 0
        """Records lost: queued beyond `max_pending`, written after `close()`, or in a failed write."""
        self._pending: list[Outcome | dict] = []
        self._file = None
        self._hour = ""
        self._size = 0
        self._seq = 0
        self._closed = False
        self._flushing = asyncio.Lock()

    def write(self, record: Outcome | dict) -> None:
        """Queue one outcome record (never blocks; beyond `max_pending` queued records it drops and counts). A
        dict is written as it is (tests and benchmarks of the file mechanics)."""
        if len(self._pending) >= self.max_pending or self._closed:
            self.dropped += 1
            return
        self._pending.append(record)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def hour(self) -> str:
        return time.strftime("%Y%m%dT%H", time.gmtime(self.clock()))

    # --- event loop: serialise and cut ---------------------------------------------------------------

    async def _segments(self, batch: list[dict], hour: str) -> list[Segment]:
        """The bytes to write for `batch`, cut where a file must rotate and at `piece_bytes`.

        Made on the event loop a chunk of records at a time (yielding in between): serialising and joining
        are C calls, and the file size bookkeeping is a sum per chunk unless the chunk crosses `max_bytes`.
        Reads the current file's size and hour, which only the (finished) previous flush changed.
        """
        max_bytes, piece_bytes, chunk = self.max_bytes, self.piece_bytes, self.chunk
        size = self._size if self._file is not None and hour == self._hour else 0
        segments: list[Segment] = []
        cur: list[bytes] = []
        cur_bytes = cur_records = 0
        rotate = False
        for i in range(0, len(batch), chunk):
            lines = [orjson.dumps(r.to_dict() if type(r) is Outcome else r, option=_OPTION, default=str)
                     for r in batch[i:i + chunk]]
            total = sum(map(len, lines))
            if size + total <= max_bytes:
                cur += lines
                cur_bytes += total
                cur_records += len(lines)
                size += total
            else:
                for line in lines:
                    n = len(line)
                    if size and size + n > max_bytes:
                        if cur:
                            segments.append((rotate, b"".join(cur), cur_records))
                        cur, cur_bytes, cur_records, rotate, size = [], 0, 0, True, 0
                    cur.append(line)
                    cur_bytes += n
                    cur_records += 1
                    size += n
            if cur_bytes >= piece_bytes:
                segments.append((rotate, b"".join(cur), cur_records))
                cur, cur_bytes, cur_records, rotate = [], 0, 0, False
            if i + chunk < len(batch):
                await asyncio.sleep(0)
        if cur:
            segments.append((rotate, b"".join(cur), cur_records))
        return segments

    # --- worker thread: files only -------------------------------------------------------------------

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                os.fsync(f.fileno())
            finally:
                f.close()

    def _open(self, hour: str) -> None:
        self._close_file()
        if hour != self._hour:
            self._seq = 0
        while True:
            path = self.directory / f"predictions-{self.replica_id}-{hour}-{self._seq:04d}.jsonl"
            if not path.exists():
                break
            self._seq += 1
        self._file = open(path, "ab", buffering=0)
        self._path = path
        self._hour, self._size = hour, 0
        self._seq += 1
        self._opened = True

    def _lock_current(self) -> int:
        """Take a shared lock on the file its path names now, reopening it when a rewrite replaced the one
        held; returns the locked descriptor."""
        while True:
            fd = self._file.fileno()
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.stat(self._path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False                    # deleted under us: appending by path starts it again
            if same:
                return fd
            self._file.close()                  # releases the lock
            self._file = open(self._path, "ab", buffering=0)
            size = os.fstat(self._file.fileno()).st_size
            self._total += size - self._size
            self._size = size

    def _write_segments(self, hour: str, segments: list[Segment], sync: bool, progress: list[int]) -> None:
        """Write each segment with one call (rotating first when asked, or when the hour changed); count the
        records of completed segments in `progress[0]`. On a failure the current file is cut back to its last
        complete line and dropped, so the next flush starts a new file."""
        try:
            for rotate, data, records in segments:
                if rotate or self._file is None or hour != self._hour:
                    self._open(hour)
                fd = self._lock_current()
                try:
                    view = memoryview(data)
                    while view:                # an unbuffered write may be short (e.g. near a size limit)
                        view = view[self._file.write(view):]
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._size += len(data)
                self._total += len(data)
                progress[0] += records
            if sync and self._file is not None:
                os.fsync(self._file.fileno())
        except OSError:
            f, self._file = self._file, None
            if f is not None:
                try:
                    os.ftruncate(f.fileno(), self._size)
                except OSError:
                    pass
                f.close()
            raise

    # --- flushing ------------------------------------------------------------------------------------

    async def _write(self, batch: list[dict], sync: bool) -> None:
        hour = self.hour()
        segments = await self._segments(batch, hour)
        failed = False
        if segments or (sync and self._file is not None):
            progress = [0]
            try:
                await asyncio.to_thread(self._write_segments, hour, segments, sync, progress)
            except OSError as e:
                failed = True
                lost = len(batch) - progress[0]
                self.dropped += lost
                log.error("prediction log %s: write failed, %d of %d records of this flush dropped, the next "
                          "flush starts a new file: %s", self.directory, lost, len(batch), e)
                raise
            finally:
                self.written += progress[0]
                if self._sweep_due(failed):
                    await asyncio.to_thread(self.sweep)
        elif self._sweep_due(False):
            await asyncio.to_thread(self.sweep)

    # --- retention -----------------------------------------------------------------------------------

    def _sweep_due(self, failed: bool) -> bool:
        if self.max_total is None and self.max_age is None:
            return False
        return (failed or self._opened or time.monotonic() >= self._next_sweep
                or (self.max_total is not None and self._total > self.max_total))

    def own_files(self) -> list[tuple[float, str, int]]:
        """(last write time, name, size) of each of this replica's log files."""
        prefix = f"predictions-{self.replica_id}-"
        out = []
        with os.scandir(self.directory) as entries:
            for e in entries:
                name = e.name
                if name.startswith(prefix) and _FILE_TAIL.fullmatch(name, len(prefix)):
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    out.append((st.st_mtime, name, st.st_size))
        return out

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete this replica's closed files past the age limit, then the oldest until its files hold at most
        `max_total` bytes; returns the names deleted (oldest first). Runs in the writer thread (or with no
        flush in progress). `now`: seconds since the epoch (default: the wall clock, as file times are)."""
        self._opened = False
        self._next_sweep = time.monotonic() + self.sweep_seconds
        now = time.time() if now is None else now
        try:
            files = sorted(self.own_files())
        except OSError as e:
            log.error("prediction log %s: cannot list files for retention: %s", self.directory, e)
            return []
        current = self._path.name if self._file is not None and self._path is not None else None
        total = sum(size for _, _, size in files)
        if current is not None:
            total += max(0, self._size - next((size for _, n, size in files if n == current), 0))
        deleted: list[str] = []
        for mtime, name, size in files:
            if name == current:
                continue
            if self.max_age is not None and mtime < now - self.max_age:
                reason = "age"
            elif self.max_total is not None and total > self.max_total:
                reason = "size"
            else:
                continue
            try:
                os.unlink(self.directory / name)
            except FileNotFoundError:
                total -= size                   # gone already (an operator, or erase's rename raced us)
                continue
            except OSError as e:
                log.error("prediction log %s: cannot delete %s: %s", self.directory, name, e)
                break
            total -= size
            deleted.append(name)
            self.deleted_files[reason] += 1
            self.deleted_bytes[reason] += size
            log.info("prediction log: deleted %s (%d bytes; %s)", name, size,
                     f"last written more than {self.max_age:g}s ago" if reason == "age"
                     else f"this replica's files held more than {self.max_total} bytes")
        self._total = total
        return deleted

    def counters(self) -> LogCounters:
        return LogCounters(self.written, self.dropped, dict(self.deleted_files), dict(self.deleted_bytes),
                           self._total)

    async def flush(self, sync: bool = False) -> None:
        """Write every queued record (fsync too when `sync`), then apply retention when due. Raises OSError
        when a write failed; the records not written are counted in `dropped`."""
        async with self._flushing:
            if self._closed:
                return
            batch, self._pending = self._pending, []
            await self._write(batch, sync)

    async def run(self) -> None:
        """Background writer: flush every `flush_seconds` until `close()`.

        Stopped by `close()`, not by cancellation: a cancelled flush would leave its worker thread writing
        while the final flush runs, and records could be lost.
        """
        while not self._closed:
            await asyncio.sleep(self.flush_seconds)
            if self._closed:
                return
            try:
                await self.flush()
            except OSError:
                pass                            # logged and counted by the flush; the next one tries again

    async def close(self) -> None:
        """Write every queued record, fsync and close the file (a second call does nothing)."""
        async with self._flushing:
            batch, self._pending = self._pending, []
            self._closed = True
            try:
                await self._write(batch, True)
            finally:
                if self._file is not None:
                    self._file.close()
                    self._file = None


def open_log(settings) -> "PredictionLog | None":
    """The prediction log `RouterSettings` ask for (None without a `log_dir`)."""
    if settings.log_dir is None:
        return None
    return PredictionLog(settings.log_dir, settings.replica_id, settings.log_max_bytes,
                         max_total=settings.log_max_total, max_age=settings.log_max_age)


def rewrite(path: str | os.PathLike, drop: Callable[[int, bytes], bool]) -> tuple[int, int]:
    """Replace log file `path` by a copy without the lines for which `drop(line_number, line)` is true:
    written next to it, fsynced, given the old file's mode and times, renamed over it and the directory
    fsynced, all under an exclusive lock of the old file (a live writer waits, then follows to the new
    file). Returns (lines kept, lines dropped); the file is untouched when nothing is dropped, and (0, 0)
    when it no longer exists."""
    path = Path(path)
    while True:
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return 0, 0
        with fh:
            fd = fh.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue                    # replaced since we opened it: start over on the new file
            except FileNotFoundError:
                return 0, 0
            lines = fh.read().splitlines(keepends=True)
            keep = [line for n, line in enumerate(lines, 1) if not drop(n, line)]
            if len(keep) == len(lines):
                return len(lines), 0
            st = os.fstat(fd)
            tmp = path.with_name(f".{path.name}.rewrite-{os.getpid()}")
            try:
                with open(tmp, "wb") as out:
                    out.write(b"".join(keep))
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, st.st_mode & 0o7777)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return len(keep), len(lines) - len(keep)


class LogError(InvalidInput, ValueError):
    """A prediction log that cannot be read; the message names the file and line."""


def log_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files of `paths`: a file as it is; a directory's `predictions-*.jsonl` in name order (else its
    `*.jsonl`). LogError for a directory without any."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(p.glob("predictions-*.jsonl")) or sorted(p.glob("*.jsonl"))
            if not files:
                raise LogError(f"{p}: no predictions-*.jsonl files in this directory")
            out.extend(files)
        else:
            out.append(p)
    return out


def read_file(path: str | os.PathLike) -> Iterator[Outcome]:
    """The outcome records of one log file in file order; LogError names the file and line of a bad one."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise LogError(f"{path}: cannot read: {e.strerror}") from e
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield Outcome.from_json(line)
            except OutcomeError as e:
                raise LogError(f"{path}:{n}: {e}") from None


def read_log(paths: Sequence[str | os.PathLike]) -> list[Outcome]:
    """Every record of the log files and directories in `paths` (see `log_files`), sorted by time."""
    records = [r for f in log_files(paths) for r in read_file(f)]
    records.sort(key=lambda r: r.time)
    return records


def read_records(directory: str | os.PathLike) -> Iterator[Outcome]:
    """Every record of a prediction log directory, file by file in name order (for replay and audits)."""
    for path in sorted(Path(directory).glob("predictions-*.jsonl")):
        yield from read_file(path)
