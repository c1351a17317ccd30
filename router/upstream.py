"""Calls to model versions over HTTP/1.1: a small keep-alive client on asyncio + httptools.

The router makes one or two upstream calls per request, so the client is the largest cost on the hot path.
General clients spend most of their time on features a model call never needs (cookies, redirects,
auto headers, tracing); this one writes one request, parses the answer with httptools (the C parser
uvicorn uses) and keeps idle connections per upstream. Every failure becomes an `Answer` with an error
kind the summaries count ("http_5xx", "timeout", "unreachable"), never an exception on the request path.

https upstreams are verified against the system CAs and, when given, a CA file (`Upstreams(ca_file=...)`).

A call's latency is the model's: from the request written on an established connection to the whole answer
read. Setting up a connection is not counted; a set-up that took `CONNECT_UNFAIR` or longer (a SYN dropped by
a full accept queue is retried after a second) marks the answer's latency as not comparable
(`Answer.excluded = "connect"`), because the server was not keeping up with accepting connections and the
request on it may have waited for that too.

`Upstreams(kernel_timestamps=True)` (the shadow caller's) reads plain-http answers with `recvmsg` and takes
each answer's arrival time from the kernel (SO_TIMESTAMPNS): a caller that was starved of CPU or busy when
the answer arrived (the worker runs at idle priority) still times the model exactly
(`Answer.kernel_timed`). https, and systems without the option, are timed by the caller's clock.
"""
from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from policies.errors import RouterError

ERROR_STATUS = {"timeout": 504, "unreachable": 502, "http_5xx": 502}
CONNECT_UNFAIR = 0.25
"""Seconds of connection set-up beyond which a call's latency is left out of the summaries (see above):
far above a connect's round trip in a cluster, far below the first SYN retry (1 s)."""


@dataclass(slots=True)
class Answer:
    status: int | None
    """The model's HTTP status, None when it never answered."""
    body: bytes
    content_type: str
    error: str | None
    """None, "http_5xx", "timeout" or "unreachable"."""
    latency: float
    """Seconds from writing the request on an established connection to reading the whole answer (from the
    start of the call when it never got a connection)."""
    detail: str = ""
    connect: float = 0.0
    """Seconds spent setting up a connection for this call (0 when an idle keep-alive one was reused)."""
    excluded: str | None = None
    """Why `latency` is not the model's (policies.summaries.LATENCY_EXCLUSIONS), None when it is."""
    kernel_timed: bool = False
    """`latency` ends at the kernel's receive time of the answer, not when this process read it."""

    def __reduce__(self):       # positional: pickles faster than a slots dataclass's state (router.worker)
        return (Answer, (self.status, self.body, self.content_type, self.error, self.latency, self.detail,
                         self.connect, self.excluded, self.kernel_timed))


