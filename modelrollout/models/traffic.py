"""A load generator that behaves like users of a rollout behind the router.

Each simulated user has a sticky id (sent as `x-user-id`), an age and a gender; score requests carry
`{"features": {...}}`, ranking requests `{"user", "candidates"}`. With `--feedback` it posts ground-truth
labels for scores and simulated clicks (modelrollout.models.ranker.simulate_clicks) for rankings, the way a product
would report outcomes back. `--null amount=0.2` sends a feature as null in a share of the requests (broken inputs).
It prints its report (requests sent, statuses, versions, feedback, transport errors) as one JSON line when its
duration is over, or on SIGTERM/SIGINT, which stop it early (the answers in flight get 2 s).

    python -m modelrollout.models.traffic --url http://127.0.0.1:8080/v1/rollouts/fraud-scorer --rps 50 --duration 10
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field

import aiohttp

from modelrollout.models.ranker import relevance, simulate_clicks


@dataclass
class User:
    id: str
    age: float
    gender: str


STOP_GRACE = 2.0
"""Seconds the requests in flight get to be answered after SIGTERM/SIGINT."""


@dataclass
class TrafficReport:
    sent: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    versions: collections.Counter = field(default_factory=collections.Counter)
    feedback: collections.Counter = field(default_factory=collections.Counter)
    transport_errors: int = 0
    unfinished: int = 0
    """Requests still unanswered STOP_GRACE seconds after a SIGTERM/SIGINT (cancelled: no status)."""

    def to_dict(self) -> dict:
        return {"sent": self.sent, "statuses": dict(self.statuses), "versions": dict(self.versions),
                "feedback": dict(self.feedback), "transport_errors": self.transport_errors,
                "unfinished": self.unfinished}


def make_users(n: int, rng: random.Random, age_mean: float = 40.0, age_std: float = 12.0) -> list[User]:
    return [User(f"u{i}", round(max(18.0, rng.gauss(age_mean, age_std)), 1), rng.choice(("f", "m")))
            for i in range(n)]


def score_body(user: User, rng: random.Random) -> dict:
    amount = round(math.exp(rng.gauss(3.5, 1.0)), 2)
    return {"features": {"age": user.age, "gender": user.gender, "amount": amount,
                         "hour": rng.randrange(24)}}


def ranking_body(user: User, rng: random.Random, items: int) -> dict:
    return {"user": user.id, "candidates": [f"i{rng.randrange(items * 10)}" for _ in range(items)]}


def base_url(url: str) -> str:
    """The rollout's base URL, whether given with or without the trailing /predict."""
    url = url.rstrip("/")
    return url[: -len("/predict")] if url.endswith("/predict") else url


async def _one(session: aiohttp.ClientSession, base: str, args: argparse.Namespace, user: User,
               rng: random.Random, report: TrafficReport) -> None:
    body = ranking_body(user, rng, args.items) if args.kind == "ranking" else score_body(user, rng)
    for name, share in args.null:
        if "features" in body and rng.random() < share:
            body["features"][name] = None       # broken inputs: an upstream pipeline lost this feature
    report.sent += 1
    try:
        headers = {"x-user-id": user.id, **({"Host": args.host_header} if args.host_header else {})}
        async with session.post(f"{base}/predict", json=body, headers=headers) as r:
            report.statuses[r.status] += 1
            report.versions[r.headers.get("x-model-version", "-")] += 1
            payload = await r.read()
            feedback_id = r.headers.get("x-feedback-id")
            ok = r.status == 200
        if not (args.feedback and ok and feedback_id):
            return
        if args.kind == "ranking":
            ranking = json.loads(payload).get("ranking", [])
            feedback = {"feedback_id": feedback_id, "clicks": simulate_clicks(ranking, user.id, rng)}
        else:
            # Ground truth: fraud is likelier for large amounts at night (independent of the model).
            f = body["features"]
            p = 0.05 + 0.3 * (f["amount"] > 100) + 0.2 * (f["hour"] < 6)
            feedback = {"feedback_id": feedback_id, "label": int(rng.random() < p)}
        async with session.post(f"{base}/feedback", json=feedback) as r:
            report.feedback[r.status] += 1
            await r.read()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        report.transport_errors += 1


async def run(args: argparse.Namespace) -> TrafficReport:
    """Send `rps` requests per second for `duration` seconds (open loop, bounded concurrency). SIGTERM or
    SIGINT ends it early: no new request is sent, those in flight are awaited, and the report is returned."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(args.seed)
    users = make_users(args.users, rng, age_mean=args.age_mean)
    report = TrafficReport()
    base = base_url(args.url)
    limit = asyncio.Semaphore(args.concurrency)
    tasks: set[asyncio.Task] = set()
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(force_close=True) if args.no_keepalive else None
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.monotonic()
        total = int(args.rps * args.duration) if args.requests is None else args.requests
        for i in range(total):
            due = start + i / args.rps
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
            if stop.is_set():
                break
            await limit.acquire()
            task = asyncio.create_task(_one(session, base, args, rng.choice(users), rng, report))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), limit.release()))
        if tasks and stop.is_set():
            # stopped: the answers in flight get STOP_GRACE seconds, the rest are cancelled and counted
            _, pending = await asyncio.wait(set(tasks), timeout=STOP_GRACE)
            for t in pending:
                t.cancel()
            report.unfinished = len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        elif tasks:
            await asyncio.gather(*tasks)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m modelrollout.models.traffic", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the rollout's router URL: .../v1/rollouts/NAME (or, with "
                   "--host-header, the router's base URL)")
    p.add_argument("--host-header", default=None, help="send this Host header: the rollout's Service name, to "
                   "call it in transparent mode (spec.service) through a router on another address")
    p.add_argument("--rps", type=float, default=50.0)
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--requests", type=int, default=None, help="send exactly N requests (overrides duration)")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--kind", choices=("score", "ranking"), default="score")
    p.add_argument("--items", type=int, default=10, help="candidates per ranking request")
    p.add_argument("--age-mean", type=float, default=40.0, help="shift it to simulate feature drift")
    p.add_argument("--feedback", action="store_true", help="post labels / clicks after each answer")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--no-keepalive", action="store_true", help="a new connection per request (a Service's "
                   "endpoints that change reach the client at once, instead of when a kept-alive connection closes)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--null", action="append", default=[], metavar="FEATURE=SHARE",
                   help="send FEATURE as null in SHARE of the score requests (broken inputs), e.g. amount=0.2")
    args = p.parse_args(argv)
    nulls = []
    for item in args.null:
        name, _, share = item.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not name or not 0.0 <= value <= 1.0:
            p.error(f"--null: expected FEATURE=SHARE with SHARE in [0, 1], such as amount=0.2, got {item!r}")
        nulls.append((name, value))
    args.null = nulls
    if args.rps <= 0:
        p.error(f"--rps: expected a positive number, got {args.rps}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report.to_dict(), sort_keys=True))
    return 0 if report.transport_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
