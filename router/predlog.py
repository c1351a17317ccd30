"""The append-only prediction log: one JSON line per outcome, the audit trail `modelrollout replay` reads.

A line is `Outcome.to_json()` (`policies.outcome`, `docs/contracts.md`, "Prediction log"); `read_log` is the
one reader of log files, and parses each line with `Outcome.from_json`.

The request path only appends a dict to a list; a background task serialises batches on the event loop, a
chunk at a time, into a few large byte strings already cut where files rotate (by size and by hour), and a
worker thread only opens files and writes those strings, one write call each. The thread runs next to no
Python, so it hardly holds the GIL the event loop needs (a thread looping over lines in Python would keep
the loop waiting up to the 5 ms switch interval at a time). `close()` writes everything left, fsyncs and
closes, so a clean shutdown loses no record.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import orjson

from policies.errors import InvalidInput
from policies.outcome import Outcome, OutcomeError

log = logging.getLogger("modelrollout.router")

_OPTION = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE

Segment = tuple[bool, bytes, int]
"""(start a new file first, the bytes of whole lines, how many records they hold)."""


class PredictionLog:
    """JSONL files `predictions-<replica>-<YYYYmmddTHH>-<seq>.jsonl` in `directory`.

    A file holds at most `max_bytes` (only a single longer line makes it larger) and lines of one UTC hour
    (`clock()`, seconds since the epoch, read once per flush, decides the hour).
    """

    def __init__(self, directory: str | os.PathLike, replica_id: str, max_bytes: int = 64 * 1024 * 1024,
                 flush_seconds: float = 0.2, max_pending: int = 1_000_000,
                 clock: Callable[[], float] = time.time, chunk: int = 128, piece_bytes: int = 1024 * 1024):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.replica_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in replica_id)
        self.max_bytes = max_bytes
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
        self._hour, self._size = hour, 0
        self._seq += 1

    def _write_segments(self, hour: str, segments: list[Segment], sync: bool, progress: list[int]) -> None:
        """Write each segment with one call (rotating first when asked, or when the hour changed); count the
        records of completed segments in `progress[0]`. On a failure the current file is cut back to its last
        complete line and dropped, so the next flush starts a new file."""
        try:
            for rotate, data, records in segments:
                if rotate or self._file is None or hour != self._hour:
                    self._open(hour)
                view = memoryview(data)
                while view:                    # an unbuffered write may be short (e.g. near a size limit)
                    view = view[self._file.write(view):]
                self._size += len(data)
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
        if not segments and not (sync and self._file is not None):
            return
        progress = [0]
        try:
            await asyncio.to_thread(self._write_segments, hour, segments, sync, progress)
        except OSError as e:
            lost = len(batch) - progress[0]
            self.dropped += lost
            log.error("prediction log %s: write failed, %d of %d records of this flush dropped, the next flush "
                      "starts a new file: %s", self.directory, lost, len(batch), e)
            raise
        finally:
            self.written += progress[0]

    async def flush(self, sync: bool = False) -> None:
        """Write every queued record (fsync too when `sync`). Raises OSError when a write failed; the records
        not written are counted in `dropped`."""
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
