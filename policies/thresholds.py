"""How a check's number becomes a verdict: static bounds, ratio to baseline, calibrated (A/A) bounds,
and the corrections that keep false alarms rare when the same check runs every window.

Three decisions live here, each tuned by `bench/decisions.py`:

1. **Drift `max` on psi/kl/js/hellinger/wasserstein judges the population, not the window.** The plug-in
   value of a small window is biased upward (E[PSI] ≈ (bins−1)(1/n+1/m) with no drift at all), so the
   verdict uses the bias-corrected `estimate` and its bootstrap CI from `StatResult`: Fail when a one-sided
   lower bound at `DRIFT_CONFIDENCE[metric]` exceeds `max`; Inconclusive when only the estimate does (the window is
   too small to tell — it blocks advancing but does not roll back); Pass otherwise. `value` in the result
   keeps the exact definition of docs/statistics.md. Persistence (`failureLimit` consecutive Fail windows) does the rest.
2. **p-value checks are corrected for testing every window.** The per-window level `a` is chosen so that,
   with no real difference, the chance of `L` (= failureLimit, 1 if immediate) consecutive rejections
   anywhere in the `N` analysis windows the rollout plans is at most `minPValue`:
   union bound (N−L+1)·a^L ≤ α  →  a = (α / (N−L+1))^(1/L), and never looser than α itself.
   N = Σ timed step durations / interval. Windows beyond the plan (a long manual pause) are not covered.
   This is Bonferroni alpha spending over the plan: stateless, so a restarted controller agrees with itself.
3. **Calibrated thresholds** (`dynamic: {sigmas: k}`) learn the metric's null distribution from A/A splits of
   the *baseline* window (two disjoint halves by request hash; never a sample against itself, nannyml#426).
   Values are stored normalised by their sample-size scale f(n₁, n₂): for divergences (psi, kl, chi2, mmd)
   f = 1/n₁ + 1/n₂, for distances (js, hellinger, wasserstein, ks) f = sqrt(1/n₁ + 1/n₂). The threshold
   for a candidate window of sizes (n_b, n_c) is (mean(u) + k'·sd(u)) · f(n_b, n_c), where k' turns the
   user's k sigmas into a prediction bound from only m A/A values (Student t, see `effective_sigmas`):
   plain mean + 3·sd of 5 values let 2.4% of A/A rollouts roll back in the benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

from .spec import PAIRED_METRICS, CheckSpec, RolloutSpec
from .status import Routing, Verdict

DRIFT_CONFIDENCE: dict[str, float] = {"psi": 0.5, "kl": 0.5, "js": 0.7, "hellinger": 0.7, "wasserstein": 0.7,
                                     "outlier-rate": 0.7}
"""One-sided confidence of the lower bound that must exceed `max` for a drift Fail, per metric, tuned by
`bench/decisions.py` (windows of 100-2,000 samples, failureLimit 2). PSI's bootstrap estimate already
over-corrects at small n (mean 0.24 for a true 0.30 at n = 100), so its point estimate (0.5) is enough;
the distances (js, hellinger, wasserstein) are noisier near zero and need the 70% bound to keep A/A and
half-threshold rollbacks rare (at 65%, js A/A rolled back 1.1% and wasserstein at half the threshold 3%)."""
ESTIMATED = frozenset({"psi", "kl", "js", "hellinger", "wasserstein", "outlier-rate"})
"""Metrics whose `max` is judged on the bias-corrected estimate and its CI."""
LINEAR_SCALE = frozenset({"psi", "kl", "chi2", "mmd"})
SQRT_SCALE = frozenset({"js", "hellinger", "wasserstein", "ks"})
CALIBRATABLE = LINEAR_SCALE | SQRT_SCALE
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    threshold: float | None
    reason: str


def fmt(x: float | None) -> str:
    """Numbers in reasons: 3 significant digits, never scientific for ordinary magnitudes."""
    if x is None:
        return "n/a"
    if x != x:
        return "NaN"
    if x == 0 or 1e-4 <= abs(x) < 1e6:
        return f"{x:.3g}"
    return f"{x:.2e}"


def lower_bound(estimate: float, ci_low: float, confidence: float | None = None) -> float:
    """One-sided lower bound at `confidence` (default 0.65) from a 95% two-sided interval
    (normal approximation)."""
    z = NormalDist().inv_cdf(0.65 if confidence is None else confidence)
    return estimate - (z / _Z95) * max(estimate - ci_low, 0.0)


def judge_max(name: str, metric: str, value: float, limit: float, estimate: float | None = None,
              ci_low: float | None = None, confidence: float | None = None) -> Judgement:
    """`value <= max`; for ESTIMATED metrics with an estimate, the bias-corrected rule of the module doc."""
    if metric in ESTIMATED and estimate is not None and ci_low is not None:
        confidence = DRIFT_CONFIDENCE.get(metric, 0.65) if confidence is None else confidence
        lo = lower_bound(estimate, ci_low, confidence)
        if lo > limit:
            bound = "" if confidence == 0.5 else f", {confidence:.0%} lower bound {fmt(lo)}"
            return Judgement(Verdict.FAIL, limit, f"{name} {fmt(value)} > {fmt(limit)} (bias-corrected "
                             f"{fmt(estimate)}{bound})")
        if estimate > limit:
            return Judgement(Verdict.INCONCLUSIVE, limit, f"{name} bias-corrected {fmt(estimate)} > {fmt(limit)} "
                             f"but its {confidence:.0%} lower bound {fmt(lo)} is not: window too small to tell")
        return Judgement(Verdict.PASS, limit, f"{name} {fmt(value)} <= {fmt(limit)} (bias-corrected {fmt(estimate)})")
    if value > limit:
        return Judgement(Verdict.FAIL, limit, f"{name} {fmt(value)} > {fmt(limit)}")
    return Judgement(Verdict.PASS, limit, f"{name} {fmt(value)} <= {fmt(limit)}")


def judge_min(name: str, value: float, limit: float) -> Judgement:
    if value < limit:
        return Judgement(Verdict.FAIL, limit, f"{name} {fmt(value)} < {fmt(limit)}")
    return Judgement(Verdict.PASS, limit, f"{name} {fmt(value)} >= {fmt(limit)}")


def judge_ratio(name: str, candidate: float, baseline: float, max_ratio: float) -> Judgement:
    """candidate / baseline <= max_ratio; threshold reported in the metric's own unit."""
    limit = baseline * max_ratio
    if candidate > limit:
        return Judgement(Verdict.FAIL, limit, f"{name} {fmt(candidate)} > {fmt(max_ratio)} x baseline "
                                              f"{fmt(baseline)} = {fmt(limit)}")
    return Judgement(Verdict.PASS, limit, f"{name} {fmt(candidate)} <= {fmt(max_ratio)} x baseline {fmt(baseline)}")


