"""The cluster-independent reconcile step: gather observations, evaluate checks, decide.

Both shells use it: the Kubernetes controller (controller.kube) and local mode (modelrollout.local). It owns
the I/O of *reading* evidence (router summaries over HTTP, PromQL) but not of acting: it returns the
`Decision` and the shell writes status, routing, Events and notifications once.

Every failure to read evidence becomes an Inconclusive verdict with a reason, never a Pass and never an
exception out of `reconcile_step` (provider timeouts are bounded: argo-rollouts#2892).
"""
from __future__ import annotations

import concurrent.futures as futures
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import httpx

from policies.machine import Command, Decision, decide
from policies.spec import Rollout, RolloutSpec
from policies.status import CheckResult, RolloutStatus, Verdict
from policies.summaries import InterleaveSummary, PairedSummary, VersionWindow

log = logging.getLogger("modelrollout.core")

MAX_BUCKET_SECONDS = 60.0
"""Largest router summary bucket this controller expects; windows are fetched with this much slack."""

Gatherer = Callable[[RolloutSpec, float, float], Any]
"""gatherer(spec, window_start, window_end) -> policies.checks.Observations"""


class RouterUnavailable(Exception):
    """One or more router replicas did not answer; `observations` holds whatever else was gathered
    (Prometheus results, router data emptied) so non-router checks can still be judged."""

    def __init__(self, failures: Mapping[str, str], observations):
        self.failures = dict(failures)
        self.observations = observations
        detail = "; ".join(f"{url}: {why}" for url, why in sorted(self.failures.items()))
        super().__init__(f"{len(self.failures)} router replica(s) failed: {detail}")


# ---- router summaries -------------------------------------------------------------------------------

def fetch_summaries(http: httpx.Client, url: str, spec: RolloutSpec, start: float, end: float) -> dict:
    """One replica's `/v1/rollouts/{name}/summaries` answer; raises ValueError with a readable reason."""
    try:
        r = http.get(f"{url.rstrip('/')}/v1/rollouts/{spec.name}/summaries",
                     params={"namespace": spec.namespace, "start": f"{start:.3f}", "end": f"{end:.3f}"})
    except httpx.TimeoutException as e:
        raise ValueError(f"timed out after {http.timeout.read}s") from e
    except httpx.HTTPError as e:
        raise ValueError(f"unreachable ({type(e).__name__}: {e})") from e
    if r.status_code != 200:
        raise ValueError(f"HTTP {r.status_code}: {r.text[:200]}")
    try:
        body = r.json()
    except ValueError as e:
        raise ValueError("answer is not JSON") from e
    if not isinstance(body, dict) or not isinstance(body.get("windows"), list):
        raise ValueError("answer lacks a windows list")
    return body


def windows_in(body: dict, spec: RolloutSpec, window_start: float) -> list[dict]:
    """The answer's windows that belong to this analysis window and to the candidate under test.

    Buckets are aligned to the epoch, so the window starts at the bucket holding `window_start`: the
    previous analysis saw only the buckets that had ended by then, never that one.
    """
    bucket = float(body.get("bucket_seconds") or 5.0)
    first = math.floor(window_start / bucket) * bucket
    out = []
    for w in body["windows"]:
        if not isinstance(w, dict) or w.get("revision") not in (None, spec.revision):
            continue  # an older candidate's data must not judge the new one (flagger#30)
        try:
            if float(w["start"]) + 1e-6 >= first:
                out.append(w)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _merge(a, b):
    if a is None:
        return b
    if b is None:
        return a
    merged = a.merge(b)
    return a if merged is None else merged   # merge may be in place or return a new value


def merge_windows(spec: RolloutSpec, windows: Iterable[dict]):
    """Merge bucket summaries (from every replica) into (baseline, candidate, paired, interleave)."""
    kind = spec.output.kind
    baseline, candidate = VersionWindow.new(kind), VersionWindow.new(kind)
    paired = interleave = None
    for w in windows:
        if w.get("baseline"):
            baseline = _merge(baseline, VersionWindow.from_dict(w["baseline"]))
        if w.get("candidate"):
            candidate = _merge(candidate, VersionWindow.from_dict(w["candidate"]))
        if w.get("paired"):
            paired = _merge(paired, PairedSummary.from_dict(w["paired"]))
        if w.get("interleave"):
            interleave = _merge(interleave, InterleaveSummary.from_dict(w["interleave"]))
    return baseline, candidate, paired, interleave


