"""The run record of a rollout run and its one-file HTML report (`modelrollout report`).

Local mode and replay write a run record (RUN.json) holding every analysis window's check results, the
per-version error/latency numbers and prediction histograms; this module renders it as one self-contained
HTML page of inline SVG charts (no scripts, no downloads), so a report opens anywhere, offline.

RUN.json (`"format": "modelrollout.io/run/v1"`), times in epoch seconds:

    {"format", "source", "started", "finished", "exit_code",
     "rollouts": [{
        "key": "ns/name", "name", "namespace", "baseline": {"version", "url"}, "candidate": {...},
        "output_kind", "interval", "steps": ["shadow for 3s", "canary 50% for 3s", ...],
        "checks": [{"name", "metric", "on", "action", "bound"}],          # bound: "max 0.2", "min p 0.01", ...
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

`modelrollout report RUN.json -o report.html` renders a record; `modelrollout report PREDICTIONS.jsonl
[--spec FILE] -o report.html` first rebuilds one from a router prediction log (with a spec, by replaying the
policy on it; without, from the log's traffic alone).
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from policies.errors import InvalidInput

FORMAT = "modelrollout.io/run/v1"
HIST_BINS = 30

BASELINE_COLOR = "#4c78a8"
CANDIDATE_COLOR = "#f58518"
VERDICT_COLORS = {"Pass": "#54a24b", "Fail": "#e45756", "Inconclusive": "#9d9d9d"}
PHASE_COLORS = {
    "Pending": "#e6e6e6", "Shadowing": "#d8e6f3", "Progressing": "#fde3c8", "Interleaving": "#e5d8f0",
    "Paused": "#fff1a8", "Promoted": "#cfe8c9", "RolledBack": "#f7c6c6", "Failed": "#f7c6c6",
}
OUTCOME_COLORS = {"Promoted": "#2e7d32", "RolledBack": "#c62828", "Failed": "#c62828", "Paused": "#b7791f"}


class RecordError(InvalidInput, ValueError):
    """A file that is not a run record or prediction log this version can read."""


# --- building a record --------------------------------------------------------------------------------

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


def rollout_header(spec: Any) -> dict[str, Any]:
    """The static part of a rollout's record, from its RolloutSpec."""
    return {
        "key": spec.key, "name": spec.name, "namespace": spec.namespace,
        "baseline": {"version": spec.baseline.version, "url": spec.baseline.url},
        "candidate": {"version": spec.candidate.version, "url": spec.candidate.url},
        "output_kind": spec.output.kind, "interval": spec.analysis.interval,
        "steps": [s.describe() for s in spec.steps],
        "checks": [{"name": c.name, "metric": c.metric or "prometheus", "on": c.on, "action": c.action,
                    "bound": describe_bound(c)} for c in spec.analysis.checks],
        "windows": [], "transitions": [], "outcome": None, "status": {},
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
        if status.get("phase") in ("Promoted", "RolledBack", "Failed"):
            rec["outcome"] = {k: entry[k] for k in ("phase", "time", "reason", "check", "value", "threshold")}

    def finish(self, key: str, status: Mapping[str, Any]) -> None:
        rec = self.rollouts[key]
        rec["status"] = dict(status)
        if rec["outcome"] is None:
            rec["outcome"] = {"phase": status.get("phase"), "time": self.finished, "reason": status.get("message"),
                              "check": None, "value": None, "threshold": None}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "source": self.source, "started": self.started, "finished": self.finished,
                "exit_code": self.exit_code, "rollouts": list(self.rollouts.values())}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False, default=str))
        return path


# --- SVG charts ---------------------------------------------------------------------------------------

def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def fmt(v: float | None) -> str:
    """A number short enough for an axis label or a table cell."""
    if v is None:
        return "–"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1 and float(v).is_integer():
        return f"{v:,.0f}"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.001:
        return f"{v:.3g}"
    return f"{v:.2g}"


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-6:
        ticks.append(round(t, 12))
        t += step
    return ticks


