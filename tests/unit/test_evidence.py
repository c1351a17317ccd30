"""Evidence sources (router summaries, Prometheus) over an injected httpx client, and how the reconcile
step judges their failures: as data, each an Inconclusive of the checks it left without evidence."""
from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest

from controller import core
from controller.evidence import (
    MAX_BUCKET_SECONDS, PROMETHEUS, ROUTER, Evidence, Failure, FailureKind, Prometheus, RouterSummaries, Sources,
    http_sources,
)
from policies.machine import decide
from policies.outcome import Bucket
from policies.spec import parse_spec
from policies.status import Phase, RolloutStatus, Verdict
from policies.summaries import VersionWindow

T0 = 1_800_000_000.0
B, C = "http://router-a:8080", "http://router-b:8080"
PROM = "http://prometheus:9090"


def make_spec(checks=None, name="fraud", **analysis):
    an = {"interval": "1m", "minSamples": 50, "failureLimit": 2, **analysis}
    an["checks"] = checks if checks is not None else [
        {"name": "score-psi", "metric": "psi", "max": 0.2},
        {"name": "biz", "prometheus": {"query": "sum(rate(ok{version='{{candidate}}'}[1m]))", "min": 1}},
    ]
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": "v2", "url": "http://c:1"},
        "strategy": {"steps": [{"canary": {"weight": 10, "duration": "10m"}}]},
        "analysis": an,
    }, name, "ml", generation=1)


def version_window(values, seed=0):
    rng = np.random.default_rng(seed)
    w = VersionWindow.new("score")
    for v in values:
        w.observe_prediction(float(v), float(rng.random()))
    w.requests = len(values)
    return w


def summaries_answer(spec, start, n=100, revision=None, seed=0):
    """A router's `/summaries` answer: one bucket (its wire form) of `n` predictions per arm."""
    rng = np.random.default_rng(seed)
    bucket = Bucket(start, start + 5.0, revision or spec.revision, version_window(rng.normal(0, 1, n), seed),
                    version_window(rng.normal(0, 1, n), seed + 1))
    return {"rollout": spec.name, "namespace": spec.namespace, "bucket_seconds": 5.0, "windows": [bucket.to_wire()]}


def client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), timeout=5.0)


def routers(answers: dict, seen: list | None = None, batch: bool = True):
    """A transport answering each router host with `answers[host]` (a dict body of
    `GET /v1/rollouts/{name}/summaries`, a status code, or an exception to raise). `POST /v1/summaries` gets
    that answer's windows for every rollout asked (as they are: this transport does not merge), or 404 when
    `batch` is false (a router older than the route)."""
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        a = answers[f"http://{request.url.host}:{request.url.port}"]
        if isinstance(a, Exception):
            raise a
        if isinstance(a, int):
            return httpx.Response(a, text="summaries unavailable")
        if isinstance(a, str):
            return httpx.Response(200, text=a)
        if request.method == "POST":
            if not batch:
                return httpx.Response(404, json={"error": "not found", "detail": "POST /v1/summaries: Not Found"})
            asked = json.loads(request.content)["windows"]
            if not isinstance(a.get("windows"), list):
                return httpx.Response(200, json=a)
            return httpx.Response(200, json={**{k: v for k, v in a.items() if k != "windows"}, "windows": [
                {"rollout": w["rollout"], "namespace": w["namespace"], "windows": a["windows"]} for w in asked]})
        return httpx.Response(200, json=a)
    return handler


