"""Checks: one verdict per configured check for one analysis window, each with the numbers and a reason.

`evaluate(spec, observations, status)` is pure: it reads the merged router summaries of both versions
(and any Prometheus values the shell fetched) and returns a `CheckResult` per `spec.analysis.checks`
entry, in order. Evidence that is missing, too small, NaN or unreadable gives Inconclusive with the reason
("candidate has 12 samples < minSamples 200"); it never passes. How numbers become verdicts (bias-corrected
drift, corrected p-values, calibrated thresholds) is `policies.thresholds`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from . import fairness, familywise, input_checks, stats
from ._result import StatError, StatResult
from .errors import EvidenceError, ModelRolloutError, verdict_for
from .paired_checks import evaluate_paired
from .reward_checks import evaluate_reward
from .outlier import JoinedFeatures, outlier_rate
from .check_meta import SEVERITIES, TARGETS, check_severity, check_target, render_query
from .spec import PAIRED_METRICS, CheckSpec, RolloutSpec
from .status import CheckResult, RolloutStatus, Verdict
from .summaries import (
    LATENCY_BOUNDS, LATENCY_EXCLUSIONS, CategoricalSummary, EmbeddingSummary, InterleaveSummary, LatencyHistogram,
    NumericSummary, PairedSummary, VersionWindow,
)
from .thresholds import (
    CALIBRATABLE, Judgement, aa_unit, applies, failure_limit, fmt, judge_calibrated, judge_max, judge_min,
    judge_p_value, judge_ratio, planned_windows, window_alpha,
)

__all__ = ["Observations", "SourceError", "CheckResult", "Verdict", "evaluate", "render_query", "applies",
           "check_target", "check_severity", "TARGETS", "SEVERITIES"]

MANN_WHITNEY_ALPHA = 0.02
"""Kayenta's judge: 98% confidence when the check gives no minPValue."""
MANN_WHITNEY_EFFECT = 0.56
"""…plus an effect-size floor: P(candidate slower than baseline) >= 0.56 (a "small" Vargha–Delaney A)."""


class SourceError(EvidenceError):
    """An external evidence source (Prometheus) failed or returned no usable value: temporary, the check
    is Inconclusive with this message and the next window tries again."""


@dataclass(frozen=True)
class Observations:
    """Everything one analysis window saw, merged over router replicas."""

    window_start: float
    window_end: float
    baseline: VersionWindow
    candidate: VersionWindow
    paired: PairedSummary | None = None
    interleave: InterleaveSummary | None = None
    prometheus: Mapping[str, float | SourceError] = field(default_factory=dict)


def evaluate(spec: RolloutSpec, obs: Observations, status: RolloutStatus | Mapping[str, Any] | None = None
             ) -> tuple[CheckResult, ...]:
    """One `CheckResult` per configured check, in spec order; Holm's adjustment and the sequential checks'
    evidence applied (`policies.familywise`). With `spec.expectations`, the inputs' verdict follows
    (`policies.input_checks`); when it fails, no other check is judged on the window (each is `skipped`)."""
    st = RolloutStatus.from_status(status)
    inputs = input_checks.judge(spec, obs.baseline, obs.candidate) if spec.expectations is not None else None
    if inputs is not None and inputs.verdict is Verdict.FAIL:
        why = "not judged: the window's inputs are broken (see input-expectations)"
        return tuple(CheckResult(c.name, c.metric, None, None, Verdict.INCONCLUSIVE, 0, reason=f"{c.name}: {why}",
                                 action=c.action, immediate=c.immediate, skipped=True)
                     for c in spec.analysis.checks) + (inputs,)
    tested: dict[str, dict[str, Any]] = {}
    results = [_evaluate_one(_Ctx(spec, c, obs, st, tested)) for c in spec.analysis.checks]
    return tuple(familywise.finish(spec, st, results, tested, obs.window_end - obs.window_start,
                                   lambda c, adjusted: _evaluate_one(_Ctx(spec, c, obs, st, {}, adjusted)))
                 ) + ((inputs,) if inputs is not None else ())


