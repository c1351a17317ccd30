"""A run record (the report's format, `report/run.py`) of a rollout in a cluster, from its CR and Events.

Local mode records every window as it happens; in a cluster the controller keeps the same facts in the
rollout's status (docs/contracts.md, "ModelRollout resource"): each check's last windows
(`checks[].recent`: value, threshold, verdict, samples) and the transitions (`history[]`: phase, routing
and the deciding check). `rollout_record` turns one ModelRollout document into the record of one rollout,
so the report's page and charts (`page.py`, `svg.py`) draw it as they draw a local run; the dashboard
(`modelrollout.dashboard`) draws from the same record. Pure: the caller fetches the object, its Events and,
when the routers are reachable, their summaries (`add_router_summaries`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from policies.api import Phase, Verdict
from policies.machine import step_routing
from policies.spec import SpecError, parse_rollout
from policies.status import HistoryEntry, RolloutStatus, parse_time

from .run import FORMAT, _finite, distribution, prediction_values, rollout_header, version_digest

_ACTION_PHASE = {"Promoted": Phase.PROMOTED, "RolledBack": Phase.ROLLED_BACK, "Paused": Phase.PAUSED,
                 "InvalidSpec": Phase.FAILED}
_STEP_PHASE = {"golden": Phase.VERIFYING, "shadow": Phase.SHADOWING, "canary": Phase.PROGRESSING, "interleave": Phase.INTERLEAVING,
               "pause": Phase.PAUSED}


def _header(obj: Mapping[str, Any], st: RolloutStatus) -> tuple[dict[str, Any], Any]:
    """The record's static part from the parsed spec; from the raw spec and the status if it is invalid."""
    try:
        spec = parse_rollout(obj).spec
    except SpecError:
        spec = None
    if spec is not None:
        rec = rollout_header(spec)
    else:
        meta, raw = obj.get("metadata") or {}, obj.get("spec") or {}
        ref = lambda d: {"version": str((d or {}).get("version", "?")), "url": str((d or {}).get("url", ""))}  # noqa: E731
        rec = {"key": f"{meta.get('namespace', '')}/{meta.get('name', '')}", "name": meta.get("name", ""),
               "namespace": meta.get("namespace", ""), "baseline": ref(raw.get("baseline")),
               "candidate": ref(raw.get("candidate")), "output_kind": None, "interval": None, "steps": [],
               "checks": [], "windows": [], "transitions": [], "outcome": None, "status": {}}
    known = {c["name"] for c in rec["checks"]}
    for c in st.checks:          # checks the status still holds but the spec no longer names
        if c.name not in known:
            rec["checks"].append({"name": c.name, "metric": c.metric or "prometheus", "on": "prediction",
                                  "action": c.action, "bound": ""})
    return rec, spec


def _phase_routing(h: HistoryEntry, spec: Any) -> tuple[str | None, int, bool]:
    """Phase, candidate weight and shadow right after a transition; inferred from the step for entries an
    older controller wrote without them."""
    phase = h.phase
    routing = h.routing
    if phase is None:
        phase = _ACTION_PHASE.get(h.action)
        if phase is None and spec is not None and 0 <= h.step < len(spec.steps):
            phase = _STEP_PHASE[spec.steps[h.step].kind]
    if routing is None:
        if phase is Phase.PROMOTED:
            return phase.value, 100, False
        if phase in (Phase.ROLLED_BACK, Phase.FAILED) or spec is None:
            return (phase.value if phase else None), 0, False
        routing = step_routing(spec.steps, min(h.step, len(spec.steps) - 1))
    weight = 100 if phase is Phase.PROMOTED else routing.candidate_weight
    return (phase.value if phase else None), weight, routing.shadow


def _transitions(st: RolloutStatus, spec: Any) -> list[dict[str, Any]]:
    out = []
    for h in st.history:
        phase, weight, shadow = _phase_routing(h, spec)
        c = h.check
        out.append({"time": h.time, "phase": phase, "step": h.step, "weight": weight, "shadow": shadow,
                    "action": h.action, "reason": h.reason, "check": c.name if c else None,
                    "value": _finite(c.value) if c else None, "threshold": _finite(c.threshold) if c else None})
    return out


def _state_before(transitions: Sequence[Mapping[str, Any]], t: float) -> Mapping[str, Any]:
    """The transition in force just before time `t` (a window is judged before the transition it causes)."""
    last: Mapping[str, Any] = {}
    for e in transitions:
        if e["time"] < t - 1e-9:
            last = e
    return last


def _windows(st: RolloutStatus, transitions: Sequence[Mapping[str, Any]], interval: float | None) -> list[dict]:
    """One record window per analysis time: every check's result at that time (all checks of a window are
    stamped with the same time by the controller)."""
    by_time: dict[float, list[dict[str, Any]]] = {}
    for c in st.checks:
        for w in c.recent:
            by_time.setdefault(w.time, []).append({
                "name": c.name, "value": _finite(w.value), "threshold": _finite(w.threshold),
                "verdict": w.verdict.value, "samples": w.samples, "reason": ""})
    out, prev = [], None
    for t in sorted(by_time):
        starts = [x for x in (prev, t - interval if interval else None) if x is not None]
        start = max(starts) if starts else t
        state = _state_before(transitions, t)
        out.append({"start": start, "end": t, "time": t, "phase": state.get("phase"), "step": state.get("step"),
                    "weight": state.get("weight", 0), "shadow": bool(state.get("shadow")),
                    "checks": by_time[t], "versions": {}, "distribution": None})
        prev = t
    # the last window of each check carries the check's reason (the status keeps only the newest)
    last_time = {c.name: c.recent[-1].time for c in st.checks if c.recent}
    reasons = {c.name: c.reason for c in st.checks}
    for w in out:
        for r in w["checks"]:
            if last_time.get(r["name"]) == w["time"]:
                r["reason"] = reasons.get(r["name"], "")
    return out


