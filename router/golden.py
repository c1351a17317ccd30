"""`POST /v1/rollouts/{name}/golden`: both versions answer every request of a golden set.

Internal (like `/summaries`: with `--internal-auth kubernetes` only a token whose user may `get` the path).
The controller (or local mode) sends `{"revision": REVISION, "requests": [BODY, ...]}` for the candidate
revision it is running a golden step for; the router calls the baseline (the stable) and the candidate of
its own target for that rollout with each body, exactly as it calls them for a live request (the same
keep-alive client, `predictPath`, `Content-Type`, `x-request-id`, `spec.timeout`) plus the header
`x-modelrollout-golden: true`, reads each answer at `spec.output.path` the way live answers are read, and
answers the pairs in the set's order. Golden calls are counted in `modelrollout_router_golden_requests_total`
only and logged with the role `golden` (request ids `golden-RUN-INDEX`): they never enter the summaries, the
live metrics or feedback, and replay reads them back (`modelrollout.replay`).
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson

from policies.golden_spec import MAX_CASES
from policies.outcome import Outcome
from router.core import Reply, Router, Target, error_reply
from router.shadow import read_output
from router.upstream import Answer

GOLDEN_HEADER = "x-modelrollout-golden"
CONCURRENCY = 8
"""Golden requests in flight at once (each to both versions); `controller.golden.GOLDEN_CONCURRENCY`."""
MAX_BYTES = 8 * 1024 * 1024
"""Largest golden request body the route reads (the set's requests, JSON)."""


async def answer_golden(router: Router, name: str, namespace: str | None, body: bytes) -> Reply:
    found = router.resolve_json(name, namespace, body)
    if isinstance(found, Reply):
        return found
    target, doc = found
    problem = _problem(doc)
    if problem:
        return error_reply(400, "invalid golden set", problem)
    spec = target.spec
    if doc["revision"] != spec.revision:
        return error_reply(409, "revision mismatch", f"this router serves candidate revision {spec.revision} of "
                                                     f"{spec.key}, not {doc['revision']}; try again")
    if spec.steady:
        return error_reply(409, "no candidate", f"{spec.key} has no candidate to compare with the stable")
    bodies = [orjson.dumps(r) for r in doc["requests"]]
    too_big = next((i for i, b in enumerate(bodies) if len(b) > router.settings.max_body_bytes), None)
    if too_big is not None:
        return error_reply(400, "invalid golden set", f"requests[{too_big}]: {len(bodies[too_big])} bytes exceed "
                                                      f"--max-body {router.settings.max_body_bytes}")
    run = os.urandom(6).hex()
    limit = asyncio.Semaphore(CONCURRENCY)
    now = time.time()

    async def one(i: int, payload: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "x-request-id": f"golden-{run}-{i}", GOLDEN_HEADER: "true"}
        async with limit:
            a, b = await asyncio.gather(
                router.upstreams.call(spec.baseline.url, spec.predict_path, payload, headers, spec.timeout),
                router.upstreams.call(spec.candidate.url, spec.predict_path, payload, headers, spec.timeout))
        out = {"baseline": _view(router, target, spec.baseline.version, a),
               "candidate": _view(router, target, spec.candidate.version, b)}
        for arm, version in (("baseline", spec.baseline.version), ("candidate", spec.candidate.version)):
            v = out[arm]
            # logged with their own role (the fold skips it): replay judges the golden step from the log
            router.keep(target.calls, Outcome.answer(now, headers["x-request-id"], spec.name, spec.namespace,
                                                     spec.revision, version, arm, "golden", v["status"], v["error"],
                                                     v["latency_ms"], v["output"], None, None))
        return out

    answers = await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return Reply(200, orjson.dumps({"rollout": spec.name, "namespace": spec.namespace, "revision": spec.revision,
                                    "baseline": spec.baseline.version, "candidate": spec.candidate.version,
                                    "answers": answers}))


def _problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return f"expected an object {{revision, requests}}, got {type(doc).__name__}"
    if not isinstance(doc.get("revision"), str):
        return f"revision: expected the candidate revision (version@url), got {doc.get('revision')!r}"
    reqs = doc.get("requests")
    if not isinstance(reqs, list) or not 1 <= len(reqs) <= MAX_CASES:
        return f"requests: expected a list of 1 to {MAX_CASES} JSON bodies"
    return None


def _view(router: Router, target: Target, version: str, answer: Answer) -> dict[str, Any]:
    output, error, _ = read_output(target.calls, answer)
    spec = target.spec
    router.metrics.golden[(spec.name, spec.namespace, version, str(answer.status or 0))] += 1
    return {"status": answer.status, "error": error, "output": output,
            "latency_ms": round(answer.latency * 1000.0, 3)}