@dataclass(frozen=True)
class _Ctx:
    spec: RolloutSpec
    check: CheckSpec
    obs: Observations
    status: RolloutStatus
    tested: dict = field(default_factory=dict)
    """What the window tested, per check: p-values and levels, or error counts (`familywise.finish`)."""
    adjusted: Mapping[str, float] = field(default_factory=dict)
    """Holm-adjusted p-values the checks are judged on when re-evaluated."""

    @property
    def name(self) -> str:
        return self.check.name

    def result(self, verdict: Verdict, value: float | None, threshold: float | None, samples: int, reason: str,
               stat: StatResult | None = None, **kw: Any) -> CheckResult:
        c = self.check
        return CheckResult(
            c.name, c.metric, value, threshold, verdict, int(samples),
            p_value=stat.p_value if stat else None, estimate=stat.estimate if stat else None,
            ci_low=stat.ci_low if stat else None, ci_high=stat.ci_high if stat else None,
            reason=reason, action=c.action, immediate=c.immediate, **kw)

    def inconclusive(self, reason: str, samples: int = 0, value: float | None = None, **kw: Any) -> CheckResult:
        return self.result(Verdict.INCONCLUSIVE, value, None, samples, f"{self.name}: {reason}", **kw)

    def judged(self, js: list[Judgement], value: float, samples: int, stat: StatResult | None = None,
               **kw: Any) -> CheckResult:
        if not js:
            return self.inconclusive(f"no threshold applies to metric {self.check.metric}", samples, value)
        worst = max(js, key=lambda j: j.verdict.severity)
        return self.result(worst.verdict, value, worst.threshold, samples, worst.reason, stat, **kw)

    def judge_p(self, p: float, alpha: float, value: float | None = None, p_pass: float | None = None) -> Judgement:
        """Fail when p is below `alpha` spread over the planned windows (docs/statistics.md "p-values over
        many windows"). `p_pass` (a p-value of the reverse hypothesis, where the check has one) is kept for
        the sequential test."""
        return _p_value(self, p, alpha, value, p_pass)

    def too_few(self, n_b: int, n_c: int, what: str = "samples") -> str | None:
        need = self.spec.analysis.min_samples
        for side, n in (("candidate", n_c), ("baseline", n_b)):
            if n < need:
                return f"{side} has {n} {what} < minSamples {need}"
        return None


def _evaluate_one(ctx: _Ctx) -> CheckResult:
    c = ctx.check
    if not applies(c, ctx.status.routing):
        mode = {"interleave": "interleaving", "reward": "a canary or interleave step"}.get(c.metric, "mirroring")
        return ctx.inconclusive(f"not applicable without {mode}", skipped=True)
    try:
        if c.prometheus is not None:
            r = _prometheus(ctx)
        else:
            r = _EVALUATORS[c.metric](ctx)
    except ModelRolloutError as e:   # a statistic or summary that cannot be computed: its family's verdict
        if verdict_for(e) is not Verdict.INCONCLUSIVE:
            raise
        return ctx.inconclusive(str(e))
    if r.verdict is not Verdict.INCONCLUSIVE and (r.value is None or not math.isfinite(r.value)):
        return ctx.inconclusive(f"value is {r.value}", r.samples)
    return r


# --- drift -------------------------------------------------------------------------------------------

def _summaries(ctx: _Ctx) -> tuple[Any, Any, str]:
    feat = ctx.check.feature
    if ctx.check.on == "embedding":
        return ctx.obs.baseline.embedding, ctx.obs.candidate.embedding, "the embedding"
    if ctx.check.features:
        b, c = ([w.features.get(f) for f in ctx.check.features] for w in (ctx.obs.baseline, ctx.obs.candidate))
        return (None if None in b else JoinedFeatures(b)), (None if None in c else JoinedFeatures(c)), ctx.check.on
    if feat is None:
        return ctx.obs.baseline.prediction, ctx.obs.candidate.prediction, "prediction"
    return ctx.obs.baseline.features.get(feat), ctx.obs.candidate.features.get(feat), f"feature {feat!r}"


def _n(summary: Any) -> int:
    return int(summary.n)


def _data(summary: Any) -> Any:
    if isinstance(summary, NumericSummary):
        return summary.values()
    if isinstance(summary, CategoricalSummary):
        return summary.counts()
    if isinstance(summary, EmbeddingSummary):
        return summary.matrix()
    if isinstance(summary, JoinedFeatures):
        return summary.rows()
    raise StatError(f"unsupported summary type {type(summary).__name__}")


