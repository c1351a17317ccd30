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

from typing import Any, Callable

from router.extract import get_path, scalar
from router.feedback import Issued
from router.metrics import RouterMetrics
from router.shadow import ShadowTarget, read_output, record_call
from router.upstream import Answer


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
    logged = doc if doc is not None and t.spec.privacy.inputs != "drop" else None
    keep(t, record_call(metrics, t, now, request_id, arm, version, "primary", answer, output, error, features,
                        segments, extras=extras, input_doc=logged, override=propensity is None, sticky=sticky,
                        propensity=propensity, fallback=fallback))
    feedback_id = None
    if propensity is not None and fallback is None:
        feedback_id = issued.issue(request_id, Issued(t.spec.key, t.spec.revision, arm, version, output, segments,
                                                      None, now, propensity))
    return feedback_id, output, features, segments
