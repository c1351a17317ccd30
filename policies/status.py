"""The rollout's state as immutable values, and their round trip through the CR status.

The `status` of a ModelRollout is the single source of truth: the controller may die between any two
reconciles and the next one rebuilds everything from `RolloutStatus.from_status(cr["status"])`. So every
counter a decision depends on (consecutive failures, calibration values, the step clock) lives here, and
`from_status` accepts whatever an older or hand-edited status holds without crashing. `RolloutStatus` owns
every field the controller writes (`drift`, the column `kubectl get mro` shows, included); no shell adds
fields to the dict. The fields are listed in docs/contracts.md ("ModelRollout resource").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache
from collections.abc import Mapping
from typing import Any

from policies.api import Condition as ConditionType, Phase, Verdict
from policies.spec import VersionRef

HISTORY_LIMIT = 50
"""History entries kept in status (oldest dropped first)."""
RECENT_LIMIT = 60
"""Per-check analysis windows kept in status (the newest): what `kubectl modelrollout status`, the dashboard
and `kubectl modelrollout report` draw a check's series from. At most about 110 bytes each, so under 7 KB per
check; docs/contracts.md ("ModelRollout resource") states the bound."""
CALIBRATION_LIMIT = 50
"""A/A values kept per calibrated check (the newest)."""


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one analysis window, with the numbers and a sentence saying why."""

    name: str
    metric: str | None
    value: float | None
    threshold: float | None
    verdict: Verdict
    samples: int
    p_value: float | None = None
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    reason: str = ""
    action: str = "rollback"
    immediate: bool = False
    calibrating: bool = False
    """True while a `dynamic` threshold waits for A/A windows: Inconclusive that is expected, so it
    blocks advancing but does not count towards `inconclusiveLimit`."""
    aa_value: float | None = None
    """A/A value learned from this window's baseline (already normalised, see `policies.thresholds`)."""
    skipped: bool = False
    """The check does not apply under the current routing (e.g. shadow-agreement without mirroring):
    its streaks are left as they were and it does not block the step."""
    evidence: Mapping[str, Any] | None = None
    """What the check carries beyond one window, JSON-ready (`CheckState.evidence`): its sequential test's
    accumulated evidence, the family-wise (Holm) adjustment of its p-value, the plan for the step."""


@dataclass(frozen=True)
class Routing:
    candidate_weight: int = 0
    shadow: bool = False
    interleave: bool = False

    def to_status(self) -> dict[str, Any]:
        return {"candidateWeight": self.candidate_weight, "shadow": self.shadow, "interleave": self.interleave}

    @staticmethod
    def from_status(d: Any) -> "Routing":
        d = d if isinstance(d, Mapping) else {}
        return Routing(candidate_weight=_int(d.get("candidateWeight"), 0, 0, 100),
                       shadow=d.get("shadow") is True, interleave=d.get("interleave") is True)


@dataclass(frozen=True)
class WindowValue:
    """One check's result on one analysis window, as kept in `checks[].recent` to be drawn later."""

    time: float
    value: float | None
    verdict: Verdict
    threshold: float | None = None
    samples: int | None = None

    def to_status(self) -> dict[str, Any]:
        out = {"time": rfc3339(self.time), "value": _num_out(self.value), "verdict": self.verdict.value,
               "threshold": _num_out(self.threshold)}
        if self.samples is not None:
            out["samples"] = self.samples
        return out

    @staticmethod
    def from_status(d: Any) -> "WindowValue | None":
        if not isinstance(d, Mapping):
            return None
        t = parse_time(d.get("time"))
        samples = _int(d.get("samples"), -1, 0)
        return WindowValue(t if t is not None else 0.0, _float(d.get("value")), _verdict(d.get("verdict")),
                           _float(d.get("threshold")), samples if samples >= 0 else None)