def _compute(metric: str, b: Any, c: Any, bins: int, level: float | None = None) -> StatResult:
    if metric == "outlier-rate":
        if not isinstance(b, np.ndarray) or not isinstance(c, np.ndarray):
            raise StatError("outlier-rate needs numbers or embeddings, not categories")
        return outlier_rate(b, c)
    if metric == "mmd":
        # The permutation count follows the level the p-value is judged at, so the gate can fail.
        return stats.compute("mmd", b, c, seed=0, level=level)
    if metric in ("psi", "kl", "js", "hellinger", "chi2"):
        return stats.compute(metric, b, c, bins=bins)
    return stats.compute(metric, b, c)


def _drift(ctx: _Ctx) -> CheckResult:
    c = ctx.check
    b_sum, c_sum, what = _summaries(ctx)
    for side, s in (("baseline", b_sum), ("candidate", c_sum)):
        if s is None:
            return ctx.inconclusive(f"no values of {what} in the {side} window")
    n_b, n_c = _n(b_sum), _n(c_sum)
    short = ctx.too_few(n_b, n_c)
    if short:
        return ctx.inconclusive(short, n_c)
    metric = c.metric
    level = (window_alpha(c.min_p_value, planned_windows(ctx.spec), failure_limit(ctx.spec, c.name))
             if c.min_p_value is not None else None)
    res = _compute(metric, _data(b_sum), _data(c_sum), c.bins, level)
    if res.value is None or not math.isfinite(res.value):
        return ctx.inconclusive(f"{metric} is {res.value}", n_c)
    judgements: list[Judgement] = []
    extra: dict[str, Any] = {}
    if c.dynamic is not None:
        j, extra = _calibrated(ctx, b_sum, res, n_b, n_c)
        judgements.append(j)
    if c.max is not None:
        judgements.append(judge_max(c.name, metric, res.value, c.max, res.estimate, res.ci_low))
    if c.min is not None:
        judgements.append(judge_min(c.name, res.value, c.min))
    if c.min_p_value is not None:
        if res.p_value is None:
            judgements.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: {metric} has no p-value; "
                                                                     f"use max instead of minPValue"))
        else:
            judgements.append(_p_value(ctx, res.p_value, c.min_p_value, res.value))
    if c.max_ratio_to_baseline is not None:
        judgements.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: maxRatioToBaseline does not apply to "
                                                                 f"drift metric {metric}; use max or dynamic"))
    return ctx.judged(judgements, res.value, n_c, res, **extra)


def _p_value(ctx: _Ctx, p: float, alpha: float, value: float | None = None, p_pass: float | None = None
             ) -> Judgement:
    windows, limit = planned_windows(ctx.spec), failure_limit(ctx.spec, ctx.name)
    ctx.tested.setdefault(ctx.name, {}).update(p=p, p_pass=p_pass, value=value, level=window_alpha(alpha, windows, limit))
    if ctx.check.sequential:       # the evidence over the windows decides (policies.sequential)
        return Judgement(Verdict.PASS, None, f"{ctx.name} p={fmt(p)} in this window")
    if ctx.name in ctx.adjusted:
        j = judge_p_value(ctx.name, ctx.adjusted[ctx.name], alpha, windows, limit, value)
        return replace(j, reason=f"{j.reason} ({familywise.holm_note(ctx.name, p, ctx.adjusted[ctx.name], len(ctx.adjusted))})")
    return judge_p_value(ctx.name, p, alpha, windows, limit, value)


