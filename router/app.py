"""The router's ASGI application: a thin raw-ASGI hot path for predict/feedback in front of FastAPI.

FastAPI carries the API surface (OpenAPI, summaries, metrics, health); the two hot routes skip its
request/response machinery because the router sits in every prediction's path and must cost well under a
millisecond. Both layers call the same `Router` handlers, so behaviour does not depend on the layer.
"""
from __future__ import annotations

import asyncio
import logging
import math
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.core import Reply, Router, error_reply
from router.golden import MAX_BYTES as GOLDEN_MAX_BYTES, answer_golden
from router.internal_auth import internal_guard
from router.settings import RouterSettings
from router.summaries import answer_batch
from router.source import RoutingSource
from router.transparent import Transparent

log = logging.getLogger("modelrollout.router")

_PREFIX = "/v1/rollouts/"

_PREDICT_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "Forwarded unchanged to the chosen model version's predictPath.",
    "additionalProperties": True}}}}
_FEEDBACK_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "properties": {"feedback_id": {"type": "string", "description": "x-feedback-id of the prediction's answer "
                                                                    "(accepted by any replica)"},
                   "request_id": {"type": "string", "description": "x-request-id of the prediction (only on "
                                                                   "the replica that answered it)"},
                   "label": {"description": "ground truth (number, string or boolean)"},
                   "clicks": {"type": "array", "items": {"type": "string"}, "description": "clicked item ids"},
                   "reward": {"type": "number", "description": "a numeric outcome (conversion, revenue), alone or "
                                                               "with a label or clicks"}}}}}}
_GOLDEN_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["revision", "requests"],
    "properties": {"revision": {"type": "string", "description": "the candidate revision (version@url) the golden "
                                                                 "step runs for"},
                   "requests": {"type": "array", "items": {}, "minItems": 1, "maxItems": 1000,
                                "description": "JSON bodies, each sent to both versions' predictPath"}}}}}}
_SUMMARIES_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["windows"],
    "properties": {"windows": {"type": "array", "maxItems": 4096, "items": {
        "type": "object", "required": ["rollout", "namespace", "revision", "start", "end"],
        "properties": {"rollout": {"type": "string"}, "namespace": {"type": "string"},
                       "revision": {"type": "string", "description": "the candidate revision (version@url) judged"},
                       "start": {"type": "number", "description": "the analysis window's start (epoch seconds)"},
                       "end": {"type": "number", "description": "its end (epoch seconds)"}}}}}}}}}
_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "string"}, "detail": {"type": "string"}}}}}}


class RouterApp:
    """ASGI callable: a request whose Host names a rollout's Service goes to that rollout (transparent mode,
    router.transparent); POST /v1/rollouts/{name}/predict|feedback are served directly, the rest by FastAPI."""

    def __init__(self, router: Router, source: RoutingSource, api: FastAPI):
        self.router = router
        self.source = source
        self.api = api
        self.transparent = Transparent(router)
        self.max_body = router.settings.max_body_bytes
        self._tasks: list[asyncio.Task] = []
        self.server_info = {"event_loop": "", "http": "uvicorn"}
        """What serves this app, for /metrics (`modelrollout_router_server_info`): the event loop found running at
        startup and the HTTP protocol (router.server.serve sets its own)."""
        router.metrics.gauges.append(self._server_gauge)

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            hit = self.transparent.match(scope["headers"])
            if hit is not None:
                if isinstance(hit, Reply):
                    return await self.transparent.reply(send, hit)
                return await self.transparent.handle(scope, receive, send, hit)
            if scope["method"] == "POST" and scope["path"].startswith(_PREFIX):
                name, _, action = scope["path"][len(_PREFIX):].partition("/")
                if name and action in ("predict", "feedback"):
                    return await self._post(scope, receive, send, name, action)
        if kind == "lifespan":
            return await self._lifespan(receive, send)
        return await self.api(scope, receive, send)

    async def _post(self, scope, receive, send, name: str, action: str) -> None:
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            headers[k.decode("latin-1")] = v.decode("latin-1")
        reply = None
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            reply = _too_large(self.max_body, length)
        body = b""
        if reply is None:
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > self.max_body:
                        reply = _too_large(self.max_body, f"more than {self.max_body}")
                        break
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if reply is None:
            namespace = _namespace(scope["query_string"])
            try:
                if action == "predict":
                    reply = await self.router.predict(name, namespace, headers, body)
                else:
                    reply = await self.router.feedback(name, namespace, body)
            except Exception:   # a bug, not the client's fault: say so without leaking internals
                log.exception("%s %s failed", scope["method"], scope["path"])
                reply = error_reply(500, "internal error", "the router failed to handle this request; see its log")
        if reply.status >= 400 and reply.status != 502 and reply.status != 504:
            self.router.metrics.client_errors[reply.status] += 1
        out = [(b"content-type", reply.content_type.encode("latin-1")),
               (b"content-length", str(len(reply.body)).encode())]
        for k, v in reply.headers:
            out.append((k.encode("latin-1"), v.encode("latin-1")))
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": reply.body})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _server_gauge(self):
        from prometheus_client.core import GaugeMetricFamily
        g = GaugeMetricFamily("modelrollout_router_server_info", "What serves the router: its event loop (uvloop "
                              "or asyncio) and HTTP protocol; always 1.", labels=["event_loop", "http"])
        g.add_metric([self.server_info["event_loop"], self.server_info["http"]], 1)
        yield g

    async def startup(self) -> None:
        self.server_info["event_loop"] = type(asyncio.get_running_loop()).__module__.split(".")[0]
        await self.router.start()
        self._tasks = [asyncio.create_task(self._watch(), name="modelrollout-source"),
                       asyncio.create_task(self.router.housekeeping(), name="modelrollout-housekeeping")]
        self._writer = None
        if self.router.log is not None:
            self._writer = asyncio.create_task(self.router.log.run(), name="modelrollout-log")

    async def shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.router.drain()          # closes the log, which ends the writer task
        await self.transparent.close()
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            try:
                async for rollouts in self.source.watch():
                    self.router.apply(rollouts)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("routing source failed; retrying in 1s")
                await asyncio.sleep(1.0)


