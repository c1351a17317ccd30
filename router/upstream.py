"""Calls to model versions over HTTP: one keep-alive aiohttp session per upstream, errors mapped to kinds.

Every failure becomes an `Answer` with an error kind the summaries count ("http_5xx", "timeout",
"unreachable"), never an exception on the request path.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

ERROR_STATUS = {"timeout": 504, "unreachable": 502, "http_5xx": 502}


@dataclass(slots=True)
class Answer:
    status: int | None
    """The model's HTTP status, None when it never answered."""
    body: bytes
    content_type: str
    error: str | None
    """None, "http_5xx", "timeout" or "unreachable"."""
    latency: float
    """Seconds from sending the request to reading the whole answer."""
    detail: str = ""


class Upstreams:
    """A pool of keep-alive sessions, one per model base URL (created on first use)."""

    def __init__(self, connections: int = 512):
        self.connections = connections
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _session(self, base: str) -> aiohttp.ClientSession:
        s = self._sessions.get(base)
        if s is None or s.closed:
            connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=self.connections,
                                             keepalive_timeout=30, enable_cleanup_closed=True)
            s = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                      skip_auto_headers=("User-Agent",))
            self._sessions[base] = s
        return s

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        t = self._timeouts.get(seconds)
        if t is None:
            t = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return t

    async def call(self, base: str, path: str, body: bytes, headers: dict, timeout: float) -> Answer:
        start = time.perf_counter()
        try:
            async with self._session(base).post(base + path, data=body, headers=headers,
                                                timeout=self._timeout(timeout)) as r:
                data = await r.read()
                ctype = r.headers.get("Content-Type", "application/json")
                status = r.status
        except (asyncio.TimeoutError, TimeoutError):
            return Answer(None, b"", "", "timeout", time.perf_counter() - start,
                          f"no answer within {timeout:g}s")
        except (aiohttp.ClientError, OSError) as e:
            return Answer(None, b"", "", "unreachable", time.perf_counter() - start,
                          f"{type(e).__name__}: {e}")
        latency = time.perf_counter() - start
        if status >= 500:
            return Answer(status, data, ctype, "http_5xx", latency, f"answered HTTP {status}")
        return Answer(status, data, ctype, None, latency)

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            await s.close()