def _calibrated(ctx: _Ctx, b_sum: Any, res: StatResult, n_b: int, n_c: int) -> tuple[Judgement, dict]:
    c = ctx.check
    prior = ctx.status.check(c.name)
    units = list(prior.calibration) if prior is not None else []
    if c.metric not in CALIBRATABLE or not isinstance(b_sum, NumericSummary):
        return Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: dynamic thresholds need numeric values and one "
                         f"of {', '.join(sorted(CALIBRATABLE))}"), {}
    step = ctx.spec.steps[min(ctx.status.current_step, len(ctx.spec.steps) - 1)]
    extra: dict[str, Any] = {}
    if step.kind == "shadow" or len(units) < c.dynamic.min_windows:
        h1, h2 = b_sum.aa_split()
        if min(h1.n, h2.n) >= max(2, ctx.spec.analysis.min_samples // 2):
            aa = _compute(c.metric, _data(h1), _data(h2), c.bins)
            if aa.value is not None and math.isfinite(aa.value):
                u = aa_unit(c.metric, aa.value, h1.n, h2.n)
                units.append(u)
                extra["aa_value"] = u
    j = judge_calibrated(c, c.metric, res.value, units, n_b, n_c)
    if j.verdict is Verdict.INCONCLUSIVE:
        extra["calibrating"] = True
    return j, extra


# --- operational -------------------------------------------------------------------------------------

def _error_rate(ctx: _Ctx) -> CheckResult:
    c = ctx.check
    b, cand = ctx.obs.baseline, ctx.obs.candidate
    # A value the summary rejected as non-finite (NaN score) is an error too, even if not flagged as one.
    errors = cand.error_count() + int(getattr(cand.prediction, "invalid", 0))
    n = cand.requests
    need = ctx.spec.analysis.min_samples
    js: list[Judgement] = []
    ctx.tested[c.name] = {"samples": n}
    if c.sequential:        # max is judged by the evidence over the windows (policies.sequential)
        ctx.tested[c.name].update(errors=errors, requests=n)
        ctx = replace(ctx, check=replace(c, max=None, min_p_value=None))
        js.append(Judgement(Verdict.PASS, c.max, f"{c.name} {errors} errors in {n} requests in this window"))
        c = ctx.check
        need = 0                # minSamples applies to the step's requests (policies.sequential)
    if n < need:
        # Too few requests to pass — but enough errors can already prove a Fail: even if the next
        # requests up to minSamples all succeed, the rate would stay above max.
        if c.max is not None and errors / need > c.max:
            return ctx.result(Verdict.FAIL, errors / max(n, 1), c.max, n,
                              f"{c.name} {errors} errors in {n} requests: over {fmt(c.max)} even if the next "
                              f"{need - n} succeed")
        return ctx.inconclusive(f"candidate has {n} requests < minSamples {need}", n)
    rate = errors / n
    # With no baseline errors the ratio is undefined; one error per baseline window is the floor.
    js += _bounds(ctx, rate, (b.requests, "requests",
                             lambda: max(b.error_count() + int(getattr(b.prediction, "invalid", 0)), 1) / b.requests))
    return ctx.judged(js, rate, n)


_LATENCY_Q = {"latency-p50": 0.5, "latency-p90": 0.9, "latency-p99": 0.99}


def _latency_value(h: LatencyHistogram, metric: str) -> float | None:
    return h.mean() if metric == "latency-mean" else h.quantile(_LATENCY_Q[metric])


LATENCY_EXCLUDED_MAX = 0.01
"""Share of a version's timed calls the router may have left out of its latency summary (`latency_excluded`:
it could not time them fairly) before the window's latency is not comparable: beyond it even a p99 could
hide in what was left out."""


def _not_comparable(ctx: _Ctx) -> CheckResult | None:
    """Inconclusive when either version's latency in this window is not comparable, saying why."""
    parts = []
    for side, w in (("candidate", ctx.obs.candidate), ("baseline", ctx.obs.baseline)):
        excluded = getattr(w, "latency_excluded", None) or {}
        left_out = sum(excluded.values())
        if left_out and left_out > LATENCY_EXCLUDED_MAX * (left_out + w.latency.count):
            why = "; ".join(f"{n} {k}: {LATENCY_EXCLUSIONS.get(k, k)}" for k, n in sorted(excluded.items()))
            parts.append(f"{left_out} of {left_out + w.latency.count} {side} calls not timed fairly ({why})")
    if not parts:
        return None
    return ctx.inconclusive(f"latency not comparable in this window: {'; '.join(parts)}",
                            ctx.obs.candidate.latency.count)


def _excluded(w: VersionWindow) -> int:
    return sum((getattr(w, "latency_excluded", None) or {}).values())


def _latency_range(h: LatencyHistogram, metric: str, excluded: int) -> tuple[float, float]:
    """Where the version's value lies whatever latencies its `excluded` untimed calls had: the q-quantile of
    all calls is at least the timed calls' quantile at (q·total − e)/n (all left out were faster) and at most
    the one at q·total/n (all slower; unbounded past the largest); the mean at least (n/total) · mean."""
    v = _latency_value(h, metric)
    n = h.count
    if not excluded or v is None:
        return (v, v) if v is not None else (0.0, math.inf)
    total = n + excluded
    if metric == "latency-mean":
        return v * n / total, math.inf
    q = _LATENCY_Q[metric]
    lo_q, hi_q = (q * total - excluded) / n, q * total / n
    lo = h.quantile(lo_q) if lo_q > 0 else 0.0
    hi = h.quantile(hi_q) if hi_q <= 1 else math.inf
    return (lo if lo is not None else 0.0), (hi if hi is not None else math.inf)


def _latency(ctx: _Ctx) -> CheckResult:
    c = ctx.check
    hb, hc = ctx.obs.baseline.latency, ctx.obs.candidate.latency
    need = ctx.spec.analysis.min_samples
    if hc.count < need:
        return ctx.inconclusive(f"candidate has {hc.count} latency samples < minSamples {need}", hc.count)
    v = _latency_value(hc, c.metric)
    e_b, e_c = _excluded(ctx.obs.baseline), _excluded(ctx.obs.candidate)
    if not (e_b or e_c):
        js = _bounds(ctx, v, (hb.count, "latency samples", lambda: _latency_value(hb, c.metric)))
        return ctx.judged(js, v, hc.count)
    # Calls the router could not time fairly are out of the summaries; judge only what holds whatever
    # their latencies were (docs/statistics.md "Latency exclusions").
    lo_c, hi_c = _latency_range(hc, c.metric, e_c)
    js: list[Judgement] = []
    if c.max is not None:
        js.append(_decide_range(c.name, lo_c, hi_c, c.max, f"{fmt(c.max)}"))
    if c.max_ratio_to_baseline is not None:
        if hb.count < need:
            js.append(Judgement(Verdict.INCONCLUSIVE, None,
                                f"{c.name}: baseline has {hb.count} latency samples < minSamples {need}"))
        else:
            lo_b, hi_b = _latency_range(hb, c.metric, e_b)
            r = c.max_ratio_to_baseline
            if lo_c > r * hi_b:
                js.append(Judgement(Verdict.FAIL, r * hi_b, f"{c.name} {fmt(v)} > {fmt(r)} x baseline: at least "
                                    f"{fmt(lo_c)} > {fmt(r)} x at most {fmt(hi_b)}"))
            elif hi_c <= r * lo_b:
                js.append(Judgement(Verdict.PASS, r * lo_b, f"{c.name} {fmt(v)} <= {fmt(r)} x baseline: at most "
                                    f"{fmt(hi_c)} <= {fmt(r)} x at least {fmt(lo_b)}"))
            else:
                js.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name} {fmt(v)}: not comparable with "
                                    f"{fmt(r)} x baseline in this window"))
    if c.min is not None:
        js.append(judge_min(c.name, v, c.min))
    for fld, label in ((c.dynamic, "dynamic"), (c.min_p_value, "minPValue")):
        if fld is not None:
            js.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: {label} does not apply to {c.metric}"))
    r = ctx.judged(js, v, hc.count)
    parts = [f"{e} of {e + w.latency.count} {side} calls not timed fairly ({_why(w)})"
             for side, w, e in (("candidate", ctx.obs.candidate, e_c), ("baseline", ctx.obs.baseline, e_b)) if e]
    note = "; ".join(parts)
    if r.verdict is Verdict.INCONCLUSIVE:
        return replace(r, reason=f"{c.name}: latency not comparable in this window: {note}")
    return replace(r, reason=f"{r.reason} (whatever the untimed calls took: {note})")


