"""Streaming HTTP/1.1 exchanges with model versions: the client side of transparent mode (router.transparent).

`router.upstream` reads a whole answer before the router replies, which suits a prediction; a transparent
proxy must carry any method, any body and any answer, of any size, as it comes. Here a request's head (and
its body, when the client sent it in one piece) is written at once, the rest of a streamed body is pumped as
it arrives, and the answer's head is handed over as soon as it is parsed, its body piece by piece:

* the answer is parsed by httptools (the C parser uvicorn uses); its body pieces wait in a buffer of at most
  `HIGH_WATER` bytes, beyond which reading from the model pauses until the client has taken them, so a slow
  client never makes the router hold a large answer;
* writing to the model waits when the socket's buffer is full (asyncio flow control);
* idle keep-alive connections are kept per version URL (`--upstream-connections` each) and reused; a reused
  connection the model had closed just before is replaced once, when the request was sent whole;
* a connection is reused only after a complete exchange (request fully sent, answer fully read).

Hop-by-hop fields (RFC 9110 section 7.6.1: Connection and every field it names, Proxy-Connection, Keep-Alive,
TE, Transfer-Encoding, Upgrade) are removed by the caller both ways (`strip_hop_by_hop`); framing is redone
per hop.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from typing import Callable
from urllib.parse import urlsplit

import httptools

from policies.errors import RouterError

HIGH_WATER = 256 * 1024
"""Bytes of an answer's body buffered before reading from the model pauses."""

HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade",
                        b"trailer"))
"""Fields never forwarded (RFC 9110 section 7.6.1; Trailer too: trailers are not forwarded, so announcing them
would be wrong)."""


class Closed(RouterError):
    """The model's connection closed, or sent something unparseable, before a complete answer."""


def strip_hop_by_hop(headers, connection: bytes | None) -> list[tuple[bytes, bytes]]:
    """`headers` (lower-case names) without the hop-by-hop fields and those named in `connection`."""
    named = {t.strip().lower() for t in connection.split(b",")} if connection else ()
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]


def chunk(data: bytes) -> bytes:
    """`data` framed as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class Stream(asyncio.Protocol):
    """One keep-alive connection to a model, one exchange at a time, its answer read as a stream."""

    def __init__(self, pool: "StreamPool") -> None:
        self.pool: StreamPool | None = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.write_paused = False
        self._drained: asyncio.Future | None = None
        self.begin(False)

    def begin(self, head_only: bool) -> None:
        """Reset for a new exchange; `head_only`: the request was HEAD (the answer has no body)."""
        self.head_only = head_only
        self.received = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.framed = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.done = False
        self.done_at = 0.0
        self.keep_alive = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future | None = None
        self._paused = False

    # ---- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.done:
            return                  # e.g. the body of an answer to HEAD: the connection is not reused
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(Closed(f"unparseable HTTP answer: {e}"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.pool is not None:
            self.pool.live -= 1
            self.pool = None
        if self.headers_done and not self.done and not self.framed and exc is None:
            self._finish(False)     # an answer without length or chunks ends at the close (RFC 9112 6.3)
        elif not self.done:
            self._fail(Closed(f"connection closed{f': {exc}' if exc else ''}"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # ---- httptools callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return                  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.headers_done = True
        if self.head_only:
            self._finish(False)     # httptools cannot be told the request was HEAD: never reuse this one
        else:
            self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered >= HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:   # the end of an interim answer
            self.headers = []
            self.framed = False
            return
        if not self.done:
            self._finish(self.parser.should_keep_alive())

    # ---- the exchange ------------------------------------------------------------------------------

    def _finish(self, keep_alive: bool) -> None:
        self.done = True
        self.done_at = time.perf_counter()
        self.keep_alive = keep_alive
        self._wake()

    def expire(self) -> None:
        """The caller's deadline passed: its wait raises TimeoutError."""
        self._fail(TimeoutError())

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the model's socket accepts more (no-op unless flow control paused writing)."""
        if self.write_paused and not self.closed:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    async def head(self) -> None:
        """Wait for the answer's status and header fields; raises Closed."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    def take(self) -> bytes:
        """The body pieces buffered so far, joined (reading resumes if it was paused)."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self._paused and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes | None:
        """The next piece of the body (whatever arrived since the last read), None at its end; raises Closed."""
        while not self.chunks:
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.take()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class StreamPool:
    """Idle keep-alive connections to one model URL (scheme, host, port), and what a request line needs."""

    def __init__(self, base: str, max_idle: int, tls: ssl.SSLContext | None):
        parts = urlsplit(base)
        self.host = parts.hostname or "localhost"
        self.tls = tls if parts.scheme == "https" else None
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.authority = parts.netloc.encode("idna")
        self.prefix = parts.path.rstrip("/").encode()
        self.max_idle = max_idle
        self.idle: list[Stream] = []
        self.live = 0

    async def connect(self) -> Stream:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Stream(self), self.host, self.port, ssl=self.tls)
        self.live += 1
        return conn

    def take(self) -> Stream | None:
        while self.idle:
            c = self.idle.pop()
            if not c.closed:
                return c
        return None

    def give(self, conn: Stream, reusable: bool) -> None:
        if reusable and conn.done and conn.keep_alive and not conn.closed and len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


class Proxy:
    """Streaming exchanges with model versions over pools of keep-alive connections, one pool per URL."""

    def __init__(self, connections: int, tls: Callable[[], ssl.SSLContext]):
        self.connections = connections
        self._tls = tls
        self._pools: dict[str, StreamPool] = {}

    def pool(self, base: str) -> StreamPool:
        pool = self._pools.get(base)
        if pool is None:
            pool = self._pools[base] = StreamPool(base, self.connections,
                                                  self._tls() if base.startswith("https:") else None)
        return pool

    async def send(self, pool: StreamPool, data: bytes, head_only: bool, timing: list[float], deadline: float,
                   pump: Callable[[Stream], None] | None = None) -> Stream:
        """A connection with `data` (the request head and what the client sent of its body) written and the
        answer's head read by `deadline` (the event loop's clock). `pump(conn)`, when given, is called right
        after `data` is written and starts sending the rest of the body; without it `data` is the whole
        request, so a reused connection found closed may be replaced. `timing` gets [when `data` was written,
        seconds spent connecting]. Raises TimeoutError, Closed or OSError; the connection is then closed."""
        loop = asyncio.get_running_loop()
        conn = pool.take()
        reused = conn is not None
        while True:
            if conn is None:
                started = time.perf_counter()
                try:
                    async with asyncio.timeout_at(deadline):
                        conn = await pool.connect()
                finally:
                    timing[1] += time.perf_counter() - started
            conn.begin(head_only)
            timing[0] = time.perf_counter()
            conn.write(data)
            if pump is not None:
                pump(conn)
            # a plain timer instead of asyncio.timeout: the wait is on this connection only (cheaper per call)
            timer = loop.call_at(deadline, conn.expire)
            try:
                await conn.head()
                return conn
            except Closed:
                conn.close()
                if not (reused and pump is None and not conn.received):
                    raise
                # The model closed an idle keep-alive connection just as it was reused: the request never
                # reached it, so send it once more on a fresh connection.
                conn, reused = None, False
            except BaseException:
                conn.close()
                raise
            finally:
                timer.cancel()

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            p.close()
