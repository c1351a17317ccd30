"""A small real model server: scores `{"features": {...}}` with a deterministic, tunable distribution.

Baseline and candidate processes started with the same `--seed` give the same standard-normal draw for the
same features, so shadow pairs are comparable and a `--shift` shows up as drift. Fault knobs (errors, NaN,
garbage, latency, hanging) let tests and demos break a version on purpose.

With `--attributions` each answer also carries SHAP-like per-feature attributions
(`{"prediction": 0.31, "attributions": {"age": 0.1, "amount": -0.04, ...}}`): feature k of the request, in
name order, contributes `std * d / (k + 1)` with d a standard-normal draw fixed by (feature, value, seed), so
the features' importance (mean |attribution|) falls in name order. `--attribution-shift` reverses that order:
the model then predicts the same scores for other reasons, which only an attribution check can see.

    python -m modelrollout.models.scorer --port 8081 --version v2 --mean 0.3 --std 0.1 --shift 0.05
    python -m modelrollout.models.scorer --port 8082 --version v3 --attributions --attribution-shift

`--kind embedding --dims D` answers a D-dimensional vector of standard-normal draws fixed by (features,
coordinate, seed), `--shift` added to the first `--shift-dims` coordinates. `--favour FEATURE=VALUE:DELTA`
adds DELTA to the scores of requests whose FEATURE is VALUE (a model unfair to the others).
`--embedding-field NAME` answers, beside a score, such an embedding under NAME; `--cluster SHARE:OFFSET` moves
the embeddings of a share of the requests (fixed by their features) by OFFSET in the first `--shift-dims`
coordinates — a new cluster — while their scores stay as they were.
`--backlog N` sets the listen backlog (Python's http.server uses 5): a small backlog drops connections
that arrive in bursts. `GET /healthz` counts the requests received: `served`, and `requests` by kind
(`live`, `shadow` mirrored by the router, `golden` answers to a golden set).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import sys

from aiohttp import web


def draw(features: object, seed: int) -> float:
    """A standard-normal value fixed by (features, seed): same request → same draw in every process."""
    text = json.dumps(features, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.blake2b(f"{seed}|{text}".encode(), digest_size=16).digest()
    u1 = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    u2 = int.from_bytes(digest[8:], "big") / 2**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class Scorer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed ^ 0x5EED)
        self.served = 0
        self.counts = {"live": 0, "shadow": 0, "golden": 0}
        """Requests received by kind: the router marks golden calls (`x-modelrollout-golden`) and mirrored
        ones (`x-modelrollout-shadow`); the rest are live user requests. `GET /healthz` shows them."""
        self.classes = [c for c in args.classes.split(",") if c]

    def score(self, features: object) -> float:
        a = self.args
        value = a.mean + a.std * draw(features, a.seed) + a.shift
        if a.favour and isinstance(features, dict):
            which, _, delta = a.favour.rpartition(":")
            name, _, wanted = which.partition("=")
            if str(features.get(name)) == wanted:
                value += float(delta)
        return min(1.0, max(0.0, value))

    def embedding(self, features: object) -> list[float]:
        a = self.args
        shift = a.shift
        if a.cluster:
            share, _, offset = a.cluster.partition(":")
            u = 0.5 + math.erf(draw({"cluster": features}, a.seed) / math.sqrt(2.0)) / 2.0   # uniform in (0, 1)
            if u < float(share):
                shift += float(offset)
        return [round(draw({"coordinate": i, "features": features}, a.seed) + (shift if i < a.shift_dims else 0.0),
                      6) for i in range(a.dims)]

    def attributions(self, features: object) -> dict[str, float]:
        """Per-feature contributions whose magnitudes follow a fixed importance order (see module doc)."""
        if not isinstance(features, dict):
            return {}
        names = sorted(str(k) for k in features)
        if self.args.attribution_shift:
            names.reverse()
        return {name: round(self.args.std * draw({name: features.get(name)}, self.args.seed) / (rank + 1), 6)
                for rank, name in enumerate(names)}

    async def predict(self, request: web.Request) -> web.Response:
        a = self.args
        self.served += 1
        kind = ("golden" if request.headers.get("x-modelrollout-golden") == "true" else
                "shadow" if request.headers.get("x-modelrollout-shadow") == "true" else "live")
        self.counts[kind] += 1
        if a.hang_after is not None and self.served > a.hang_after:
            await asyncio.sleep(3600)
        if a.latency_ms > 0:
            await asyncio.sleep(a.latency_ms / 1000.0)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "request body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected a JSON object with a features field"}, status=400)
        roll = self.rng.random()
        if roll < a.error_rate:
            return web.json_response({"error": "injected failure"}, status=500)
        roll -= a.error_rate
        if roll < a.garbage_rate:
            return web.Response(text="<html>garbage</html>", content_type="text/html")
        roll -= a.garbage_rate
        if roll < a.nan_rate:
            return web.Response(text=json.dumps({"prediction": float("nan"), "version": a.version}),
                                content_type="application/json")
        features = body.get("features", body)
        score = self.score(features)
        if a.kind == "embedding":
            prediction: object = self.embedding(features)
        elif a.kind == "class":
            index = min(int(score * len(self.classes)), len(self.classes) - 1)
            prediction = self.classes[index]
        else:
            prediction = round(score, 6)
        answer: dict[str, object] = {"prediction": prediction, "version": a.version}
        if a.embedding_field:
            answer[a.embedding_field] = self.embedding(features)
        if a.attributions:
            answer["attributions"] = self.attributions(features)
        return web.json_response(answer)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": self.args.version, "served": self.served,
                                  "requests": self.counts})


def build_app(args: argparse.Namespace) -> web.Application:
    scorer = Scorer(args)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post(args.path, scorer.predict)
    app.router.add_get("/healthz", scorer.healthz)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m modelrollout.models.scorer", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--version", default="v1")
    p.add_argument("--path", default="/predict", help="predict path (default /predict)")
    p.add_argument("--kind", choices=("score", "class", "embedding"), default="score")
    p.add_argument("--dims", type=int, default=32, help="embedding dimensions (--kind embedding)")
    p.add_argument("--shift-dims", type=int, default=8, help="coordinates --shift moves (--kind embedding)")
    p.add_argument("--favour", default=None, metavar="FEATURE=VALUE:DELTA",
                   help="add DELTA to the scores of requests whose FEATURE is VALUE, e.g. gender=f:0.3")
    p.add_argument("--backlog", type=int, default=128, help="listen backlog (default 128)")
    p.add_argument("--embedding-field", default=None, metavar="NAME",
                   help="answer an embedding (--dims) beside the prediction, under NAME")
    p.add_argument("--cluster", default=None, metavar="SHARE:OFFSET",
                   help="move the embeddings of SHARE of the requests by OFFSET (a new cluster), e.g. 0.3:4")
    p.add_argument("--classes", default="ok,fraud", help="class labels, low score to high (--kind class)")
    p.add_argument("--mean", type=float, default=0.3)
    p.add_argument("--std", type=float, default=0.1)
    p.add_argument("--shift", type=float, default=0.0, help="added to every score (drift)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500")
    p.add_argument("--nan-rate", type=float, default=0.0, help="share answered with a NaN prediction")
    p.add_argument("--garbage-rate", type=float, default=0.0, help="share answered with a non-JSON body")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added delay per request, milliseconds")
    p.add_argument("--hang-after", type=int, default=None, help="never answer after N requests")
    p.add_argument("--attributions", action="store_true",
                   help="answer with per-feature attributions too (field attributions)")
    p.add_argument("--attribution-shift", action="store_true",
                   help="reverse the features' importance order (same scores, other reasons)")
    args = p.parse_args(argv)
    if args.favour is not None:
        which, sep, delta = args.favour.rpartition(":")
        try:
            float(delta)
        except ValueError:
            sep = ""
        if not sep or "=" not in which:
            p.error(f"--favour: expected FEATURE=VALUE:DELTA such as gender=f:0.3, got {args.favour!r}")
    if args.cluster is not None:
        share, sep, offset = args.cluster.partition(":")
        try:
            ok = bool(sep) and 0.0 <= float(share) <= 1.0 and math.isfinite(float(offset))
        except ValueError:
            ok = False
        if not ok:
            p.error(f"--cluster: expected SHARE:OFFSET with SHARE in [0, 1], such as 0.3:4, got {args.cluster!r}")
    for name in ("error_rate", "nan_rate", "garbage_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            p.error(f"--{name.replace('_', '-')}: expected a share in [0, 1], got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    web.run_app(build_app(args), host=args.host, port=args.port, print=None, access_log=None,
                shutdown_timeout=1.0, backlog=args.backlog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