def _why(w: VersionWindow) -> str:
    excluded = getattr(w, "latency_excluded", None) or {}
    return "; ".join(f"{n} {k}: {LATENCY_EXCLUSIONS.get(k, k)}" for k, n in sorted(excluded.items()))


def _decide_range(name: str, lo: float, hi: float, limit: float, shown: str) -> Judgement:
    if lo > limit:
        return Judgement(Verdict.FAIL, limit, f"{name} at least {fmt(lo)} > {shown}")
    if hi <= limit:
        return Judgement(Verdict.PASS, limit, f"{name} at most {fmt(hi)} <= {shown}")
    return Judgement(Verdict.INCONCLUSIVE, None, f"{name} between {fmt(lo)} and {fmt(hi)}, {shown} inside")


def _histogram_sample(h: LatencyHistogram) -> np.ndarray:
    """Each bucket's count at the bucket's geometric midpoint (ties within a bucket)."""
    upper = np.append(LATENCY_BOUNDS, LATENCY_BOUNDS[-1] * 10 ** 0.05)
    lower = np.concatenate(([LATENCY_BOUNDS[0] / 10 ** 0.05], upper[:-1]))
    counts = np.diff(np.concatenate(([0], h.buckets()[1])))
    return np.repeat(np.sqrt(lower * upper), counts)


