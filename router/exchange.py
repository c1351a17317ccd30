"""A primary answer becomes its outcome record, its feedback id and its mirror the same way wherever that runs.

The predict API records its answers on the router's event loop: the feedback id goes back with the answer.
A transparent-mode answer has left before anything of it is read (its head and body stream through), so
all of its recording is work after the fact, and with a worker process (the default) the router does none
of it: it hands the worker the raw exchange (`router.worker.Exchange`: the request and answer bytes, the
arm, the timing) and the worker parses both, reads the inputs and the prediction, counts and records the
call, remembers the feedback id's payload by request id (`router.feedback.UnsignedIds`; feedback naming
that `request_id` asks the worker for it and the router signs it) and makes the mirror when shadowing.
Parsing and recording there instead of on the request path took about a third of the router's CPU per
transparent request (`python -m bench.router`; numbers in docs/architecture.md).

`--no-worker`, and the predict API, call `record_primary` on the router's event loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson

from router.extract import get_path, scalar
from router.feedback import Issued
from router.metrics import RouterMetrics
from router.shadow import Mirror, ShadowTarget, read_output, record_call
from router.upstream import Answer


@dataclass(slots=True)
class Exchange:
    """A transparent-mode primary exchange to record as it was (a message to router.worker): the worker parses
    the request and the answer, records the call, keeps its feedback id's payload and, with `mirror`, mirrors
    the request."""
    wid: int
    time: float
    request_id: str
    arm: str
    version: str
    answer: Answer
    """With the answer's body when it is recorded (JSON, or a failure), else empty."""
    request: bytes | None
    """The request body (None: larger than --max-body, not kept)."""
    propensity: float | None
    """None: the caller chose the version (an override)."""
    sticky: str | None
    fallback: str | None
    mirror: bool
    """Shadowing and the baseline answered: mirror the request (when it parses) to the candidate."""

    def __reduce__(self):       # positional: pickles faster than a slots dataclass's state
        return (Exchange, (self.wid, self.time, self.request_id, self.arm, self.version, self.answer, self.request,
                           self.propensity, self.sticky, self.fallback, self.mirror))


def read_inputs(t: ShadowTarget, doc: Any) -> tuple[dict | None, dict | None]:
    """The watched features (`spec.features`, at `spec.features.path`) and the segment values (fairness
    checks' `segment`, looked up among the features, then at the top of the request) of a request."""
    features = segments = None
    source = get_path(doc, t.features_path, None) if t.features_path else None
    if t.features and isinstance(source, dict):
        features = {f: scalar(source[f]) for f in t.features if f in source}
    if t.segments:
        segments = {}
        for seg in t.segments:
            v = source.get(seg) if isinstance(source, dict) and seg in source else (
                doc.get(seg) if isinstance(doc, dict) else None)
            segments[seg] = scalar(v)
    return features, segments


def record_primary(t: ShadowTarget, metrics: RouterMetrics, keep: Callable, issued: Any, now: float,
                   request_id: str, arm: str, version: str, answer: Answer, doc: Any, propensity: float | None,
                   sticky: str | None = None, fallback: str | None = None,
                   parsed: tuple | None = None) -> tuple[str | None, Any, dict | None, dict | None]:
    """Count a primary answer in `metrics`, hand its outcome record to `keep(t, record)` and issue its feedback
    id (`issued.issue(request_id, Issued)`: the signed id, or None where it is kept unsigned). `doc`: the
    request (None when unread); `propensity` None: the caller chose the version (an override: recorded,
    flagged, never analysed, no feedback); `fallback`: the caller got the fallback's answer instead (the
    record says so; no feedback: the version did not make that prediction); `parsed`: the answer's
    `read_output` when the caller has it. Returns (feedback id, prediction, features, segments), the last
    three for the mirror."""
    features, segments = read_inputs(t, doc) if doc is not None else (None, None)
    output, error, extras = parsed if parsed is not None else read_output(t, answer)
    keep(t, record_call(metrics, t, now, request_id, arm, version, "primary", answer, output, error, features,
                        segments, extras=extras, input_doc=doc, override=propensity is None, sticky=sticky,
                        propensity=propensity, fallback=fallback))
    feedback_id = None
    if propensity is not None and fallback is None:
        feedback_id = issued.issue(request_id, Issued(t.spec.key, t.spec.revision, arm, version, output, segments,
                                                      None, now, propensity))
    return feedback_id, output, features, segments


def record_exchange(t: ShadowTarget, m: Exchange, metrics: RouterMetrics, keep: Callable, issued: Any,
                    max_body: int) -> Mirror | None:
    """`record_primary` for an `Exchange` (the request parsed here, when kept and at most `max_body` bytes);
    the mirror to make when `m.mirror` and the request is JSON, else None."""
    doc = None
    if m.request is not None and len(m.request) <= max_body:
        try:
            doc = orjson.loads(m.request)
        except orjson.JSONDecodeError:
            pass
    _, output, features, segments = record_primary(t, metrics, keep, issued, m.time, m.request_id, m.arm, m.version,
                                                   m.answer, doc, m.propensity, m.sticky, m.fallback)
    if m.mirror and doc is not None:
        return Mirror(t.wid, m.request_id, m.request, m.time, features, segments, output)
    return None
