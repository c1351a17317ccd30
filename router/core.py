"""The router's request handling, independent of the HTTP framework in front of it.

`Router` holds the current rollouts, the upstream pool, the recorder, the prediction log and the
issued request ids. Its handlers take (name, namespace, headers, body) and return a `Reply`; both the
raw-ASGI hot path and the FastAPI routes call them, so every entry point behaves the same.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson

from policies.errors import http_status
from policies.interleaving import credit, reward_delta, team_clicks, team_draft
from policies.outcome import Outcome
from policies.spec import Rollout, RolloutSpec, VersionRef
from router.exchange import read_inputs, record_primary
from router.extract import set_path, split_path
from router import fallback as _fallback
from router.feedback import FeedbackKeys, FeedbackRefused, Issued, IssuedIds
from router.metrics import RouterMetrics
from router.predlog import log_metrics, open_log
from router.privacy import Privacy
from router.recorder import Recorder, keep_folding
from router.reply import Reply, error_reply
from router.routing import BASELINE, CANDIDATE, Routing, pick, served
from router.settings import RouterSettings
from router.shadow import Mirror, ShadowCaller, ShadowTarget, read_output, record_call
from router.upstream import ERROR_STATUS, Answer, Upstreams
from router.worker import Worker, WorkerUnavailable

log = logging.getLogger("modelrollout.router")

OVERRIDE_HEADER = "x-modelrollout-version"
FEEDBACK_HEADER = "x-feedback-id"
JSON = "application/json"
_MAX_REQUEST_ID = 128


@dataclass
class Target:
    """One served rollout, pre-digested for the request path."""
    spec: RolloutSpec
    routing: Routing
    arms: dict[str, VersionRef]
    by_version: dict[str, str]
    output_path: tuple[str, ...]
    attributions_path: tuple[str, ...] | None
    sticky_header: str | None
    headers: dict[str, dict]
    calls: ShadowTarget
    """What recording its calls needs; the worker knows the target by this (`calls.wid`)."""

    def propensity(self, arm: str, override: bool) -> float | None:
        """The probability that the split chose `arm` for a request (None when the caller chose: override)."""
        share = self.routing.candidate_weight / 100.0
        return None if override else share if arm == CANDIDATE else 1.0 - share

    def mirrors(self, arm: str, override: bool) -> bool:
        """Whether a request answered by `arm` is mirrored to the candidate (when its body is at hand)."""
        return self.routing.shadow and arm == BASELINE and not override

    @classmethod
    def of(cls, rollout: Rollout) -> "Target":
        s, routing = served(rollout)
        arms = {BASELINE: s.baseline, CANDIDATE: s.candidate}
        by_version = {s.baseline.version: BASELINE}
        by_version.setdefault(s.candidate.version, CANDIDATE)
        output_path = split_path(s.output.path)
        attributions_path = split_path(s.output.attributions) if s.output.attributions else None
        return cls(spec=s, routing=routing, arms=arms, by_version=by_version,
                   output_path=output_path, attributions_path=attributions_path,
                   sticky_header=s.stickiness_header.lower() if s.stickiness_header else None,
                   headers={}, calls=ShadowTarget(s, output_path, attributions_path,
                                                  split_path(s.output.embedding) if s.output.embedding else None,
                                                  split_path(s.features_path) if s.features_path else None,
                                                  s.watched_features(), s.segments()))


class Router:
    def __init__(self, settings: RouterSettings | None = None):
        self.settings = settings or RouterSettings()
        s = self.settings
        self.metrics = RouterMetrics()
        self.upstreams = Upstreams(s.upstream_connections, ca_file=s.upstream_ca)
        self.issued = IssuedIds(s.feedback_ttl_seconds, s.feedback_max_ids, FeedbackKeys(s.feedback_key_file))
        self.recorder = Recorder(s.bucket_seconds, s.retention_seconds, s.reservoir)
        # With a worker, the worker folds the records and writes the log; this process only answers.
        self.log = open_log(s) if not s.worker else None
        self.privacy = Privacy(s.hash_key)
        self.targets: dict[str, Target] = {}
        self._applied: dict[str, tuple[Rollout, Target]] = {}
        """Per rollout key, the `Rollout` last applied and its Target (reused while the source hands the same)."""
        self.by_name: dict[str, list[Target]] = {}
        self.ready = False
        self.worker = Worker(s, self.metrics) if s.worker else None
        self.instance = os.urandom(8).hex()
        """This process's identity in `/summaries` (with the worker's restart count): summaries live in memory,
        so a new identity tells the controller that an earlier one's unsent windows are lost."""
        self.keep = self.worker.record if self.worker is not None else self.keep_here
        """keep(target.calls, record): fold an outcome record into the windows and write it to the log."""
        self.shadows = ShadowCaller(s, self.metrics, self.keep_here) if self.worker is None else None
        """The shadow calls, when this process makes them (--no-worker); else the worker does."""
        self._rng = random.Random()
        self.metrics.gauges.append(self._gauges)
        self.source_health: Callable[[], dict] | None = None
        """The routing source's `health()` (connected, error, invalid and deleted rollouts), when it has one."""

    # --- configuration ---------------------------------------------------------------------------

    def apply(self, rollouts: Iterable[Rollout]) -> None:
        """Serve exactly `rollouts` from now on (in-flight requests finish on what they started with)."""
        targets = {}
        applied = {}
        for r in rollouts:
            before = self._applied.get(r.spec.key)
            if before is not None and before[0] is r:
                t = before[1]            # the very Rollout served now (a source that parsed nothing new)
            else:
                t = Target.of(r)
                self.recorder.configure(t.spec)
            targets[t.spec.key] = t
            applied[t.spec.key] = (r, t)
        self._applied = applied
        by_name: dict[str, list[Target]] = {}
        for t in targets.values():
            by_name.setdefault(t.spec.name, []).append(t)
        old = self.targets
        if self.worker is not None:
            self.worker.forget(t.calls.wid for k, t in old.items() if targets.get(k) is not t)
        self.targets, self.by_name = targets, by_name
        self.ready = True
        changed = sorted(k for k, t in targets.items() if old.get(k) is not t)
        gone = sorted(k for k in old if k not in targets)
        if changed or gone or not old:
            log.info("serving %d rollout(s); new or changed: %s%s", len(targets), ", ".join(
                f"{k} (candidate {targets[k].routing.candidate_weight:g}%{', shadow' if targets[k].routing.shadow else ''}"
                f"{', interleave' if targets[k].routing.interleave else ''})" for k in changed) or "none",
                f"; gone: {', '.join(gone)}" if gone else "")

    def resolve(self, name: str, namespace: str | None) -> Target | Reply:
        found = self.by_name.get(name)
        if found and namespace:
            found = [t for t in found if t.spec.namespace == namespace]
        if not found:
            where = f" in namespace {namespace!r}" if namespace else ""
            return error_reply(404, "unknown rollout", f"no rollout named {name!r}{where}; serving: "
                               f"{', '.join(sorted(self.targets)) or 'none'}")
        if len(found) > 1:
            return error_reply(400, "ambiguous rollout", f"rollout {name!r} exists in namespaces "
                               f"{', '.join(sorted(t.spec.namespace for t in found))}; add ?namespace=")
        return found[0]

    def resolve_json(self, name: str, namespace: str | None, body: bytes) -> tuple[Target, Any] | Reply:
        """The rollout a request names and its JSON body, or the error Reply (404/400) a caller gets."""
        target = self.resolve(name, namespace)
        if isinstance(target, Reply):
            return target
        try:
            return target, orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return error_reply(400, "malformed JSON", f"request body is not valid JSON: {e}")

    # --- predict ---------------------------------------------------------------------------------

    async def predict(self, name: str, namespace: str | None, headers: dict[str, str], body: bytes) -> Reply:
        found = self.resolve_json(name, namespace, body)
        if isinstance(found, Reply):
            return found
        target, doc = found
        request_id = headers.get("x-request-id") or os.urandom(16).hex()
        if len(request_id) > _MAX_REQUEST_ID or not request_id.isprintable() or not request_id.isascii():
            return error_reply(400, "invalid x-request-id", f"x-request-id: expected at most {_MAX_REQUEST_ID} "
                               f"printable ASCII characters, got {request_id[:40]!r}")
        routing = target.routing
        sticky = headers.get(target.sticky_header) if target.sticky_header else None
        override = headers.get(OVERRIDE_HEADER) if self.settings.allow_override else None
        if override is not None:
            arm = target.by_version.get(override)
            if arm is None:
                return error_reply(400, "unknown version", f"{OVERRIDE_HEADER}: expected one of "
                                   f"{', '.join(target.by_version)}, got {override!r}")
        elif routing.interleave and target.spec.output.kind == "ranking":
            return await self._interleave(target, request_id, doc, body, sticky)
        else:
            arm = pick(routing, sticky, target.spec.key, self._rng)
        now = time.time()
        version = target.arms[arm]
        answer = await self.upstreams.call(version.url, target.spec.predict_path, body,
                                           {"Content-Type": JSON, "x-request-id": request_id}, target.spec.timeout)
        parsed = None
        if target.spec.fallback is not None and override is None:
            parsed = self._output(target, answer)
            if parsed[1] is not None:       # the version failed: the caller gets the fallback's answer
                reply, result = await _fallback.serve(self, target, version.version, request_id, body, parsed[1],
                                                      answer.detail or "answered no valid prediction")
                self.answered(target, now, request_id, arm, answer, doc, body, False, sticky, parsed, result)
                return reply
        feedback_id = self.answered(target, now, request_id, arm, answer, doc, body, override is not None, sticky,
                                    parsed)
        return self._reply(answer, version.version, request_id, feedback_id)

    def answered(self, target: Target, now: float, request_id: str, arm: str, answer: Answer, doc: Any,
                 body: bytes | None, override: bool = False, sticky: str | None = None,
                 parsed: tuple | None = None, fallback: str | None = None) -> str | None:
        """After a primary answer (the predict API's, or with --no-worker a transparent predictPath request's):
        record it, issue its feedback id (returned, for `x-feedback-id`) and, when shadowing and the baseline
        answered, mirror `body` (None: the request body is not at hand, no mirror). An `override` answer is
        only recorded (flagged), and takes no feedback (None). `parsed`: the answer's `_output` when the caller
        read it already; `fallback`: the caller got the fallback instead (`served` or `failed`), which the
        record says and which takes no feedback id (None). (router.exchange: the worker does the same for
        transparent answers.)"""
        feedback_id, output, features, segments = record_primary(
            target.calls, self.metrics, self.keep, self.issued, now, request_id, arm, target.arms[arm].version,
            answer, doc, target.propensity(arm, override), sticky, fallback, parsed)
        if body is not None and target.mirrors(arm, override):
            # Mirror once the caller has its answer: the ASGI layer writes the response before the event
            # loop runs the next callbacks, so the shadow never adds to the primary's latency.
            mirror = Mirror(target.calls.wid, request_id, body, now, features, segments, output)
            if self.worker is not None:
                self.worker.submit(target.calls, mirror)
            else:
                asyncio.get_running_loop().call_soon(self.shadows.submit, target.calls, mirror)
        return feedback_id

    @staticmethod
    def _output(target: Target, answer: Answer) -> tuple[Any, str | None, dict | None]:
        return read_output(target.calls, answer)

    def _reply(self, answer: Answer, version: str, request_id: str, feedback_id: str | None = None) -> Reply:
        headers = [("x-model-version", version), ("x-request-id", request_id)]
        if feedback_id is not None:
            headers.append((FEEDBACK_HEADER, feedback_id))
        if answer.error in ERROR_STATUS:
            what = {"timeout": "model timeout", "unreachable": "model unreachable", "http_5xx": "model error"}
            return error_reply(ERROR_STATUS[answer.error], what[answer.error],
                               f"model version {version!r} {answer.detail}", headers)
        return Reply(answer.status or 502, answer.body, headers, answer.content_type or JSON)

    def _record(self, target: Target, now: float, request_id: str, arm: str, version: str, role: str,
                answer: Answer, output: Any, error: str | None, features: dict | None, segments: dict | None,
                doc: Any = None, extras: dict | None = None, override: bool = False,
                sticky: str | None = None, propensity: float | None = None, fallback: str | None = None) -> None:
        self.keep(target.calls, record_call(self.metrics, target.calls, now, request_id, arm, version, role, answer,
                                            output, error, features, segments, extras=extras,
                                            input_doc=doc, override=override, sticky=sticky,
                                            propensity=propensity, fallback=fallback))

    def keep_here(self, target: ShadowTarget, record: Outcome) -> None:
        record = self.privacy.apply(target.spec, record)
        self.recorder.add(target.spec, record)
        if self.log is not None:
            self.log.write(record)

    @property
    def shadow_inflight(self) -> int:
        """Mirrors waiting for the candidate or in flight (in this process and its worker)."""
        return (self.shadows.held if self.shadows is not None else 0) + (
            self.worker.inflight if self.worker is not None else 0)

    # --- interleave ------------------------------------------------------------------------------

    async def _interleave(self, target: Target, request_id: str, doc: Any, body: bytes,
                          sticky: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        """Both versions answer; the caller gets their team-draft merge. `headers`: more request headers to
        send both (transparent mode forwards the caller's end-to-end headers)."""
        now = time.time()
        spec = target.spec
        features, segments = read_inputs(target.calls, doc)
        hdrs = {**(headers or {}), "Content-Type": JSON, "x-request-id": request_id}
        a, b = await asyncio.gather(
            self.upstreams.call(spec.baseline.url, spec.predict_path, body, hdrs, spec.timeout),
            self.upstreams.call(spec.candidate.url, spec.predict_path, body, hdrs, spec.timeout))
        out_a, err_a, _ = self._output(target, a)
        out_b, err_b, _ = self._output(target, b)
        for arm, ans, out, err in ((BASELINE, a, out_a, err_a), (CANDIDATE, b, out_b, err_b)):
            self._record(target, now, request_id, arm, target.arms[arm].version, "interleave", ans, out, err,
                         features, segments, doc if arm == BASELINE else None, sticky=sticky, propensity=1.0)
        if err_a is not None and err_b is not None and spec.fallback is not None:
            # Both failed: the caller gets the fallback's answer (both failures are recorded above).
            return (await _fallback.serve(self, target, label_of(spec), request_id, body, err_a,
                                          a.detail or "answered no valid prediction", headers))[0]
        if out_a is None or out_b is None:
            # One side failed: serve the other unmerged; the impression earns no interleaving credit.
            arm, ans, out = (CANDIDATE, b, out_b) if out_a is None and out_b is not None else (BASELINE, a, out_a)
            version = target.arms[arm].version
            fid = self.issued.issue(request_id, Issued(spec.key, spec.revision, arm, version, out, segments, None, now))
            return self._reply(ans, version, request_id, fid)
        merged, teams = team_draft(out_a, out_b, self._rng, max(len(out_a), len(out_b)))
        response = orjson.loads(a.body)
        if not set_path(response, target.output_path, merged):
            response = merged
        label = label_of(spec)
        fid = self.issued.issue(request_id, Issued(spec.key, spec.revision, "interleave", label, merged, segments,
                                                   dict(zip(merged, teams)), now))
        return Reply(200, orjson.dumps(response), [("x-model-version", label), ("x-request-id", request_id),
                                                   (FEEDBACK_HEADER, fid)])

    # --- feedback --------------------------------------------------------------------------------

    async def feedback(self, name: str, namespace: str | None, body: bytes) -> Reply:
        found = self.resolve_json(name, namespace, body)
        if isinstance(found, Reply):
            return found
        target, doc = found
        spec = target.spec
        problem = _feedback_problem(doc)
        if problem:
            self.metrics.feedback[(spec.name, spec.namespace, "invalid", "400")] += 1
            return error_reply(400, "invalid feedback", problem)
        kind = "clicks" if "clicks" in doc else "label" if "label" in doc else "reward"
        now = time.time()
        try:
            token = doc.get("feedback_id") or await self._by_request_id(doc["request_id"], spec.key)
            entry = self.issued.claim(token, spec.key, now)
        except FeedbackRefused as e:
            self.metrics.feedback[(spec.name, spec.namespace, kind, str(e.status))] += 1
            return error_reply(e.status, e.error, e.detail)
        except WorkerUnavailable as e:
            self.metrics.feedback[(spec.name, spec.namespace, kind, "503")] += 1
            return error_reply(503, "feedback unavailable", f"request_id {doc['request_id']!r}: {e}; try again")
        outcome = delta = None
        if kind == "clicks" and entry.teams is not None:
            counted = team_clicks(entry.teams, doc["clicks"])      # once, for the credit and the reward
            outcome = {"b": "win", "a": "loss", "tie": "tie"}[credit(entry.teams, doc["clicks"], counted)]
            self.metrics.interleave[(spec.name, spec.namespace, outcome)] += 1
            if doc.get("reward") is not None:
                delta = reward_delta(entry.teams, doc["clicks"], float(doc["reward"]), counted)
        record = Outcome(now, entry.request_id, spec.name, spec.namespace, entry.revision, entry.version,
                         entry.arm, "feedback", output=entry.output, segments=entry.segments,
                         label=doc["label"] if kind == "label" else None,
                         clicks=doc["clicks"] if kind == "clicks" else None, outcome=outcome,
                         prediction_time=entry.issued_at, reward=doc.get("reward"), propensity=entry.propensity,
                         reward_delta=delta)
        self.keep(target.calls, record)
        self.metrics.feedback[(spec.name, spec.namespace, kind, "200")] += 1
        return Reply(200, orjson.dumps({"accepted": True, "request_id": entry.request_id, "kind": kind,
                                        "version": entry.version, "outcome": outcome}))

    async def _by_request_id(self, request_id: Any, rollout_key: str) -> str:
        """The feedback id of the answer this replica gave `request_id`: issued here (the predict API), else
        kept unsigned by the worker (a transparent answer, router.exchange) and signed now."""
        try:
            return self.issued.by_request_id(request_id, rollout_key)
        except FeedbackRefused:
            if self.worker is None or not isinstance(request_id, str):
                raise
            data = await self.worker.unsigned(request_id)
            if data is None:
                raise
            return self.issued.signed(data)

    # --- summaries -------------------------------------------------------------------------------

    async def summaries(self, name: str, namespace: str | None, start: float | None, end: float | None) -> Reply:
        target = self.resolve(name, namespace)
        if isinstance(target, Reply):
            return target
        spec = target.spec
        if self.worker is None:
            windows = self.recorder.windows(spec.key, start, end)
        else:
            try:
                windows = await self.worker.windows(spec.key, start, end)
            except WorkerUnavailable as e:
                return error_reply(http_status(e), "summaries unavailable", f"rollout {spec.key}: {e}; try again")
        return Reply(200, orjson.dumps({"rollout": spec.name, "namespace": spec.namespace,
                                        "replica": self.settings.replica_id,
                                        "instance": f"{self.instance}.{self.worker.restarts if self.worker else 0}",
                                        "bucket_seconds": self.settings.bucket_seconds, "windows": windows},
                                       option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))

    # --- lifecycle -------------------------------------------------------------------------------

    def health(self) -> dict:
        """Where the routing comes from and whether it is current (for /readyz and /metrics)."""
        if self.source_health is None:
            return {"kind": "static", "connected": True, "error": None, "invalid": {}, "deleted": []}
        return self.source_health()

    def _source_gauges(self):
        from prometheus_client.core import GaugeMetricFamily
        h = self.health()
        g = GaugeMetricFamily("modelrollout_router_source_connected", "1 while the router reads its routing source "
                              "(the Kubernetes API, its file); 0: it serves the routing it last read.")
        g.add_metric([], 1 if h.get("connected") else 0)
        yield g
        if h.get("lastSync") is not None:
            g = GaugeMetricFamily("modelrollout_router_source_last_sync_timestamp_seconds",
                                  "When the router last listed the ModelRollouts successfully.")
            g.add_metric([], h["lastSync"])
            yield g
        for name, keys, what in (
                ("modelrollout_router_rollout_invalid", h.get("invalid") or {},
                 "1 for a rollout whose current spec is invalid: its last valid version is served (fail-static)."),
                ("modelrollout_router_rollout_deleted", h.get("deleted") or [],
                 "1 for a deleted rollout still served, 100% to its stable, during --deletion-grace.")):
            g = GaugeMetricFamily(name, what, labels=["rollout", "rollout_namespace"])
            for key in keys:
                ns, _, rollout = key.rpartition("/")
                g.add_metric([rollout, ns], 1)
            yield g

    def _gauges(self):
        from prometheus_client.core import GaugeMetricFamily
        yield from self._source_gauges()
        g = GaugeMetricFamily("modelrollout_router_shadow_inflight", "Shadow calls in flight.")
        g.add_metric([], self.shadow_inflight)
        yield g
        g = GaugeMetricFamily("modelrollout_router_candidate_weight", "Candidate share of live traffic, percent.",
                              labels=["rollout", "rollout_namespace", "shadow", "interleave"])
        for t in list(self.targets.values()):
            g.add_metric([t.spec.name, t.spec.namespace, str(t.routing.shadow).lower(),
                          str(t.routing.interleave).lower()], t.routing.candidate_weight)
        yield g
        if self.worker is not None:
            from prometheus_client.core import CounterMetricFamily
            c = CounterMetricFamily("modelrollout_router_worker_restarts", "Times the router's worker process "
                                    "(recording, log, shadow calls) died and was restarted.")
            c.add_metric([], self.worker.restarts)
            yield c
            c = CounterMetricFamily("modelrollout_router_worker_lost", "Outcome records and mirrors handed to a "
                                    "worker that died before reporting them done.")
            c.add_metric([], self.worker.lost)
            yield c
            g = GaugeMetricFamily("modelrollout_router_worker_backlog_bytes", "Records and mirrors waiting for the "
                                  "router's worker, bytes (it runs at idle CPU priority by default: this grows "
                                  "while the CPU is saturated).")
            g.add_metric([], max(0, self.worker.backlog()))
            yield g
        g = GaugeMetricFamily("modelrollout_router_feedback_ids", "Feedback ids accepted and remembered (until "
                              "they expire) so that each counts once on this replica.")
        g.add_metric([], len(self.issued))
        yield g
        g = GaugeMetricFamily("modelrollout_router_feedback_keys", "Keys feedback ids are verified with; source "
                              "file: --feedback-key-file, shared by the replicas; random: this process only.",
                              labels=["source"])
        g.add_metric([self.issued.keys.source], len(self.issued.keys.keys))
        yield g
        if self.settings.log_dir is not None:
            yield from log_metrics(self.log.counters() if self.log is not None else self.worker.log_counts)

    async def housekeeping(self, every: float = 0.1) -> None:
        """Fold recorded outcomes into windows (in small chunks), drop old windows and expired ids."""
        await keep_folding(self.recorder, every, self.issued.expire)

    async def start(self) -> None:
        """Start what runs beside the request path (the worker)."""
        if self.worker is not None:
            await self.worker.start()

    async def render_metrics(self) -> bytes:
        """Prometheus text of this router and its worker."""
        if self.worker is None:
            return self.metrics.render()
        return self.metrics.render(await self.worker.metric_snapshots())

    async def drain(self) -> None:
        """Wait (bounded) for in-flight shadow calls, then write and fsync the prediction log."""
        if self.worker is not None:
            await self.worker.close()
        if self.shadows is not None:
            await self.shadows.drain(self.settings.drain_seconds)
        self.recorder.flush(time.time())
        if self.log is not None:
            await self.log.close()
        await self.upstreams.close()


def label_of(spec: RolloutSpec) -> str:
    """The version label of an interleaved answer (both rankers)."""
    return f"{spec.baseline.version}+{spec.candidate.version}"


def _feedback_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return f"expected a JSON object with feedback_id and label, clicks or reward, got {type(doc).__name__}"
    fid, rid = doc.get("feedback_id"), doc.get("request_id")
    if "feedback_id" in doc and (not isinstance(fid, str) or not fid):
        return f"feedback_id: expected the {FEEDBACK_HEADER} header of the prediction's answer, got {fid!r}"
    if "feedback_id" not in doc and (not isinstance(rid, str) or not rid):
        return (f"feedback_id: expected the {FEEDBACK_HEADER} header of the prediction's answer (or request_id, "
                f"its x-request-id, on the replica that answered it), got {fid!r}")
    if "label" in doc and "clicks" in doc:
        return "expected label or clicks, not both"
    if not ("label" in doc or "clicks" in doc or "reward" in doc):
        return "expected label, clicks or reward (or reward with one of the others)"
    if "reward" in doc:
        reward = doc["reward"]
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            return f"reward: expected a finite number, got {reward!r}"[:300]
    if "label" not in doc and "clicks" not in doc:
        return None
    if "clicks" in doc:
        clicks = doc["clicks"]
        if not isinstance(clicks, list) or not all(isinstance(c, (str, int)) and not isinstance(c, bool)
                                                   for c in clicks):
            return f"clicks: expected a list of item ids, got {clicks!r}"[:300]
    else:
        label = doc["label"]
        if label is None or not isinstance(label, (str, int, float, bool)) or (
                isinstance(label, float) and label != label):
            return f"label: expected a number, string or boolean, got {label!r}"[:300]
    return None
