"""A small real ranking model server: orders `{"candidates": [item ids]}` by a noisy view of true relevance.

Every item has a hidden true relevance for a user (a hash, the same in every process); `--quality` mixes it
with noise, so a ranker with a higher quality puts relevant items first more often and wins more clicks
under `simulate_clicks` (used by modelrollout.models.traffic), which is what an interleaving experiment must detect.

    python -m modelrollout.models.ranker --port 8082 --version r2 --quality 0.8
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
from typing import Sequence

from aiohttp import web


def _unit(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def relevance(item: str, user: str = "") -> float:
    """The hidden true relevance of `item` for `user`, in [0, 1)."""
    return _unit(f"rel|{user}|{item}")


def simulate_clicks(ranking: Sequence[str], user: str, rng: random.Random, patience: float = 0.8) -> list[str]:
    """Cascade user: looks down the list (each next position with probability `patience`) and clicks an
    item with probability equal to its squared true relevance."""
    clicks = []
    for item in ranking:
        if rng.random() < relevance(str(item), user) ** 2:
            clicks.append(item)
        if rng.random() > patience:
            break
    return clicks


class Ranker:
    def __init__(self, args: argparse.Namespace):
        self.args = args

    def rank(self, candidates: list, user: str) -> list:
        q, seed = self.args.quality, self.args.seed

        def score(item) -> float:
            return q * relevance(str(item), user) + (1.0 - q) * _unit(f"noise|{seed}|{user}|{item}")
        return sorted(candidates, key=score, reverse=True)

    async def predict(self, request: web.Request) -> web.Response:
        if self.args.latency_ms > 0:
            await asyncio.sleep(self.args.latency_ms / 1000.0)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "request body is not JSON"}, status=400)
        candidates = body.get("candidates") if isinstance(body, dict) else None
        if not isinstance(candidates, list) or not all(isinstance(c, (str, int)) for c in candidates):
            return web.json_response({"error": "expected candidates: a list of item ids"}, status=400)
        ranking = self.rank(candidates, str(body.get("user", "")))
        k = body.get("k")
        if isinstance(k, int) and k > 0:
            ranking = ranking[:k]
        return web.json_response({"ranking": ranking, "version": self.args.version})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": self.args.version})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m modelrollout.models.ranker", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--version", default="r1")
    p.add_argument("--path", default="/predict")
    p.add_argument("--quality", type=float, default=0.5, help="0 = random order, 1 = perfect order")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    args = p.parse_args(argv)
    if not 0.0 <= args.quality <= 1.0:
        p.error(f"--quality: expected a number in [0, 1], got {args.quality}")
    app = web.Application()
    ranker = Ranker(args)
    app.router.add_post(args.path, ranker.predict)
    app.router.add_get("/healthz", ranker.healthz)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
