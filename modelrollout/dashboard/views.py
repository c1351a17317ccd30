"""The dashboard's two views as HTML fragments: the list of rollouts and one rollout's detail.

Pure (no I/O): they take the ModelRollout documents and Events the hub holds. The detail is drawn from the
same run record as `kubectl modelrollout report` (`modelrollout.report.cluster.rollout_record`) with the
report's own SVG charts and tables (`modelrollout.report.svg`, `.page`), so the two never disagree.
Times the viewer must count down (the step's time left, ages) are sent as `data-until` / `data-since`
epoch seconds and ticked by the page's script.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from modelrollout.report.cluster import record_of, rollout_record
from modelrollout.report.page import check_charts, checks_table, events_table, transitions_table
from modelrollout.report.svg import _esc, fmt, timeline_svg
from policies.api import Phase
from policies.spec import SpecError, parse_rollout
from policies.status import RolloutStatus, parse_time

VERBS = (("promote", False, "Promote", "advance to the next step"),
         ("promote", True, "Promote to 100%", "skip the remaining steps and analysis"),
         ("pause", False, "Pause", "hold the current step"),
         ("resume", False, "Resume", "continue a paused rollout"),
         ("abort", False, "Abort", "roll back now: candidate weight 0, mirroring off"),
         ("retry", False, "Retry", "restart a rolled back or aborted rollout from step 0"))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def key_of(obj: Mapping[str, Any]) -> str:
    return f"{_meta(obj).get('namespace', '')}/{_meta(obj).get('name', '')}"


def _spec(obj: Mapping[str, Any]):
    try:
        return parse_rollout(obj).spec
    except SpecError:
        return None


def phase_badge(obj: Mapping[str, Any]) -> str:
    st = RolloutStatus.from_status(obj.get("status"))
    if not obj.get("status"):
        return '<span class="phase" data-phase="">not yet seen by a controller</span>'
    extra = f" ({_esc(st.pause_reason)})" if st.phase is Phase.PAUSED and st.pause_reason else ""
    return f'<span class="phase p-{_esc(st.phase.value)}" data-phase="{_esc(st.phase.value)}">{_esc(st.phase.value)}{extra}</span>'


def step_text(obj: Mapping[str, Any], now_left: bool = True) -> str:
    """`2/4 canary 5% for 15m` (and the time left in it, counted down by the page), `done` once Promoted."""
    st, spec = RolloutStatus.from_status(obj.get("status")), _spec(obj)
    if not obj.get("status"):
        return "–"
    if st.phase is Phase.PROMOTED:
        return "done"
    if spec is None or not 0 <= st.current_step < len(spec.steps):
        return str(st.current_step + 1)
    step = spec.steps[st.current_step]
    text = f"{st.current_step + 1}/{len(spec.steps)} {_esc(step.describe())}"
    if now_left and st.phase.is_active and step.duration is not None and st.step_started_at is not None:
        text += f' <span class="left" data-until="{st.step_started_at + step.duration:.3f}"></span>'
    return text


def weight_text(obj: Mapping[str, Any]) -> str:
    r = RolloutStatus.from_status(obj.get("status")).routing
    text = f"{r.candidate_weight}%"
    if r.shadow:
        text += " +shadow"
    if r.interleave:
        text += " interleaved"
    return text


def worst_check(obj: Mapping[str, Any]) -> str:
    st = RolloutStatus.from_status(obj.get("status"))
    if not st.drift:
        return "–"
    c = st.check(st.drift.split(" ", 1)[0])
    verdict = c.verdict.value if c is not None and c.verdict is not None else ""
    return f'<span class="v-{_esc(verdict)}" data-verdict="{_esc(verdict)}">{_esc(st.drift)}</span>'


def _since(t: float | None) -> str:
    return f'<span class="age" data-since="{t:.3f}"></span>' if t is not None else "–"


def list_view(objs: Sequence[Mapping[str, Any]], where: str, all_namespaces: bool) -> str:
    """The table of rollouts: phase, step, weight, worst check and age, each name a link to its detail."""
    if not objs:
        return f'<h1>Rollouts</h1><p class="empty" id="empty">No ModelRollouts in {_esc(where)}.</p>'
    head = (["namespace"] if all_namespaces else []) + ["name", "phase", "step", "weight", "worst check",
                                                         "baseline → candidate", "age"]
    rows = ["<table class='rollouts' id='rollouts'><thead><tr>" + "".join(f"<th scope='col'>{h}</th>" for h in head)
            + "</tr></thead><tbody>"]
    for o in objs:
        meta, spec = _meta(o), o.get("spec") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        phase = (o.get("status") or {}).get("phase") or ""
        cells = [f"<td>{_esc(ns)}</td>"] if all_namespaces else []
        cells += [f'<td><a href="/rollouts/{_esc(ns)}/{_esc(name)}" data-focus="row:{_esc(ns)}/{_esc(name)}">'
                  f'{_esc(name)}</a></td>',
                  f"<td>{phase_badge(o)}</td>", f"<td>{step_text(o)}</td>", f"<td class='num'>{weight_text(o)}</td>",
                  f"<td>{worst_check(o)}</td>",
                  f"<td>{_esc((spec.get('baseline') or {}).get('version', ''))} → "
                  f"{_esc((spec.get('candidate') or {}).get('version', ''))}</td>",
                  f"<td>{_since(parse_time(meta.get('creationTimestamp')))}</td>"]
        rows.append(f'<tr data-rollout="{_esc(ns)}/{_esc(name)}" data-phase="{_esc(phase)}">{"".join(cells)}</tr>')
    rows.append("</tbody></table>")
    return f'<h1>Rollouts <span class="count">({len(objs)})</span></h1>' + "\n".join(rows)


def list_rows(objs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The list as JSON (`GET /api/rollouts`)."""
    out = []
    for o in objs:
        st = RolloutStatus.from_status(o.get("status"))
        out.append({"namespace": _meta(o).get("namespace"), "name": _meta(o).get("name"),
                    "phase": st.phase.value if o.get("status") else None, "step": st.current_step,
                    "weight": st.routing.candidate_weight, "shadow": st.routing.shadow, "worstCheck": st.drift,
                    "created": _meta(o).get("creationTimestamp")})
    return out


