"""Calls to model versions over HTTP/1.1: a small keep-alive client on asyncio + httptools.

The router makes one or two upstream calls per request, so the client is the largest cost on the hot path.
General clients spend most of their time on features a model call never needs (cookies, redirects,
auto headers, tracing); this one writes one request, parses the answer with httptools (the C parser
uvicorn uses) and keeps idle connections per upstream. Every failure becomes an `Answer` with an error
kind the summaries count ("http_5xx", "timeout", "unreachable"), never an exception on the request path.

https upstreams are verified against the system CAs and, when given, a CA file (`Upstreams(ca_file=...)`).
"""
from __future__ import annotations

import asyncio
import os
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from policies.errors import RouterError

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


class _Closed(RouterError):
    """The connection closed or sent something unparseable before a complete answer."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.used = False
        self.received = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.ctype = b""
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.framed = False
        """The answer has a Content-Length or is chunked; otherwise its body ends when the connection closes."""

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(_Closed(f"unparseable HTTP answer: {e}"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if exc is None and self.headers_done and not self.framed:
            self._complete(False)           # an answer without length or chunks ends at the close (RFC 9112 6.3)
            return
        self._fail(_Closed(f"connection closed{f': {exc}' if exc else ''}"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        n = len(name)
        if n == 12 and name.lower() == b"content-type":
            self.ctype = value
        elif n == 14 and name.lower() == b"content-length":
            self.framed = True
        elif n == 17 and name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            self._reset()                   # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return
        self._complete(self.parser.should_keep_alive())

    def _complete(self, keep_alive: bool) -> None:
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        result = (self.status, self.ctype, body, keep_alive)
        self._reset()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(result)

    def request(self, data: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.received = False
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Idle keep-alive connections to one upstream (host, port, scheme)."""

    def __init__(self, base: str, max_idle: int, tls: ssl.SSLContext | None):
        parts = urlsplit(base)
        self.host = parts.hostname or "localhost"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.authority = parts.netloc.encode("idna")
        self.prefix = parts.path.rstrip("/")
        self.max_idle = max_idle
        self.idle: list[_Conn] = []
        self._ssl = tls if self.tls else None

    async def connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port, ssl=self._ssl)
        return conn

    def take(self) -> _Conn | None:
        idle = self.idle
        while idle:
            c = idle.pop()
            if not c.closed:
                return c
        return None

    def give(self, conn: _Conn, keep_alive: bool) -> None:
        if keep_alive and not conn.closed and len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


class Upstreams:
    """Keep-alive pools, one per model base URL (created on first use).

    https upstreams must present a certificate the system CAs or, when given, the CAs in the PEM file
    `ca_file` vouch for (e.g. a cluster-internal CA); the file is read here, so a bad one fails at startup.
    """

    def __init__(self, connections: int = 512, ca_file: str | os.PathLike | None = None):
        self.connections = connections
        self.ca_file = ca_file
        self._pools: dict[str, _Pool] = {}
        self._tls: ssl.SSLContext | None = None
        if ca_file is not None:
            self._tls_context()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context()
            if self.ca_file is not None:
                try:
                    context.load_verify_locations(cafile=self.ca_file)
                except (OSError, ValueError) as e:
                    raise ValueError(f"upstream CA file {os.fspath(self.ca_file)!r}: cannot load CA certificates: "
                                     f"{e}") from e
            self._tls = context
        return self._tls

    def _pool(self, base: str) -> _Pool:
        pool = self._pools.get(base)
        if pool is None:
            tls = self._tls_context() if base.startswith("https:") else None
            pool = self._pools[base] = _Pool(base, self.connections, tls)
        return pool

    async def call(self, base: str, path: str, body: bytes, headers: dict, timeout: float) -> Answer:
        pool = self._pool(base)
        head = [b"POST ", (pool.prefix + path).encode(), b" HTTP/1.1\r\nHost: ", pool.authority,
                b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
        for k, v in headers.items():
            head.append(f"{k}: {v}\r\n".encode("latin-1"))
        head.append(b"\r\n")
        data = b"".join(head) + body
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                result = await self._exchange(pool, data)
        except TimeoutError:
            return Answer(None, b"", "", "timeout", time.perf_counter() - start, f"gave no answer within {timeout:g}s")
        except ssl.SSLCertVerificationError as e:
            return Answer(None, b"", "", "unreachable", time.perf_counter() - start,
                          f"is unreachable at {base}: TLS certificate verification failed: {e.verify_message} "
                          f"(is its CA among the system CAs or in the upstream CA file?)")
        except (OSError, _Closed) as e:
            return Answer(None, b"", "", "unreachable", time.perf_counter() - start,
                          f"is unreachable at {base}: {e or type(e).__name__}")
        latency = time.perf_counter() - start
        status, ctype, payload, _ = result
        ctype = ctype.decode("latin-1") or "application/json"
        if status >= 500:
            return Answer(status, payload, ctype, "http_5xx", latency, f"answered HTTP {status}")
        return Answer(status, payload, ctype, None, latency)

    async def _exchange(self, pool: _Pool, data: bytes):
        conn = pool.take()
        reused = conn is not None
        if conn is None:
            conn = await pool.connect()
        try:
            try:
                result = await conn.request(data)
            except _Closed:
                if not (reused and not conn.received):
                    raise
                # The upstream closed an idle keep-alive connection just as it was reused: the request
                # never reached it, so send it once more on a fresh connection.
                conn = await pool.connect()
                result = await conn.request(data)
        except BaseException:
            conn.close()        # cancelled (timeout) or broken: never reuse a connection mid-answer
            raise
        pool.give(conn, result[3])
        return result

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            p.close()