# ---- Prometheus -------------------------------------------------------------------------------------

def query_prometheus(address: str, query: str, at: float, timeout: float) -> float:
    """A PromQL instant query that must yield exactly one number; raises SourceError otherwise."""
    from policies.checks import SourceError
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    try:
        with PrometheusConnect(url=address.rstrip("/"), disable_ssl=True, timeout=timeout,
                               retry=Retry(total=0)) as prom:
            result = prom.custom_query(query, params={"time": f"{at:.3f}"})
    except Exception as e:  # noqa: BLE001 - requests/urllib3/client errors all mean "no value this window"
        raise SourceError(f"prometheus {address} failed for {query!r}: {type(e).__name__}: {str(e)[:200]}") from e
    if not result:
        raise SourceError(f"prometheus {address}: query {query!r} returned no data")
    if len(result) > 1:
        raise SourceError(f"prometheus {address}: query {query!r} returned {len(result)} series; "
                          f"expected one (aggregate it, e.g. with sum())")
    try:
        return float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise SourceError(f"prometheus {address}: query {query!r} returned a non-numeric value") from e


def prometheus_values(spec: RolloutSpec, prometheus_url: str | None, at: float,
                      timeout: float) -> dict:
    """{check name: value or SourceError} for every PromQL check of `spec`."""
    from policies.checks import SourceError, render_query

    out: dict = {}
    for check in spec.analysis.checks:
        if check.prometheus is None:
            continue
        address = check.prometheus.address or prometheus_url
        if not address:
            out[check.name] = SourceError(f"check {check.name}: no Prometheus address (set "
                                          f"prometheus.address or --prometheus-url)")
            continue
        try:
            out[check.name] = query_prometheus(address, render_query(check, spec), at, timeout)
        except SourceError as e:
            out[check.name] = e
    return out


# ---- gathering --------------------------------------------------------------------------------------

def gather_observations(spec: RolloutSpec, router_urls: Sequence[str], window_start: float,
                        window_end: float, prometheus_url: str | None = None,
                        http_timeout: float = 5.0):
    """Merge every router replica's summaries for [window_start, window_end] and run the PromQL checks.

    Raises RouterUnavailable (carrying the rest of the observations) if any replica fails or none is known:
    partial router data would bias the comparison, so it is never used silently.
    """
    from policies.checks import Observations

    failures: dict[str, str] = {}
    windows: list[dict] = []
    if not router_urls:
        failures["(none)"] = "no router replica known (no ready endpoints and no --router-url)"
    with httpx.Client(timeout=http_timeout) as http, \
            futures.ThreadPoolExecutor(max_workers=min(8, max(1, len(router_urls)))) as pool:
        jobs = {pool.submit(fetch_summaries, http, url, spec, window_start - MAX_BUCKET_SECONDS, window_end): url
                for url in router_urls}
        prom = pool.submit(prometheus_values, spec, prometheus_url, window_end, http_timeout)
        for job, url in jobs.items():
            try:
                windows.extend(windows_in(job.result(), spec, window_start))
            except ValueError as e:
                failures[url] = str(e)
        prom_values = prom.result()
    if failures:
        windows = []
    baseline, candidate, paired, interleave = merge_windows(spec, windows)
    obs = Observations(window_start=window_start, window_end=window_end, baseline=baseline,
                       candidate=candidate, paired=paired, interleave=interleave, prometheus=prom_values)
    if failures:
        raise RouterUnavailable(failures, obs)
    return obs


@dataclass(frozen=True)
class HttpGatherer:
    """`gatherer(spec, start, end)` for reconcile_step over HTTP; `router_urls(spec)` names the replicas."""
    router_urls: Callable[[RolloutSpec], Sequence[str]]
    prometheus_url: str | None = None
    http_timeout: float = 5.0

    def __call__(self, spec: RolloutSpec, window_start: float, window_end: float):
        return gather_observations(spec, list(self.router_urls(spec)), window_start, window_end,
                                   self.prometheus_url, self.http_timeout)


# ---- the step ---------------------------------------------------------------------------------------