@dataclass(frozen=True)
class CheckState:
    """What a check remembers across windows: its last result and the streaks decisions need."""

    name: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    verdict: Verdict | None = None
    samples: int = 0
    failures: int = 0
    """Consecutive Fail windows (reset by a Pass or Inconclusive window, a resume, a retry, a new revision)."""
    inconclusive: int = 0
    """Consecutive Inconclusive windows (not counting calibration)."""
    reason: str = ""
    action: str = "rollback"
    recent: tuple[WindowValue, ...] = ()
    calibration: tuple[float, ...] = ()
    evidence: Mapping[str, Any] | None = None
    """JSON-ready: `sequential` (the always-valid test's state, policies/sequential.py), `holm` (the window's
    family-wise adjustment), `plan` (samples and time the step needs), when the check has them."""

    def to_status(self) -> dict[str, Any]:
        return {
            "name": self.name, "metric": self.metric, "value": _num_out(self.value),
            "threshold": _num_out(self.threshold), "verdict": self.verdict.value if self.verdict else None,
            "samples": self.samples, "failures": self.failures, "inconclusive": self.inconclusive,
            "reason": self.reason, "action": self.action,
            "recent": [w.to_status() for w in self.recent],
            "calibration": [_num_out(v) for v in self.calibration],
            **({"evidence": dict(self.evidence)} if self.evidence else {}),
        }

    @staticmethod
    def from_status(d: Mapping[str, Any]) -> "CheckState":
        recent = tuple(w for w in (WindowValue.from_status(x) for x in _list(d.get("recent"))) if w)
        calib = tuple(v for v in (_float(x) for x in _list(d.get("calibration"))) if v is not None)
        return CheckState(
            name=str(d.get("name")), metric=d.get("metric") if isinstance(d.get("metric"), str) else None,
            value=_float(d.get("value")), threshold=_float(d.get("threshold")),
            verdict=_verdict(d.get("verdict")) if d.get("verdict") is not None else None,
            samples=_int(d.get("samples"), 0, 0), failures=_int(d.get("failures"), 0, 0),
            inconclusive=_int(d.get("inconclusive"), 0, 0), reason=str(d.get("reason") or ""),
            action=str(d.get("action") or "rollback"),
            recent=recent[-RECENT_LIMIT:], calibration=calib[-CALIBRATION_LIMIT:],
            evidence=dict(d["evidence"]) if isinstance(d.get("evidence"), Mapping) else None,
        )


@dataclass(frozen=True)
class Condition:
    type: str
    status: str          # "True" | "False" | "Unknown"
    reason: str
    message: str
    last_transition_time: float

    def to_status(self) -> dict[str, Any]:
        return {"type": self.type, "status": self.status, "reason": self.reason, "message": self.message,
                "lastTransitionTime": rfc3339(self.last_transition_time)}

    @staticmethod
    def from_status(d: Any) -> "Condition | None":
        if not isinstance(d, Mapping) or not isinstance(d.get("type"), str):
            return None
        t = parse_time(d.get("lastTransitionTime"))
        return Condition(d["type"], str(d.get("status") or "Unknown"), str(d.get("reason") or ""),
                         str(d.get("message") or ""), t if t is not None else 0.0)


@dataclass(frozen=True)
class DecidingCheck:
    """The check a transition was decided on (a rollback or pause by a check), with its last window."""

    name: str
    value: float | None = None
    threshold: float | None = None

    def to_status(self) -> dict[str, Any]:
        return {"name": self.name, "value": _num_out(self.value), "threshold": _num_out(self.threshold)}

    @staticmethod
    def from_status(d: Any) -> "DecidingCheck | None":
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            return None
        return DecidingCheck(d["name"], _float(d.get("value")), _float(d.get("threshold")))