@dataclass
class Frame:
    """A plot area inside an SVG: maps data coordinates to pixels."""
    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 52
    right: int = 14
    top: int = 28
    bottom: int = 30

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (v - self.y0) / span * (self.height - self.top - self.bottom)

    @property
    def plot_bottom(self) -> float:
        return self.height - self.bottom

    def open(self, title: str, css: str = "chart") -> list[str]:
        return [f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}"'
                f' viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{_esc(title)}">',
                f'<text class="title" x="{self.left}" y="17">{_esc(title)}</text>']

    def axes(self, x_label: str = "", y_fmt=fmt, x_fmt=None) -> list[str]:
        out = []
        for t in nice_ticks(self.y0, self.y1):
            yy = self.y(t)
            out.append(f'<line class="grid" x1="{self.left}" x2="{self.width - self.right}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
            out.append(f'<text class="tick" x="{self.left - 6}" y="{yy + 4:.1f}" text-anchor="end">{_esc(y_fmt(t))}</text>')
        for t in nice_ticks(self.x0, self.x1, 6):
            xx = self.x(t)
            label = x_fmt(t) if x_fmt else fmt(t)
            out.append(f'<text class="tick" x="{xx:.1f}" y="{self.plot_bottom + 16:.1f}" text-anchor="middle">{_esc(label)}</text>')
        out.append(f'<line class="axis" x1="{self.left}" x2="{self.width - self.right}" y1="{self.plot_bottom:.1f}" y2="{self.plot_bottom:.1f}"/>')
        if x_label:
            out.append(f'<text class="tick" x="{self.width - self.right}" y="{self.height - 2}" text-anchor="end">{_esc(x_label)}</text>')
        return out


def _seconds(t: float) -> str:
    return f"{t:g}s"


def _polyline(frame: Frame, points: Sequence[tuple[float, float | None]], color: str, css: str,
              dash: str = "") -> list[str]:
    """A line through the points, broken where a value is missing."""
    out, run = [], []
    for x, y in list(points) + [(None, None)]:
        if x is not None and y is not None:
            run.append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
            continue
        if len(run) > 1:
            extra = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<polyline class="{css}" fill="none" stroke="{color}" stroke-width="2"{extra} points="{" ".join(run)}"/>')
        run = []
    return out


def legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for label, color in items:
        out.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" fill="{color}" rx="2"/>')
        out.append(f'<text class="tick" x="{x + 14:.0f}" y="{y:.0f}">{_esc(label)}</text>')
        x += 22 + 6.5 * len(label)
    return out


def timeline_svg(rec: Mapping[str, Any], t0: float, t1: float, width: int = 1100) -> str:
    """Phase bands and the candidate's traffic share over the run, with transition markers."""
    f = Frame(width, 190, 0.0, max(t1 - t0, 1.0), 0.0, 100.0)
    out = f.open("Phase and candidate traffic (%)", "chart timeline")
    trans = sorted(rec.get("transitions", []), key=lambda e: e["time"])
    for i, e in enumerate(trans):
        start = e["time"] - t0
        end = (trans[i + 1]["time"] - t0) if i + 1 < len(trans) else f.x1
        color = PHASE_COLORS.get(e.get("phase"), "#eeeeee")
        out.append(f'<rect class="phase-band" data-phase="{_esc(e.get("phase"))}" x="{f.x(start):.1f}" y="{f.top}"'
                   f' width="{max(f.x(end) - f.x(start), 0.5):.1f}" height="{f.plot_bottom - f.top:.1f}" fill="{color}"/>')
    out += f.axes("seconds since start", y_fmt=lambda v: f"{v:g}%", x_fmt=_seconds)
    points: list[tuple[float, float | None]] = []
    for e in trans:
        x = e["time"] - t0
        w = 100.0 if e.get("phase") == "Promoted" else float(e.get("weight") or 0)
        if points:
            points.append((x, points[-1][1]))
        points.append((x, w))
    if points:
        points.append((f.x1, points[-1][1]))
    out += _polyline(f, points, CANDIDATE_COLOR, "weight-line")
    for e in trans:
        x = f.x(e["time"] - t0)
        tip = f'{e.get("phase")} step {e.get("step")}: {e.get("reason") or ""}'
        out.append(f'<circle class="transition" cx="{x:.1f}" cy="{f.top + 6}" r="4" fill="#333"><title>{_esc(tip)}</title></circle>')
    phases = []
    for e in trans:
        if e.get("phase") not in phases:
            phases.append(e.get("phase"))
    out += legend([(p, PHASE_COLORS.get(p, "#eee")) for p in phases] + [("candidate %", CANDIDATE_COLOR)],
                  f.left + 260, 17)
    out.append("</svg>")
    return "\n".join(out)


def check_svg(rec: Mapping[str, Any], check: Mapping[str, Any], t0: float, t1: float, width: int = 360) -> str:
    """One check's value per window (dots colored by verdict) against its threshold (dashed)."""
    name = check["name"]
    pts = []
    for w in rec.get("windows", []):
        for r in w.get("checks", []):
            if r["name"] == name:
                pts.append((w["end"] - t0, r.get("value"), r.get("threshold"), r.get("verdict"), r.get("samples")))
    vals = [p[1] for p in pts if p[1] is not None] + [p[2] for p in pts if p[2] is not None]
    lo, hi = (min(vals + [0.0]), max(vals)) if vals else (0.0, 1.0)
    hi = hi + (hi - lo) * 0.12 if hi > lo else hi + 1.0
    f = Frame(width, 190, 0.0, max(t1 - t0, 1.0), lo, hi, left=56)
    title = f'{name}: {check.get("metric")}' + (f' on {check["on"]}' if check.get("on") not in (None, "prediction") else "")
    out = f.open(title, "chart check")
    out.append(f'<g class="check-series" data-check="{_esc(name)}">')
    out += f.axes("", x_fmt=_seconds)
    out += _polyline(f, [(p[0], p[2]) for p in pts], "#c62828", "threshold-line", dash="5 4")
    out += _polyline(f, [(p[0], p[1]) for p in pts], "#555555", "value-line")
    for x, v, thr, verdict, n in pts:
        if v is None:
            continue
        tip = f"{name} = {fmt(v)} (threshold {fmt(thr)}, {verdict}, n={n})"
        out.append(f'<circle class="point" data-verdict="{_esc(verdict)}" cx="{f.x(x):.1f}" cy="{f.y(v):.1f}" r="3.5"'
                   f' fill="{VERDICT_COLORS.get(verdict, "#999")}"><title>{_esc(tip)}</title></circle>')
    if not any(p[1] is not None for p in pts):
        out.append(f'<text class="empty" x="{width / 2:.0f}" y="100" text-anchor="middle">no value yet (too few samples)</text>')
    out.append(f'<text class="tick" x="{width - f.right}" y="17" text-anchor="end">{_esc(check.get("bound", ""))}</text>')
    out.append("</g></svg>")
    return "\n".join(out)


def distribution_svg(dist: Mapping[str, Any] | None, title: str, names: tuple[str, str],
                     width: int = 520) -> str:
    """Baseline and candidate prediction distributions overlaid (shares, so sample sizes compare)."""
    f = Frame(width, 230, 0.0, 1.0, 0.0, 1.0, bottom=34)
    out = f.open(title, "chart distribution")
    if not dist:
        out.append(f'<text class="empty" x="{width / 2:.0f}" y="120" text-anchor="middle">no predictions recorded</text></svg>')
        return "\n".join(out)
    b, c = dist["baseline"], dist["candidate"]
    nb, nc = sum(b) or 1, sum(c) or 1
    sb, sc = [x / nb for x in b], [x / nc for x in c]
    f.y1 = max(sb + sc + [1e-9]) * 1.1
    labels = [f"{names[0]} (n={sum(b)})", f"{names[1]} (n={sum(c)})"]
    if dist["kind"] == "numeric":
        edges = dist["edges"]
        f.x0, f.x1 = edges[0], edges[-1]
        out += f.axes("prediction", y_fmt=lambda v: f"{v * 100:.0f}%")
        for shares, color, cls in ((sb, BASELINE_COLOR, "baseline"), (sc, CANDIDATE_COLOR, "candidate")):
            for i, s in enumerate(shares):
                if s <= 0:
                    continue
                x, x2 = f.x(edges[i]), f.x(edges[i + 1])
                out.append(f'<rect class="bar {cls}" x="{x:.1f}" y="{f.y(s):.1f}" width="{max(x2 - x - 0.5, 0.5):.1f}"'
                           f' height="{f.plot_bottom - f.y(s):.1f}" fill="{color}" fill-opacity="0.55"/>')
    else:
        cats = dist["categories"]
        f.x0, f.x1 = 0.0, float(len(cats))
        out += f.axes("", y_fmt=lambda v: f"{v * 100:.0f}%", x_fmt=lambda t: "")
        slot = (f.x(1) - f.x(0))
        for i, cat in enumerate(cats):
            for j, (shares, color, cls) in enumerate(((sb, BASELINE_COLOR, "baseline"), (sc, CANDIDATE_COLOR, "candidate"))):
                x = f.x(i) + slot * (0.12 + 0.38 * j)
                out.append(f'<rect class="bar {cls}" x="{x:.1f}" y="{f.y(shares[i]):.1f}" width="{slot * 0.36:.1f}"'
                           f' height="{f.plot_bottom - f.y(shares[i]):.1f}" fill="{color}"/>')
            out.append(f'<text class="tick" x="{f.x(i) + slot / 2:.1f}" y="{f.plot_bottom + 16:.1f}" text-anchor="middle">{_esc(cat)}</text>')
    out += legend(list(zip(labels, (BASELINE_COLOR, CANDIDATE_COLOR))), f.left + 8, f.top + 14)
    out.append("</svg>")
    return "\n".join(out)


def version_series_svg(rec: Mapping[str, Any], field: str, title: str, t0: float, t1: float,
                       names: tuple[str, str], y_fmt=fmt, width: int = 520, floor: float = 1.0) -> str:
    """A per-window number (error rate, latency) for both versions over time."""
    series = {}
    for role in ("baseline", "candidate"):
        series[role] = [(w["end"] - t0, (w.get("versions", {}).get(role) or {}).get(field))
                        for w in rec.get("windows", [])]
    vals = [v for s in series.values() for _, v in s if v is not None]
    hi = max(vals) * 1.15 if vals and max(vals) > 0 else floor
    f = Frame(width, 200, 0.0, max(t1 - t0, 1.0), 0.0, hi)
    out = f.open(title, "chart versions")
    out += f.axes("seconds since start", y_fmt=y_fmt, x_fmt=_seconds)
    for role, color in (("baseline", BASELINE_COLOR), ("candidate", CANDIDATE_COLOR)):
        out += _polyline(f, series[role], color, f"series {role}")
        for x, v in series[role]:
            if v is not None:
                out.append(f'<circle cx="{f.x(x):.1f}" cy="{f.y(v):.1f}" r="2.5" fill="{color}"><title>{_esc(role)}: {_esc(y_fmt(v))}</title></circle>')
    if not vals:
        out.append(f'<text class="empty" x="{width / 2:.0f}" y="110" text-anchor="middle">no traffic recorded</text>')
    out += legend(list(zip(names, (BASELINE_COLOR, CANDIDATE_COLOR))), f.left + 8, f.top + 12)
    out.append("</svg>")
    return "\n".join(out)


# --- the page -----------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c3c8d4}
main{padding:16px 32px;max-width:1180px}
section.rollout{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:18px 22px;margin:18px 0}
section.rollout h2{margin:0 0 4px;font-size:19px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600;font-size:13px;margin-left:8px;vertical-align:2px}
.decision{border-left:5px solid #999;background:#fafafa;padding:8px 14px;margin:10px 0 14px}
.meta{color:#5b6475;margin:2px 0}
.grid{display:flex;flex-wrap:wrap;gap:10px}
svg.chart{background:#fff;border:1px solid #e3e6ec;border-radius:6px}
svg .title{font-weight:600;font-size:13px;fill:#1d2330}
svg .tick{font-size:11px;fill:#5b6475}
svg .empty{font-size:12px;fill:#9d9d9d}
svg .grid{stroke:#eceef2} svg .axis{stroke:#9aa1ae}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border-bottom:1px solid #e3e6ec;padding:4px 10px;text-align:left} th{color:#5b6475;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.v-Pass{color:#2e7d32;font-weight:600}.v-Fail{color:#c62828;font-weight:600}.v-Inconclusive{color:#777}
"""


def deciding_window(rec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The window the outcome was decided on: the last one analysed at or before the outcome, with data —
    from both versions when there is such a window (after a rollback, or in a log alone, the last windows
    may hold the baseline's traffic only)."""
    windows = [w for w in rec.get("windows", []) if w.get("distribution")]
    outcome = rec.get("outcome") or {}
    if outcome.get("time") is not None:
        before = [w for w in windows if w["time"] <= outcome["time"] + 1e-6]
        windows = before or windows
    both = [w for w in windows if any(w["distribution"].get("baseline") or ())
            and any(w["distribution"].get("candidate") or ())]
    windows = both or windows
    return windows[-1] if windows else None


def _decision_text(rec: Mapping[str, Any]) -> tuple[str, str]:
    o = rec.get("outcome") or {}
    phase = o.get("phase") or (rec.get("status") or {}).get("phase") or "Unknown"
    text = o.get("reason") or (rec.get("status") or {}).get("message") or ""
    if o.get("check"):
        text += f' (check {o["check"]}: value {fmt(o.get("value"))}, threshold {fmt(o.get("threshold"))})'
    return phase, text


def checks_table(rec: Mapping[str, Any]) -> str:
    last: dict[str, Mapping[str, Any]] = {}
    for w in rec.get("windows", []):
        for r in w.get("checks", []):
            last[r["name"]] = r
    rows = ["<table class='checks'><tr><th>check</th><th>metric</th><th>bound</th><th>action</th>"
            "<th>last value</th><th>threshold</th><th>verdict</th><th>samples</th></tr>"]
    for c in rec.get("checks", []):
        r = last.get(c["name"], {})
        v = r.get("verdict") or "–"
        rows.append(f"<tr><td>{_esc(c['name'])}</td><td>{_esc(c['metric'])} on {_esc(c['on'])}</td>"
                    f"<td>{_esc(c['bound'])}</td><td>{_esc(c['action'])}</td><td class='num'>{fmt(r.get('value'))}</td>"
                    f"<td class='num'>{fmt(r.get('threshold'))}</td><td class='v-{_esc(v)}'>{_esc(v)}</td>"
                    f"<td class='num'>{r.get('samples', '–')}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def transitions_table(rec: Mapping[str, Any], t0: float) -> str:
    rows = ["<table class='transitions'><tr><th>t</th><th>phase</th><th>step</th><th>candidate</th><th>why</th></tr>"]
    for e in rec.get("transitions", []):
        route = "shadow" if e.get("shadow") else f"{e.get('weight', 0)}%"
        why = e.get("reason") or ""
        if e.get("check"):
            why += f" [{e['check']} = {fmt(e.get('value'))} vs {fmt(e.get('threshold'))}]"
        rows.append(f"<tr><td class='num'>{e['time'] - t0:.1f}s</td><td>{_esc(e.get('phase'))}</td>"
                    f"<td class='num'>{_esc(e.get('step'))}</td><td>{_esc(route)}</td><td>{_esc(why)}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def rollout_section(rec: Mapping[str, Any], t0: float, t1: float) -> str:
    names = (f'baseline {rec["baseline"]["version"]}', f'candidate {rec["candidate"]["version"]}')
    phase, why = _decision_text(rec)
    color = OUTCOME_COLORS.get(phase, "#5b6475")
    win = deciding_window(rec)
    dist_title = "Predictions at the deciding window"
    if win is not None:
        dist_title += f" ({win['start'] - t0:.0f}s–{win['end'] - t0:.0f}s)"
    parts = [
        f'<section class="rollout" data-rollout="{_esc(rec["key"])}" data-outcome="{_esc(phase)}">',
        f'<h2>{_esc(rec["key"])}<span class="badge" style="background:{color}">{_esc(phase)}</span></h2>',
        f'<p class="meta">{_esc(names[0])} ({_esc(rec["baseline"]["url"])}) → {_esc(names[1])} '
        f'({_esc(rec["candidate"]["url"])}); steps: {_esc(" → ".join(rec.get("steps", [])))}; '
        f'analysis every {fmt(rec.get("interval"))}s</p>',
        f'<div class="decision" style="border-color:{color}"><b>Decision: {_esc(phase)}.</b> {_esc(why)}</div>',
        timeline_svg(rec, t0, t1),
        "<h3>Checks per window against their thresholds</h3>",
        '<div class="grid">' + "\n".join(check_svg(rec, c, t0, t1) for c in rec.get("checks", [])) + "</div>",
        checks_table(rec),
        "<h3>Versions</h3>",
        '<div class="grid">',
        distribution_svg(win.get("distribution") if win else None, dist_title, names),
        version_series_svg(rec, "error_rate", "Error rate per window", t0, t1, names,
                           y_fmt=lambda v: f"{v * 100:.3g}%", floor=0.01),
        version_series_svg(rec, "latency_p99_ms", "Latency p99 per window (ms)", t0, t1, names),
        version_series_svg(rec, "requests", "Requests per window", t0, t1, names),
        "</div>",
        "<h3>Transitions</h3>",
        transitions_table(rec, t0),
        "</section>",
    ]
    return "\n".join(parts)


def render_html(record: Mapping[str, Any]) -> str:
    """The whole report page for a run record (one file: inline CSS and SVG, no scripts)."""
    rollouts = record.get("rollouts", [])
    times = [record.get("started")] + [w["time"] for r in rollouts for w in r.get("windows", [])] \
        + [e["time"] for r in rollouts for e in r.get("transitions", [])]
    times = [t for t in times if isinstance(t, (int, float))]
    t0 = min(times) if times else 0.0
    t1 = max(times + [record.get("finished") or t0]) if times else 1.0
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t0)) if times else "unknown"
    outcomes = ", ".join(f'{r["key"]}: {_decision_text(r)[0]}' for r in rollouts)
    body = "\n".join(rollout_section(r, t0, t1) for r in rollouts) or "<p>No rollouts in this record.</p>"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>modelrollout report — {_esc(record.get("source", ""))}</title><style>{CSS}</style></head>'
            f'<body><header><h1>modelrollout report</h1><p>{_esc(record.get("source", ""))} · started {started}'
            f' · {t1 - t0:.0f}s · {_esc(outcomes)}</p></header><main>{body}</main></body></html>\n')


def write_report(record: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_html(record), encoding="utf-8")
    return path


# --- command line -------------------------------------------------------------------------------------

def load_record(path: Path, spec_path: Path | None = None) -> dict[str, Any]:
    """A run record from RUN.json, or rebuilt from a prediction log (.jsonl)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecordError(f"{path}: cannot read: {e.strerror}") from e
    first = text.lstrip()[:1]
    if path.suffix == ".jsonl" or (first == "{" and "\n{" in text.strip() and '"format"' not in text[:200]):
        from modelrollout import replay

        return replay.record_from_log(path, spec_path)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modelrollout report",
                                description="Render the HTML report of a run record or a prediction log.")
    p.add_argument("input", help="RUN.json written by `run --local --record` / the demo, or PREDICTIONS.jsonl")
    p.add_argument("-o", "--output", default="modelrollout-report.html", help="HTML file to write")
    p.add_argument("--spec", help="rollout YAML to replay a prediction log with (checks and decisions)")
    args = p.parse_args(argv)
    from policies.spec import SpecError

    try:
        record = load_record(Path(args.input), Path(args.spec) if args.spec else None)
    except (RecordError, SpecError) as e:
        print(f"modelrollout report: {e}", file=sys.stderr)
        return 2
    out = write_report(record, args.output)
    print(out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
