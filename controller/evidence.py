"""Evidence for one analysis window: what the checks judge, where it is read from, and what failed.

An `EvidenceSource` answers `gather(spec, window_start, window_end)` with `Evidence`: the `Observations`
the checks judge and the `Failure`s met while reading them, both as data. Expected failures (a replica that
times out, answers 503 or garbage, a Prometheus query with no series) never raise: the reconcile step turns
each into an Inconclusive verdict of the checks it leaves without evidence (`Failure.checks`), with the
failure's detail as the reason. Sources:

* `RouterSummaries`: every router replica's `/v1/rollouts/{name}/summaries`, merged; any failing replica
  (or none known) drops the router data of the window, since a subset of replicas would bias the comparison.
  So does a lost one: summaries live in a router's memory, and each answer names the router instance
  (process and worker generation) that kept them; an instance that answered for the rollout's previous
  window and is missing now (its pod was deleted, the process or its worker restarted) took its part of
  this window with it;
* `Prometheus`: one instant query per PromQL check;
* `Sources`: several sources gathered concurrently, their evidence combined.

Each takes its `httpx.Client` from the caller, which owns its lifetime and settings (timeouts, TLS), so
unit tests hand them an `httpx.MockTransport`. `docs/contracts.md` describes the summaries answer.
"""
from __future__ import annotations

import concurrent.futures as futures
import logging
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Protocol, Sequence

import httpx
import orjson

from policies.checks import Observations, render_query
from policies.errors import ModelRolloutError
from policies.outcome import in_analysis_window, merge
from policies.spec import RolloutSpec
from policies.summaries import VersionWindow

log = logging.getLogger("modelrollout.evidence")

MAX_BUCKET_SECONDS = 60.0
"""Largest router summary bucket the controller expects; windows are fetched with this much slack."""

ROUTER, PROMETHEUS = "router", "prometheus"
"""`Failure.source` values."""


class FailureKind(str, Enum):
    NO_SOURCE = "NoSource"          # nothing to ask: no router replica known, no Prometheus address
    TIMEOUT = "Timeout"
    UNREACHABLE = "Unreachable"
    HTTP_STATUS = "HTTPStatus"      # answered, with a non-200 status
    BAD_ANSWER = "BadAnswer"        # answered 200 with something that is not the expected shape
    NO_DATA = "NoData"              # a valid answer without a value (a PromQL query with no series)
    REPLICA_LOST = "ReplicaLost"    # a router instance that answered for the previous window is gone
    ERROR = "Error"                 # an unexpected error in the source itself (a bug): logged with its trace


@dataclass(frozen=True)
class Failure:
    """One thing that could not be read for this window."""

    source: str
    """`ROUTER` or `PROMETHEUS`."""
    target: str
    """The replica URL, the Prometheus address, or `(none)`."""
    kind: FailureKind
    detail: str
    """A sentence a person can act on, e.g. `timed out after 5.0s`."""
    checks: tuple[str, ...] | None = None
    """The checks it leaves without evidence; None: every check the source feeds."""

    def __str__(self) -> str:
        return self.detail if self.target == "(none)" else f"{self.target}: {self.detail}"

    def affects(self, check: Any) -> bool:
        """Whether `check` (a `CheckSpec`) lost its evidence to this failure."""
        if self.checks is not None:
            return check.name in self.checks
        return (check.prometheus is not None) == (self.source == PROMETHEUS)


