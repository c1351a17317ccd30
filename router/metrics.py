"""Prometheus metrics from plain counters: the request path bumps dict entries, `/metrics` reads them.

No locks or metric objects on the request path; the collector turns the counters into families on scrape.
A rollout's namespace is the label `rollout_namespace`: `namespace` (like `pod`, `job`, `instance`) is the
target label Prometheus adds when it scrapes a pod on Kubernetes (docs/install.md "Scraping").
"""
from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PREDICTION_BUCKETS = tuple(round(i * 0.05, 2) for i in range(1, 21))


class _Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, x: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, x)] += 1
        self.sum += x
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for bound, n in zip(self.bounds, self.counts):
            acc += n
            out.append((repr(bound), acc))
        out.append(("+Inf", self.count))
        return out


_FAMILIES = (
    # (attribute, metric name, help, labels): the counters and histograms `collect` exports, in this order
    ("requests", "modelrollout_router_requests",
     "Model calls by rollout, version, role and HTTP code (0 = no answer).",
     ("rollout", "rollout_namespace", "version", "role", "code")),
    ("errors", "modelrollout_router_errors",
     "Failed model calls by kind (http_5xx, timeout, unreachable, invalid_output).",
     ("rollout", "rollout_namespace", "version", "role", "kind")),
    ("durations", "modelrollout_router_request_duration_seconds",
     "Model call latency, seconds.",
     ("rollout", "rollout_namespace", "version", "role")),
    ("predictions", "modelrollout_router_prediction",
     "Numeric predictions (scores) per version.",
     ("rollout", "rollout_namespace", "version")),
    ("shadow_dropped", "modelrollout_router_shadow_dropped",
     "Mirrors dropped: too many waiting for the candidate or in flight, or no worker to take them.",
     ("rollout", "rollout_namespace")),
    ("shadow_queued", "modelrollout_router_shadow_queued",
     "Mirrors that waited for a free connection to the candidate (the shadow concurrency was in use); the "
     "wait is not latency.",
     ("rollout", "rollout_namespace")),
    ("latency_excluded", "modelrollout_router_latency_excluded",
     "Model calls whose latency the router could not time fairly (stalled: the timing process was starved "
     "or busy; connect: connection set-up overflowed the server's accept queue), left out of the duration "
     "histogram and the summaries' latency.",
     ("rollout", "rollout_namespace", "version", "role", "reason")),
    ("interleave", "modelrollout_router_interleave_outcomes",
     "Interleaved impressions credited by clicks, from the candidate's side (win, loss, tie).",
     ("rollout", "rollout_namespace", "outcome")),
    ("feedback", "modelrollout_router_feedback",
     "Feedback posts by kind (label, clicks) and HTTP code.",
     ("rollout", "rollout_namespace", "kind", "code")),
    ("client_errors", "modelrollout_router_rejected",
     "Requests rejected before reaching a model, by HTTP code.",
     ("code",)),
    ("overrides", "modelrollout_router_override_requests",
     "Answers to requests whose caller picked the version (x-modelrollout-version, with --allow-override): "
     "counted here only, never in the requests, errors and latency above nor in the analysis.",
     ("rollout", "rollout_namespace", "version", "code")),
    ("passthrough", "modelrollout_router_passthrough_requests",
     "Requests a rollout's Service (transparent mode) passed to a version that are not analysed: another "
     "path than predictPath, or an answer that is not JSON (code 0 = no answer).",
     ("rollout", "rollout_namespace", "version", "code")),
    ("golden", "modelrollout_router_golden_requests",
     "Calls of a version with a golden request (a golden step, POST /v1/rollouts/NAME/golden; code 0 = no "
     "answer): counted here only, never in the requests, errors and latency above nor in the analysis.",
     ("rollout", "rollout_namespace", "version", "code")),
    ("fallback", "modelrollout_router_fallback",
     "Answers given by spec.fallback because the chosen version failed (reason: its error kind); result "
     "served, or failed (the caller got 502 fallback failed). The version's own failure is counted as "
     "usual.",
     ("rollout", "rollout_namespace", "version", "reason", "result")),
)