def deciding_check(rec: Mapping[str, Any]) -> str | None:
    """The check the rollout's fate hangs on: the one that decided its outcome (or its pause), else the one
    failing now, else None."""
    for e in reversed(rec.get("transitions") or []):
        if e.get("action") in ("Started", "RevisionChanged", "Restarted", "Resumed"):
            break
        if e.get("check"):
            return e["check"]
    st = RolloutStatus.from_status(rec.get("status"))
    failing = [c for c in st.checks if c.verdict is Verdict.FAIL]
    return failing[0].name if failing else None


def event_row(ev: Mapping[str, Any]) -> dict[str, Any]:
    """A core/v1 Event (its JSON form) as the record keeps it."""
    meta = ev.get("metadata") or {}
    when = None
    for k in ("lastTimestamp", "eventTime", "firstTimestamp"):
        when = parse_time(ev.get(k))
        if when is not None:
            break
    if when is None:
        when = parse_time(meta.get("creationTimestamp"))
    source = ev.get("source") or {}
    return {"time": when, "type": str(ev.get("type") or ""), "reason": str(ev.get("reason") or ""),
            "message": str(ev.get("message") or ""), "count": ev.get("count") or 1,
            "source": str(ev.get("reportingInstance") or source.get("host") or source.get("component") or ""),
            "name": str(meta.get("name") or "")}


def rollout_record(obj: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = (),
                   now: float | None = None) -> dict[str, Any]:
    """The run record of one rollout (one item of a record's `rollouts`) from its ModelRollout document."""
    st = RolloutStatus.from_status(obj.get("status"))
    rec, spec = _header(obj, st)
    rec["transitions"] = _transitions(st, spec)
    rec["windows"] = _windows(st, rec["transitions"], rec.get("interval"))
    rec["status"] = dict(obj.get("status") or {})
    rec["events"] = sorted((event_row(e) for e in events), key=lambda e: (e["time"] or 0.0, e["name"]))
    rec["created"] = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    rec["kept"] = {"windows": max((len(c.recent) for c in st.checks), default=0),
                   "transitions": len(st.history)}
    if st.phase.is_terminal and obj.get("status"):
        ends = [e for e in rec["transitions"] if e["phase"] == st.phase.value]
        end = ends[-1] if ends else {"time": st.last_analysis_at or now, "reason": st.message, "check": None,
                                     "value": None, "threshold": None}
        rec["outcome"] = {"phase": st.phase.value, "time": end["time"], "reason": end.get("reason") or st.message,
                          "check": end.get("check"), "value": end.get("value"), "threshold": end.get("threshold")}
        if rec["outcome"]["check"] is None and st.phase is Phase.ROLLED_BACK:
            name = deciding_check(rec)
            c = st.check(name) if name else None
            if c is not None:
                rec["outcome"].update(check=c.name, value=_finite(c.value), threshold=_finite(c.threshold))
    rec["deciding"] = deciding_check(rec)
    return rec


def record_of(rollouts: Sequence[Mapping[str, Any]], source: str, now: float) -> dict[str, Any]:
    """A whole run record (`modelrollout.io/run/v1`) of rollout records, spanning their history: up to `now`
    while one still runs, else just past the last change."""
    times = [t for r in rollouts for t in ([e["time"] for e in r["transitions"]] + [w["time"] for w in r["windows"]])]
    active = any(not r.get("outcome") for r in rollouts)
    started = min(times) if times else now
    if active or not times:
        finished = now
    else:                         # a little room after the end, to show the phase it ended in
        finished = max(times) + max((max(times) - started) * 0.04, 1.0)
    return {"format": FORMAT, "source": source, "started": started, "finished": finished, "exit_code": None,
            "rollouts": list(rollouts)}


def add_router_summaries(rec: dict[str, Any], spec: Any, buckets: Sequence[Any], only_missing: bool = False) -> int:
    """Fill each window's per-version numbers and prediction distribution from router buckets
    (`policies.outcome.Bucket`, decoded from `/summaries` or rebuilt from a prediction log); returns how many
    windows got data (`only_missing`: only windows without any yet). The routers keep their buckets for
    `--retention` (15 min by default), so older windows stay without."""
    from policies.outcome import merge
    from policies.outcome.bucket import bucket_start, select

    filled = 0
    if not buckets:
        return 0
    width = max(b.end - b.start for b in buckets) or 5.0
    for w in rec["windows"]:
        if only_missing and w.get("versions"):
            continue
        inside = select(buckets, bucket_start(w["start"], width), w["end"])
        if not inside:
            continue
        m = merge(inside, spec.output.kind)
        w["versions"] = {"baseline": version_digest(m.baseline), "candidate": version_digest(m.candidate)}
        w["distribution"] = distribution(prediction_values(getattr(m.baseline, "prediction", None)),
                                         prediction_values(getattr(m.candidate, "prediction", None)))
        filled += 1
    return filled
