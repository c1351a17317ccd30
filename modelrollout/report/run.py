"""The run record: `RunRecorder` builds one from analysis windows and transitions (local mode, replay).

RUN.json (`"format": "modelrollout.io/run/v1"`), times in epoch seconds:

    {"format", "source", "started", "finished", "exit_code",
     "rollouts": [{
        "key": "ns/name", "name", "namespace", "baseline": {"version", "url"}, "candidate": {...},
        "output_kind", "interval", "steps": ["shadow for 3s", "canary 50% for 3s", ...],
        "checks": [{"name", "metric", "on", "action", "bound"}],          # bound: "max 0.2", "min p 0.01", ...
        "fallback": "URL or static answer" | null,
        "post_promotion": {"duration", "action", "interval", "min_samples", "failure_limit",
                           "checks": [{"name", "metric", "bound"}]} | null,
        "windows": [{"start", "end", "time", "phase", "step", "weight", "shadow",
                     "checks": [{"name", "value", "threshold", "verdict", "samples", "reason"}],
                     "versions": {"baseline": DIGEST, "candidate": DIGEST},
                     "distribution": {"kind": "numeric", "edges": [...], "baseline": [counts], "candidate": [counts]}
                                   | {"kind": "categorical", "categories": [...], "baseline": [...], "candidate": [...]}
                                   | null}],
        "transitions": [{"time", "phase", "step", "weight", "shadow", "reason", "check", "value", "threshold"}],
        "outcome": {"phase", "time", "reason", "check", "value", "threshold"},
        "status": {the final CR status dict}}]}

    DIGEST = {"requests", "errors": {"http_5xx", "timeout", "unreachable", "invalid_output"}, "error_rate",
              "latency_p50_ms", "latency_p99_ms", "latency_mean_ms"}
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from policies.api import Phase
from policies.errors import InvalidInput
from policies.expectations import INPUT_CHECK
from policies.status import RolloutStatus, format_left


FORMAT = "modelrollout.io/run/v1"
HIST_BINS = 30


class RecordError(InvalidInput, ValueError):
    """A file that is not a run record or prediction log this version can read."""


def read_record(path: Path, text: str | None = None) -> dict[str, Any]:
    """The run record in RUN.json at `path` (`text`: its content, when already read); RecordError naming the
    file and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except OSError as e:
        raise RecordError(f"{path}: cannot read: {e.strerror}") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not JSON (line {e.lineno}): {e.msg}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise RecordError(f"{path}: format: expected {FORMAT!r} (a run record), got {got!r}")
    if not isinstance(doc.get("rollouts"), list):
        raise RecordError(f"{path}: rollouts: expected a list")
    return doc


def describe_bound(check: Any) -> str:
    """The threshold a check's spec states, as a person would read it ("max 0.2", "p >= 0.01")."""
    parts = []
    if check.max is not None:
        parts.append(f"max {check.max:g}")
    if check.min is not None:
        parts.append(f"min {check.min:g}")
    if check.min_p_value is not None:
        parts.append(f"p >= {check.min_p_value:g}")
    if check.max_ratio_to_baseline is not None:
        parts.append(f"<= {check.max_ratio_to_baseline:g}x baseline")
    if check.dynamic is not None:
        parts.append(f"learned ({check.dynamic.sigmas:g} sigmas)")
    if check.prometheus is not None:
        q = check.prometheus
        parts += [f"min {q.min:g}"] if q.min is not None else []
        parts += [f"max {q.max:g}"] if q.max is not None else []
    return ", ".join(parts)


def describe_expectation(f: Any) -> str:
    """One feature's expectations as a person would read them ("number, null <= 5%, in [0, 1000]")."""
    parts = [f.type] if f.type else []
    if f.max_null_rate is not None:
        parts.append(f"null <= {f.max_null_rate:.3g}")
    if f.min is not None or f.max is not None:
        parts.append(f"in [{'…' if f.min is None else f'{f.min:g}'}, {'…' if f.max is None else f'{f.max:g}'}]")
    if f.allowed is not None:
        shown = ", ".join(f.allowed[:8]) + (", …" if len(f.allowed) > 8 else "")
        parts.append(f"one of {{{shown}}}")
    if f.mostly < 1 and f.checks_values:
        parts.append(f"mostly {f.mostly:g}")
    return ", ".join(parts)