def _too_large(limit: int, got: str) -> Reply:
    return error_reply(413, "request body too large", f"body of {got} bytes exceeds the limit of {limit} bytes "
                       "(--max-body)")


def _namespace(query: bytes) -> str | None:
    if not query or b"namespace=" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("namespace")
    return values[0] if values else None


def _response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, headers=dict(reply.headers), media_type=reply.content_type)


def _time_param(name: str, raw: str | None) -> float | None | Reply:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return error_reply(400, f"invalid {name}", f"{name}: expected seconds since the epoch, got {raw!r}")
    return value


def build_api(router: Router) -> FastAPI:
    api = FastAPI(title="modelrollout router", version="0.1.0",
                  description="Splits, mirrors or interleaves prediction requests between a baseline and a "
                              "candidate model version, records outcomes and serves mergeable summaries.")

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _response(error_reply(400, "invalid request", "; ".join(parts)[:500]))

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        text = {401: "unauthenticated", 403: "forbidden", 404: "not found", 405: "method not allowed",
                503: "unavailable"}.get(exc.status_code, "request failed")
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return _response(error_reply(exc.status_code, text, detail, list((exc.headers or {}).items())))

    internal = internal_guard(router.settings)     # /summaries and /metrics: router/internal_auth.py

    responses: dict[int | str, Any] = {400: _ERROR, 404: _ERROR, 413: _ERROR}

    @api.post("/v1/rollouts/{name}/predict", openapi_extra={"requestBody": _PREDICT_BODY},
              responses={**responses, 502: _ERROR, 504: _ERROR},
              summary="Forward a prediction request to the version chosen for it")
    async def predict(name: str, request: Request, namespace: str | None = Query(None)):
        body = await request.body()
        if len(body) > router.settings.max_body_bytes:
            return _response(_too_large(router.settings.max_body_bytes, str(len(body))))
        headers = {k.lower(): v for k, v in request.headers.items()}
        return _response(await router.predict(name, namespace, headers, body))

    @api.post("/v1/rollouts/{name}/feedback", openapi_extra={"requestBody": _FEEDBACK_BODY},
              responses={**responses, 409: _ERROR}, summary="Join a label, clicks or a reward to an issued prediction")
    async def feedback(name: str, request: Request, namespace: str | None = Query(None)):
        body = await request.body()
        if len(body) > router.settings.max_body_bytes:
            return _response(_too_large(router.settings.max_body_bytes, str(len(body))))
        return _response(await router.feedback(name, namespace, body))

    @api.get("/v1/rollouts/{name}/summaries", responses=responses, dependencies=internal,
             summary="Mergeable per-window summaries per version (for the controller)")
    async def summaries(name: str, namespace: str | None = Query(None), start: str | None = Query(None),
                        end: str | None = Query(None)):
        lo, hi = _time_param("start", start), _time_param("end", end)
        for v in (lo, hi):
            if isinstance(v, Reply):
                return _response(v)
        return _response(await router.summaries(name, namespace, lo, hi))

    @api.post("/v1/summaries", responses={**responses, 503: _ERROR}, dependencies=internal,
              openapi_extra={"requestBody": _SUMMARIES_BODY},
              summary="The analysis windows of many rollouts, each merged (for the controller)")
    async def summaries_batch(request: Request):
        return _response(await answer_batch(router, await request.body()))

    @api.post("/v1/rollouts/{name}/golden", responses={**responses, 409: _ERROR}, dependencies=internal,
              openapi_extra={"requestBody": _GOLDEN_BODY},
              summary="Both versions answer every request of a golden set (for the controller's golden step)")
    async def golden(name: str, request: Request, namespace: str | None = Query(None)):
        body = await request.body()
        if len(body) > GOLDEN_MAX_BYTES:
            return _response(_too_large(GOLDEN_MAX_BYTES, str(len(body))))
        return _response(await answer_golden(router, name, namespace, body))

    @api.get("/metrics", summary="Prometheus metrics", dependencies=internal)
    async def metrics():
        return Response(await router.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.get("/healthz", summary="Liveness")
    async def healthz():
        return {"ok": True}

    @api.get("/readyz", summary="Readiness: the routing configuration is loaded", responses={503: _ERROR})
    async def readyz():
        if not router.ready:
            return _response(error_reply(503, "not ready", "no routing configuration loaded yet"))
        # Still ready when the source is unreachable: the router serves its last routing (and says so).
        return {"ready": True, "rollouts": sorted(router.targets), "source": router.health()}

    return api


def create_app(source: RoutingSource, settings: RouterSettings | None = None) -> RouterApp:
    """The router as an ASGI app serving the rollouts `source` yields (run it with lifespan on)."""
    router = Router(settings)
    router.source_health = getattr(source, "health", None)
    return RouterApp(router, source, build_api(router))
