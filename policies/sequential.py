"""Always-valid sequential decisions: a check that gathers evidence window after window and acts as soon as
it is decisive, with an error rate that holds however often it is looked at (docs/statistics.md "Sequential
decisions").

Two e-processes per check (nonnegative, expectation <= 1 under their null at every look, so by Ville's
inequality P(ever >= 1/α) <= α):

- **against the candidate** (H0: it is acceptable): crossing 1/α is a Fail, acted on at once. It runs over
  the whole rollout (reset by a resume, a retry, a new revision).
- **for the candidate** (H0: it is harmful), where the check can state it: crossing 1/α shows the
  candidate within the tolerance; when every blocking check that applies has shown it, the step ends early
  (`ended_early`). It runs per step.

error-rate (`max` r₀) uses the counts: a mixture likelihood ratio over a grid of alternative rates,
Σⱼ wⱼ (pⱼ/r₀)^e ((1 − pⱼ)/(1 − r₀))^(n − e) on the cumulative errors e of n requests (`FAIL_GRID` above r₀
against "rate <= r₀", `PASS_GRID` below it for "rate >= r₀"). Checks judged on a p-value combine the
windows' p-values (independent: windows hold disjoint requests) with the mixture of calibrator products
E = ∫₀¹ κᵗ · exp((1 − κ)·S) dκ, S = Σ ln(1/pᵢ) over t windows (each κ·p^(κ−1) is a calibrator).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping

from .status import CheckResult, Verdict
from .thresholds import fmt

SEQUENTIAL_ALPHA = 0.01
"""Level of a sequential error-rate check without minPValue (paired checks: `PAIRED_ALPHA`)."""
FAIL_GRID = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Alternative error rates, as multiples of `max`, of the mixture against the candidate (equal weights)."""
PASS_GRID = (0.9, 0.75, 0.5, 0.25, 0.1, 0.01)
"""…and below `max`, of the mixture for it."""
ONE_SIDED = {"interleave": lambda value: value is not None and value < 0,
             "mann-whitney-latency": lambda value: value is not None and value > 0.5}
"""Metrics whose p-value is two-sided but only one direction is harmful: the evidence uses the one-sided
p-value (p/2 in the harmful direction, 1 − p/2 in the other)."""


def alpha(check: Any) -> float:
    if check.min_p_value is not None:
        return check.min_p_value
    from .paired_checks import PAIRED_ALPHA
    from .spec import PAIRED_METRICS
    return PAIRED_ALPHA if check.metric in PAIRED_METRICS else SEQUENTIAL_ALPHA


def log_mixture_p(windows: int, s: float) -> float:
    """log ∫₀¹ κᵗ exp((1 − κ)·S) dκ = S + ln Γ(t + 1) + ln P(t + 1, S) − (t + 1)·ln S, with P the regularized
    lower incomplete gamma function; −ln(t + 1) when S = 0."""
    t = int(windows)
    if t <= 0:
        return 0.0
    if s <= 1e-12:
        return -math.log(t + 1)
    from scipy.special import gammainc
    g = float(gammainc(t + 1, s))
    if g <= 0.0:                      # far below any decision: the integrand's mass is tiny
        return -math.log(t + 1) - 700.0
    return s + math.lgamma(t + 1) + math.log(g) - (t + 1) * math.log(s)


