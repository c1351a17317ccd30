"""Transparent mode: a rollout answers as a Service (`spec.service`), so its clients change nothing.

A request whose `Host` names a rollout's Service — `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.<cluster
domain>`, with any port — is not for the router's own API: it goes, whatever its method and path, to the
version the split picks for it (sticky by `spec.strategy.stickiness.header`), path and query unchanged:

* end-to-end header fields pass both ways (Authorization, traceparent, baggage, cookies, ...); hop-by-hop
  fields are removed both ways (router.proxy); `Host` becomes the version URL's, and `x-forwarded-for`,
  `x-forwarded-host` and `x-forwarded-proto` tell the model who called; the answer gains `x-model-version`;
* bodies of any type and size stream through both ways (router.proxy), never held whole — except a request
  to `predictPath`, whose body (up to `--max-body`) is kept beside the stream for the outcome record;
* a request to `predictPath` whose answer is JSON, or failed (5xx, timeout, unreachable), is recorded and
  analysed exactly like one to the router's predict API (router.exchange: the record, feedback by its
  request id, the mirror when shadowing; done by the worker from the raw exchange, after the answer left);
  it carries `x-request-id` (the caller's, or one generated) both ways. Every other
  request is counted in `modelrollout_router_passthrough_requests_total` and nothing more;
* interleaving (ranking rollouts) merges both versions' answers to `POST predictPath`, as the API does;
* the override header is honoured only with `--allow-override`, and such answers are never analysed;
* with `spec.fallback`, a `predictPath` answer is read whole before it is sent (bounded like a recorded one),
  so that a failed one (5xx, timeout, unreachable, no valid prediction) is replaced by the fallback's
  answer (`router.fallback`); the failure is recorded as without a fallback.

A bare `name` that several namespaces' rollouts use as their Service is ambiguous (the router cannot know
the caller's namespace): 421 `ambiguous host`, call it `name.ns`. A Host that names no rollout's Service
reaches the router's API as before.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import orjson

from router import fallback as _fallback
from router.exchange import Exchange
from router.core import OVERRIDE_HEADER, Reply, Router, Target, error_reply
from router.proxy import HOP_BY_HOP, Closed, Proxy, Stream, chunk, strip_hop_by_hop
from router.routing import pick
from router.upstream import CONNECT_UNFAIR, Answer

log = logging.getLogger("modelrollout.router")

_MISS = object()
_OVERRIDE = OVERRIDE_HEADER.encode()
_VIA = b"x-modelrollout-via"
"""Added to every request passed on: the rollouts it went through, so one that comes back to its own rollout
(a version whose url leads to the rollout's Service) is refused (508) instead of going round for ever."""
_MAX_REQUEST_ID = 128
_RECORD_LIMIT = 16 * 1024 * 1024
"""A predictPath answer larger than this streams through unrecorded (counted as passthrough)."""
_HOSTS_CACHED = 4096
# What `handle` does with a request field (router.transparent.Transparent._fields); up to _LENGTH: not forwarded
_DROP, _CONNECTION, _CHUNKED, _HOST, _LENGTH, _XFF, _VIA_, _ENCODING, _STICKY, _OVERRIDE_, _RID, _FHOST, _FPROTO = \
    range(13)


def host_service(raw: bytes) -> tuple[str, str | None] | None:
    """(Service name, namespace or None) that a Host header names, or None when it cannot name a Service
    (an IP address, a name outside `.svc`)."""
    host = raw.decode("latin-1").strip().lower()
    if not host or host[0] == "[":
        return None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    labels = host.rstrip(".").split(".")
    if len(labels) == 1:
        return labels[0], None
    if len(labels) == 2 or labels[2] == "svc":
        return labels[0], labels[1]
    return None


def _is_json(ctype: bytes) -> bool:
    media = ctype.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class ClientGone(Exception):
    """The client went away while its answer streamed: nothing to report to it."""


class Transparent:
    """The router's transparent proxy: `match` a request's Host to a rollout, `handle` it."""

    def __init__(self, router: Router):
        self.router = router
        s = router.settings
        self.proxy = Proxy(s.upstream_connections, router.upstreams.tls)
        self.allow_override = s.allow_override
        self.max_body = s.max_body_bytes
        self._indexed: Any = None
        self._by_name: dict[str, list[Target]] = {}
        self._hosts: dict[bytes, Any] = {}
        self._special: dict[int, dict[bytes, int]] = {}

    # ---- which rollout -----------------------------------------------------------------------------

    def match(self, headers) -> Target | Reply | None:
        """The rollout whose Service the Host header names, a 421 Reply when ambiguous, else None."""
        targets = self.router.targets
        if targets is not self._indexed:
            by_name: dict[str, list[Target]] = {}
            for t in targets.values():
                if t.spec.service is not None:
                    by_name.setdefault(t.spec.service.name, []).append(t)
            self._by_name, self._hosts, self._indexed, self._special = by_name, {}, targets, {}
        if not self._by_name:
            return None
        for k, v in headers:
            if k == b"host":
                break
        else:
            return None
        hit = self._hosts.get(v, _MISS)
        if hit is _MISS:
            hit = self._resolve(v)
            if len(self._hosts) < _HOSTS_CACHED:
                self._hosts[v] = hit
        return hit

    def _resolve(self, raw: bytes) -> Target | Reply | None:
        named = host_service(raw)
        found = self._by_name.get(named[0]) if named else None
        if not found:
            return None
        name, namespace = named
        if namespace is not None:
            return next((t for t in found if t.spec.namespace == namespace), None)
        if len(found) == 1:
            return found[0]
        spaces = ", ".join(sorted(t.spec.namespace for t in found))
        return error_reply(421, "ambiguous host", f"Host {name!r} names the Service of rollouts in namespaces "
                           f"{spaces}; call it as {name}.NAMESPACE")

    # ---- one request ---------------------------------------------------------------------------------

    def _fields(self, target: Target) -> dict[bytes, int]:
        """The request fields `handle` looks at, with what it does with each (the rest pass untouched)."""
        fields = self._special.get(id(target))
        if fields is None:
            fields = dict.fromkeys(HOP_BY_HOP, _DROP)
            fields.update({b"connection": _CONNECTION, b"transfer-encoding": _CHUNKED, b"host": _HOST,
                           b"content-length": _LENGTH, b"expect": _DROP, b"x-forwarded-for": _XFF, _VIA: _VIA_,
                           _OVERRIDE: _OVERRIDE_, b"x-request-id": _RID, b"x-forwarded-host": _FHOST,
                           b"x-forwarded-proto": _FPROTO, b"accept-encoding": _ENCODING})
            if target.sticky_header:
                fields[target.sticky_header.encode()] = _STICKY
            self._special[id(target)] = fields
        return fields

    async def handle(self, scope, receive, send, target: Target) -> None:
        router, spec = self.router, target.spec
        fields = self._fields(target)
        predict = scope["path"] == spec.predict_path
        fwd: list[tuple[bytes, bytes]] = []
        connection = length = host = sticky = override = rid = xff = via = None
        chunked = forwarded_host = forwarded_proto = False
        for k, v in scope["headers"]:
            what = fields.get(k)
            if what is None:
                fwd.append((k, v))
                continue
            if what <= _LENGTH:         # not forwarded as sent (hop-by-hop, framing, Host)
                if what == _CONNECTION:
                    connection = v
                elif what == _CHUNKED:
                    chunked = True
                elif what == _HOST:
                    host = v
                elif what == _LENGTH:
                    length = v
                continue                # _DROP: hop-by-hop, and Expect (uvicorn answered 100-continue)
            if what == _XFF:
                xff = v                 # the caller's address is appended below
                continue
            if what == _VIA_:
                via = v                 # this rollout is appended below
                continue
            if what == _ENCODING:
                # A recorded answer is read by the router: ask for it uncompressed (the caller still gets valid
                # HTTP; a model that compresses anyway is passed through unrecorded).
                if not predict:
                    fwd.append((k, v))
                continue
            if what == _STICKY:
                sticky = v
            elif what == _OVERRIDE_:
                override = v
            elif what == _RID:
                rid = v
            elif what == _FHOST:
                forwarded_host = True
            elif what == _FPROTO:
                forwarded_proto = True
            fwd.append((k, v))
        if connection is not None:
            fwd = strip_hop_by_hop(fwd, connection)

        key = spec.key.encode()
        if via is not None and key in via.split(b", "):
            return await self.reply(send, error_reply(508, "loop detected", f"rollout {spec.key} received its own "
                                    f"request back (x-modelrollout-via: {via.decode('latin-1')[:200]}): a version's "
                                    f"url leads to spec.service {spec.service.name!r} itself"))
        fwd.append((_VIA, via + b", " + key if via else key))
        routing = target.routing
        forced = override is not None and self.allow_override
        if forced:
            arm = target.by_version.get(override.decode("latin-1"))
            if arm is None:
                return await self.reply(send, error_reply(400, "unknown version", f"{OVERRIDE_HEADER}: expected "
                                         f"one of {', '.join(target.by_version)}, got {override.decode('latin-1')!r}"))
        sticky_key = sticky.decode("latin-1") if sticky is not None else None
        if not forced:
            arm = pick(routing, sticky_key, spec.key, router._rng)
        request_id = None
        if predict:
            request_id = rid.decode("latin-1") if rid is not None else ""
            if not request_id or len(request_id) > _MAX_REQUEST_ID or not request_id.isprintable() \
                    or not request_id.isascii():
                request_id = os.urandom(16).hex()
                if rid is None:
                    fwd.append((b"x-request-id", request_id.encode()))
        client = scope.get("client")
        if client:
            ip = client[0].encode()
            fwd.append((b"x-forwarded-for", xff + b", " + ip if xff else ip))
        elif xff:
            fwd.append((b"x-forwarded-for", xff))
        if host is not None and not forwarded_host:
            fwd.append((b"x-forwarded-host", host))
        if not forwarded_proto:
            fwd.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))

        # The request body: whole when it came in one piece (the usual case), else streamed by a pump.
        body, more, kept = b"", False, None
        if chunked or (length is not None and length != b"0"):
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body, more = message.get("body", b""), message.get("more_body", False)
            if predict:
                kept = [body]
        interleave = (predict and not forced and routing.interleave and spec.output.kind == "ranking"
                      and scope["method"] == "POST")
        if interleave and more:
            body, more = await self._rest(receive, body)
            if body is None:
                return await self.reply(send, error_reply(413, "request body too large", f"body of more than "
                                         f"{self.max_body} bytes exceeds the limit of {self.max_body} bytes "
                                         "(--max-body)"))
            kept = [body]
        if interleave:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                pass                    # not a ranking request: the split's version answers it alone
            else:
                extra = {k.decode("latin-1"): v.decode("latin-1") for k, v in fwd
                         if k not in (b"content-type", b"x-request-id")}
                reply = await router._interleave(target, request_id, doc, body, sticky_key, extra)
                return await self.reply(send, reply)

        version = target.arms[arm]
        pool = self.proxy.pool(version.url)
        qs = scope.get("query_string")
        head = [scope["method"].encode(), b" ", pool.prefix, scope.get("raw_path") or scope["path"].encode(),
                b"?" + qs if qs else b"", b" HTTP/1.1\r\nhost: ", pool.authority, b"\r\n"]
        for k, v in fwd:
            head += (k, b": ", v, b"\r\n")
        if more:
            head.append(b"transfer-encoding: chunked\r\n\r\n" if chunked else b"content-length: " + length + b"\r\n\r\n")
            head.append(chunk(body) if chunked and body else body)
        elif body or length is not None or chunked:
            head += (b"content-length: %d\r\n\r\n" % len(body), body)
        else:
            head.append(b"\r\n")
        pump: list[asyncio.Task] = []

        def start_pump(conn: Stream) -> None:
            pump.append(asyncio.ensure_future(self._pump(receive, conn, chunked, kept)))

        now = time.time()
        timing = [time.perf_counter(), 0.0]
        conn = error = None
        try:
            conn = await self.proxy.send(pool, b"".join(head), scope["method"] == "HEAD", timing,
                                         asyncio.get_running_loop().time() + spec.timeout,
                                         start_pump if more else None)
        except TimeoutError:
            error, detail = "timeout", f"gave no answer within {spec.timeout:g}s"
        except (OSError, Closed) as e:
            error, detail = "unreachable", f"is unreachable at {version.url}: {e or type(e).__name__}"
        if error is not None:
            for task in pump:
                task.cancel()
            answer = Answer(None, b"", "", error, time.perf_counter() - timing[0], detail, timing[1],
                            "connect" if timing[1] >= CONNECT_UNFAIR else None)
            if predict and not forced and spec.fallback is not None:
                return await self._fallback(send, target, now, request_id, arm, answer, kept, sticky_key, fwd)
            self._account(target, now, request_id, arm, answer, kept, predict, forced, sticky_key, True)
            what = {"timeout": (504, "model timeout"), "unreachable": (502, "model unreachable")}[error]
            headers = [("x-model-version", version.version)] + ([("x-request-id", request_id)] if predict else [])
            return await self.reply(send, error_reply(*what, f"model version {version.version!r} {detail}",
                                                       headers), count=False)

        status = conn.status
        out: list[tuple[bytes, bytes]] = []
        ctype, has_rid, named, encoded = b"", False, None, False
        for k, v in conn.headers:
            if k in HOP_BY_HOP:
                if k == b"connection":
                    named = v
                continue
            if k == b"content-type":
                ctype = v
            elif k == b"x-request-id":
                has_rid = True
            elif k == b"content-encoding" and v.strip().lower() != b"identity":
                encoded = True
            out.append((k, v))
        if named is not None:
            out = strip_hop_by_hop(out, named)
        out.append((b"x-model-version", version.version.encode()))
        if predict and not has_rid:
            out.append((b"x-request-id", request_id.encode()))
        record = predict and (status >= 500 or (_is_json(ctype) and not encoded))
        start = {"type": "http.response.start", "status": status, "headers": out}
        whole = parsed = None
        if predict and not forced and spec.fallback is not None and scope["method"] != "HEAD":
            judged = await self._judge_whole(target, conn, pump, pool, status, ctype, encoded, timing)
            if isinstance(judged, Answer):
                return await self._fallback(send, target, now, request_id, arm, judged, kept, sticky_key, fwd)
            if judged is not None:
                whole, parsed = judged
        if whole is not None or conn.done:  # the whole answer is here: one write, one segment
            payload = whole if whole is not None else conn.take()
            await send(start)
            await send({"type": "http.response.body", "body": payload})
        else:
            try:
                payload = await self._stream(send, start, conn, receive, spec.timeout, record, not pump)
            except ClientGone:
                for task in pump:
                    task.cancel()
                pool.give(conn, False)
                return
            except (TimeoutError, Closed) as e:
                # The answer broke after its head went out: the client must see a broken answer, not a short one.
                # Returning without finishing the response makes uvicorn close the client's connection.
                for task in pump:
                    task.cancel()
                conn.close()
                detail = f"broke off its answer: {str(e) or f'nothing for {spec.timeout:g}s'}"
                answer = Answer(None, b"", "", "timeout" if isinstance(e, TimeoutError) else "unreachable",
                                time.perf_counter() - timing[0], detail)
                self._account(target, now, request_id, arm, answer, kept, predict, forced, sticky_key, record)
                log.warning("rollout %s: version %s %s; the client's connection is closed", spec.key,
                            version.version, detail)
                return
            if payload is None:
                record = False          # too large to record
        sent_whole = not pump or (pump[0].done() and not pump[0].cancelled() and pump[0].exception() is None
                                  and pump[0].result())
        if pump and not pump[0].done():
            pump[0].cancel()
        pool.give(conn, sent_whole)
        answer = Answer(status, payload if record else b"", ctype.decode("latin-1"),
                        "http_5xx" if status >= 500 else None, conn.done_at - timing[0],
                        f"answered HTTP {status}" if status >= 500 else "", timing[1],
                        "connect" if timing[1] >= CONNECT_UNFAIR else None)
        # After the answer has left: the transport sends this turn's writes in a callback scheduled by the
        # first of them, so recording in the next callback keeps its cost out of the caller's latency.
        asyncio.get_running_loop().call_soon(self._account, target, now, request_id, arm, answer, kept, predict,
                                             forced, sticky_key, record, None, parsed)

    async def _judge_whole(self, target: Target, conn: Stream, pump: list, pool, status: int, ctype: bytes,
                           encoded: bool, timing: list) -> Answer | tuple[bytes, tuple | None] | None:
        """Read a predictPath answer whole (it is sent only then) and judge it: an `Answer` with its error
        kind when it failed (5xx, broke off, no valid prediction; the model's connection handed back), else
        (the body to send as it is, its output as `Router._output` reads it); None when the answer is larger
        than a recorded one (what was read is then left in the connection's buffer and streamed on, unjudged,
        as without a fallback)."""
        spec = target.spec
        pieces: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout(spec.timeout):
                    data = await conn.read()
            except (TimeoutError, Closed) as e:
                for task in pump:
                    task.cancel()
                conn.close()
                kind = "timeout" if isinstance(e, TimeoutError) else "unreachable"
                return Answer(None, b"", "", kind, time.perf_counter() - timing[0],
                              f"broke off its answer: {str(e) or f'nothing for {spec.timeout:g}s'}", timing[1])
            if data is None:
                break
            pieces.append(data)
            size += len(data)
            if size > _RECORD_LIMIT:
                conn.chunks[:0] = pieces        # streamed on from the start by `_stream`
                return None
        payload = b"".join(pieces)
        kind = parsed = None
        if status >= 500:
            kind = "http_5xx"
        elif status == 200 and (encoded or not _is_json(ctype)):
            kind = "invalid_output"
        elif status == 200:
            parsed = self.router._output(target, Answer(200, payload, "", None, 0.0))
            kind = parsed[1]
        if kind is None:
            return payload, parsed      # the output read once: the record reuses it
        whole = not pump or (pump[0].done() and not pump[0].cancelled() and pump[0].exception() is None
                             and pump[0].result())
        if pump and not pump[0].done():
            pump[0].cancel()
        pool.give(conn, whole)
        return Answer(status, payload, ctype.decode("latin-1"), kind, conn.done_at - timing[0],
                      f"answered HTTP {status}" if status >= 500 else "answered no valid prediction", timing[1],
                      "connect" if timing[1] >= CONNECT_UNFAIR else None)

    async def _fallback(self, send, target: Target, now: float, request_id: str, arm: str, answer: Answer,
                        kept: list[bytes] | None, sticky: str | None, fwd: list) -> None:
        """The chosen version failed (`answer`): record that as it is, answer the caller with the fallback."""
        body = None
        if kept:
            body = kept[0] if len(kept) == 1 else b"".join(kept)
        extra = {k.decode("latin-1"): v.decode("latin-1") for k, v in fwd
                 if k not in (b"content-type", b"x-request-id", b"content-length")}
        reply, result = await _fallback.serve(self.router, target, target.arms[arm].version, request_id, body,
                                              answer.error, answer.detail or "failed", extra)
        self._account(target, now, request_id, arm, answer, kept, True, False, sticky, True, result)
        await self.reply(send, reply, count=False)

    def _account(self, target: Target, now: float, request_id: str | None, arm: str, answer: Answer,
                 kept: list[bytes] | None, predict: bool, forced: bool, sticky: str | None, record: bool,
                 fallback: str | None = None, parsed: tuple | None = None) -> None:
        """Record and analyse a predictPath exchange (`record`), else count it as passed through. With a worker
        the raw exchange goes to it (router.exchange: nothing is parsed here); `parsed`: the answer's output
        as `_judge_whole` already read it (used without a worker)."""
        spec = target.spec
        if not (predict and record):
            self.router.metrics.passthrough[(spec.name, spec.namespace, target.arms[arm].version,
                                             str(answer.status or 0))] += 1
            return
        body = None
        if kept:                        # empty: the body was larger than --max-body, not kept
            body = kept[0] if len(kept) == 1 else b"".join(kept)
            if len(body) > self.max_body:
                body = None
        router = self.router
        if router.worker is not None:
            router.worker.exchange(target.calls, Exchange(
                target.calls.wid, now, request_id, arm, target.arms[arm].version, answer, body,
                target.propensity(arm, forced), sticky, fallback, body is not None and target.mirrors(arm, forced)))
            return
        doc = None
        if body is not None:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                body = None
        router.answered(target, now, request_id, arm, answer, doc, body, forced, sticky, parsed, fallback)

    async def _stream(self, send, start: dict, conn: Stream, receive, timeout: float, record: bool,
                      watch: bool) -> bytes | None:
        """Send the answer's head, then its body piece by piece as it arrives; the body (for the record) or
        None when not recorded or too large. `watch`: also close the model's connection as soon as the client
        goes away (when nothing else is reading `receive`)."""
        gone: list[bool] = []
        watcher = asyncio.ensure_future(self._watch(receive, conn, gone)) if watch else None
        pieces: list[bytes] | None = [] if record else None
        size = 0
        try:
            await send(start)
            while True:
                async with asyncio.timeout(timeout):
                    data = await conn.read()
                if data is None:
                    break
                if pieces is not None:
                    size += len(data)
                    if size > _RECORD_LIMIT:
                        pieces = None
                    else:
                        pieces.append(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except (TimeoutError, Closed):
            if gone:
                raise ClientGone() from None
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
        await send({"type": "http.response.body", "body": b""})
        return None if pieces is None else b"".join(pieces)

    @staticmethod
    async def _watch(receive, conn: Stream, gone: list) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.append(True)
                conn.close()
                return

    async def _pump(self, receive, conn: Stream, chunked: bool, kept: list[bytes] | None) -> bool:
        """Forward the rest of a streamed request body as it arrives; True once all of it was written."""
        size = sum(map(len, kept)) if kept else 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                conn.close()
                return False
            data = message.get("body", b"")
            if data:
                conn.write(chunk(data) if chunked else data)
                if kept:
                    size += len(data)
                    if size <= self.max_body:
                        kept.append(data)
                    else:
                        kept.clear()    # too large to record (empty = not kept): the stream goes on
                await conn.drain()
            if conn.closed:
                return False
            if not message.get("more_body", False):
                if chunked:
                    conn.write(b"0\r\n\r\n")
                return True

    async def _rest(self, receive, first: bytes) -> tuple[bytes | None, bool]:
        """The whole body (bounded by --max-body: None beyond) when its first piece was `first`."""
        pieces, size = [first], len(first)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            data = message.get("body", b"")
            size += len(data)
            if size > self.max_body:
                return None, False
            pieces.append(data)
            if not message.get("more_body", False):
                return b"".join(pieces), False

    async def reply(self, send, reply: Reply, count: bool = True) -> None:
        """Send one of the router's own answers; those >= 400 but 502/504 are counted as rejected, as the API's."""
        if count and reply.status >= 400 and reply.status != 502 and reply.status != 504:
            self.router.metrics.client_errors[reply.status] += 1
        headers = [(b"content-type", reply.content_type.encode("latin-1")),
                   (b"content-length", str(len(reply.body)).encode())]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def close(self) -> None:
        await self.proxy.close()
