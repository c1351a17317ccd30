"""A real model server that tells what it received: for testing what a proxy in front of it passes through.

    python -m modelrollout.models.echo --port 8081 --version v1

Every method on every path answers JSON describing the request as it arrived: method, raw path and query,
every header (in order, as sent), the body's length and SHA-256, the sizes of the pieces the body arrived
in, and the server's `version` — except these paths:

* `POST {--path}` (default `/predict`) with a JSON body: that description plus a deterministic score of the
  body's `features` (`prediction`), as a model would answer;
* `/stream?chunks=N&size=B&token=T`: an `application/octet-stream` answer of N chunks of B bytes (chunked
  transfer encoding); after the first chunk it waits until `/release?token=T` is called (at most 60 s), so a
  test can show the first chunk reached the client before the rest was even produced;
* `/upload?token=T`: reads the body as it streams in; `/seen?token=T` answers how many bytes of it arrived so
  far, so a test can show a proxy forwarded the first piece before the client sent the rest;
* `/raw`: answers the request body back, with the request's content type, unchanged.

Answers carry the headers `x-echo-version`, `set-cookie` and, to test their removal by a proxy, hop-by-hop
fields: `Connection: x-echo-hop`, `x-echo-hop: 1`, `Keep-Alive: timeout=5` (aiohttp keeps its own
`Connection` for the framing of HTTP/1.0 clients only).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys

from aiohttp import web

from modelrollout.models.scorer import draw

HOP_HEADERS = {"Connection": "x-echo-hop", "x-echo-hop": "1", "Keep-Alive": "timeout=5"}


class Echo:
    def __init__(self, version: str, predict_path: str):
        self.version = version
        self.predict_path = predict_path
        self.seen: dict[str, int] = {}
        self.release: dict[str, asyncio.Event] = {}

    def _event(self, token: str) -> asyncio.Event:
        return self.release.setdefault(token, asyncio.Event())

    def _headers(self) -> dict[str, str]:
        return {"x-echo-version": self.version, "set-cookie": f"echo={self.version}; Path=/", **HOP_HEADERS}

    async def _read(self, request: web.Request, token: str | None = None) -> tuple[bytes, list[int]]:
        pieces, sizes = [], []
        async for chunk in request.content.iter_any():
            pieces.append(chunk)
            sizes.append(len(chunk))
            if token is not None:
                self.seen[token] = self.seen.get(token, 0) + len(chunk)
        return b"".join(pieces), sizes

    def _describe(self, request: web.Request, body: bytes, sizes: list[int]) -> dict:
        return {"version": self.version, "method": request.method, "path": request.raw_path,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
                "body_length": len(body), "body_sha256": hashlib.sha256(body).hexdigest(), "pieces": sizes,
                "chunked": request.headers.get("transfer-encoding", "").lower() == "chunked"}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/stream":
            return await self._stream(request)
        if path == "/seen":
            return web.json_response({"bytes": self.seen.get(request.query.get("token", ""), 0)})
        if path == "/release":
            self._event(request.query.get("token", "")).set()
            return web.json_response({"released": True})
        token = request.query.get("token") if path == "/upload" else None
        body, sizes = await self._read(request, token)
        if path == "/raw":
            return web.Response(body=body, headers={**self._headers(), "content-type": request.headers.get(
                "content-type", "application/octet-stream")})
        answer = self._describe(request, body, sizes)
        if path == self.predict_path and request.method == "POST":
            try:
                doc = json.loads(body)
            except ValueError:
                return web.json_response({"error": "request body is not JSON"}, status=400, headers=self._headers())
            features = doc.get("features", doc) if isinstance(doc, dict) else doc
            answer["prediction"] = round(min(1.0, max(0.0, 0.3 + 0.1 * draw(features, 0))), 6)
        return web.json_response(answer, headers=self._headers())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        chunks = int(request.query.get("chunks", "3"))
        size = int(request.query.get("size", "1024"))
        token = request.query.get("token", "")
        response = web.StreamResponse(headers={**self._headers(), "content-type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(chunks):
            await response.write(bytes([65 + i % 26]) * size)
            if i == 0 and token:
                try:
                    await asyncio.wait_for(self._event(token).wait(), 60)
                except TimeoutError:
                    break
        await response.write_eof()
        return response


def build_app(version: str, predict_path: str = "/predict") -> web.Application:
    echo = Echo(version, predict_path)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo.handle)
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m modelrollout.models.echo", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--version", default="v1")
    p.add_argument("--path", default="/predict", help="predict path (default /predict)")
    args = p.parse_args(argv)
    web.run_app(build_app(args.version, args.path), host=args.host, port=args.port, print=None, access_log=None,
                shutdown_timeout=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
