"""Serving `spec.fallback` when the chosen version failed (policies/fallback.py has the rules).

The version's failure has been recorded as it is (its outcome record, the summaries, the error metrics);
here the caller gets a usable answer instead: the static answer, or the fallback URL's answer to the same
request body, marked `x-modelrollout-fallback: REASON`. A fallback URL that fails too (an error, a non-2xx
answer, no valid prediction at `spec.output.path`) gives the caller one clear error, 502 `fallback failed`,
naming both failures. Every use is counted in `modelrollout_router_fallback_total{reason, result}`.
"""
from __future__ import annotations

from typing import Any

import orjson

from policies.fallback import FALLBACK_HEADER
from router.extract import get_path, is_missing, output_value
from router.reply import JSON, Reply, error_reply


def _usable(target: Any, body: bytes) -> str | None:
    """None when `body` is JSON with a valid prediction at the output path, else what is wrong with it."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "answered no valid JSON (NaN is not JSON)"
    raw = get_path(doc, target.output_path)
    _, ok = output_value(target.spec.output.kind, None if is_missing(raw) else raw)
    return None if ok else f"answered no valid prediction at {target.spec.output.path!r}"


async def serve(router: Any, target: Any, version: str, request_id: str | None, body: bytes | None,
                reason: str, detail: str, headers: dict[str, str] | None = None) -> tuple[Reply, str]:
    """The caller's answer after `version` failed with `reason` (`detail` says how), and the fallback's
    result (`served` or `failed`). `headers`: more request headers for a fallback URL (transparent mode)."""
    fb = target.spec.fallback
    spec = target.spec
    marks = [("x-model-version", version), (FALLBACK_HEADER, reason)]
    if request_id is not None:
        marks.append(("x-request-id", request_id))
    if fb.static is not None:
        result, reply = "served", Reply(200, fb.static, marks, JSON)
    elif body is None:
        result, reply = "failed", error_reply(502, "fallback failed", f"model version {version!r} {detail}; the "
                                              "request body was too large to send to the fallback", marks)
    else:
        hdrs = {**(headers or {}), "Content-Type": JSON}
        if request_id is not None:
            hdrs["x-request-id"] = request_id
        pool = router.upstreams.pool(fb.url)
        answer = await router.upstreams.call(fb.url, "" if pool.prefix else "/", body, hdrs, fb.timeout)
        problem = answer.detail if answer.error is not None else (
            f"answered HTTP {answer.status}" if not 200 <= (answer.status or 0) < 300 else _usable(target, answer.body))
        if problem is None:
            result, reply = "served", Reply(200, answer.body, marks, answer.content_type or JSON)
        else:
            result, reply = "failed", error_reply(502, "fallback failed", f"model version {version!r} {detail}; "
                                                  f"the fallback {fb.url} {problem}", marks)
    router.metrics.fallback[(spec.name, spec.namespace, version, reason, result)] += 1
    return reply, result