def _expectations(spec: Any) -> dict[str, Any] | None:
    e = getattr(spec, "expectations", None)
    if e is None:
        return None
    return {"rows": {"min": e.rows_min, "max": e.rows_max},
            "features": [{"name": f.name, "expect": describe_expectation(f)} for f in e.features]}


def rollout_header(spec: Any) -> dict[str, Any]:
    """The static part of a rollout's record, from its RolloutSpec."""
    return {
        "key": spec.key, "name": spec.name, "namespace": spec.namespace,
        "baseline": {"version": spec.baseline.version, "url": spec.baseline.url},
        "candidate": {"version": (spec.candidate or spec.baseline).version,     # none: a steady state
                      "url": (spec.candidate or spec.baseline).url},
        "output_kind": spec.output.kind, "interval": spec.analysis.interval,
        "steps": [s.describe() for s in spec.steps],
        "checks": [{"name": c.name, "metric": c.metric or "prometheus", "on": c.on, "action": c.action,
                    "bound": describe_bound(c)} for c in spec.analysis.checks + spec.golden_checks] + (
            [{"name": INPUT_CHECK, "metric": INPUT_CHECK, "on": "inputs", "action": "pause",
              "bound": "spec.expectations"}] if getattr(spec, "expectations", None) is not None else []),
        "expectations": _expectations(spec),
        "windows": [], "transitions": [], "outcome": None, "status": {},
        "fallback": spec.fallback.describe() if spec.fallback is not None else None,
        "post_promotion": None if spec.post_promotion is None else {
            "duration": spec.post_promotion.duration, "action": spec.post_promotion.action,
            "interval": spec.post_promotion.interval, "min_samples": spec.post_promotion.min_samples,
            "failure_limit": spec.post_promotion.failure_limit,
            "checks": [{"name": c.name, "metric": c.metric, "bound": f"maxDrop {c.max_drop:g}" if c.metric == "accuracy"
                        else f"minRatioToBaseline {c.min_ratio_to_baseline:g} by {c.segment}"}
                       for c in spec.post_promotion.checks]},
    }


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def version_digest(window: Any) -> dict[str, Any]:
    """Requests, errors and latency of one version's window (a `VersionWindow`), JSON-ready."""
    if window is None:
        return {"requests": 0, "errors": {}, "error_rate": None, "latency_p50_ms": None,
                "latency_p99_ms": None, "latency_mean_ms": None}
    requests = int(getattr(window, "requests", 0) or 0)
    errors = {str(k): int(v) for k, v in dict(getattr(window, "errors", {}) or {}).items()}
    lat = getattr(window, "latency", None)

    def q(p: float) -> float | None:
        try:
            v = lat.quantile(p) if lat is not None else None
        except (ValueError, ZeroDivisionError):
            return None
        v = _finite(v)
        return None if v is None else round(v * 1000.0, 3)

    mean = None
    if lat is not None and hasattr(lat, "mean"):
        m = lat.mean() if callable(lat.mean) else lat.mean
        mean = None if _finite(m) is None else round(m * 1000.0, 3)
    return {"requests": requests, "errors": errors,
            "error_rate": (sum(errors.values()) / requests) if requests else None,
            "latency_p50_ms": q(0.5), "latency_p99_ms": q(0.99), "latency_mean_ms": mean}


def prediction_values(summary: Any) -> list:
    """The values a prediction summary holds: a numeric sample or {category: count}."""
    if summary is None:
        return []
    if hasattr(summary, "values"):
        try:
            return [float(v) for v in summary.values()]
        except (TypeError, ValueError):
            pass
    if hasattr(summary, "counts"):
        counts = summary.counts() if callable(summary.counts) else summary.counts
        if isinstance(counts, Mapping):
            return [dict(counts)]
    return []


