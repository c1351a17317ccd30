"""The report page: one self-contained HTML file (inline CSS and SVG, no scripts) of a run record."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from .svg import OUTCOME_COLORS, _esc, check_svg, distribution_svg, fmt, timeline_svg, version_series_svg


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
figure.check-chart{margin:0;padding:3px;border:3px solid transparent;border-radius:9px}
figure.check-chart.deciding{border-color:#c62828}
figure.check-chart figcaption{font-size:12px;font-weight:600;color:#c62828;padding:2px 4px}
.Warning{color:#b7791f;font-weight:600}
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


def deciding(rec: Mapping[str, Any]) -> str | None:
    """The check that decided the outcome (or the one a record names as deciding), if any."""
    return (rec.get("outcome") or {}).get("check") or rec.get("deciding")


def check_charts(rec: Mapping[str, Any], t0: float, t1: float) -> str:
    """Each check's chart; the deciding check's framed and captioned."""
    name = deciding(rec)
    out = []
    for c in rec.get("checks", []):
        mark = c["name"] == name
        cls, flag = (" deciding", ' data-deciding="true"') if mark else ("", "")
        out.append(f'<figure class="check-chart{cls}" data-check="{_esc(c["name"])}"{flag}>'
                   f'{check_svg(rec, c, t0, t1)}' + ("<figcaption>deciding check</figcaption>" if mark else "")
                   + "</figure>")
    return '<div class="grid">' + "\n".join(out) + "</div>"


def events_table(rec: Mapping[str, Any]) -> str:
    """The Kubernetes Events of a rollout in a cluster (kept by the apiserver for about an hour), at their
    own clock times (the apiserver stamps them to the second)."""
    rows = ["<table class='events'><tr><th>time (UTC)</th><th>type</th><th>reason</th><th>message</th>"
            "<th>count</th><th>from</th></tr>"]
    for e in rec.get("events") or []:
        t = time.strftime("%H:%M:%S", time.gmtime(e["time"])) if e.get("time") is not None else "–"
        rows.append(f"<tr><td class='num'>{t}</td><td class='{_esc(e.get('type'))}'>{_esc(e.get('type'))}</td>"
                    f"<td>{_esc(e.get('reason'))}</td><td>{_esc(e.get('message'))}</td>"
                    f"<td class='num'>{_esc(e.get('count'))}</td><td>{_esc(e.get('source'))}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def inputs_table(rec: Mapping[str, Any]) -> str:
    """spec.expectations and, when the last window's inputs broke them, each broken expectation with its
    failing share and examples (as the privacy settings keep them)."""
    exp = rec.get("expectations")
    entry = next((c for c in (rec.get("status") or {}).get("checks") or []
                  if isinstance(c, Mapping) and c.get("name") == "input-expectations"), None)
    if not exp and entry is None:
        return ""
    out = ["<h3>Input expectations</h3>"]
    if exp:
        rows = exp.get("rows") or {}
        bounds = [f"{k} {rows[k]}" for k in ("min", "max") if rows.get(k) is not None]
        out.append("<table class='inputs'><tr><th>feature</th><th>expected</th></tr>"
                   + (f"<tr><td>rows per window</td><td>{_esc(', '.join(bounds))}</td></tr>" if bounds else "")
                   + "".join(f"<tr><td>{_esc(f['name'])}</td><td>{_esc(f['expect'])}</td></tr>"
                             for f in exp.get("features") or []) + "</table>")
    failing = (((entry or {}).get("evidence") or {}).get("inputs") or {}).get("failing") or []
    if entry is not None and entry.get("verdict") == "Fail" and failing:
        out.append("<p class='meta'>Broken in the last analysed window (the models were not judged on it):</p>"
                   "<table class='inputs-broken'><tr><th>feature</th><th>expectation</th><th>failing</th>"
                   "<th>tolerated</th><th>examples</th></tr>")
        for b in failing:
            share = b.get("fraction")
            shown = f"{share:.1%}" if isinstance(share, (int, float)) else f"{b.get('value')} rows"
            tol = b.get("tolerated")
            tol_shown = f"{tol:.1%}" if share is not None and isinstance(tol, (int, float)) else str(tol)
            out.append(f"<tr><td>{_esc(b.get('feature') or '—')}</td><td>{_esc(b.get('expectation'))}</td>"
                       f"<td class='num'>{_esc(shown)}</td><td class='num'>{_esc(tol_shown)}</td>"
                       f"<td>{_esc(', '.join(b.get('examples') or []))}</td></tr>")
        out.append("</table>")
    elif entry is not None:
        out.append(f"<p class='meta'>Last window: {_esc(entry.get('verdict') or 'not analysed yet')}.</p>")
    return "\n".join(out)


def after_promotion(rec: Mapping[str, Any]) -> str:
    """`spec.postPromotion` and what `status.postPromotion` says: each check's value for the promoted version
    against the previous stable's, on the labels since the promotion."""
    pp, st = rec.get("post_promotion"), (rec.get("status") or {}).get("postPromotion")
    if not pp and not isinstance(st, Mapping):
        return ""
    out = ["<h3>After the promotion (delayed labels)</h3>"]
    if pp:
        out.append(f"<p class='meta'>postPromotion: judged for {fmt(pp['duration'])}s after the promotion, every "
                   f"{fmt(pp['interval'])}s, minSamples {pp['min_samples']}, failureLimit {pp['failure_limit']}, "
                   f"action {_esc(pp['action'])}; checks: "
                   + _esc(", ".join(f"{c['name']} ({c['metric']}, {c['bound']})" for c in pp["checks"])) + "</p>")
    if isinstance(st, Mapping):
        prev, prom = st.get("previous") or {}, st.get("promoted") or {}
        out.append(f"<p class='meta' data-post-promotion='{_esc(st.get('state'))}'><b>{_esc(st.get('state'))}</b>: "
                   f"{_esc(prom.get('version'))} against the previous stable {_esc(prev.get('version'))}, "
                   f"{_esc(st.get('windows'))} window(s). {_esc(st.get('message'))}</p>")
        rows = ["<table class='post-promotion'><tr><th>check</th><th>metric</th><th>promoted</th><th>previous "
                "stable</th><th>threshold</th><th>verdict</th><th>failures</th><th>labels</th></tr>"]
        for c in st.get("checks") or []:
            if not isinstance(c, Mapping):
                continue
            v = c.get("verdict") or "–"
            prev_value = (c.get("evidence") or {}).get("previousValue") if isinstance(c.get("evidence"), Mapping) \
                else None
            rows.append(f"<tr><td>{_esc(c.get('name'))}</td><td>{_esc(c.get('metric'))}</td>"
                        f"<td class='num'>{fmt(c.get('value'))}</td><td class='num'>{fmt(prev_value)}</td>"
                        f"<td class='num'>{fmt(c.get('threshold'))}</td><td class='v-{_esc(v)}'>{_esc(v)}</td>"
                        f"<td class='num'>{_esc(c.get('failures'))}</td>"
                        f"<td class='num'>{_esc(c.get('samples'))}</td></tr>")
        rows.append("</table>")
        out += rows
    return "\n".join(out)


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
        f'analysis every {fmt(rec.get("interval"))}s'
        + (f'; fallback: {_esc(rec["fallback"])}' if rec.get("fallback") else "") + '</p>',
        f'<div class="decision" style="border-color:{color}"><b>Decision: {_esc(phase)}.</b> {_esc(why)}</div>',
        timeline_svg(rec, t0, t1),
        "<h3>Checks per window against their thresholds</h3>",
        check_charts(rec, t0, t1),
        checks_table(rec),
        inputs_table(rec),
        "<h3>Versions</h3>",
        '<div class="grid">',
        distribution_svg(win.get("distribution") if win else None, dist_title, names),
        version_series_svg(rec, "error_rate", "Error rate per window", t0, t1, names,
                           y_fmt=lambda v: f"{v * 100:.3g}%", floor=0.01),
        version_series_svg(rec, "latency_p99_ms", "Latency p99 per window (ms)", t0, t1, names),
        version_series_svg(rec, "requests", "Requests per window", t0, t1, names),
        "</div>",
        after_promotion(rec),
        "<h3>Transitions</h3>",
        transitions_table(rec, t0),
    ]
    if rec.get("events") is not None:
        parts += ["<h3>Events</h3>", events_table(rec) if rec["events"] else "<p class='meta'>No Events "
                  "(the apiserver keeps them for about an hour).</p>"]
    parts.append("</section>")
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
