"""The paired checks of the shadow step: McNemar, Wilcoxon with a tolerance, and ranking agreement.

Both versions answered the same requests, so these checks test per-request differences (the window's
`PairedSummary`) instead of comparing two samples as if they were independent. Each acts only on evidence:
Fail when the test rejects "within tolerance" at the check's per-window level, Inconclusive when the
estimate is beyond the tolerance but not shown to be, Pass otherwise (docs/statistics.md "Paired tests
(shadow)"). The evaluators take the `_Ctx` of `policies.checks` (duck-typed: this module does not import it).
"""
from __future__ import annotations

from typing import Any

from . import _paired
from ._result import StatResult
from .outcome.bucket import agreement_name
from .status import Verdict
from .thresholds import Judgement, fmt

PAIRED_ALPHA = 0.05
"""Level of a paired test when the check gives no minPValue (spread over the planned windows like every
p-value check)."""


def paired_alpha(check: Any) -> float:
    return check.min_p_value if check.min_p_value is not None else PAIRED_ALPHA


def evaluate_paired(ctx: Any) -> Any:
    c = ctx.check
    p = ctx.obs.paired
    if p is None or p.n == 0:
        return ctx.inconclusive("no shadow pairs in this window")
    need = ctx.spec.analysis.min_samples
    metric = c.metric
    if metric == "shadow-mcnemar":
        n = p.n_decisions
        if n < need:
            return ctx.inconclusive(f"{n} paired decisions < minSamples {need}", n)
        d = [int(v) for v in p.decisions]
        res = _paired.mcnemar(d[0], d[1], d[2], d[3], c.max or 0.0)
        ctx.tested[c.name] = {"samples": n, "spread": res.detail["discordance"]}
        return _tolerance(ctx, res, n, "positive-rate change",
                          f"baseline {fmt(res.detail['baseline_positive_rate'])} -> candidate "
                          f"{fmt(res.detail['candidate_positive_rate'])}, {res.detail['discordant']} discordant")
    if metric == "shadow-wilcoxon":
        n = p.n_numeric
        if n < need:
            return ctx.inconclusive(f"{n} numeric shadow pairs < minSamples {need}", n)
        res = _paired.wilcoxon_shift(p.deltas(), c.max or 0.0)
        ctx.tested[c.name] = {"samples": n, "spread": res.detail["sd"]}
        return _tolerance(ctx, res, n, "paired shift", f"{res.n_candidate} sampled deltas, mean "
                                                       f"{fmt(res.detail['mean'])}")
    name = agreement_name(metric, c.p if metric == "shadow-rbo" else c.k)
    n, total, total_sq = p.agreement(name)
    if n < need:
        return ctx.inconclusive(f"{n} ranking pairs with {name} < minSamples {need}", n)
    res = _paired.mean_agreement(metric, n, total, total_sq, c.min)
    ctx.tested[c.name] = {"samples": n, "spread": res.detail["sd"]}
    alpha = paired_alpha(c)
    pj = ctx.judge_p(res.p_value, alpha, res.value, p_pass=res.detail["p_equivalent"])
    what = f"mean {name} {fmt(res.value)} (sd {fmt(res.detail['sd'])}, {n} pairs)"
    if pj.verdict is Verdict.FAIL:
        j = Judgement(Verdict.FAIL, c.min, f"{c.name}: {what} shown below min {fmt(c.min)}: {pj.reason}")
    elif res.value < c.min:
        j = Judgement(Verdict.INCONCLUSIVE, c.min, f"{c.name}: {what} < min {fmt(c.min)} but not shown to be "
                                                   f"({pj.reason})")
    else:
        j = Judgement(Verdict.PASS, c.min, f"{c.name}: {what} >= min {fmt(c.min)}")
    return ctx.judged([j], res.value, n, res)


def _tolerance(ctx: Any, res: StatResult, n: int, what: str, evidence: str) -> Any:
    """Fail when |effect| <= tolerance is rejected; Inconclusive when only the estimate is beyond it."""
    c = ctx.check
    t = c.max or 0.0
    alpha = paired_alpha(c)
    pj = ctx.judge_p(res.p_value, alpha, res.value, p_pass=res.detail["p_equivalent"] if t > 0 else None)
    shown = f"{what} {fmt(res.value)} (95% CI {fmt(res.ci_low)} to {fmt(res.ci_high)}; {evidence})"
    if t == 0:
        verdict = pj.verdict
        reason = f"{c.name}: {shown}: {pj.reason}"
        return ctx.judged([Judgement(verdict, pj.threshold, reason)], res.value, n, res)
    if pj.verdict is Verdict.FAIL:
        j = Judgement(Verdict.FAIL, t, f"{c.name}: {shown} shown beyond the tolerance {fmt(t)}: {pj.reason}")
    elif abs(res.value) > t:
        j = Judgement(Verdict.INCONCLUSIVE, t, f"{c.name}: {shown} beyond the tolerance {fmt(t)} but not shown to "
                                               f"be ({pj.reason})")
    else:
        j = Judgement(Verdict.PASS, t, f"{c.name}: {shown} within the tolerance {fmt(t)}")
    return ctx.judged([j], res.value, n, res)