class RouterMetrics:
    """Counters per rollout/version/role; `render()` produces the Prometheus text format."""

    def __init__(self):
        self.requests: dict[tuple, int] = defaultdict(int)        # rollout, namespace, version, role, code
        self.errors: dict[tuple, int] = defaultdict(int)          # rollout, namespace, version, role, kind
        self.durations: dict[tuple, _Histogram] = {}              # rollout, namespace, version, role
        self.predictions: dict[tuple, _Histogram] = {}            # rollout, namespace, version
        self.shadow_dropped: dict[tuple, int] = defaultdict(int)  # rollout, namespace
        self.shadow_queued: dict[tuple, int] = defaultdict(int)   # rollout, namespace
        self.latency_excluded: dict[tuple, int] = defaultdict(int)  # rollout, namespace, version, role, reason
        self.interleave: dict[tuple, int] = defaultdict(int)      # rollout, namespace, outcome
        self.feedback: dict[tuple, int] = defaultdict(int)        # rollout, namespace, kind, code
        self.client_errors: dict[int, int] = defaultdict(int)     # code (before a rollout is known)
        self.overrides: dict[tuple, int] = defaultdict(int)       # rollout, namespace, version, code
        self.passthrough: dict[tuple, int] = defaultdict(int)     # rollout, namespace, version, code
        self.golden: dict[tuple, int] = defaultdict(int)          # rollout, namespace, version, code
        self.fallback: dict[tuple, int] = defaultdict(int)        # rollout, namespace, version, reason, result
        self.gauges: list[Callable[[], Iterable[GaugeMetricFamily]]] = []

    def observe(self, rollout: str, namespace: str, version: str, role: str, code: int | None,
                error: str | None, latency: float, prediction: float | None, excluded: str | None = None) -> None:
        self.requests[(rollout, namespace, version, role, str(code or 0))] += 1
        if error is not None:
            self.errors[(rollout, namespace, version, role, error)] += 1
        if excluded is not None:        # not the model's latency: counted instead of observed
            self.latency_excluded[(rollout, namespace, version, role, excluded)] += 1
        else:
            key = (rollout, namespace, version, role)
            h = self.durations.get(key)
            if h is None:
                h = self.durations[key] = _Histogram(DURATION_BUCKETS)
            h.observe(latency)
        if prediction is not None:
            pkey = (rollout, namespace, version)
            p = self.predictions.get(pkey)
            if p is None:
                p = self.predictions[pkey] = _Histogram(PREDICTION_BUCKETS)
            p.observe(prediction)

    def collect(self):
        for attr, name, doc, labels in _FAMILIES:
            data = getattr(self, attr)
            if attr in self._HISTOGRAMS:
                h = HistogramMetricFamily(name, doc, labels=list(labels))
                for k, hist in list(data.items()):
                    h.add_metric(list(k), hist.buckets(), hist.sum)
                yield h
                continue
            c = CounterMetricFamily(name, doc, labels=list(labels))
            for k, v in list(data.items()):
                c.add_metric(list(k) if isinstance(k, tuple) else [str(k)], v)   # client_errors: by code alone
            yield c
        for gauge in self.gauges:
            yield from gauge()

    _COUNTERS = tuple(f[0] for f in _FAMILIES if f[0] not in ("durations", "predictions"))
    _HISTOGRAMS = ("durations", "predictions")

    def snapshot(self) -> dict:
        """The counters and histograms as plain data (what another process sends to be merged)."""
        out: dict = {name: dict(getattr(self, name)) for name in self._COUNTERS}
        for name in self._HISTOGRAMS:
            out[name] = {k: (h.bounds, list(h.counts), h.sum, h.count) for k, h in getattr(self, name).items()}
        return out

    def combined(self, snapshots: Iterable[dict]) -> "RouterMetrics":
        """These metrics plus other processes' `snapshot()`s, summed (gauges are this process's)."""
        out = RouterMetrics()
        out.gauges = self.gauges
        for snap in (self.snapshot(), *snapshots):
            for name in self._COUNTERS:
                into = getattr(out, name)
                for k, v in snap.get(name, {}).items():
                    into[k] += v
            for name in self._HISTOGRAMS:
                into = getattr(out, name)
                for k, (bounds, counts, total, n) in snap.get(name, {}).items():
                    h = into.get(k)
                    if h is None:
                        h = into[k] = _Histogram(tuple(bounds))
                    h.counts = [a + b for a, b in zip(h.counts, counts)]
                    h.sum += total
                    h.count += n
        return out

    def render(self, snapshots: Iterable[dict] = ()) -> bytes:
        """The Prometheus text format of these metrics plus other processes' snapshots."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.combined(snapshots) if snapshots else self)
        return generate_latest(registry)


def finite_float(x) -> float | None:
    """`x` as a finite float, else None (bools are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None