@dataclass(frozen=True)
class HistoryEntry:
    """One transition. `phase` and `routing` are the status right after it (so the routing's changes over
    time can be drawn from history alone); `check`, the check that decided it, if one did. Entries written
    before these fields existed read them as None."""

    time: float
    step: int
    action: str
    reason: str
    phase: Phase | None = None
    routing: Routing | None = None
    check: DecidingCheck | None = None

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": rfc3339(self.time), "step": self.step, "action": self.action,
                               "reason": self.reason}
        if self.phase is not None:
            out["phase"] = self.phase.value
        if self.routing is not None:
            out["routing"] = self.routing.to_status()
        if self.check is not None:
            out["check"] = self.check.to_status()
        return out

    @staticmethod
    def from_status(d: Any) -> "HistoryEntry | None":
        if not isinstance(d, Mapping):
            return None
        t = parse_time(d.get("time"))
        try:
            phase = Phase(d.get("phase")) if d.get("phase") is not None else None
        except ValueError:
            phase = None
        routing = Routing.from_status(d["routing"]) if isinstance(d.get("routing"), Mapping) else None
        return HistoryEntry(t if t is not None else 0.0, _int(d.get("step"), 0), str(d.get("action") or ""),
                            str(d.get("reason") or ""), phase, routing, DecidingCheck.from_status(d.get("check")))

@dataclass(frozen=True)
class PostPromotionState:
    """`status.postPromotion`: judging the promoted version on the labels that arrive after its promotion
    (`spec.postPromotion`, `policies.regret` and `policies.postpromotion`)."""

    state: str
    """`Judging` until `until`, then `Confirmed`; `Regretted` when a check failed for failureLimit windows."""
    previous: VersionRef
    """The stable before the promotion: what the promoted version is compared with (and restored on regret
    with `action: rollback`)."""
    promoted: VersionRef
    since: float
    until: float
    last_analysis_at: float | None = None
    windows: int = 0
    counts: Mapping[str, Any] | None = None
    """Cumulative label counts since the promotion, per arm (`baseline`: the previous stable, `candidate`:
    the promoted version), in the summaries' segment-count form `{field: {value: [6 counts]}}`."""
    checks: tuple[CheckState, ...] = ()
    message: str = ""

    @property
    def judging(self) -> bool:
        return self.state == "Judging"

    def to_status(self) -> dict[str, Any]:
        return {"state": self.state, "previous": {"version": self.previous.version, "url": self.previous.url},
                "promoted": {"version": self.promoted.version, "url": self.promoted.url},
                "since": rfc3339(self.since), "until": rfc3339(self.until),
                "lastAnalysisAt": rfc3339(self.last_analysis_at) if self.last_analysis_at is not None else None,
                "windows": self.windows, "counts": dict(self.counts or {}),
                "checks": [c.to_status() for c in self.checks], "message": self.message}

    @staticmethod
    def from_status(d: Any) -> "PostPromotionState | None":
        if not isinstance(d, Mapping):
            return None
        previous, promoted = stable_from(d.get("previous")), stable_from(d.get("promoted"))
        since, until = parse_time(d.get("since")), parse_time(d.get("until"))
        state = d.get("state")
        if previous is None or promoted is None or since is None or until is None or \
                state not in ("Judging", "Confirmed", "Regretted"):
            return None
        counts = d.get("counts")
        return PostPromotionState(
            state, previous, promoted, since, until, parse_time(d.get("lastAnalysisAt")),
            _int(d.get("windows"), 0, 0), dict(counts) if isinstance(counts, Mapping) and counts else None,
            tuple(CheckState.from_status(c) for c in _list(d.get("checks"))
                  if isinstance(c, Mapping) and isinstance(c.get("name"), str)),
            str(d.get("message") or ""))


