"""The outcome record: what the router saw of one request, one mirrored call or one piece of feedback.

An `Outcome` is the unit of everything downstream: the router's request path builds one per answer (and per
feedback), its worker folds them into per-bucket summaries (`policies.outcome.bucket`) and writes them to the
prediction log, and replay rebuilds the same buckets from that log. Its JSON form *is* the prediction-log
line (`to_json` / `from_json`, `docs/contracts.md`, "Outcome record" and "Prediction log"):

    {"v": 1, "time": 1767225600.0, "request_id": "…", "rollout": "fraud-scorer", "namespace": "ml",
     "revision": "v2@http://…", "version": "v1", "arm": "baseline", "role": "primary", "status": 200,
     "error": null, "latency_ms": 3.2, "output": 0.93, "features": {"amount": 12.5}, "segments": null}

`v` is the line format's version (`LOG_VERSION`); lines written before it existed (no `v`) parse as
version 1. Keys a reader does not know are kept in `extra` and written back, so a newer line survives a
round trip through an older reader. Pure: parsing and serialising only, no files, no clocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from collections.abc import Mapping
from typing import Any

import orjson

from policies.errors import InvalidInput

LOG_VERSION = 1
"""The prediction-log line format written by `Outcome.to_json`."""

ROLES = ("primary", "shadow", "interleave", "feedback")
"""primary: the answer the caller got; shadow: the candidate's answer to a mirrored request; interleave: one
of the two rankings merged for the caller; feedback: a label, clicks or a reward the caller sent for a request id."""
ARMS = ("baseline", "candidate")
"""Which version of the rollout answered. Feedback on a merged (interleaved) ranking has arm "interleave"."""


class OutcomeError(InvalidInput, ValueError):
    """A prediction-log line or record that is not an outcome; the message names the field."""


@dataclass(frozen=True, init=False)
class Outcome:
    """One outcome. Field names are the log line's keys; `None` means absent.

    Frozen; a record keeps its fields in its instance dict, written once (a frozen dataclass's generated
    `__init__` sets them one by one and a slotted one pickles through Python: 5-10x the cost of a dict on the
    router's request path and in its pipe to the worker). Fields left out of that dict (`answer`) read as
    None, their class default.

    Answers (role primary/shadow/interleave) carry status (None when no HTTP answer), error (an error kind,
    `policies.summaries.ERROR_KINDS`), latency_ms, output (the extracted prediction), features and segments
    (the watched inputs), attributions (when the spec names them), input (the request, when the spec's
    privacy settings keep or hash it), sticky (the stickiness key, hashed by default) and, on shadow
    answers, primary_output (what the baseline answered the same request). Feedback carries the output it is about, the segments, prediction_time (when that output was
    given) and either label, or clicks and outcome (the interleaving credit: win, loss or tie); a reward with
    either or alone, and the propensity of the arm that served the request."""
    time: float
    request_id: str
    rollout: str
    namespace: str
    revision: str
    version: str
    arm: str
    role: str
    status: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    latency_excluded: str | None = None
    """Why the router could not time this call fairly (`policies.summaries.LATENCY_EXCLUSIONS`): its latency is
    counted per reason instead of going into the latency summary."""
    output: Any = None
    features: Mapping[str, Any] | None = None
    segments: Mapping[str, Any] | None = None
    primary_output: Any = None
    attributions: Mapping[str, Any] | None = None
    input: Any = None
    label: Any = None
    clicks: list | None = None
    outcome: str | None = None
    prediction_time: float | None = None
    override: bool | None = None
    """True when the caller picked the version (`x-modelrollout-version`): logged, never folded into summaries."""
    sticky: str | None = None
    """The stickiness header's value (`spec.strategy.stickiness.header`, e.g. a user id) as the spec's
    `privacy.stickyKey` lets it be logged: clear, or a keyed hash (`policies.privacy`); on primary and
    interleaved answers only."""
    reward: float | None = None
    """A numeric outcome the caller reported through `/feedback` (a conversion, revenue): feedback only."""
    propensity: float | None = None
    """The probability with which the router chose the arm that served the request (the canary weight's share;
    1 in shadow and interleave steps): on answers and feedback, for off-policy estimates (`policies.ipw`)."""
    reward_delta: float | None = None
    """On feedback with a reward and clicks for an interleaved answer: the reward credited to the candidate's
    team minus the baseline's, by the clicked items each placed (`policies.interleaving.reward_delta`)."""
    embedding: list | None = None
    """The embedding the model returned beside its prediction (`spec.output.embedding`), when watched."""
    input_issues: Mapping[str, str] | None = None
    """The watched features of a live request that broke `spec.expectations`, `{feature: kind}` (kind one of
    `policies.summaries.ISSUE_KINDS`), classified by the router on the raw values before the privacy settings
    applied; absent when every expectation held (or the spec has none). Primary (and the baseline's interleaved)
    answers only."""
    fallback: str | None = None
    """On a primary answer that failed (error set) in a rollout with `spec.fallback`: `served` (the caller got
    the fallback's answer instead) or `failed` (the fallback failed too). The record is otherwise the failure's."""
    extra: Mapping[str, Any] | None = None
    """Keys of the line this version does not know, written back unchanged."""

    def __init__(self, time: float, request_id: str, rollout: str, namespace: str, revision: str, version: str,
                 arm: str, role: str, status: int | None = None, error: str | None = None,
                 latency_ms: float | None = None, latency_excluded: str | None = None, output: Any = None,
                 features: Mapping[str, Any] | None = None, segments: Mapping[str, Any] | None = None,
                 primary_output: Any = None, attributions: Mapping[str, Any] | None = None, input: Any = None,
                 label: Any = None, clicks: list | None = None, outcome: str | None = None,
                 prediction_time: float | None = None, override: bool | None = None,
                 sticky: str | None = None, reward: float | None = None, propensity: float | None = None,
                 extra: Mapping[str, Any] | None = None, reward_delta: float | None = None,
                 embedding: list | None = None, input_issues: Mapping[str, str] | None = None,
                 fallback: str | None = None) -> None:
        _set_dict(self, "__dict__", {
            "time": time, "request_id": request_id, "rollout": rollout, "namespace": namespace,
            "revision": revision, "version": version, "arm": arm, "role": role, "status": status, "error": error,
            "latency_ms": latency_ms, "latency_excluded": latency_excluded, "output": output, "features": features,
            "segments": segments, "primary_output": primary_output, "attributions": attributions, "input": input,
            "label": label, "clicks": clicks, "outcome": outcome, "prediction_time": prediction_time,
            "override": override, "sticky": sticky, "reward": reward, "propensity": propensity,
            "reward_delta": reward_delta, "embedding": embedding, "input_issues": input_issues, "fallback": fallback,
            "extra": extra})

    @classmethod
    def answer(cls, time: float, request_id: str, rollout: str, namespace: str, revision: str, version: str,
               arm: str, role: str, status: int | None, error: str | None, latency_ms: float | None, output: Any,
               features: Mapping[str, Any] | None, segments: Mapping[str, Any] | None, **more: Any) -> "Outcome":
        """The record of a model's answer (role primary, shadow or interleave), built for the router's request
        path: the same record as the constructor's, at a fraction of its cost. `more` takes the other fields
        (primary_output, attributions, input, latency_excluded, ...)."""
        o = _new(cls)
        d = {"time": time, "request_id": request_id, "rollout": rollout, "namespace": namespace,
             "revision": revision, "version": version, "arm": arm, "role": role, "status": status, "error": error,
             "latency_ms": latency_ms, "output": output, "features": features, "segments": segments}
        if more:
            if not _FIELD_SET.issuperset(more):
                raise TypeError(f"Outcome.answer: unknown fields {sorted(set(more) - _FIELD_SET)}")
            d.update(more)
        _set_dict(o, "__dict__", d)
        return o

    def replaced(self, **changes: Any) -> "Outcome":
        """A copy with `changes` (field names, not checked: callers pass fields they read)."""
        o = _new(Outcome)
        _set_dict(o, "__dict__", {**self.__dict__, **changes})
        return o

    @property
    def is_feedback(self) -> bool:
        return self.role == "feedback"

    @property
    def key(self) -> str:
        """The rollout's `namespace/name`, as `RolloutSpec.key`."""
        return f"{self.namespace}/{self.rollout}"

    def to_dict(self) -> dict[str, Any]:
        """The log line as a JSON object: identity keys always; for answers status, error, latency_ms, output,
        features, segments always (primary_output too on shadow answers); for feedback output, segments,
        prediction_time and label, or clicks and outcome; every other field only when not None."""
        src = self.__dict__
        role = src["role"]
        if role == "feedback":
            keep = _KEEP_FEEDBACK_LABEL if src.get("clicks") is None else _KEEP_FEEDBACK_CLICKS
        else:
            keep = _KEEP_SHADOW if role == "shadow" else _KEEP_ANSWER
        d: dict[str, Any] = {"v": LOG_VERSION}
        get = src.get
        for k in _LINE_FIELDS:                  # in field order, whatever order the record was built in
            v = get(k)
            if v is not None or k in keep:
                d[k] = v
        extra = get("extra")
        if extra:
            for k, v in extra.items():
                d.setdefault(k, v)
        return d

    def to_json(self) -> bytes:
        """The prediction-log line, without its newline."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY, default=str)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Outcome":
        """The outcome of a parsed log line (any version so far). Only `time` is required (finite epoch
        seconds); missing identity fields read as "" (hand-written logs), wrong types raise OutcomeError."""
        if not isinstance(d, Mapping):
            raise OutcomeError(f"expected a JSON object, got {type(d).__name__}")
        v = d.get("v", 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise OutcomeError(f"v: expected a positive integer line version, got {v!r}")
        t = d.get("time")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise OutcomeError(f"time: expected epoch seconds, got {t!r}")
        ident = []
        for k in ("request_id", "rollout", "namespace", "revision", "version", "arm", "role"):
            x = d.get(k)
            if x is None:
                x = ""
            elif not isinstance(x, str):
                raise OutcomeError(f"{k}: expected a string, got {x!r}"[:200])
            ident.append(x)
        status = d.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise OutcomeError(f"status: expected an HTTP status code or null, got {status!r}"[:200])
        for k in ("error", "latency_excluded", "sticky", "fallback"):
            x = d.get(k)
            if x is not None and not isinstance(x, str):
                raise OutcomeError(f"{k}: expected a string or null, got {x!r}"[:200])
        for k in ("latency_ms", "prediction_time", "reward", "propensity", "reward_delta"):
            x = d.get(k)
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
                raise OutcomeError(f"{k}: expected a number or null, got {x!r}"[:200])
        for k in ("features", "segments", "attributions", "input_issues"):
            x = d.get(k)
            if x is not None and not isinstance(x, Mapping):
                raise OutcomeError(f"{k}: expected an object or null, got {x!r}"[:200])
        override = d.get("override")
        if override is not None and not isinstance(override, bool):
            raise OutcomeError(f"override: expected true, false or null, got {override!r}"[:200])
        for k in ("clicks", "embedding"):
            x = d.get(k)
            if x is not None and not isinstance(x, list):
                raise OutcomeError(f"{k}: expected a list or null, got {x!r}"[:200])
        clicks = d.get("clicks")
        extra = {k: x for k, x in d.items() if k not in _KNOWN} or None
        g = d.get
        return cls(t, *ident, status, g("error"), g("latency_ms"), g("latency_excluded"), g("output"),
                   g("features"), g("segments"), g("primary_output"), g("attributions"), g("input"), g("label"),
                   clicks, g("outcome"), g("prediction_time"), override, g("sticky"), g("reward"), g("propensity"),
                   extra, g("reward_delta"), g("embedding"), g("input_issues"), g("fallback"))

    @classmethod
    def from_json(cls, line: bytes | str) -> "Outcome":
        """The outcome of one prediction-log line (with or without its newline)."""
        return cls.from_dict(parse_line(line))


def parse_line(line: bytes | str) -> dict[str, Any]:
    """One prediction-log line as a JSON object; OutcomeError when it is not JSON or not an object."""
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise OutcomeError(f"not a JSON record: {e}") from None
    if not isinstance(d, dict):
        raise OutcomeError(f"expected a JSON object, got {type(d).__name__}")
    return d


_set_dict = object.__setattr__
_new = object.__new__
_FIELDS = tuple(f.name for f in fields(Outcome))
_FIELD_SET = frozenset(_FIELDS)
_LINE_FIELDS = tuple(k for k in _FIELDS if k != "extra")
_IDENTITY = ("v", "time", "request_id", "rollout", "namespace", "revision", "version", "arm", "role")
_KEEP_ANSWER = frozenset(_IDENTITY + ("status", "error", "latency_ms", "output", "features", "segments"))
"""Keys an answer's line always has (null or not); the others only when not null."""
_KEEP_SHADOW = _KEEP_ANSWER | {"primary_output"}
_KEEP_FEEDBACK_LABEL = frozenset(_IDENTITY + ("output", "segments", "prediction_time", "label"))
_KEEP_FEEDBACK_CLICKS = frozenset(_IDENTITY + ("output", "segments", "prediction_time", "clicks", "outcome"))
_KNOWN = frozenset(("v",) + _FIELDS) - {"extra"}