def _mann_whitney_latency(ctx: _Ctx) -> CheckResult:
    """Kayenta's judge: candidate slower with p < alpha (corrected over windows) AND a real effect."""
    c = ctx.check
    hb, hc = ctx.obs.baseline.latency, ctx.obs.candidate.latency
    short = ctx.too_few(hb.count, hc.count, "latency samples")
    if short:
        return ctx.inconclusive(short, hc.count)
    unfair = _not_comparable(ctx)
    if unfair is not None:
        return unfair
    res = stats.mann_whitney(_histogram_sample(hb), _histogram_sample(hc))
    slower = 1.0 - float(res.detail["effect_size"])       # P(candidate > baseline), ties half
    alpha = c.min_p_value if c.min_p_value is not None else MANN_WHITNEY_ALPHA
    pj = _p_value(ctx, res.p_value, alpha, slower)
    ratio = (hc.mean() or 0.0) / (hb.mean() or 1.0)
    if c.max_ratio_to_baseline is not None:
        big, floor = ratio > c.max_ratio_to_baseline, f"mean ratio {fmt(ratio)} > {fmt(c.max_ratio_to_baseline)}"
    else:
        big, floor = slower >= MANN_WHITNEY_EFFECT, f"P(candidate slower) {fmt(slower)} >= {MANN_WHITNEY_EFFECT}"
    if pj.verdict is Verdict.FAIL and big:
        return ctx.result(Verdict.FAIL, slower, pj.threshold, hc.count, f"{pj.reason}; {floor}", res)
    why = pj.reason if pj.verdict is Verdict.PASS else f"{pj.reason} but effect too small ({floor} is false)"
    return ctx.result(Verdict.PASS, slower, pj.threshold, hc.count, why, res)


# --- outcomes ----------------------------------------------------------------------------------------

def _shadow(ctx: _Ctx) -> CheckResult:
    c = ctx.check
    p = ctx.obs.paired
    if p is None or p.n == 0:
        return ctx.inconclusive("no shadow pairs in this window")
    if c.metric == "shadow-agreement":
        n, v = p.n_categorical, p.agreement_rate
        if v is None:
            return ctx.inconclusive("agreement needs class or ranking outputs; use shadow-mean-abs-delta", p.n)
    else:
        n, v = p.n_numeric, p.mean_abs_delta
        if v is None:
            return ctx.inconclusive("mean |delta| needs score outputs; use shadow-agreement", p.n)
    need = ctx.spec.analysis.min_samples
    if n < need:
        return ctx.inconclusive(f"{n} shadow pairs < minSamples {need}", n)
    ctx.tested[c.name] = {"samples": n}         # for the plan (policies.planning)
    return ctx.judged(_bounds(ctx, v), v, n)


def _bounds(ctx: _Ctx, v: float,
            baseline: tuple[int, str, Callable[[], float | None]] | None = None) -> list[Judgement]:
    """`max` / `min` on the candidate's value; `maxRatioToBaseline` where the metric has a `baseline`
    (its sample count, their unit, and the baseline's value) once that has minSamples."""
    c = ctx.check
    js = []
    if c.max is not None:
        js.append(judge_max(c.name, c.metric, v, c.max))
    if c.min is not None:
        js.append(judge_min(c.name, v, c.min))
    if c.max_ratio_to_baseline is not None and baseline is not None:
        n, unit, value = baseline
        need = ctx.spec.analysis.min_samples
        if n < need:
            js.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: baseline has {n} {unit} < minSamples {need}"))
        else:
            js.append(judge_ratio(c.name, v, value(), c.max_ratio_to_baseline))
    unusable = ((None if baseline else c.max_ratio_to_baseline, "maxRatioToBaseline"), (c.dynamic, "dynamic"),
                (c.min_p_value, "minPValue"))
    for fld, label in unusable:
        if fld is not None:
            js.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: {label} does not apply to {c.metric}"))
    return js