def actions_bar(obj: Mapping[str, Any], refusals: Mapping[tuple[str, bool], str | None]) -> str:
    """One button per command; a command the controller would refuse now is disabled, with the reason."""
    ns, name = _meta(obj).get("namespace", ""), _meta(obj).get("name", "")
    buttons = []
    for verb, full, label, help_ in VERBS:
        why = refusals.get((verb, full))
        ident = f"{verb}{'-full' if full else ''}"
        title = f"{help_}" + (f" — not now: {why}" if why else "")
        buttons.append(f'<button type="button" class="action{" danger" if verb == "abort" else ""}" '
                       f'data-verb="{verb}" data-full="{"true" if full else "false"}" data-focus="action:{ident}" '
                       f'data-rollout="{_esc(ns)}/{_esc(name)}" title="{_esc(title)}"'
                       f'{" disabled" if why else ""}>{_esc(label)}</button>')
    return ('<section class="actions" aria-label="Commands"><h2>Commands</h2><div class="buttons">'
            + "".join(buttons) + "</div></section>")


def _steps_list(obj: Mapping[str, Any]) -> str:
    st, spec = RolloutStatus.from_status(obj.get("status")), _spec(obj)
    if spec is None:
        return ""
    items = []
    for i, step in enumerate(spec.steps):
        if not obj.get("status") or i > st.current_step:
            state = "pending"
        elif st.phase is Phase.PROMOTED or i < st.current_step:
            state = "done"
        elif st.phase in (Phase.ROLLED_BACK, Phase.FAILED):
            state = st.phase.value
        elif st.phase is Phase.PAUSED:
            state = "paused"
        else:
            state = "running"
        current = ' aria-current="step"' if state in ("running", "paused") else ""
        items.append(f'<li class="step s-{_esc(state)}" data-state="{_esc(state)}"{current}>'
                     f'<span class="n">{i + 1}</span> {_esc(step.describe())} <span class="state">{_esc(state)}</span></li>')
    return '<ol class="steps" aria-label="Steps">' + "".join(items) + "</ol>"