def prometheus(result=None, status=200, body=None, seen: list | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if body is not None:
            return httpx.Response(status, json=body)
        return httpx.Response(status, json={"status": "success", "data": result})
    return handler


# --- router summaries ----------------------------------------------------------------------------

def test_router_summaries_merge_every_replica_for_the_window():
    """Both replicas are asked for the window (`POST /v1/summaries`: the rollout, its candidate revision and the
    window's exact times) and their summaries merge."""
    spec = make_spec()
    seen: list = []
    source = RouterSummaries(client(routers({B: summaries_answer(spec, T0), C: summaries_answer(spec, T0, seed=7)},
                                            seen)), lambda s: [B, C], batch=True)
    ev = source.gather(spec, T0, T0 + 60.25)
    assert ev.complete and ev.failures == ()
    assert ev.observations.candidate.requests == 200 and ev.observations.baseline.requests == 200
    assert {r.url.host for r in seen} == {"router-a", "router-b"}
    assert seen[0].method == "POST" and seen[0].url.path == "/v1/summaries"
    assert json.loads(seen[0].content) == {"windows": [{"rollout": "fraud", "namespace": "ml", "revision": "v2@http://c:1",
                                                        "start": T0, "end": T0 + 60.25}]}


def test_a_router_without_the_batch_route_is_asked_per_rollout_for_a_while():
    """A router older than `POST /v1/summaries` (404) is asked with `GET /v1/rollouts/{name}/summaries` (with
    a bucket of slack before the window: its bucket width is not known before it answers), at once and for
    `LEGACY_SECONDS`; then the batch route is tried again."""
    spec = make_spec()
    seen: list = []
    now = [100.0]
    source = RouterSummaries(client(routers({B: summaries_answer(spec, T0)}, seen, batch=False)), lambda s: [B], batch=True,
                             clock=lambda: now[0])
    assert source.gather(spec, T0, T0 + 60).observations.candidate.requests == 100
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/v1/summaries"), ("GET", "/v1/rollouts/fraud/summaries")]
    params = seen[1].url.params
    assert params["namespace"] == "ml"
    assert float(params["start"]) == T0 - MAX_BUCKET_SECONDS and float(params["end"]) == T0 + 60
    seen.clear()
    assert source.gather(spec, T0 + 60, T0 + 120).complete
    assert [r.method for r in seen] == ["GET"]
    now[0] += RouterSummaries.LEGACY_SECONDS + 1
    seen.clear()
    assert source.gather(spec, T0 + 120, T0 + 180).complete
    assert [r.method for r in seen] == ["POST", "GET"]


def test_windows_due_together_share_one_request_per_replica():
    """Rollouts whose windows are gathered while a replica's request is in flight are asked in its next
    request, all of them at once; each gets its own answer."""
    specs = [make_spec(name=f"r{i}") for i in range(6)]
    first_in, release = threading.Event(), threading.Event()
    seen: list = []
    inner = routers({B: summaries_answer(specs[0], T0)}, seen)

    def handler(request):
        if not first_in.is_set():
            first_in.set()
            release.wait(5)
        return inner(request)
    source = RouterSummaries(client(handler), lambda s: [B], batch=True)
    results: dict = {}
    threads = [threading.Thread(target=lambda s=s: results.__setitem__(s.name, source.gather(s, T0, T0 + 60)))
               for s in specs]
    threads[0].start()
    assert first_in.wait(5)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 5
    while len(source._batches[B]._waiting) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(5)
    asked = [[w["rollout"] for w in json.loads(r.content)["windows"]] for r in seen]
    assert asked[0] == ["r0"] and sorted(asked[1]) == ["r1", "r2", "r3", "r4", "r5"] and len(asked) == 2
    assert sorted(results) == [s.name for s in specs]
    assert all(e.complete and e.observations.candidate.requests == 100 for e in results.values())
    source.close()


def test_an_error_of_one_rollout_in_a_batch_fails_that_rollout_only():
    """A rollout the router does not serve is an error item of the batch answer: that rollout's window is
    without router data (HTTP 404, as the per-rollout route answers), the others are judged."""
    spec, other = make_spec(), make_spec(name="gone")
    answer = summaries_answer(spec, T0)

    def handler(request):
        asked = json.loads(request.content)["windows"]
        return httpx.Response(200, json={"instance": "a.0", "bucket_seconds": 5.0, "windows": [
            {"rollout": w["rollout"], "namespace": w["namespace"], "windows": answer["windows"]} if w["rollout"] == "fraud"
            else {"rollout": w["rollout"], "namespace": w["namespace"],
                  "error": {"status": 404, "error": "unknown rollout", "detail": "no rollout named 'gone'"}}
            for w in asked]})
    source = RouterSummaries(client(handler), lambda s: [B], batch=True)
    assert source.gather(spec, T0, T0 + 60).complete
    (f,) = source.gather(other, T0, T0 + 60).failures
    assert f.kind is FailureKind.HTTP_STATUS and f.target == B
    assert f.detail == 'HTTP 404: {"error":"unknown rollout","detail":"no rollout named \'gone\'"}'


def test_windows_of_another_revision_or_before_the_window_are_left_out():
    """An older candidate's buckets never judge the new one, and buckets before the window's are not its."""
    spec = make_spec()
    answer = summaries_answer(spec, T0)
    answer["windows"] += summaries_answer(spec, T0, revision="v1@old")["windows"]
    answer["windows"] += summaries_answer(spec, T0 - 30)["windows"]
    ev = RouterSummaries(client(routers({B: answer})), lambda s: [B], batch=True).gather(spec, T0, T0 + 60)
    assert ev.complete and ev.observations.candidate.requests == 100


@pytest.mark.parametrize("answer, kind, detail", [
    (503, FailureKind.HTTP_STATUS, "HTTP 503: summaries unavailable"),
    (httpx.ReadTimeout("slow"), FailureKind.TIMEOUT, "timed out after 5.0s"),
    (httpx.ConnectError("refused"), FailureKind.UNREACHABLE, "unreachable (ConnectError: refused)"),
    ("<html>", FailureKind.BAD_ANSWER, "answer is not JSON"),
    ({"windows": "none"}, FailureKind.BAD_ANSWER, "answer lacks a windows list"),
])
def test_a_failing_replica_is_data_and_drops_the_router_evidence(answer, kind, detail):
    """One failing replica is a Failure naming it and why; no router data is used (a subset would bias)."""
    spec = make_spec()
    ev = RouterSummaries(client(routers({B: summaries_answer(spec, T0), C: answer})),
                         lambda s: [B, C]).gather(spec, T0, T0 + 60)
    assert ev.failures == (Failure(ROUTER, C, kind, detail),)
    assert ev.observations.candidate.requests == 0 and ev.observations.baseline.requests == 0


def test_summaries_that_do_not_decode_are_a_bad_answer():
    spec = make_spec()
    answer = summaries_answer(spec, T0)
    answer["windows"][0]["candidate"] = {"kind": "score", "requests": "many"}
    (f,) = RouterSummaries(client(routers({B: answer})), lambda s: [B], batch=True).gather(spec, T0, T0 + 60).failures
    assert f.kind is FailureKind.BAD_ANSWER and f.source == ROUTER and "do not decode" in f.detail


def test_no_replica_known_is_a_failure_without_any_request():
    seen: list = []
    spec = make_spec()
    (f,) = RouterSummaries(client(routers({}, seen)), lambda s: [], batch=True).gather(spec, T0, T0 + 60).failures
    assert f.kind is FailureKind.NO_SOURCE and "no router replica known" in f.detail and not seen


def test_a_router_instance_that_vanished_since_the_previous_window_makes_the_window_incomplete():
    """Summaries live in a router's memory: when a replica that answered for the previous window is gone
    (pod deleted: its URL left the endpoints), or answers as a new instance (process or worker restarted),
    its part of the window is lost, and the survivors' data alone would judge the window on a subset."""
    spec = make_spec()
    answers = {B: {**summaries_answer(spec, T0), "instance": "a.0"}, C: {**summaries_answer(spec, T0), "instance": "b.0"}}
    replicas = [B, C]
    source = RouterSummaries(client(routers(answers)), lambda s: list(replicas))
    assert source.gather(spec, T0, T0 + 60).complete
    replicas.remove(C)                                   # router-b's pod is deleted during the next window
    ev = source.gather(spec, T0 + 60, T0 + 120)
    (lost,) = ev.failures
    assert lost.kind is FailureKind.REPLICA_LOST and lost.target == C and "b.0" in lost.detail
    assert ev.observations.candidate.requests == 0       # the survivor's half is not judged
    replicas.append(C)
    answers[C] = {**summaries_answer(spec, T0), "instance": "c.0"}   # its replacement: a new instance
    assert source.gather(spec, T0 + 120, T0 + 180).complete          # a whole window on both replicas
    answers[B] = {**summaries_answer(spec, T0), "instance": "a.1"}   # router-a's worker restarted
    (lost,) = source.gather(spec, T0 + 180, T0 + 240).failures
    assert lost.kind is FailureKind.REPLICA_LOST and lost.target == B and "a.0" in lost.detail
    # A replica that times out is a Timeout, not a loss, and is not taken for lost once it answers again.
    answers[C] = httpx.ReadTimeout("slow")
    (slow,) = source.gather(spec, T0 + 240, T0 + 300).failures
    assert slow.kind is FailureKind.TIMEOUT and slow.target == C
    answers[C] = {**summaries_answer(spec, T0), "instance": "c.0"}
    assert source.gather(spec, T0 + 300, T0 + 360).complete
    assert RouterSummaries(client(routers(answers)), lambda s: [B, C]).gather(spec, T0, T0 + 60).complete


# --- Prometheus ----------------------------------------------------------------------------------

def test_prometheus_value_at_the_window_end_with_the_query_rendered():
    seen: list = []
    spec = make_spec()
    vector = {"resultType": "vector", "result": [{"metric": {}, "value": [T0 + 60, "3.5"]}]}
    ev = Prometheus(client(prometheus(vector, seen=seen)), PROM).gather(spec, T0, T0 + 60)
    assert ev.complete and dict(ev.observations.prometheus) == {"biz": 3.5}
    (req,) = seen
    assert req.url.path == "/api/v1/query" and req.url.params["query"] == "sum(rate(ok{version='v2'}[1m]))"
    assert float(req.url.params["time"]) == T0 + 60


def test_prometheus_scalar_answer_is_a_value():
    ev = Prometheus(client(prometheus({"resultType": "scalar", "result": [T0, "2"]})), PROM).gather(
        make_spec(), T0, T0 + 60)
    assert dict(ev.observations.prometheus) == {"biz": 2.0}


@pytest.mark.parametrize("handler, kind, words", [
    (prometheus({"resultType": "vector", "result": []}), FailureKind.NO_DATA, "returned no data"),
    (prometheus({"resultType": "vector", "result": [{"value": [0, "1"]}, {"value": [0, "2"]}]}),
     FailureKind.BAD_ANSWER, "returned 2 series; expected one"),
    (prometheus(status=400, body={"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}),
     FailureKind.HTTP_STATUS, "HTTP 400: parse error at char 4"),
    (prometheus({"resultType": "vector", "result": [{"value": [0, "many"]}]}), FailureKind.BAD_ANSWER,
     "non-numeric"),
])
def test_prometheus_failures_are_data_naming_the_check(handler, kind, words):
    (f,) = Prometheus(client(handler), PROM).gather(make_spec(), T0, T0 + 60).failures
    assert f.source == PROMETHEUS and f.kind is kind and f.checks == ("biz",)
    assert words in f.detail and f.detail.startswith(f"prometheus {PROM}")


def test_prometheus_without_an_address_is_a_failure_of_that_check():
    (f,) = Prometheus(client(prometheus()), None).gather(make_spec(), T0, T0 + 60).failures
    assert f.kind is FailureKind.NO_SOURCE and f.checks == ("biz",) and "--prometheus-url" in f.detail


# --- judging with failures -----------------------------------------------------------------------

def _status_with_window_due(spec):
    return decide(spec, None, None, T0).status   # started at T0: the first window is due at T0 + 60


def both(router_answer, prom_handler, spec):
    return Sources(RouterSummaries(client(routers({B: router_answer})), lambda s: [B]),
                   Prometheus(client(prom_handler), PROM))


def test_router_failure_leaves_router_checks_inconclusive_and_keeps_the_promql_verdict():
    spec = make_spec()
    ok = prometheus({"resultType": "vector", "result": [{"value": [0, "5"]}]})
    results = core.evaluate_window(spec, _status_with_window_due(spec), (T0, T0 + 60), both(503, ok, spec))
    psi, biz = results
    assert psi.verdict is Verdict.INCONCLUSIVE
    assert psi.reason == f"score-psi: 1 router replica(s) failed: {B}: HTTP 503: summaries unavailable"
    assert biz.verdict is Verdict.PASS and biz.value == 5.0


def test_prometheus_failure_leaves_only_its_check_inconclusive():
    spec = make_spec()
    down = httpx.ConnectError("connection refused")

    def refused(request):
        raise down
    results = core.evaluate_window(spec, _status_with_window_due(spec), (T0, T0 + 60),
                                   both(summaries_answer(spec, T0), refused, spec))
    psi, biz = results
    assert psi.verdict is Verdict.PASS
    assert biz.verdict is Verdict.INCONCLUSIVE and biz.reason.startswith(f"biz: prometheus {PROM}: failed for")


def test_a_bug_in_a_source_makes_every_check_inconclusive_not_a_crash():
    spec = make_spec()
    source = http_sources(client(routers({})), lambda s: 1 / 0, PROM)
    results = core.evaluate_window(spec, _status_with_window_due(spec), (T0, T0 + 60), source)
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE] * 2
    assert all("observations unavailable: ZeroDivisionError" in r.reason for r in results)


def test_step_judges_the_due_window_and_records_it_in_status():
    """`core.step` gathers the window due, judges it and decides: the status holds the verdicts and the
    `drift` column, and a window that is not due asks no source at all."""
    spec = make_spec(checks=[{"name": "score-psi", "metric": "psi", "max": 0.2}])
    seen: list = []
    source = RouterSummaries(client(routers({B: summaries_answer(spec, T0, n=400)}, seen)), lambda s: [B])
    status = _status_with_window_due(spec)
    assert core.step(spec, status, T0 + 30, source).status.last_analysis_at is None and not seen
    s = core.step(spec, status, T0 + 60, source).status
    assert s.phase is Phase.PROGRESSING and s.check("score-psi").verdict is Verdict.PASS
    assert s.drift is not None and s.drift.startswith("score-psi ") and len(seen) == 1
    assert RolloutStatus.from_status(json.loads(json.dumps(s.to_status()))) == s


def test_a_plain_reader_of_recorded_observations_is_a_source_without_failures():
    """Replay's reader of windows rebuilt from a log is a callable giving Observations."""
    spec = make_spec(checks=[{"name": "score-psi", "metric": "psi", "max": 0.2}])
    recorded = RouterSummaries(client(routers({B: summaries_answer(spec, T0, n=400)})), lambda s: [B])
    ev = core.gather(lambda sp, a, b: recorded.gather(sp, a, b).observations, spec, T0, T0 + 60)
    assert isinstance(ev, Evidence) and ev.complete and ev.observations.candidate.requests == 400
