"""The report's charts: inline SVG, drawn from a run record."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from policies.api import Phase


BASELINE_COLOR = "#4c78a8"
CANDIDATE_COLOR = "#f58518"
VERDICT_COLORS = {"Pass": "#54a24b", "Fail": "#e45756", "Inconclusive": "#9d9d9d"}
PHASE_COLORS = {
    Phase.PENDING: "#e6e6e6", Phase.VERIFYING: "#dde9d5", Phase.SHADOWING: "#d8e6f3", Phase.PROGRESSING: "#fde3c8", Phase.INTERLEAVING: "#e5d8f0",
    Phase.PAUSED: "#fff1a8", Phase.PROMOTED: "#cfe8c9", Phase.ROLLED_BACK: "#f7c6c6", Phase.FAILED: "#f7c6c6", Phase.STABLE: "#cfe8c9",
}
OUTCOME_COLORS = {Phase.PROMOTED: "#2e7d32", Phase.ROLLED_BACK: "#c62828", Phase.FAILED: "#c62828", Phase.PAUSED: "#b7791f"}


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
        w = 100.0 if e.get("phase") == Phase.PROMOTED else float(e.get("weight") or 0)
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
    """One check's value per window (dots colored by verdict; hollow on the axis for a window without a
    value) against its threshold (dashed)."""
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
        n = "–" if n is None else n
        if v is None:   # a window judged without a value (too few samples, no data): hollow, on the axis
            out.append(f'<circle class="point no-value" data-verdict="{_esc(verdict)}" cx="{f.x(x):.1f}"'
                       f' cy="{f.plot_bottom - 4:.1f}" r="3.5" fill="none" stroke="{VERDICT_COLORS.get(verdict, "#999")}"'
                       f' stroke-width="1.5"><title>{_esc(f"{name}: no value ({verdict}, n={n})")}</title></circle>')
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