def planned_windows(spec: RolloutSpec) -> int:
    """Analysis windows the rollout plans: Σ timed step durations / interval (at least 1)."""
    total = sum(s.duration for s in spec.steps if s.duration)
    return max(1, math.ceil(total / spec.analysis.interval))


def window_alpha(alpha: float, windows: int, persistence: int) -> float:
    """Per-window level so that P(`persistence` consecutive false rejections in `windows`) <= alpha."""
    runs = max(1, windows - persistence + 1)
    return min(alpha, (alpha / runs) ** (1.0 / persistence))


def judge_p_value(name: str, p_value: float, alpha: float, windows: int, persistence: int,
                  value: float | None = None) -> Judgement:
    a = window_alpha(alpha, windows, persistence)
    how = f"minPValue {fmt(alpha)} spread over {windows} windows" + (
        f", {persistence} in a row" if persistence > 1 else "")
    stat = f" (statistic {fmt(value)})" if value is not None else ""
    if p_value < a:
        return Judgement(Verdict.FAIL, a, f"{name} p={fmt(p_value)} < {fmt(a)}{stat}; {how}")
    return Judgement(Verdict.PASS, a, f"{name} p={fmt(p_value)} >= {fmt(a)}{stat}; {how}")


# --- calibration -------------------------------------------------------------------------------------