def _interleave(ctx: _Ctx) -> CheckResult:
    c = ctx.check
    il = ctx.obs.interleave
    n = il.n if il is not None else 0
    need = ctx.spec.analysis.min_samples
    if n < need:
        return ctx.inconclusive(f"{n} interleaved impressions with feedback < minSamples {need}", n)
    res = il.test()
    delta = res.value
    ctx.tested.setdefault(c.name, {}).update(samples=n)
    js: list[Judgement] = []
    if c.min is not None:
        js.append(judge_min(c.name, delta, c.min))
    if c.max is not None:
        js.append(judge_max(c.name, "interleave", delta, c.max))
    if c.min_p_value is not None:
        pj = _p_value(ctx, res.p_value, c.min_p_value, delta)
        if pj.verdict is Verdict.FAIL and delta >= 0:     # significantly *better* is not a failure
            pj = Judgement(Verdict.PASS, pj.threshold, f"{pj.reason}; candidate wins (delta {fmt(delta)})")
        js.append(pj)
    if c.max_ratio_to_baseline is not None or c.dynamic is not None:
        js.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: use min, max or minPValue for interleave"))
    return ctx.judged(js, delta, n, res)


def _segment_rows(ctx: _Ctx, kind: str, window: VersionWindow | None = None) -> dict[str, tuple[int, int]]:
    return (window or ctx.obs.candidate).segments.rows(kind, ctx.check.segment)


def _accuracy(ctx: _Ctx) -> CheckResult:
    rows = _segment_rows(ctx, "accuracy")
    rows = {k: v for k, v in rows.items() if v[0] > 0}
    n = sum(v[0] for v in rows.values())
    need = ctx.spec.analysis.min_samples
    if n < need:
        return ctx.inconclusive(f"candidate has {n} labelled predictions < minSamples {need}", n)
    if ctx.check.segment is None:
        v = sum(r[1] for r in rows.values()) / n
        ctx.tested[ctx.check.name] = {"samples": n}
        return ctx.judged(_bounds(ctx, v), v, n)
    worst = min(rows, key=lambda k: rows[k][1] / rows[k][0])
    v = rows[worst][1] / rows[worst][0]
    r = ctx.judged(_bounds(ctx, v), v, n)
    return replace(r, reason=f"{r.reason} (worst {ctx.check.segment}={worst})")


def _fairness(ctx: _Ctx) -> CheckResult:
    """A fairness ratio acts only on evidence: Fail when its simultaneous upper bound is below `min`, or
    below `minRatioToBaseline` x the baseline's lower bound; too few positives is Inconclusive with the
    counts named (docs/statistics.md "Fairness")."""
    c = ctx.check
    kind, fn, what = (("positives", stats.disparate_impact, "positive") if c.metric == "disparate-impact"
                      else ("tpr_counts", stats.equal_opportunity, "true positive"))
    rows = _segment_rows(ctx, kind)
    n = sum(v[0] for v in rows.values())
    need = ctx.spec.analysis.min_samples
    if n < need:
        unit = "predictions" if kind == "positives" else "labelled positives"
        return ctx.inconclusive(f"candidate has {n} {unit} with segment {c.segment!r} < minSamples {need}", n)
    evidence = fairness.describe_counts(rows, what)
    if sum(v[1] for v in rows.values()) < fairness.MIN_POSITIVES:
        return ctx.inconclusive(f"too few {what}s to compare segments ({evidence}; need "
                                f"{fairness.MIN_POSITIVES} in all)", n)
    res = fn(rows)
    lower, upper = fairness.ratio_bounds(rows)
    conf = f"{fairness.FAIRNESS_CONFIDENCE:.0%}"
    js: list[Judgement] = []
    if c.min is not None:
        if upper < c.min:
            js.append(Judgement(Verdict.FAIL, c.min, f"{c.name} {fmt(res.value)} < {fmt(c.min)}: its {conf} upper "
                                                     f"bound {fmt(upper)} is below too ({evidence})"))
        else:
            js.append(Judgement(Verdict.PASS, c.min, f"{c.name} {fmt(res.value)} not shown below {fmt(c.min)} "
                                                     f"({conf} upper bound {fmt(upper)}; {evidence})"))
    if c.min_ratio_to_baseline is not None:
        b_rows = _segment_rows(ctx, kind, ctx.obs.baseline)
        if sum(v[0] for v in b_rows.values()) < need or sum(v[1] for v in b_rows.values()) < fairness.MIN_POSITIVES:
            js.append(Judgement(Verdict.INCONCLUSIVE, None, f"{c.name}: baseline has too few {what}s to compare "
                                f"with ({fairness.describe_counts(b_rows, what)})"))
        else:
            b_value = fn(b_rows).value
            b_lower, _ = fairness.ratio_bounds(b_rows)
            limit = c.min_ratio_to_baseline * b_lower
            if upper < limit:
                js.append(Judgement(Verdict.FAIL, limit, f"{c.name} {fmt(res.value)} vs baseline {fmt(b_value)}: "
                                    f"upper bound {fmt(upper)} < {fmt(c.min_ratio_to_baseline)} x baseline's lower "
                                    f"bound {fmt(b_lower)} ({evidence})"))
            else:
                js.append(Judgement(Verdict.PASS, limit, f"{c.name} {fmt(res.value)} not shown below "
                                    f"{fmt(c.min_ratio_to_baseline)} x baseline {fmt(b_value)} ({evidence})"))
    if c.max is not None:
        js.append(judge_max(c.name, c.metric, res.value, c.max))
    r = ctx.judged(js, res.value, n, replace(res, ci_low=lower, ci_high=upper))
    lo, hi = res.detail.get("lowest"), res.detail.get("highest")
    return replace(r, reason=f"{r.reason} [{c.segment}={lo} vs {hi}]")