def _log_sum_exp(xs: list[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def log_rate_mixture(errors: int, n: int, rate: float, grid: tuple[float, ...]) -> float:
    """log of the mean over the grid of the likelihood ratios of alternative rates (multiples of `rate`,
    kept inside (0, 1)) against `rate`, on e errors in n requests."""
    if n <= 0:
        return 0.0
    terms = []
    for m in grid:
        p = min(max(rate * m, 1e-12), 1.0 - 1e-12)
        terms.append(errors * math.log(p / rate) + (n - errors) * math.log((1.0 - p) / (1.0 - rate)))
    return _log_sum_exp(terms) - math.log(len(grid))


def _clip_p(p: float) -> float:
    return min(max(float(p), 1e-300), 1.0)


def _num(d: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else default


def _state(prior: Any, step: int) -> dict[str, Any]:
    """The accumulated evidence from status (whatever it holds: a hand-edited value starts afresh), with the
    per-step part reset when the step changed."""
    d = prior if isinstance(prior, Mapping) else {}
    out = {k: _num(d, k) for k in ("windows", "sumLogInvP", "errors", "requests")}
    same_step = isinstance(d.get("step"), int) and d.get("step") == step
    for k in ("passWindows", "passSumLogInvP", "stepErrors", "stepRequests"):
        out[k] = _num(d, k) if same_step else 0.0
    out["step"] = step
    decided = d.get("decided")
    out["decided"] = decided if decided == "fail" or (decided == "pass" and same_step) else None
    if out["decided"] is not None:
        out["decidedReason"] = str(d.get("decidedReason") or "")
        out["decidedWindows"] = int(_num(d, "decidedWindows"))
    return out


def update(prior_evidence: Mapping[str, Any] | None, step: int, check: Any,
            tested: Mapping[str, Any] | None) -> tuple[dict[str, Any], float, float, str, str, str]:
    """The check's evidence after this window: (state, log E against the candidate, log E for it, what was
    counted, the null each E tests against). Computed once per window and check: `anytime_p` and `apply`
    take it."""
    st = _state((prior_evidence or {}).get("sequential"), step)
    tested = tested or {}
    if "requests" in tested:
        for k, src in (("errors", "errors"), ("requests", "requests"), ("stepErrors", "errors"),
                       ("stepRequests", "requests")):
            st[k] += float(tested[src])
        log_fail = log_rate_mixture(int(st["errors"]), int(st["requests"]), check.max, FAIL_GRID)
        log_pass = log_rate_mixture(int(st["stepErrors"]), int(st["stepRequests"]), check.max, PASS_GRID)
        what = (f"{int(st['errors'])} errors in {int(st['requests'])} requests"
                f" ({int(st['stepErrors'])}/{int(st['stepRequests'])} this step)")
        against, for_ = f"rate <= {fmt(check.max)}", f"rate >= {fmt(check.max)}"
    else:
        if "p" in tested:
            p = _clip_p(tested["p"])
            harmful = ONE_SIDED.get(check.metric)
            if harmful is not None:
                p = p / 2 if harmful(tested.get("value")) else 1.0 - p / 2
            st["windows"] += 1
            st["sumLogInvP"] += -math.log(max(p, 1e-300))
            if tested.get("p_pass") is not None:
                st["passWindows"] += 1
                st["passSumLogInvP"] += -math.log(_clip_p(tested["p_pass"]))
        log_fail = log_mixture_p(int(st["windows"]), st["sumLogInvP"])
        log_pass = log_mixture_p(int(st["passWindows"]), st["passSumLogInvP"]) if st["passWindows"] else 0.0
        what = f"{int(st['windows'])} windows ({int(st['passWindows'])} this step for the candidate)"
        against, for_ = "no harmful change", "a harmful change"
    st["eFail"], st["ePass"] = _e(log_fail), _e(log_pass)
    prior = (prior_evidence or {}).get("sequential")
    st["eFailMax"] = max(_num(prior, "eFailMax") if isinstance(prior, Mapping) else 0.0, st["eFail"])
    return st, log_fail, log_pass, what, against, for_


def anytime_p(updated: tuple) -> float:
    """The check's anytime-valid p-value after this window (`updated`: its `update`), min(1, 1/sup E) with E
    its evidence against the candidate over every window so far: by Ville's inequality P(it ever falls to x)
    <= x under the null, so Holm's step-down over these p-values bounds the chance of any false Fail, at any
    time (`policies.familywise`)."""
    st = updated[0]
    return min(1.0, 1.0 / max(st["eFailMax"], 1e-300))


def apply(check: Any, prior_evidence: Mapping[str, Any] | None, step: int, tested: Mapping[str, Any] | None,
          r: CheckResult, min_samples: int = 0, holm: tuple[float, int] | None = None,
          updated: tuple | None = None) -> CheckResult:
    """The window's result `r` judged by the check's sequential test: its evidence updated with what the
    window `tested` (p-values, or error counts) and the verdict Fail when the evidence against the candidate
    crossed 1/α, Pass (`decided: pass`) when the evidence for it did, else `r`'s verdict — for error-rate,
    Inconclusive while the step has fewer than `min_samples` requests. `holm`: (the check's Holm-adjusted
    anytime p-value, the family's size) when `multipleTesting: holm` groups several sequential checks: it
    decides Fail only when that adjusted p-value is below α too. `updated`: `update(...)` of the same arguments,
    when the caller already has it."""
    a = alpha(check)
    st, log_fail, log_pass, what, against, for_ = updated or update(prior_evidence, step, check, tested)
    st["alpha"] = a
    bar = 1.0 / a
    evidence = {**dict(prior_evidence or {}), "sequential": st}
    held = holm is not None and holm[0] >= a      # decisive alone, not after Holm over the family
    if holm is not None:
        st["holm"] = {"adjustedPValue": holm[0], "family": holm[1]}
    if st["decided"] != "fail" and log_fail >= math.log(bar) and not held:
        more = f"; Holm over {holm[1]} sequential checks: adjusted p {fmt(holm[0])} < {fmt(a)}" if holm else ""
        st.update(decided="fail", decidedWindows=int(st["windows"] or 0),
                  decidedReason=f"evidence against '{against}' reached {fmt(st['eFail'])} >= 1/alpha = {fmt(bar)} "
                                f"({what}){more}")
    elif st["decided"] is None and log_pass >= math.log(bar) and r.verdict is not Verdict.FAIL:
        st.update(decided="pass", decidedWindows=int(st["passWindows"]),
                  decidedReason=f"evidence against '{for_}' reached {fmt(st['ePass'])} >= 1/alpha = {fmt(bar)} "
                                f"({what})")
    if st["decided"] == "fail":
        return replace(r, verdict=Verdict.FAIL, reason=f"{check.name}: sequential: {st['decidedReason']}",
                       evidence=evidence)
    if st["decided"] == "pass" and r.verdict is not Verdict.FAIL:
        return replace(r, verdict=Verdict.PASS, reason=f"{check.name}: sequential: shown for the candidate, "
                                                       f"{st['decidedReason']}", evidence=evidence)
    note = (f"sequential: undecided, evidence against the candidate {fmt(st['eFail'])}, for it "
            f"{fmt(st['ePass'])}, decisive at {fmt(bar)} ({what})")
    if held:
        note += (f"; Holm over {holm[1]} sequential checks: adjusted anytime p {fmt(holm[0])} >= {fmt(a)}, "
                 "not decisive yet")
    if "requests" in tested and st["stepRequests"] < min_samples and r.verdict is Verdict.PASS:
        return replace(r, verdict=Verdict.INCONCLUSIVE, evidence=evidence,
                       reason=f"{check.name}: the step has {int(st['stepRequests'])} requests < minSamples "
                              f"{min_samples}; {note}")
    return replace(r, reason=f"{r.reason}; {note}", evidence=evidence)


def _e(log_e: float) -> float:
    return math.exp(min(log_e, 700.0))


def decided_pass(evidence: Mapping[str, Any] | None, step: int) -> str | None:
    """The reason a check's evidence showed the candidate within its tolerance in `step`, or None."""
    st = (evidence or {}).get("sequential") if isinstance(evidence, Mapping) else None
    if isinstance(st, Mapping) and st.get("decided") == "pass" and st.get("step") == step:
        return str(st.get("decidedReason") or "shown for the candidate")
    return None


def ended_early(spec: Any, status: Any, blocking: list[Any]) -> str | None:
    """Why the current step may end before its duration: every blocking check that applies is sequential
    and has shown the candidate within its tolerance in this step (None otherwise)."""
    if not blocking or status.step_windows == 0:
        return None
    why = []
    for c in blocking:
        st = status.check(c.name)
        reason = decided_pass(st.evidence if st is not None else None, status.current_step) if c.sequential else None
        if reason is None or st.verdict is not Verdict.PASS:
            return None
        why.append(f"{c.name}: {reason}")
    return "; ".join(why)