def distribution(baseline: Sequence, candidate: Sequence, bins: int = HIST_BINS) -> dict[str, Any] | None:
    """Counts of both versions' predictions over shared bins (numeric) or shared categories."""
    if baseline and isinstance(baseline[0], Mapping) or candidate and isinstance(candidate[0], Mapping):
        b = dict(baseline[0]) if baseline else {}
        c = dict(candidate[0]) if candidate else {}
        cats = sorted(set(b) | set(c), key=str)
        return {"kind": "categorical", "categories": [str(k) for k in cats],
                "baseline": [int(b.get(k, 0)) for k in cats], "candidate": [int(c.get(k, 0)) for k in cats]}
    b = [v for v in baseline if math.isfinite(v)]
    c = [v for v in candidate if math.isfinite(v)]
    if not b and not c:
        return None
    lo, hi = min(b + c), max(b + c)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    edges = [lo + i * width for i in range(bins + 1)]

    def count(xs: list[float]) -> list[int]:
        out = [0] * bins
        for x in xs:
            out[min(int((x - lo) / width), bins - 1)] += 1
        return out

    return {"kind": "numeric", "edges": [round(e, 6) for e in edges], "baseline": count(b), "candidate": count(c)}


class RunRecorder:
    """Collects a run's windows and transitions as they happen; `to_dict()` is the RUN.json document."""

    def __init__(self, source: str, started: float):
        self.source = source
        self.started = started
        self.finished: float | None = None
        self.exit_code: int | None = None
        self.rollouts: dict[str, dict[str, Any]] = {}

    def add_rollout(self, spec: Any) -> None:
        self.rollouts.setdefault(spec.key, rollout_header(spec))

    def window(self, key: str, *, start: float, end: float, now: float, results: Iterable[Any],
               status: Mapping[str, Any], baseline: Any = None, candidate: Any = None) -> None:
        """One analysis: the check results on [start, end) and the status the decision left."""
        routing = status.get("routing") or {}
        dist = distribution(prediction_values(getattr(baseline, "prediction", None)),
                            prediction_values(getattr(candidate, "prediction", None)))
        self.rollouts[key]["windows"].append({
            "start": start, "end": end, "time": now, "phase": status.get("phase"),
            "step": status.get("currentStep"), "weight": routing.get("candidateWeight", 0),
            "shadow": bool(routing.get("shadow")),
            "checks": [{"name": r.name, "value": _finite(r.value), "threshold": _finite(r.threshold),
                        "verdict": getattr(r.verdict, "value", r.verdict), "samples": int(r.samples),
                        "reason": r.reason} for r in results],
            "versions": {"baseline": version_digest(baseline), "candidate": version_digest(candidate)},
            "distribution": dist,
        })

    def transition(self, key: str, now: float, status: Mapping[str, Any], reason: str,
                   result: Any = None) -> None:
        """A change of phase, step or routing, with the check that caused it (if one did)."""
        routing = status.get("routing") or {}
        entry = {"time": now, "phase": status.get("phase"), "step": status.get("currentStep"),
                 "weight": routing.get("candidateWeight", 0), "shadow": bool(routing.get("shadow")),
                 "reason": reason, "check": None, "value": None, "threshold": None}
        if result is not None:
            entry.update(check=result.name, value=_finite(result.value), threshold=_finite(result.threshold))
        rec = self.rollouts[key]
        rec["transitions"].append(entry)
        if status.get("phase") in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED):
            rec["outcome"] = {k: entry[k] for k in ("phase", "time", "reason", "check", "value", "threshold")}

    def finish(self, key: str, status: Mapping[str, Any]) -> None:
        rec = self.rollouts[key]
        rec["status"] = dict(status)
        if rec["outcome"] is None:
            reason = status.get("message") or ""
            # the status holds the step's start and duration, not a clock text: the time left is computed here
            left = RolloutStatus.from_status(status).step_left(self.finished) if self.finished is not None else None
            if left is not None and left > 0:
                reason += f" ({format_left(left)} of the step left when the run ended)"
            rec["outcome"] = {"phase": status.get("phase"), "time": self.finished, "reason": reason,
                              "check": None, "value": None, "threshold": None}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "source": self.source, "started": self.started, "finished": self.finished,
                "exit_code": self.exit_code, "rollouts": list(self.rollouts.values())}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False, default=str))
        return path