def sample_scale(metric: str, n1: int, n2: int) -> float:
    """f(n₁, n₂): how the metric's null value scales with the two sample sizes (see module doc)."""
    base = 1.0 / max(n1, 1) + 1.0 / max(n2, 1)
    return base if metric in LINEAR_SCALE else math.sqrt(base)


def aa_unit(metric: str, value: float, n1: int, n2: int) -> float:
    """An A/A value made independent of the window's sample size."""
    return value / sample_scale(metric, n1, n2)


def effective_sigmas(sigmas: float, windows: int) -> float:
    """k sigmas as a prediction bound from `windows` A/A values: the multiple of their sd that a new null
    value exceeds as rarely as a normal exceeds k sigmas, t_{m−1}⁻¹(Φ(k))·sqrt(1 + 1/m). With 5 windows,
    3 sigmas becomes ~7.25; with 50, ~3.19 (mean and sd are themselves estimates)."""
    if windows < 2:
        return sigmas
    from scipy.stats import t as student_t

    return float(student_t.ppf(NormalDist().cdf(sigmas), windows - 1)) * math.sqrt(1.0 + 1.0 / windows)


def calibrated_limit(metric: str, units: Sequence[float], sigmas: float, n_b: int, n_c: int) -> float:
    """mean + k'·sd of the normalised A/A values (k' = `effective_sigmas`), scaled to the candidate
    window's sample sizes."""
    mean = sum(units) / len(units)
    var = sum((u - mean) ** 2 for u in units) / (len(units) - 1) if len(units) > 1 else 0.0
    k = effective_sigmas(sigmas, len(units))
    return (mean + k * math.sqrt(var)) * sample_scale(metric, n_b, n_c)


def judge_calibrated(check: CheckSpec, metric: str, value: float, units: Sequence[float],
                     n_b: int, n_c: int) -> Judgement:
    """The window's plug-in value (same definition the A/A values used) against the learned limit."""
    dyn = check.dynamic
    assert dyn is not None
    if len(units) < dyn.min_windows:
        return Judgement(Verdict.INCONCLUSIVE, None,
                         f"{check.name} calibrating: {len(units)}/{dyn.min_windows} A/A windows")
    limit = calibrated_limit(metric, units, dyn.sigmas, n_b, n_c)
    sense = "mean + %g sd of %d A/A windows" % (dyn.sigmas, len(units))
    if value > limit:
        return Judgement(Verdict.FAIL, limit, f"{check.name} {fmt(value)} > {fmt(limit)} ({sense})")
    return Judgement(Verdict.PASS, limit, f"{check.name} {fmt(value)} <= {fmt(limit)} ({sense})")


# --- which checks count, and how many windows in a row -------------------------------------------------

def applies(check: CheckSpec, routing: Routing) -> bool:
    """Whether the check has evidence to judge under this routing: shadow pair checks need mirroring,
    interleave needs interleaving, reward a canary or interleave step; every other check applies always. A check that does not apply
    neither blocks a step nor counts towards inconclusiveLimit."""
    if check.metric in ("shadow-agreement", "shadow-mean-abs-delta") or check.metric in PAIRED_METRICS:
        return routing.shadow
    if check.metric == "interleave":
        return routing.interleave
    if check.metric == "reward":            # both versions earn rewards in a canary, or credited in interleaving
        return routing.interleave or routing.candidate_weight > 0
    return True


def failure_limit(spec: RolloutSpec, check_name: str) -> int:
    """Consecutive Fail windows before the check acts: 1 if immediate or sequential (its evidence is valid
    however often it is looked at), else its own or the analysis default."""
    c = next((c for c in spec.analysis.checks if c.name == check_name), None)
    if c is None:
        return spec.analysis.failure_limit
    if c.immediate or c.sequential:
        return 1
    return c.failure_limit or spec.analysis.failure_limit
