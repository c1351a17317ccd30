"""How `kubectl modelrollout` shows a rollout: rich tables built from the CR alone (pure, no I/O).

The status is read through `policies.status.RolloutStatus.from_status`, the controller's own reader, so
the plugin never shows a field the controller would not act on; the spec is parsed with
`policies.spec.parse_rollout` for the step list, falling back to the raw steps when the spec is invalid.
"""
from __future__ import annotations

from typing import Any, Mapping

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from policies.planning import describe
from policies.spec import SpecError, parse_rollout
from policies.status import Phase, RolloutStatus, Verdict, format_left, parse_time, rfc3339

PHASE_STYLE = {
    Phase.PENDING: "dim", Phase.VERIFYING: "cyan", Phase.SHADOWING: "cyan", Phase.PROGRESSING: "cyan", Phase.INTERLEAVING: "cyan",
    Phase.PAUSED: "yellow", Phase.PROMOTED: "green", Phase.ROLLED_BACK: "red", Phase.FAILED: "bold red",
    Phase.STABLE: "green",
}
VERDICT_MARK = {Verdict.PASS: ("✔", "green"), Verdict.FAIL: ("✖", "red"), Verdict.INCONCLUSIVE: ("?", "yellow")}


def age(then: float | None, now: float) -> str:
    """kubectl-style age: 45s, 12m, 3h, 2d."""
    if then is None:
        return "-"
    s = max(0.0, now - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


def number(v: float | None) -> str:
    if v is None:
        return "-"
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"


def _steps(obj: Mapping[str, Any]) -> list[str]:
    """Human labels of the spec's steps (raw fallback if the spec does not parse)."""
    try:
        return [s.describe() for s in parse_rollout(obj).spec.steps]
    except SpecError:
        raw = ((obj.get("spec") or {}).get("strategy") or {}).get("steps") or []
        return [", ".join(map(str, s)) if isinstance(s, dict) else str(s) for s in raw]


def _status(obj: Mapping[str, Any]) -> RolloutStatus:
    return RolloutStatus.from_status(obj.get("status"))


def step_left(obj: Mapping[str, Any], now: float) -> float | None:
    """Seconds left in the current step as of `now` (<= 0: its duration has passed; None: not timed).

    Computed here from the status's facts, `stepStartedAt` + `stepDurationSeconds` (the controller writes
    no clock text); a status from a controller that did not write the duration falls back to the spec's."""
    st = _status(obj)
    left = st.step_left(now)
    if left is not None or st.step_started_at is None or st.phase.is_terminal or not obj.get("status"):
        return left
    try:
        steps = parse_rollout(obj).spec.steps
    except SpecError:
        return None
    if 0 <= st.current_step < len(steps) and steps[st.current_step].duration is not None:
        return st.step_started_at + steps[st.current_step].duration - now
    return None


def left_text(left: float | None) -> str:
    """`14m left`, `ended 3m ago` or `-`."""
    if left is None:
        return "-"
    return f"{format_left(left)} left" if left > 0 else f"ended {format_left(-left)} ago"


def _phase_text(st: RolloutStatus, has_status: bool) -> Text:
    if not has_status:
        return Text("Pending (not yet seen by a controller)", style="dim")
    text = Text(st.phase.value, style=PHASE_STYLE[st.phase])
    if st.phase is Phase.PAUSED and st.pause_reason:
        text.append(f" ({st.pause_reason})", style="yellow")
    return text


def weight_text(st: RolloutStatus) -> str:
    r = st.routing
    parts = [f"candidate {r.candidate_weight}%"]
    if r.shadow:
        parts.append("shadow on")
    if r.interleave:
        parts.append("interleave on")
    return ", ".join(parts)


def _version_line(ref: Any) -> str:
    ref = ref if isinstance(ref, Mapping) else {}
    return f"{ref.get('version', '?')}  {ref.get('url', '')}".rstrip()


def summary(obj: Mapping[str, Any], now: float) -> Table:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    st = _status(obj)
    steps = _steps(obj)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Name", f"{meta.get('namespace', '')}/{meta.get('name', '')}")
    grid.add_row("Phase", _phase_text(st, bool(obj.get("status"))))
    if st.message:
        grid.add_row("Message", st.message)
    written = spec.get("baseline") if isinstance(spec.get("baseline"), Mapping) else {}
    if st.stable is not None:
        same = (written.get("version"), written.get("url")) == (st.stable.version, st.stable.url)
        grid.add_row("Stable", f"{st.stable.version}  {st.stable.url}  (promoted; serves when no rollout runs)")
        grid.add_row("Baseline", f"{st.stable.version}  {st.stable.url}  (the stable" + (
            ")" if same else f"; spec.baseline says {_version_line(written)})"))
    else:
        grid.add_row("Stable", "- (nothing promoted yet: spec.baseline serves)")
        grid.add_row("Baseline", _version_line(written))
    if spec.get("candidate"):
        grid.add_row("Candidate", _version_line(spec.get("candidate")))
    else:
        grid.add_row("Candidate", "- (none: steady state, 100% to the stable)")
    if st.revision:
        grid.add_row("Revision", st.revision)
    step = str(st.current_step)
    if 0 <= st.current_step < len(steps):
        step += f"  {steps[st.current_step]}  ({st.current_step + 1} of {len(steps)})"
    if st.step_started_at is not None:
        left = step_left(obj, now)
        step += f"  (started {age(st.step_started_at, now)} ago" + (f", {left_text(left)})" if left is not None
                                                                    else ")")
    grid.add_row("Step", step)
    grid.add_row("Routing", weight_text(st))
    if st.drift:
        grid.add_row("Drift", st.drift)
    if st.last_analysis_at is not None:
        grid.add_row("Analysed", f"{age(st.last_analysis_at, now)} ago")
    if isinstance(spec.get("fallback"), Mapping):
        fb = spec["fallback"]
        grid.add_row("Fallback", str(fb["url"]) if fb.get("url") else "static answer")
    pp = st.post_promotion
    if pp is not None:
        text = f"{pp.state}: {pp.promoted.version} against the previous stable {pp.previous.version}"
        if pp.state == "Judging":
            text += f" ({left_text(pp.until - now)}; {pp.windows} window(s))"
        checks = "; ".join(f"{c.name} {c.verdict.value if c.verdict else '-'} {_num(c.value)} vs "
                           f"{_num((c.evidence or {}).get('previousValue'))}" for c in pp.checks)
        grid.add_row("After promotion", text + (f"; {checks}" if checks else ""))
    return grid


def _num(v: Any) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:.4g}"