def analysis_window(spec: RolloutSpec, status: RolloutStatus, now: float) -> tuple[float, float] | None:
    """(start, end) of the analysis window due at `now`, or None when no analysis is due.

    Due once `interval` has passed since the last window (or since the step started); not before the
    rollout has started on the current revision, and never after it finished.
    """
    if status.phase.is_terminal or status.revision != spec.revision or status.revision is None:
        return None
    last = status.last_analysis_at if status.last_analysis_at is not None else status.step_started_at
    if last is None:
        return None
    if now - last < spec.analysis.interval:
        return None
    return last, now


def next_wakeup(spec: RolloutSpec, status: RolloutStatus, now: float) -> float | None:
    """Seconds until this rollout needs a reconcile again without any event (None: only on change)."""
    if status.phase.is_terminal:
        return None
    last = status.last_analysis_at if status.last_analysis_at is not None else status.step_started_at
    wait = spec.analysis.interval if last is None else last + spec.analysis.interval - now
    if status.step_started_at is not None and status.current_step < len(spec.steps):
        step = spec.steps[status.current_step]
        if step.duration is not None:
            wait = min(wait, status.step_started_at + step.duration - now)
    return max(0.05, wait)


def _inconclusive(results: Iterable[CheckResult], spec: RolloutSpec, reason: str) -> tuple[CheckResult, ...]:
    """Downgrade the router-fed checks to Inconclusive (PromQL checks keep their own verdicts)."""
    prom = {c.name for c in spec.analysis.checks if c.prometheus is not None}
    return tuple(r if r.name in prom else replace(r, verdict=Verdict.INCONCLUSIVE, reason=f"{r.name}: {reason}")
                 for r in results)


def _all_inconclusive(spec: RolloutSpec, reason: str) -> tuple[CheckResult, ...]:
    return tuple(CheckResult(c.name, c.metric, None, None, Verdict.INCONCLUSIVE, 0, reason=f"{c.name}: {reason}",
                             action=c.action, immediate=c.immediate) for c in spec.analysis.checks)


def evaluate_window(spec: RolloutSpec, status: RolloutStatus, window: tuple[float, float],
                    gatherer: Gatherer) -> tuple[CheckResult, ...]:
    """Gather and evaluate one window; every failure to read evidence is an Inconclusive with its reason."""
    if not spec.analysis.checks:
        return ()   # nothing to judge: the steps run on their durations alone
    from policies.checks import evaluate

    start, end = window
    try:
        obs = gatherer(spec, start, end)
        return tuple(evaluate(spec, obs, status))
    except RouterUnavailable as e:
        log.warning("%s: %s", spec.key, e)
        try:
            return _inconclusive(evaluate(spec, e.observations, status), spec, str(e))
        except Exception as inner:  # noqa: BLE001
            log.exception("%s: evaluating partial observations failed", spec.key)
            return _all_inconclusive(spec, f"{e}; evaluation failed: {inner}")
    except Exception as e:  # noqa: BLE001 - a bug or outage in evidence must pause, not crash, the loop
        log.exception("%s: gathering observations failed", spec.key)
        return _all_inconclusive(spec, f"observations unavailable: {type(e).__name__}: {e}")


def reconcile_step(rollout: Rollout, now: float, gatherer: Gatherer, command: Command | None = None) -> Decision:
    """One reconcile of one rollout: evaluate a window if one is due, then `policies.decide`."""
    spec = rollout.spec
    status = RolloutStatus.from_status(rollout.status)
    window = analysis_window(spec, status, now)
    results = evaluate_window(spec, status, window, gatherer) if window is not None else None
    return decide(spec, status, results, now, command)


def command_from(metadata: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[Command | None, str | None]:
    """The manual command in the `modelrollout.io/command` annotation if not yet applied, and an error
    message when the annotation is malformed (reported as an Event, never a crash)."""
    text = ((metadata or {}).get("annotations") or {}).get("modelrollout.io/command")
    if not text:
        return None, None
    try:
        cmd = Command.from_annotation(text)
    except ValueError as e:
        return None, str(e)
    if cmd.id and cmd.id == (status or {}).get("lastCommandId"):
        return None, None
    return cmd, None


def now() -> float:
    return time.time()