def _prometheus(ctx: _Ctx) -> CheckResult:
    q = ctx.check.prometheus
    v = ctx.obs.prometheus.get(ctx.name)
    if v is None:
        return ctx.inconclusive("no Prometheus value for this window")
    if isinstance(v, SourceError):
        return ctx.inconclusive(str(v))
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return ctx.inconclusive(f"Prometheus returned {v!r}, not a finite number")
    js = []
    if q.max is not None:
        js.append(judge_max(ctx.name, "prometheus", float(v), q.max))
    if q.min is not None:
        js.append(judge_min(ctx.name, float(v), q.min))
    return ctx.judged(js, float(v), 1)


# --- attributions ------------------------------------------------------------------------------------

def _attribution(ctx: _Ctx) -> CheckResult:
    """Kendall's tau between the versions' feature-importance rankings (mean |attribution| per feature)."""
    b_sum, c_sum = ctx.obs.baseline.attributions, ctx.obs.candidate.attributions
    for side, s in (("baseline", b_sum), ("candidate", c_sum)):
        if s is None or s.n == 0:
            return ctx.inconclusive(f"no attributions in the {side} window (does the model return them at "
                                    f"spec.output.attributions {ctx.spec.output.attributions!r}?)")
    short = ctx.too_few(b_sum.n, c_sum.n, "attributed predictions")
    if short:
        return ctx.inconclusive(short, c_sum.n)
    rb, rc = b_sum.ranking(), c_sum.ranking()
    res = stats.kendall_tau(rb, rc)
    r = ctx.judged(_bounds(ctx, res.value), res.value, c_sum.n, res)
    top = lambda ranking: ", ".join(ranking[:3])  # noqa: E731
    return replace(r, reason=f"{r.reason} (top features baseline: {top(rb)}; candidate: {top(rc)})")


_EVALUATORS: dict[str, Callable[[_Ctx], CheckResult]] = {
    **{m: _drift for m in ("psi", "kl", "js", "hellinger", "ks", "chi2", "wasserstein", "mmd", "centroid-cosine",
                           "outlier-rate")},
    "error-rate": _error_rate,
    **{m: _latency for m in ("latency-p50", "latency-p90", "latency-p99", "latency-mean")},
    "mann-whitney-latency": _mann_whitney_latency,
    "shadow-agreement": _shadow, "shadow-mean-abs-delta": _shadow,
    "interleave": _interleave, "accuracy": _accuracy,
    "disparate-impact": _fairness, "equal-opportunity": _fairness,
    "attribution-tau": _attribution,
    **{m: evaluate_paired for m in PAIRED_METRICS},
    "reward": evaluate_reward,
}
