"""Planning: how many samples (and, at the measured traffic, how long) a check needs to tell its tolerance
from 1.5x of it with power `PLAN_POWER`, so a user learns before the step ends whether it can decide at all
(docs/statistics.md "Planning").

`needed(check, ...)` is the normal-approximation sample size of a one-sided test at the check's level
whose null is the tolerance and whose alternative is 1.5x the tolerance:

  n = ((z_{1−a}·σ₀ + z_{power}·σ₁) / δ)²

with δ = the distance from the tolerance to 1.5x of it and σ₀, σ₁ the per-sample standard deviations at the
two. A sequential check accumulates over the step, a fixed-window check must see n in every window.
`plan(...)` adds the measured rate and the time; `lint_warnings(spec, rate)` does the same offline from a
stated traffic rate (requests per second). `small_window_warnings(spec)` needs no rate: binned drift checks
whose windows may be too small for their bins.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Mapping

PLAN_POWER = 0.8
PLAN_ALPHA = 0.05
"""Level for checks that judge a plug-in value (error-rate `max` without `sequential`): the test a window
would need to tell the tolerance from 1.5x of it."""
HARM = 1.5
"""The harmful change, as a multiple of the tolerance."""
_Z = NormalDist().inv_cdf
WILCOXON_ARE = 3.0 / math.pi
"""Asymptotic relative efficiency of the signed-rank test to the t-test under normality: n_wilcoxon =
n_t / (3/π)."""


def level(check: Any, windows: int, persistence: int) -> float:
    """The one-sided level the plan uses: the sequential test's α, the per-window level of a p-value test
    (two-sided tests count half), else `PLAN_ALPHA`."""
    from . import sequential
    from .thresholds import window_alpha
    if check.sequential:
        return sequential.alpha(check)
    if check.metric in ("shadow-wilcoxon", "shadow-mcnemar"):
        from .paired_checks import paired_alpha
        return window_alpha(paired_alpha(check), windows, persistence) / 2
    if check.metric in ("shadow-rbo", "shadow-ndcg", "reward"):
        from .paired_checks import paired_alpha
        return window_alpha(paired_alpha(check), windows, persistence)
    return PLAN_ALPHA


def needed(check: Any, alpha: float, spread: float | None = None, power: float = PLAN_POWER) -> int | None:
    """Samples to tell the check's tolerance from `HARM` x it at one-sided level `alpha` with `power`; None
    when the check has no tolerance to plan for, or needs a measured `spread` it does not have.

    - error-rate `max` r₀: per request σ = sqrt(r(1 − r)) at r₀ and r₁ = 1.5·r₀ (requests of the candidate);
    - shadow-wilcoxon `max` t: σ = `spread`, the sd of the paired deltas, δ = 0.5·t, divided by the
      signed-rank test's efficiency 3/π (shadow pairs);
    - shadow-mcnemar `max` t: σ² = ψ, the discordance (`spread`: the share of pairs whose decisions differ),
      at least 1.5·t at the harmful change, δ = 0.5·t;
    - shadow-rbo / shadow-ndcg `min` m: the tolerated disagreement 1 − m, harmful 1.5·(1 − m), δ = 0.5·(1 − m),
      σ = `spread`, the sd of the per-request agreement;
    - reward `min` m < 0 (a tolerated loss): δ = 0.5·|m|, σ = `spread` = sqrt(var_candidate + var_baseline),
      n per version;
    - shadow-agreement / accuracy `min` m (no segment): the tolerated disagreement or error 1 − m against
      1.5·(1 − m), σ = sqrt(r(1 − r)) at each (shadow pairs; the candidate's labelled predictions);
    - interleave `min` m < 0 (a tolerated preference for the baseline): the candidate's share of the
      impressions 0.5 + m against 0.5 + 1.5·m, σ = sqrt(p(1 − p)) at each (impressions with feedback)."""
    za, zb = _Z(1.0 - alpha), _Z(power)
    metric = check.metric
    if metric == "error-rate" and check.max is not None and 0 < check.max < 1 / HARM:
        r0, r1 = check.max, HARM * check.max
        if check.sequential:
            return _sequential_rate(r0, r1, alpha, zb)
        n = _proportions(r0, r1, za, zb)
    elif metric in ("shadow-agreement", "accuracy") and check.min is not None and check.segment is None \
            and 0 < 1 - check.min < 1 / HARM:
        n = _proportions(1 - check.min, HARM * (1 - check.min), za, zb)
    elif metric == "interleave" and check.min is not None and -0.5 / HARM < check.min < 0:
        n = _proportions(0.5 + check.min, 0.5 + HARM * check.min, za, zb)
    elif metric in ("shadow-wilcoxon", "shadow-mcnemar") and check.max:
        delta = (HARM - 1.0) * check.max
        if metric == "shadow-mcnemar":
            sd = math.sqrt(max(spread or 0.0, HARM * check.max))
        elif spread is None:
            return None
        else:
            sd = spread
        n = ((za + zb) * sd / delta) ** 2
        if metric == "shadow-wilcoxon":
            n /= WILCOXON_ARE
    elif metric == "reward" and check.min and spread is not None:
        delta = (HARM - 1.0) * abs(check.min)
        n = ((za + zb) * spread / delta) ** 2
    elif metric in ("shadow-rbo", "shadow-ndcg") and check.min is not None and check.min < 1 and spread is not None:
        delta = (HARM - 1.0) * (1.0 - check.min)
        n = ((za + zb) * spread / delta) ** 2
    else:
        return None
    return max(1, int(math.ceil(n)))


def _proportions(p0: float, p1: float, za: float, zb: float) -> float:
    """One-sample test of a proportion: n to tell p0 from p1 at z-quantiles za (level) and zb (power)."""
    return ((za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p1 * (1 - p1))) / (p1 - p0)) ** 2


def _sequential_rate(r0: float, r1: float, alpha: float, zb: float) -> int:
    """Requests until the sequential error-rate test's evidence (`policies.sequential`, whose grid holds
    1.5x) reaches 1/α with probability `power` at rate r₁: the log likelihood ratio of r₁ against r₀ after n
    requests is about normal with mean n·KL and variance n·V (KL, V: mean and variance of one request's log
    ratio under r₁); it must exceed L = ln(K/α) for the grid's K alternatives, so √n solves
    KL·n − z·√(V·n) = L. (Crossing earlier only helps: the plan is conservative.)"""
    from .sequential import FAIL_GRID
    up, down = math.log(r1 / r0), math.log((1 - r1) / (1 - r0))
    kl = r1 * up + (1 - r1) * down
    var = r1 * (1 - r1) * (up - down) ** 2
    big_l = math.log(len(FAIL_GRID) / alpha)
    root = (zb * math.sqrt(var) + math.sqrt(zb * zb * var + 4 * kl * big_l)) / (2 * kl)
    return max(1, int(math.ceil(root * root)))


def plan(check: Any, spec: Any, step: Any, windows: int, persistence: int, samples: float, seconds: float,
         spread: float | None = None, se: float | None = None) -> dict[str, Any] | None:
    """The plan stated in status: samples needed, the measured rate (`samples` in `seconds`), how long they
    take at that rate, over what (the step for a sequential check, each window for the others), and whether
    the step or window is long enough. None when the check has nothing to plan. With `se` (reward: the
    window's standard error of the difference) also `mde`, the smallest difference the window detects with
    power `PLAN_POWER`: (z_{1−a} + z_{power})·se."""
    a = level(check, windows, persistence)
    n = needed(check, a, spread)
    if se is not None and seconds > 0:
        mde = {"mde": (_Z(1.0 - a) + _Z(PLAN_POWER)) * se, "power": PLAN_POWER, "level": a}
        if n is None:
            return mde
    if n is None or seconds <= 0:
        return None
    rate = samples / seconds
    per = "step" if check.sequential else "window"
    available = (step.duration if per == "step" else spec.analysis.interval) or 0.0
    need_seconds = n / rate if rate > 0 else math.inf
    return {"samples": n, "per": per, "rate": rate, "seconds": need_seconds if math.isfinite(need_seconds) else None,
            "available": available, "enough": bool(step.duration is None or need_seconds <= available),
            "power": PLAN_POWER, "level": a, "harm": HARM, **({"mde": mde["mde"]} if se is not None else {})}


def describe(p: Mapping[str, Any]) -> str:
    from .thresholds import fmt
    mde = f"; detects a difference of {fmt(p['mde'])} or more" if "mde" in p else ""
    if "samples" not in p:
        return f"this window detects a difference of {fmt(p['mde'])} or more with power {p['power']:.0%}"
    secs = p.get("seconds")
    took = "never at the measured rate" if secs is None else f"{_dur(secs)} at {fmt(p['rate'])}/s"
    verdict = "enough" if p.get("enough") else f"too short ({_dur(p['available'])})"
    return (f"needs {p['samples']} per {p['per']} to tell the tolerance from {p['harm']:g}x with power "
            f"{p['power']:.0%}: {took}; {p['per']} {verdict}{mde}")


def _dur(seconds: float) -> str:
    s = int(math.ceil(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec or not (h or m) else "")


def _routing(steps: Any, i: int) -> Any:
    """The routing step i runs with (a pause keeps the one before it), as `policies.machine.step_routing`."""
    from .status import Routing
    for step in reversed(steps[: i + 1]):
        if step.kind != "pause":
            return Routing(step.weight if step.kind == "canary" else 0, shadow=step.kind == "shadow",
                           interleave=step.kind == "interleave")
    return Routing()


def lint_warnings(spec: Any, rate: float) -> list[tuple[int, str, str]]:
    """(check index, field, message) for every step too short to tell a check's tolerance from 1.5x of it at
    `rate` requests per second, and every window that cannot reach minSamples. Offline there is no measured
    spread: shadow-wilcoxon, -rbo and -ndcg are planned only in status; shadow-mcnemar uses its smallest
    discordance (1.5x the tolerance), so its warning is a lower bound."""
    from .thresholds import applies, failure_limit, planned_windows
    out = []
    windows = planned_windows(spec)
    for i, c in enumerate(spec.analysis.checks):
        for j, step in enumerate(spec.steps):
            if step.kind == "pause" or not step.duration:
                continue
            routing = _routing(spec.steps, j)
            if not applies(c, routing) or (c.metric in ("shadow-mcnemar", "shadow-wilcoxon", "shadow-rbo",
                                                        "shadow-ndcg", "shadow-agreement",
                                                        "shadow-mean-abs-delta") and not routing.shadow):
                continue
            share = 1.0 if routing.shadow or routing.interleave else routing.candidate_weight / 100.0
            per_second = rate * share
            label = f"step {j + 1} ({step.describe()})"
            per_window = per_second * (step.duration if c.sequential and c.metric == "error-rate"
                                       else spec.analysis.interval)
            if c.metric is not None and c.prometheus is None and per_window < spec.analysis.min_samples:
                where = ("in the step" if c.sequential and c.metric == "error-rate"
                         else f"per {_dur(spec.analysis.interval)} window")
                out.append((i, "", f"check {c.name!r} at {rate:g} requests/s: {label} sees about "
                                   f"{per_window:.0f} samples {where} < minSamples {spec.analysis.min_samples}: "
                                   f"it will be Inconclusive"))
                continue
            p = plan(c, spec, step, windows, failure_limit(spec, c.name), per_second, 1.0)
            if p is not None and not p["enough"]:
                out.append((i, "", f"check {c.name!r} at {rate:g} requests/s: {label} is too short: "
                                   f"{describe(p)}"))
    return out


SAMPLES_PER_BIN = 10
"""Below this many candidate samples a bin, a binned drift `max` can Fail with no drift at all
(docs/statistics.md, `SECTION`)."""
SECTION = "Drift `max` judged on the bias-corrected estimate (psi, kl, js, hellinger, wasserstein)"


def small_window_warnings(spec: Any) -> list[tuple[int, str, str]]:
    """(check index, field, message) for every binned drift check with a static `max` whose windows may be
    judged from fewer than `SAMPLES_PER_BIN` samples a bin (`minSamples` < 10 × bins): such windows fail by
    chance (measured: 24% of windows of 30 samples over 10 bins with no drift; 0.3% at 100)."""
    from ._drift import DIVERGENCES     # the binned divergences: psi, kl, js, hellinger
    out = []
    for i, c in enumerate(spec.analysis.checks):
        if c.metric not in DIVERGENCES or c.max is None or c.dynamic is not None:
            continue
        need = SAMPLES_PER_BIN * c.bins
        if spec.analysis.min_samples < need:
            out.append((i, "max", f"check {c.name!r} judges {c.metric} over {c.bins} bins in windows of as few as "
                                  f"minSamples {spec.analysis.min_samples} samples: below about {need} "
                                  f"({SAMPLES_PER_BIN} a bin) a window with no drift at all can Fail "
                                  f"(docs/statistics.md \"{SECTION}\"); raise minSamples to {need} or use fewer bins"))
    return out
