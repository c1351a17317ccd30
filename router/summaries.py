"""`POST /v1/summaries`: the analysis windows of many rollouts in one request, each merged on the router.

Internal (like `/v1/rollouts/{name}/summaries`: with `--internal-auth kubernetes` only a token whose user may
`get` the path). The controller sends, for every rollout whose window is due at about the same time,

    {"windows": [{"rollout": NAME, "namespace": NS, "revision": REVISION, "start": T0, "end": T1}, ...]}

and gets, in the same order, each rollout's buckets of that candidate `revision` that the analysis window
from T0 to T1 reads (those from the bucket holding T0 on, ended by T1: `policies.outcome.window_buckets`)
merged into one bucket (`policies.outcome.merge`, exact), so it decodes one bucket per replica and rollout
instead of every bucket of the window, and one request per replica replaces one per rollout. A rollout this
router does not serve is an error of its item, not of the request. `docs/contracts.md` ("Summaries").
"""
from __future__ import annotations

import math
from typing import Any

import orjson

from router.core import Reply, Router, Target, error_reply
from router.worker import WorkerUnavailable

MAX_ITEMS = 4096
"""Most windows one request may ask for."""
MAX_BYTES = 2 * 1024 * 1024
"""Largest request body the route reads."""
_FIELDS = {"rollout": str, "namespace": str, "revision": str}


def _problem(doc: Any) -> str | None:
    """Why `doc` is not a batch of windows, naming the field; None when it is."""
    if not isinstance(doc, dict) or not isinstance(doc.get("windows"), list):
        return 'expected {"windows": [{"rollout", "namespace", "revision", "start", "end"}, ...]}'
    items = doc["windows"]
    if len(items) > MAX_ITEMS:
        return f"windows: at most {MAX_ITEMS} items, got {len(items)}"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return f"windows[{i}]: expected an object, got {type(item).__name__}"
        for field, kind in _FIELDS.items():
            if not isinstance(item.get(field), kind) or not item[field]:
                return f"windows[{i}].{field}: expected a non-empty string, got {item.get(field)!r}"
        for field in ("start", "end"):
            v = item.get(field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"windows[{i}].{field}: expected seconds since the epoch, got {v!r}"
        if item["start"] > item["end"]:
            return f"windows[{i}]: start ({item['start']}) is after end ({item['end']})"
    return None


def instance(router: Router) -> str:
    """The router's `instance` in summaries answers: its process id, `.`, its worker's restarts."""
    return f"{router.instance}.{router.worker.restarts if router.worker is not None else 0}"


async def answer_batch(router: Router, body: bytes) -> Reply:
    if len(body) > MAX_BYTES:
        return error_reply(413, "request too large", f"body of {len(body)} bytes exceeds {MAX_BYTES}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return error_reply(400, "malformed JSON", f"request body is not valid JSON: {e}")
    problem = _problem(doc)
    if problem:
        return error_reply(400, "invalid windows", problem)
    answers: list[dict[str, Any]] = []
    asked: list[tuple[str, str, float, float]] = []
    for item in doc["windows"]:
        found = router.resolve(item["rollout"], item["namespace"])
        answer: dict[str, Any] = {"rollout": item["rollout"], "namespace": item["namespace"]}
        if isinstance(found, Target):
            asked.append((found.spec.key, item["revision"], float(item["start"]), float(item["end"])))
        else:
            answer["error"] = {"status": found.status, **orjson.loads(found.body)}
        answers.append(answer)
    if router.worker is None:
        router.recorder.flush()
        merged = [router.recorder.merged_window(*a) for a in asked]
    else:
        try:
            merged = await router.worker.merged_windows(asked) if asked else []
        except WorkerUnavailable as e:
            return error_reply(503, "summaries unavailable", f"{e}; try again")
    windows = iter(merged)
    for answer in answers:
        if "error" not in answer:
            answer["windows"] = next(windows)
    return Reply(200, orjson.dumps({"replica": router.settings.replica_id, "instance": instance(router),
                                    "bucket_seconds": router.settings.bucket_seconds, "windows": answers},
                                   option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))