def _short_left(left: float | None) -> str:
    return "-" if left is None else format_left(max(0.0, left))


def steps_table(obj: Mapping[str, Any]) -> Table:
    st = _status(obj)
    table = Table(title="Steps", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("", "#", "step", "state"):
        table.add_column(col)
    for i, label in enumerate(_steps(obj)):
        if not obj.get("status"):
            state = Text("pending", style="dim")
        elif st.phase is Phase.PROMOTED:
            state = Text("done", style="green")
        elif st.phase is Phase.STABLE:
            state = Text("for the next candidate", style="dim")
        elif i < st.current_step:
            state = Text("done", style="green")
        elif i > st.current_step:
            state = Text("pending", style="dim")
        elif st.phase in (Phase.ROLLED_BACK, Phase.FAILED):
            state = Text(st.phase.value, style="red")
        elif st.phase is Phase.PAUSED:
            state = Text("paused", style="yellow")
        else:
            state = Text("running", style="cyan")
        current = (i == st.current_step and st.phase not in (Phase.PROMOTED, Phase.STABLE)
                   and bool(obj.get("status")))
        table.add_row("▶" if current else "", str(i), label, state)
    return table


def _recent(check, values: int = 4, marks: int = 10) -> Text:
    """One mark per window of the last `marks` (oldest first), then the last few values."""
    text = Text()
    for w in check.recent[-marks:]:
        mark, style = VERDICT_MARK[w.verdict]
        text.append(mark, style=style)
    tail = [number(w.value) for w in check.recent[-values:]]
    if tail:
        text.append("  " + " → ".join(tail), style="dim")
    return text


def checks_table(obj: Mapping[str, Any]) -> Table:
    st = _status(obj)
    table = Table(title="Checks", title_justify="left", box=box.SIMPLE_HEAD)
    show_reason = any(c.reason and c.verdict is not Verdict.PASS for c in st.checks)
    cols = ["name", "metric", "value", "threshold", "verdict", "samples", "failures", "action", "recent windows"]
    for col in cols + (["reason"] if show_reason else []):
        table.add_column(col, justify="right" if col in ("value", "threshold", "samples", "failures") else "left")
    for c in st.checks:
        verdict = Text("-")
        if c.verdict is not None:
            mark, style = VERDICT_MARK[c.verdict]
            verdict = Text(f"{mark} {c.verdict.value}", style=style)
        row = [c.name, c.metric or "prometheus", number(c.value), number(c.threshold), verdict,
               str(c.samples), str(c.failures), c.action, _recent(c)]
        if show_reason:
            row.append(c.reason if c.verdict is not Verdict.PASS else "")
        table.add_row(*row)
    return table


def evidence_table(obj: Mapping[str, Any]) -> Table | None:
    """Per check with evidence: its sequential test (and whether it decided), the Holm adjustment of its
    p-value, and the plan for the step (samples and time to tell the tolerance from 1.5x of it)."""
    st = _status(obj)
    rows = []
    for c in st.checks:
        ev = c.evidence or {}
        seq, holm, plan = ev.get("sequential"), ev.get("holm"), ev.get("plan")
        if not (seq or holm or plan):
            continue
        seq_text = "-"
        if isinstance(seq, Mapping):
            bar = 1 / seq["alpha"] if seq.get("alpha") else None
            decided = seq.get("decided")
            seq_text = (f"{decided}: {seq.get('decidedReason', '')}" if decided else
                        f"undecided: against {number(seq.get('eFail'))}, for {number(seq.get('ePass'))} "
                        f"(decisive at {number(bar)})")
        holm_text = (f"p {number(holm.get('pValue'))} → {number(holm.get('adjustedPValue'))} over "
                     f"{len(holm.get('family') or [])}" if isinstance(holm, Mapping) else "-")
        plan_text = "-"
        if isinstance(plan, Mapping):
            try:
                plan_text = describe(plan)
            except (KeyError, TypeError, ValueError):     # a hand-edited status: show it as it is
                plan_text = str(plan)
        rows.append((c.name, seq_text, holm_text, plan_text))
    if not rows:
        return None
    table = Table(title="Evidence", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("check", "sequential", "holm", "plan"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def conditions_table(obj: Mapping[str, Any], now: float) -> Table:
    st = _status(obj)
    table = Table(title="Conditions", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("type", "status", "reason", "age", "message"):
        table.add_column(col)
    for c in st.conditions:
        table.add_row(c.type, c.status, c.reason, age(c.last_transition_time or None, now), c.message)
    return table


def history_table(obj: Mapping[str, Any], now: float, limit: int | None = None) -> Table:
    st = _status(obj)
    entries = st.history if limit is None else st.history[-limit:]
    table = Table(title="History", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("time", "age", "step", "action", "reason"):
        table.add_column(col)
    for h in entries:
        table.add_row(rfc3339(h.time) if h.time else "-", age(h.time or None, now), str(h.step), h.action,
                      h.reason)
    return table


def status_view(obj: Mapping[str, Any], now: float, history: int = 10) -> Group:
    """Everything `status NAME` shows: summary, steps, checks, conditions and the recent history."""
    st = _status(obj)
    parts: list = [summary(obj, now), steps_table(obj)]
    if st.checks:
        parts.append(checks_table(obj))
        evidence = evidence_table(obj)
        if evidence is not None:
            parts.append(evidence)
    if st.conditions:
        parts.append(conditions_table(obj, now))
    if st.history:
        parts.append(history_table(obj, now, limit=history))
    return Group(*parts)


def list_table(items: list[Mapping[str, Any]], now: float, all_namespaces: bool = False) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    cols = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "PHASE", "STEP", "WEIGHT", "DRIFT", "STEP LEFT",
                                                        "BASELINE", "CANDIDATE", "AGE", "MESSAGE"]
    for col in cols:
        table.add_column(col)
    for obj in items:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        st = _status(obj)
        has_status = bool(obj.get("status"))
        row = [meta.get("namespace", "")] if all_namespaces else []
        row += [
            meta.get("name", ""),
            Text(st.phase.value if has_status else "-", style=PHASE_STYLE[st.phase] if has_status else ""),
            f"{st.current_step}" if has_status else "-",
            f"{st.routing.candidate_weight}%" + (" +shadow" if st.routing.shadow else ""),
            st.drift or "-",
            _short_left(step_left(obj, now)),
            str((spec.get("baseline") or {}).get("version", "")),
            str((spec.get("candidate") or {}).get("version", "")),
            age(parse_time(meta.get("creationTimestamp")), now),
            st.message,
        ]
        table.add_row(*row)
    return table