class _Closed(RouterError):
    """The connection closed or sent something unparseable before a complete answer."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self, pool: "_Pool | None" = None) -> None:
        self.pool = pool
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
        if self.pool is not None:
            self.pool.live -= 1
            self.pool = None
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


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TS = struct.Struct("qq")


class _TimedConn(_Conn):
    """A keep-alive connection on a plain socket read with recvmsg: every read carries the kernel's receive
    time, so `latency()` is the answer's arrival minus the request's send, whenever this process got to
    read it. Wall clock on both ends (the kernel stamps with CLOCK_REALTIME)."""

    def __init__(self, pool: "_Pool", sock: socket.socket) -> None:
        super().__init__(pool)
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.sent_at = self.arrived = 0.0
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(262144, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        if not data:
            self._lost(None)
            return
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TS.unpack_from(raw)
                self.arrived = sec + nsec * 1e-9
        self.data_received(data)

    def _lost(self, exc) -> None:
        self._close_socket()
        self.connection_lost(exc)

    def request(self, data: bytes) -> asyncio.Future:
        self.waiter = self.loop.create_future()
        self.received = False
        self.arrived = 0.0
        self.sent_at = time.time()
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            self._lost(e)
            return self.waiter
        if sent < len(data):
            self.loop.create_task(self._send_rest(data[sent:]))
        return self.waiter

    async def _send_rest(self, rest: bytes) -> None:
        try:
            await self.loop.sock_sendall(self.sock, rest)
        except OSError as e:
            self._lost(e)

    def latency(self) -> float | None:
        """Seconds from sending the request to the kernel receiving the answer's last bytes."""
        return self.arrived - self.sent_at if self.arrived else None

    def _close_socket(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def close(self) -> None:
        if not self.closed:
            self._lost(None)
        self.closed = True


class _Pool:
    """Idle keep-alive connections to one upstream (host, port, scheme)."""

    def __init__(self, base: str, max_idle: int, tls: ssl.SSLContext | None, kernel_timestamps: bool = False):
        parts = urlsplit(base)
        self.host = parts.hostname or "localhost"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.authority = parts.netloc.encode("idna")
        self.prefix = parts.path.rstrip("/")
        self.max_idle = max_idle
        self.idle: list[_Conn] = []
        self.live = 0
        """Connections open to this upstream (idle or in use)."""
        self.opened = 0
        """Connections ever opened to this upstream."""
        self._ssl = tls if self.tls else None
        self.timed = kernel_timestamps and not self.tls

    async def connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        if self.timed:
            conn = await self._connect_timed(loop)
        else:
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port, ssl=self._ssl)
        self.live += 1
        self.opened += 1
        return conn

    async def _connect_timed(self, loop: asyncio.AbstractEventLoop) -> _Conn:
        family, kind, proto, _, address = (await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM))[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self.timed = False          # no receive timestamps here: time with the caller's clock
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return _TimedConn(self, sock)

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

    def __init__(self, connections: int = 512, ca_file: str | os.PathLike | None = None,
                 kernel_timestamps: bool = False):
        self.connections = connections
        self.ca_file = ca_file
        self.kernel_timestamps = kernel_timestamps
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

    def tls(self) -> ssl.SSLContext:
        """The TLS context for https upstreams (system CAs plus the CA file): the proxy's pools share it."""
        return self._tls_context()

    def pool(self, base: str) -> _Pool:
        pool = self._pools.get(base)
        if pool is None:
            tls = self._tls_context() if base.startswith("https:") else None
            pool = self._pools[base] = _Pool(base, self.connections, tls, self.kernel_timestamps)
        return pool

    async def call(self, base: str, path: str, body: bytes, headers: dict, timeout: float) -> Answer:
        pool = self.pool(base)
        head = [b"POST ", (pool.prefix + path).encode(), b" HTTP/1.1\r\nHost: ", pool.authority,
                b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
        for k, v in headers.items():
            head.append(f"{k}: {v}\r\n".encode("latin-1"))
        head.append(b"\r\n")
        data = b"".join(head) + body
        clock = time.perf_counter
        # [when the request was written (the call's start until then), connect seconds, kernel-timed latency]
        timing: list = [clock(), 0.0, None]
        try:
            async with asyncio.timeout(timeout):
                result = await self._exchange(pool, data, timing)
        except TimeoutError:
            return _failed("timeout", clock() - timing[0], f"gave no answer within {timeout:g}s", timing[1])
        except ssl.SSLCertVerificationError as e:
            return _failed("unreachable", clock() - timing[0],
                           f"is unreachable at {base}: TLS certificate verification failed: {e.verify_message} "
                           f"(is its CA among the system CAs or in the upstream CA file?)", timing[1])
        except (OSError, _Closed) as e:
            return _failed("unreachable", clock() - timing[0], f"is unreachable at {base}: {e or type(e).__name__}",
                           timing[1])
        latency = clock() - timing[0]
        kernel = timing[2]
        if kernel is not None and 0.0 <= kernel <= latency + 0.001:
            latency = kernel
        else:
            kernel = None
        status, ctype, payload, _ = result
        ctype = ctype.decode("latin-1") or "application/json"
        connect = timing[1]
        excluded = "connect" if connect >= CONNECT_UNFAIR else None
        if status >= 500:
            return Answer(status, payload, ctype, "http_5xx", latency, f"answered HTTP {status}", connect, excluded,
                          kernel is not None)
        return Answer(status, payload, ctype, None, latency, "", connect, excluded, kernel is not None)

    async def _exchange(self, pool: _Pool, data: bytes, timing: list):
        conn = pool.take()
        reused = conn is not None
        if conn is None:
            conn = await self._connect(pool, timing)
        try:
            try:
                timing[0] = time.perf_counter()
                result = await conn.request(data)
            except _Closed:
                if not (reused and not conn.received):
                    raise
                # The upstream closed an idle keep-alive connection just as it was reused: the request
                # never reached it, so send it once more on a fresh connection.
                conn = await self._connect(pool, timing)
                timing[0] = time.perf_counter()
                result = await conn.request(data)
        except BaseException:
            conn.close()        # cancelled (timeout) or broken: never reuse a connection mid-answer
            raise
        if type(conn) is _TimedConn:
            timing[2] = conn.latency()
        pool.give(conn, result[3])
        return result

    @staticmethod
    async def _connect(pool: _Pool, timing: list[float]) -> _Conn:
        start = time.perf_counter()
        try:
            return await pool.connect()
        finally:
            timing[1] += time.perf_counter() - start

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            p.close()


def _failed(error: str, latency: float, detail: str, connect: float) -> Answer:
    return Answer(None, b"", "", error, latency, detail, connect, "connect" if connect >= CONNECT_UNFAIR else None)