def _conditions(st: RolloutStatus) -> str:
    rows = ["<table class='conditions'><tr><th>type</th><th>status</th><th>reason</th><th>message</th></tr>"]
    for c in st.conditions:
        rows.append(f"<tr><td>{_esc(c.type)}</td><td>{_esc(c.status)}</td><td>{_esc(c.reason)}</td>"
                    f"<td>{_esc(c.message)}</td></tr>")
    return "".join(rows) + "</table>"


def detail_view(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                refusals: Mapping[tuple[str, bool], str | None] | None,
                now: float | None = None) -> tuple[str, dict[str, Any]]:
    """(the HTML of one rollout's page, its run record). `refusals`: None = read-only (no buttons); the
    charts of a rollout still running reach `now` (when given), those of a finished one its last change."""
    rec = rollout_record(obj, events)
    times = [e["time"] for e in rec["transitions"]] + [w["time"] for w in rec["windows"]]
    st = RolloutStatus.from_status(obj.get("status"))
    latest = max(times + [st.last_analysis_at or 0.0]) if times else 0.0
    record = record_of([rec], rec["key"], now if now is not None and not st.phase.is_terminal else latest)
    t0, t1 = record["started"], max(record["finished"], record["started"] + 1.0)
    meta, spec = _meta(obj), obj.get("spec") or {}
    b, c = spec.get("baseline") or {}, spec.get("candidate") or {}
    deciding = rec.get("deciding")
    outcome = rec.get("outcome") or {}
    decided = ""
    if outcome.get("check"):
        decided = (f'<p class="decided" id="decided">Decided by <b>{_esc(outcome["check"])}</b>: value '
                   f'{fmt(outcome.get("value"))}, threshold {fmt(outcome.get("threshold"))}</p>')
    elif deciding:
        decided = f'<p class="decided" id="decided">Failing now: <b>{_esc(deciding)}</b></p>'
    kept = rec["kept"]
    parts = [
        '<p class="crumbs"><a href="/" data-focus="back">← all rollouts</a></p>',
        f'<h1 id="title" data-rollout="{_esc(rec["key"])}">{_esc(meta.get("name", ""))} '
        f'<span class="ns">{_esc(meta.get("namespace", ""))}</span> {phase_badge(obj)}</h1>',
        f'<p class="message" id="message">{_esc(st.message) or "&nbsp;"}</p>',
        decided,
        '<dl class="facts">'
        f'<dt>baseline</dt><dd>{_esc(b.get("version", "?"))} <span class="url">{_esc(b.get("url", ""))}</span></dd>'
        f'<dt>candidate</dt><dd>{_esc(c.get("version", "?"))} <span class="url">{_esc(c.get("url", ""))}</span></dd>'
        f'<dt>step</dt><dd id="step">{step_text(obj)}</dd>'
        f'<dt>routing</dt><dd id="weight">candidate {weight_text(obj)}</dd>'
        f'<dt>worst check</dt><dd>{worst_check(obj)}</dd>'
        f'<dt>last analysis</dt><dd>{_since(st.last_analysis_at)}</dd></dl>',
    ]
    if refusals is not None:
        parts.append(actions_bar(obj, refusals))
    parts += [
        _steps_list(obj),
        "<h2>Phase and candidate traffic</h2>",
        timeline_svg(rec, t0, t1),
        f"<h2>Checks per window against their thresholds</h2><p class='meta'>{kept['windows']} windows per "
        "check (the status keeps the last 60). Dots: each window's value, coloured by its verdict (Pass, Fail, "
        "Inconclusive); hollow on the axis: a window without a value; dashed: the threshold.</p>",
        check_charts(rec, t0, t1) if rec["checks"] else "<p class='meta'>This rollout has no checks.</p>",
        checks_table(rec),
        "<h2>Conditions</h2>", _conditions(st),
        f"<h2>History</h2><p class='meta'>Times in seconds since {_esc(_clock(t0))}; the status keeps the last "
        "50 transitions.</p>", transitions_table(rec, t0),
        "<h2>Events</h2>", events_table(rec) if rec["events"] else
        "<p class='meta'>No Events (the apiserver keeps them for about an hour).</p>",
    ]
    return "\n".join(p for p in parts if p), rec


def _clock(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