@dataclass(frozen=True)
class RolloutStatus:
    """The whole CR status as a value. `to_status()` is JSON-ready; `from_status()` never raises."""

    phase: Phase = Phase.PENDING
    observed_generation: int = 0
    current_step: int = 0
    routing: Routing = Routing()
    checks: tuple[CheckState, ...] = ()
    conditions: tuple[Condition, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    revision: str | None = None
    step_started_at: float | None = None
    step_duration: float | None = None
    """Seconds the current step runs (None: no step running, or a `pause: {}` that waits for promote).
    With `step_started_at` it is the fact a viewer computes the time left from (`step_left`); the
    status itself never holds text that changes with time alone."""
    step_windows: int = 0
    """Analysis windows evaluated since the current step began (a step needs one to advance)."""
    last_analysis_at: float | None = None
    message: str = ""
    last_command_id: str | None = None
    pause_reason: str | None = None
    """Why the phase is Paused: "step" (a pause step), "user", "inconclusive" or "check"."""
    drift: str | None = None
    """`NAME VALUE/THRESHOLD` of the worst check (see `worst_check`), for `kubectl get mro`."""
    stable: VersionRef | None = None
    """The version the last promotion made the stable: every later candidate is compared with it, and it
    serves everything when no rollout runs (None before the first promotion: `spec.baseline` is)."""
    post_promotion: PostPromotionState | None = None
    """The promoted version still judged on delayed labels (`spec.postPromotion`), or how that ended."""

    def step_ends_at(self) -> float | None:
        """When the current step's duration is over (None: no timed step running)."""
        if self.phase.is_terminal or self.step_started_at is None or self.step_duration is None:
            return None
        return self.step_started_at + self.step_duration

    def step_left(self, now: float) -> float | None:
        """Seconds until the current step's duration is over as of `now` (<= 0: over; None: not timed).

        Computed by whoever shows it (`kubectl modelrollout status`, the live view, the report): the
        controller never writes it, so the status does not change with time alone."""
        end = self.step_ends_at()
        return None if end is None else end - now

    def check(self, name: str) -> CheckState | None:
        return next((c for c in self.checks if c.name == name), None)

    def condition(self, type_: str | ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def with_history(self, now: float, action: str, reason: str,
                     check: DecidingCheck | None = None) -> "RolloutStatus":
        """Append a transition, stamped with the phase and routing this status has now."""
        entry = HistoryEntry(now, self.current_step, action, reason, self.phase, self.routing, check)
        return replace(self, history=(self.history + (entry,))[-HISTORY_LIMIT:])

    def with_condition(self, type_: str | ConditionType, status: str, reason: str, message: str,
                       now: float) -> "RolloutStatus":
        """Set one condition; its lastTransitionTime moves only when its status flips."""
        type_ = type_.value if isinstance(type_, ConditionType) else str(type_)
        old = self.condition(type_)
        since = old.last_transition_time if old is not None and old.status == status else now
        new = Condition(type_, status, reason, message, since)
        rest = tuple(c for c in self.conditions if c.type != type_)
        return replace(self, conditions=tuple(sorted(rest + (new,), key=lambda c: _COND_ORDER.get(c.type, 99))))

    def to_status(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "observedGeneration": self.observed_generation,
            "currentStep": self.current_step,
            "routing": self.routing.to_status(),
            "checks": [c.to_status() for c in self.checks],
            "conditions": [c.to_status() for c in self.conditions],
            "history": [h.to_status() for h in self.history],
            "revision": self.revision,
            "stepStartedAt": rfc3339(self.step_started_at) if self.step_started_at is not None else None,
            "stepDurationSeconds": _num_out(self.step_duration),
            "stepWindows": self.step_windows,
            "lastAnalysisAt": rfc3339(self.last_analysis_at) if self.last_analysis_at is not None else None,
            "message": self.message,
            "lastCommandId": self.last_command_id,
            "pauseReason": self.pause_reason,
            "drift": self.drift,
            "stable": {"version": self.stable.version, "url": self.stable.url} if self.stable else None,
            **({"postPromotion": self.post_promotion.to_status()} if self.post_promotion is not None else {}),
        }

    @staticmethod
    def from_status(d: Any) -> "RolloutStatus":
        """Rebuild from a CR status dict (None or {} → a fresh Pending status). Unknown values fall back
        to defaults rather than raising: a hand-edited status must not crash the controller."""
        if isinstance(d, RolloutStatus):
            return d
        d = d if isinstance(d, Mapping) else {}
        try:
            phase = Phase(d.get("phase"))
        except ValueError:
            phase = Phase.PENDING
        checks = tuple(CheckState.from_status(c) for c in _list(d.get("checks"))
                       if isinstance(c, Mapping) and isinstance(c.get("name"), str))
        conds = tuple(c for c in (Condition.from_status(x) for x in _list(d.get("conditions"))) if c)
        hist = tuple(h for h in (HistoryEntry.from_status(x) for x in _list(d.get("history"))) if h)
        rev = d.get("revision")
        cmd = d.get("lastCommandId")
        pause = d.get("pauseReason")
        drift = d.get("drift")
        return RolloutStatus(
            phase=phase, observed_generation=_int(d.get("observedGeneration"), 0, 0),
            current_step=_int(d.get("currentStep"), 0, 0), routing=Routing.from_status(d.get("routing")),
            checks=checks, conditions=conds, history=hist[-HISTORY_LIMIT:],
            revision=rev if isinstance(rev, str) else None,
            step_started_at=parse_time(d.get("stepStartedAt")), step_duration=_seconds(d.get("stepDurationSeconds")),
            step_windows=_int(d.get("stepWindows"), 0, 0),
            last_analysis_at=parse_time(d.get("lastAnalysisAt")), message=str(d.get("message") or ""),
            last_command_id=cmd if isinstance(cmd, str) else None,
            pause_reason=pause if isinstance(pause, str) else None,
            drift=drift if isinstance(drift, str) else None,
            stable=stable_from(d.get("stable")),
            post_promotion=PostPromotionState.from_status(d.get("postPromotion")),
        )


_COND_ORDER = {t.value: i for i, t in enumerate(ConditionType)}


def stable_from(d: Any) -> VersionRef | None:
    """`status.stable` as written by the controller, or None when absent or not `{version, url}` strings."""
    if not isinstance(d, Mapping):
        return None
    version, url = d.get("version"), d.get("url")
    if not (isinstance(version, str) and version and isinstance(url, str) and url):
        return None
    return VersionRef(version, url)


def worst_check(checks: tuple[CheckState, ...]) -> str | None:
    """`NAME VALUE/THRESHOLD` of the worst check: Fail > Inconclusive > Pass, then the value closest to (or
    furthest past) its bound; None before any verdict. Non-finite numbers show as `-`."""
    best, best_key = None, None
    for c in checks:
        if c.verdict is None:
            continue
        value, threshold = _num_out(c.value), _num_out(c.threshold)
        ratio = abs(value / threshold) if value is not None and threshold else 0.0
        key = (c.verdict.severity, ratio)
        if best_key is None or key > best_key:
            best_key, best = key, c
    if best is None:
        return None
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    return f"{best.name} {fmt(_num_out(best.value))}/{fmt(_num_out(best.threshold))}"


# --- time and value helpers --------------------------------------------------------------------------

@lru_cache(maxsize=8192)
def rfc3339(t: float) -> str:
    """Epoch seconds → `2026-01-02T03:04:05Z` (microseconds kept when present). Cached: a status holds the
    same few hundred times from one reconcile to the next (its windows and transitions)."""
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(v: Any) -> float | None:
    """RFC3339 text or epoch number → epoch seconds; anything else → None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str) and v:
        return _parse_text_time(v)
    return None


@lru_cache(maxsize=8192)
def _parse_text_time(v: str) -> float | None:
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def format_left(seconds: float) -> str:
    """`1h2m3s`, `14s`, `0s`: a time left rounded up to the second."""
    seconds = max(0, int(math.ceil(seconds - 1e-9)))
    h, rem = divmod(seconds, 3600)
    m, sec = divmod(rem, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec or not (h or m) else "")


def _seconds(v: Any) -> float | None:
    """A non-negative finite number of seconds, else None."""
    f = _float(v)
    return f if f is not None and math.isfinite(f) and f >= 0 else None


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _num_out(v: float | None) -> float | None:
    """JSON has no NaN/Infinity: a non-finite value is written as null."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


def _int(v: Any, default: int, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return default
    v = int(v)
    if lo is not None and v < lo:
        return default
    if hi is not None and v > hi:
        return default
    return v


_VERDICTS = {v.value: v for v in Verdict}


def _verdict(v: Any) -> Verdict:
    return _VERDICTS.get(v, Verdict.INCONCLUSIVE) if isinstance(v, str) else Verdict.INCONCLUSIVE
