"""The append-only prediction log: one JSON line per outcome, the audit trail `modelrollout replay` reads.

The request path only appends a dict to a list; a background task serialises batches and writes them from
a worker thread, rotating files by size and by hour. `close()` writes everything left, fsyncs and closes,
so a clean shutdown loses no record.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Iterator

import orjson

log = logging.getLogger("modelrollout.router")


class PredictionLog:
    """JSONL files `predictions-<replica>-<YYYYmmddTHH>-<seq>.jsonl` in `directory`."""

    def __init__(self, directory: str | os.PathLike, replica_id: str, max_bytes: int = 64 * 1024 * 1024,
                 flush_seconds: float = 0.2, max_pending: int = 1_000_000):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.replica_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in replica_id)
        self.max_bytes = max_bytes
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self._pending: list[dict] = []
        self._file = None
        self._hour = ""
        self._size = 0
        self._seq = 0
        self._closed = False
        self._flushing = asyncio.Lock()

    def write(self, record: dict) -> None:
        """Queue one record (never blocks; beyond `max_pending` queued records it drops and counts)."""
        if len(self._pending) >= self.max_pending or self._closed:
            self.dropped += 1
            return
        self._pending.append(record)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _open(self, hour: str) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        if hour != self._hour:
            self._seq = 0
        while True:
            path = self.directory / f"predictions-{self.replica_id}-{hour}-{self._seq:04d}.jsonl"
            if not path.exists():
                break
            self._seq += 1
        self._file = open(path, "ab")
        self._hour, self._size = hour, 0
        self._seq += 1

    def _write_lines(self, lines: list[bytes], sync: bool) -> None:
        """Append serialised lines, rotating by hour and size (runs in a worker thread: file I/O only)."""
        hour = time.strftime("%Y%m%dT%H", time.gmtime())
        if self._file is None or hour != self._hour:
            self._open(hour)
        for line in lines:
            if self._size and self._size + len(line) > self.max_bytes:
                self._open(hour)
            self._file.write(line)
            self._size += len(line)
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    async def _serialise(self, batch: list[dict], chunk: int = 128) -> list[bytes]:
        """JSON lines for `batch`, made on the event loop a chunk at a time: a worker thread doing this would
        hold the GIL for up to the 5 ms switch interval and stall requests."""
        lines: list[bytes] = []
        option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
        for i in range(0, len(batch), chunk):
            lines.extend(orjson.dumps(r, option=option, default=str) for r in batch[i:i + chunk])
            if i + chunk < len(batch):
                await asyncio.sleep(0)
        return lines

    async def flush(self, sync: bool = False) -> None:
        async with self._flushing:
            if self._closed:
                return
            batch, self._pending = self._pending, []
            if batch or sync:
                lines = await self._serialise(batch)
                await asyncio.to_thread(self._write_lines, lines, sync)
                self.written += len(batch)

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
            except OSError as e:
                log.error("prediction log %s: write failed, will retry: %s", self.directory, e)

    async def close(self) -> None:
        """Write every queued record, fsync and close the file."""
        async with self._flushing:
            batch, self._pending = self._pending, []
            self._closed = True
            await asyncio.to_thread(self._write_lines, await self._serialise(batch), True)
            self.written += len(batch)
            if self._file is not None:
                self._file.close()
                self._file = None


def read_records(directory: str | os.PathLike) -> Iterator[dict]:
    """Every record of a prediction log directory, file by file in name order (for replay and audits)."""
    for path in sorted(Path(directory).glob("predictions-*.jsonl")):
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)