@dataclass(frozen=True)
class Evidence:
    """What one analysis window saw, and what it could not see."""

    observations: Observations
    failures: tuple[Failure, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.failures


def describe(failures: Sequence[Failure]) -> str:
    """One reason for the checks `failures` left without evidence (router replicas counted together)."""
    router = [f for f in failures if f.source == ROUTER]
    listed = sorted((f for f in router if f.kind is not FailureKind.NO_SOURCE), key=lambda f: f.target)
    parts = [f"{len(listed)} router replica(s) failed: " + "; ".join(map(str, listed))] if listed else []
    parts += [f.detail for f in router if f.kind is FailureKind.NO_SOURCE]
    parts += [f.detail if f.source == PROMETHEUS else str(f) for f in failures if f.source != ROUTER]
    return "; ".join(parts)


class EvidenceSource(Protocol):
    """Where a window's evidence comes from. `gather` returns failures as data and raises only on bugs."""

    def gather(self, spec: RolloutSpec, window_start: float, window_end: float) -> Evidence: ...


def empty_observations(spec: RolloutSpec, window_start: float, window_end: float) -> Observations:
    kind = spec.output.kind
    return Observations(window_start=window_start, window_end=window_end, baseline=VersionWindow.new(kind),
                        candidate=VersionWindow.new(kind))


# ---- router summaries -------------------------------------------------------------------------------

def _timeout(http: httpx.Client) -> str:
    t = http.timeout.read
    return f"{t}s" if t is not None else "its timeout"


class RouterSummaries:
    """Summaries of every router replica `replicas(spec)` names, over the injected `http` client.

    A replica is asked with `POST /v1/summaries` for every rollout whose window is due while its previous
    request is in flight (`_Batch`: one request per replica for all of them, each window merged by the
    router); a replica that does not know that route (404 or 405: an older router) is asked with the
    per-rollout `GET /v1/rollouts/{name}/summaries` for `LEGACY_SECONDS`, then tried again.

    Batching is off by default (`batch=False`: every window asked per rollout) until it is measured again at
    scale. Both paths give the same evidence for the same window, including windows that start and end inside
    buckets (tests/integration/test_router_summaries.py); a first shadow window once judged differently was
    another run's window, as small as first windows are."""

    LEGACY_SECONDS = 300.0

    def __init__(self, http: httpx.Client, replicas: Callable[[RolloutSpec], Sequence[str]], *,
                 max_parallel: int = 8, max_batch: int = 512, batch: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.http, self.replicas, self.max_parallel, self.max_batch = http, replicas, max_parallel, max_batch
        self.batch, self.clock = batch, clock
        self._instances: dict[str, dict[str, str]] = {}
        """Per rollout (`spec.key`), the router instances that answered its last gather, with their URL."""
        self._pool: futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._batches: dict[str, _Batch] = {}
        self._legacy: dict[str, float] = {}
        """Replicas without `POST /v1/summaries`, until when they are asked per rollout."""

    def _parallel(self) -> futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = futures.ThreadPoolExecutor(max_workers=self.max_parallel,
                                                        thread_name_prefix="router-summaries")
            return self._pool

    def fetch(self, url: str, spec: RolloutSpec, start: float, end: float) -> dict | Failure:
        """One replica's `/v1/rollouts/{name}/summaries` answer for buckets in [start, end] (buckets in
        their wire form, `policies.outcome.Bucket.to_wire`), or why not."""
        def failed(kind: FailureKind, detail: str) -> Failure:
            return Failure(ROUTER, url, kind, detail)

        r = self._send(failed, self.http.get, f"{url.rstrip('/')}/v1/rollouts/{spec.name}/summaries",
                       params={"namespace": spec.namespace, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        if not isinstance(r, httpx.Response):
            return r
        if r.status_code != 200:
            return failed(FailureKind.HTTP_STATUS, f"HTTP {r.status_code}: {r.text[:200]}")
        try:
            body = orjson.loads(r.content)
        except orjson.JSONDecodeError:
            return failed(FailureKind.BAD_ANSWER, "answer is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("windows"), list):
            return failed(FailureKind.BAD_ANSWER, "answer lacks a windows list")
        return body

    def _send(self, failed: Callable, method: Callable, url: str, **kw) -> Any:
        """`method(url, **kw)`'s response, or `failed(kind, detail)` when it timed out or could not connect."""
        try:
            return method(url, **kw)
        except httpx.TimeoutException:
            return failed(FailureKind.TIMEOUT, f"timed out after {_timeout(self.http)}")
        except httpx.HTTPError as e:
            return failed(FailureKind.UNREACHABLE, f"unreachable ({type(e).__name__}: {e})")

    def fetch_many(self, url: str, asked: Sequence[tuple[RolloutSpec, float, float]]) -> list[dict | Failure]:
        """One replica's `POST /v1/summaries` answer for every (spec, window start, end), in order: per
        rollout a dict like `fetch`'s (its `windows` hold the window merged, or nothing), or why not."""
        def failed(kind: FailureKind, detail: str) -> list[dict | Failure]:
            return [Failure(ROUTER, url, kind, detail)] * len(asked)

        body = orjson.dumps({"windows": [{"rollout": s.name, "namespace": s.namespace, "revision": s.revision,
                                          "start": start, "end": end}
                                         for s, start, end in asked]})
        r = self._send(failed, self.http.post, f"{url.rstrip('/')}/v1/summaries", content=body,
                       headers={"content-type": "application/json"})
        if not isinstance(r, httpx.Response):
            return r
        if r.status_code in (404, 405):        # a router older than the route: ask it per rollout for a while
            with self._lock:
                self._legacy[url] = self.clock() + self.LEGACY_SECONDS
            log.info("router %s has no POST /v1/summaries (HTTP %s): asking it per rollout for %gs", url,
                     r.status_code, self.LEGACY_SECONDS)
            return [self.fetch(url, s, start - MAX_BUCKET_SECONDS, end) for s, start, end in asked]
        if r.status_code != 200:
            return failed(FailureKind.HTTP_STATUS, f"HTTP {r.status_code}: {r.text[:200]}")
        try:
            answer = orjson.loads(r.content)
        except orjson.JSONDecodeError:
            return failed(FailureKind.BAD_ANSWER, "answer is not JSON")
        items = answer.get("windows") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            return failed(FailureKind.BAD_ANSWER, "answer lacks a windows list")
        if len(items) != len(asked):
            return failed(FailureKind.BAD_ANSWER, f"answer has {len(items)} windows for {len(asked)} asked")
        out: list[dict | Failure] = []
        for item in items:
            error = item.get("error") if isinstance(item, dict) else None
            if isinstance(error, dict):     # as the per-rollout route answers it: its status and JSON error
                status, text = error.get("status"), orjson.dumps({k: error.get(k) for k in ("error", "detail")})
                out.append(Failure(ROUTER, url, FailureKind.HTTP_STATUS, f"HTTP {status}: {text.decode()[:200]}"))
            elif not isinstance(item, dict) or not isinstance(item.get("windows"), list):
                out.append(Failure(ROUTER, url, FailureKind.BAD_ANSWER, "answer item lacks a windows list"))
            else:
                out.append({"instance": answer.get("instance"), "bucket_seconds": answer.get("bucket_seconds"),
                            "windows": item["windows"]})
        return out

    def _ask(self, urls: Sequence[str], spec: RolloutSpec, start: float, end: float) -> list[dict | Failure]:
        now = self.clock()
        pending: list = []
        for url in urls:
            legacy = not self.batch or self._legacy.get(url, 0.0) > now
            if legacy:
                pending.append(self._parallel().submit(self.fetch, url, spec, start - MAX_BUCKET_SECONDS, end))
            else:
                with self._lock:
                    batch = self._batches.get(url)
                    if batch is None:
                        batch = self._batches[url] = _Batch(self, url)
                pending.append(batch.submit(spec, start, end))
        return [f.result() for f in pending]

    def close(self) -> None:
        with self._lock:
            batches, self._batches = list(self._batches.values()), {}
            pool, self._pool = self._pool, None
        for b in batches:
            b.close()
        if pool is not None:
            pool.shutdown(wait=False)

    def gather(self, spec: RolloutSpec, window_start: float, window_end: float) -> Evidence:
        urls = list(self.replicas(spec))
        if not urls:
            return Evidence(empty_observations(spec, window_start, window_end), (Failure(
                ROUTER, "(none)", FailureKind.NO_SOURCE,
                "no router replica known (no ready endpoints and no --router-url)"),))
        answers = self._ask(urls, spec, window_start, window_end)
        failures: list[Failure] = []
        buckets = []
        seen = {answer["instance"]: url for url, answer in zip(urls, answers)
                if not isinstance(answer, Failure) and isinstance(answer.get("instance"), str)}
        # A replica that failed to answer is not known to be gone: its own failure already leaves this window
        # without router data, and its instance is kept to be looked for in the next window.
        unanswered = {url for url, answer in zip(urls, answers) if isinstance(answer, Failure)}
        for instance, url in sorted(self._instances.get(spec.key, {}).items(), key=lambda kv: kv[1]):
            if instance in seen:
                continue
            if url in unanswered:
                seen[instance] = url
                continue
            failures.append(Failure(ROUTER, url, FailureKind.REPLICA_LOST, (
                f"router instance {instance} answered for the previous window and is gone (pod deleted, "
                "process or worker restarted): its part of this window is lost")))
        self._instances[spec.key] = seen
        for url, answer in zip(urls, answers):
            if isinstance(answer, Failure):
                failures.append(answer)
                continue
            try:
                buckets += in_analysis_window(answer["windows"], spec, window_start,
                                              float(answer.get("bucket_seconds") or 5.0))
            except (ModelRolloutError, TypeError, ValueError) as e:
                failures.append(Failure(ROUTER, url, FailureKind.BAD_ANSWER, f"summaries do not decode: {e}"))
        if failures:
            return Evidence(empty_observations(spec, window_start, window_end), tuple(failures))
        m = merge(buckets, spec.output.kind)
        return Evidence(Observations(window_start=window_start, window_end=window_end, baseline=m.baseline,
                                     candidate=m.candidate, paired=m.paired, interleave=m.interleave))


class _Batch:
    """The windows waiting for one replica: a sender thread takes all that wait (up to `max_batch`) into one
    `fetch_many` while the callers block on their futures, then takes what arrived meanwhile; it ends after
    `IDLE_SECONDS` without work and a later `submit` starts another."""

    IDLE_SECONDS = 5.0

    def __init__(self, owner: RouterSummaries, url: str):
        self.owner, self.url = owner, url
        self._waiting: list[tuple[tuple[RolloutSpec, float, float], futures.Future]] = []
        self._cond = threading.Condition()
        self._sending = self._closed = False

    def submit(self, spec: RolloutSpec, start: float, end: float) -> futures.Future:
        f: futures.Future = futures.Future()
        with self._cond:
            if self._closed:
                f.set_result(Failure(ROUTER, self.url, FailureKind.ERROR, "the controller is stopping"))
                return f
            self._waiting.append(((spec, start, end), f))
            if not self._sending:
                self._sending = True
                threading.Thread(target=self._send, name=f"summaries {self.url}", daemon=True).start()
            else:
                self._cond.notify()
        return f

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _send(self) -> None:
        while True:
            with self._cond:
                if not self._waiting and not self._closed:
                    self._cond.wait(self.IDLE_SECONDS)
                if not self._waiting:
                    self._sending = False
                    return
                taken = self._waiting[:self.owner.max_batch]
                del self._waiting[:len(taken)]
            try:
                answers = self.owner.fetch_many(self.url, [asked for asked, _ in taken])
            except Exception as e:  # noqa: BLE001 - a bug must fail these windows, not hang their reconciles
                log.exception("router %s: summaries of %d rollouts failed", self.url, len(taken))
                answers = [Failure(ROUTER, self.url, FailureKind.ERROR, f"{type(e).__name__}: {e}")] * len(taken)
            for (_, f), answer in zip(taken, answers):
                f.set_result(answer)


# ---- Prometheus ---------------------------------------------------------------------------------------

class Prometheus:
    """One PromQL instant query per `prometheus:` check, at the window's end, over the injected `http`.

    A check's own `prometheus.address` wins over `default_url`. The query must yield exactly one number
    (one series, or a scalar); anything else is a `Failure` of that check."""

    def __init__(self, http: httpx.Client, default_url: str | None = None):
        self.http, self.default_url = http, default_url

    def query(self, address: str, query: str, at: float, check: str) -> float | Failure:
        def failed(kind: FailureKind, detail: str) -> Failure:
            return Failure(PROMETHEUS, address, kind, f"prometheus {address}: {detail}", (check,))

        try:
            r = self.http.get(f"{address.rstrip('/')}/api/v1/query", params={"query": query, "time": f"{at:.3f}"})
        except httpx.TimeoutException:
            return failed(FailureKind.TIMEOUT, f"query {query!r} timed out after {_timeout(self.http)}")
        except httpx.HTTPError as e:
            return failed(FailureKind.UNREACHABLE, f"failed for {query!r}: {type(e).__name__}: {str(e)[:200]}")
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code != 200:
            why = body.get("error") if isinstance(body, dict) and body.get("error") else r.text[:200]
            return failed(FailureKind.HTTP_STATUS, f"query {query!r} answered HTTP {r.status_code}: {why}")
        data = body.get("data") if isinstance(body, dict) and body.get("status") == "success" else None
        if not isinstance(data, dict):
            return failed(FailureKind.BAD_ANSWER, f"query {query!r}: the answer is not a Prometheus result")
        result, rtype = data.get("result"), data.get("resultType")
        if rtype == "scalar":
            sample = result
        elif rtype == "vector" and isinstance(result, list):
            if not result:
                return failed(FailureKind.NO_DATA, f"query {query!r} returned no data")
            if len(result) > 1:
                return failed(FailureKind.BAD_ANSWER, f"query {query!r} returned {len(result)} series; "
                                                      f"expected one (aggregate it, e.g. with sum())")
            sample = result[0].get("value") if isinstance(result[0], dict) else None
        else:
            return failed(FailureKind.BAD_ANSWER, f"query {query!r} returned a {rtype}; expected one number")
        try:
            return float(sample[1])
        except (IndexError, TypeError, ValueError):
            return failed(FailureKind.BAD_ANSWER, f"query {query!r} returned a non-numeric value")

    def wants(self, spec: RolloutSpec) -> bool:
        """Whether `spec` has a PromQL check (else `gather` has nothing to ask)."""
        return any(c.prometheus is not None for c in spec.analysis.checks)

    def gather(self, spec: RolloutSpec, window_start: float, window_end: float) -> Evidence:
        values: dict[str, float] = {}
        failures: list[Failure] = []
        for check in spec.analysis.checks:
            if check.prometheus is None:
                continue
            address = check.prometheus.address or self.default_url
            if not address:
                failures.append(Failure(PROMETHEUS, "(none)", FailureKind.NO_SOURCE,
                                        f"check {check.name}: no Prometheus address (set prometheus.address "
                                        f"or --prometheus-url)", (check.name,)))
                continue
            v = self.query(address, render_query(check, spec), window_end, check.name)
            if isinstance(v, Failure):
                failures.append(v)
            else:
                values[check.name] = v
        obs = empty_observations(spec, window_start, window_end)
        return Evidence(Observations(window_start=window_start, window_end=window_end, baseline=obs.baseline,
                                     candidate=obs.candidate, prometheus=values), tuple(failures))


# ---- several sources ----------------------------------------------------------------------------------

class Sources:
    """Several sources gathered concurrently, their evidence combined (`combine`)."""

    def __init__(self, *sources: EvidenceSource):
        self.sources = sources
        self._pool: futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the threads of the sources that keep some (`RouterSummaries`)."""
        for s in self.sources:
            getattr(s, "close", lambda: None)()

    def gather(self, spec: RolloutSpec, window_start: float, window_end: float) -> Evidence:
        # a source with nothing to ask for this spec (`wants`, e.g. Prometheus without PromQL checks) is
        # skipped: its evidence would be empty and change nothing
        active = [s for s in self.sources if getattr(s, "wants", lambda _: True)(spec)] or list(self.sources[:1])
        if len(active) == 1:
            return active[0].gather(spec, window_start, window_end)
        with self._lock:
            if self._pool is None:   # kept for the sources' life: a pool per window costs a thread per source
                self._pool = futures.ThreadPoolExecutor(max_workers=len(self.sources), thread_name_prefix="sources")
        others = [self._pool.submit(s.gather, spec, window_start, window_end) for s in active[1:]]
        parts = [active[0].gather(spec, window_start, window_end)] + [f.result() for f in others]
        return combine(spec, window_start, window_end, parts)


def _merge(a, b):
    if a is None:
        return b
    if b is None:
        return a
    merged = a.merge(b)
    return a if merged is None else merged   # merge may be in place or return a new value


def combine(spec: RolloutSpec, window_start: float, window_end: float, parts: Sequence[Evidence]) -> Evidence:
    """One `Evidence` of several: summaries merged, Prometheus values united, failures kept in order."""
    kind = spec.output.kind
    baseline, candidate = VersionWindow.new(kind), VersionWindow.new(kind)
    paired = interleave = None
    prometheus: dict[str, Any] = {}
    for p in parts:
        o = p.observations
        baseline, candidate = _merge(baseline, o.baseline), _merge(candidate, o.candidate)
        paired, interleave = _merge(paired, o.paired), _merge(interleave, o.interleave)
        prometheus.update(o.prometheus)
    obs = Observations(window_start=window_start, window_end=window_end, baseline=baseline, candidate=candidate,
                       paired=paired, interleave=interleave, prometheus=prometheus)
    return Evidence(obs, tuple(f for p in parts for f in p.failures))


def http_sources(http: httpx.Client, replicas: Callable[[RolloutSpec], Sequence[str]],
                 prometheus_url: str | None = None, prometheus_http: httpx.Client | None = None) -> Sources:
    """The controller's evidence: router summaries and Prometheus, over the given clients."""
    return Sources(RouterSummaries(http, replicas), Prometheus(prometheus_http or http, prometheus_url))
