"""`metric: reward`: the versions' mean reward (reported through /feedback) compared on the same window of a
canary step, or, in an interleave step, the mean of the rewards credited to the candidate's team minus the
baseline's per impression (docs/statistics.md "Reward and off-policy estimates"). The evaluator takes the
`_Ctx` of `policies.checks` (duck-typed: this module does not import it)."""
from __future__ import annotations

import math
from typing import Any

from ._result import StatResult
from .paired_checks import paired_alpha
from .status import Verdict
from .thresholds import Judgement, fmt

_Z95 = 1.959963984540054


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def reward_test(n_b: int, mean_b: float, var_b: float, n_c: int, mean_c: float, var_c: float,
                minimum: float) -> StatResult:
    """Δ = mean_c − mean_b with the Welch standard error se = sqrt(var_c/n_c + var_b/n_b) (sample variances);
    p_value = Φ((Δ − min)/se) tests H0: Δ >= min (small when the candidate is shown worse than `min`
    allows), p_equivalent = Φ((min − Δ)/se) tests H0: Δ <= min. With se = 0: 0 or 1 by the sign."""
    delta = mean_c - mean_b
    return _against_min(delta, math.sqrt(var_c / n_c + var_b / n_b), minimum, n_b, n_c,
                        {"baseline_mean": mean_b, "candidate_mean": mean_c})


def _against_min(delta: float, se: float, minimum: float, n_b: int, n_c: int, detail: dict) -> StatResult:
    """p_value = Φ((Δ − min)/se), p_equivalent = Φ((min − Δ)/se) and the 95% interval of Δ; with se = 0: 0 or
    1 by the sign."""
    if se > 0:
        p, p_eq = _phi((delta - minimum) / se), _phi((minimum - delta) / se)
    else:
        p, p_eq = (0.0 if delta < minimum else 1.0), (0.0 if delta > minimum else 1.0)
    return StatResult("reward", delta, p, n_b, n_c, estimate=delta, ci_low=delta - _Z95 * se,
                      ci_high=delta + _Z95 * se, detail={**detail, "se": se, "p_equivalent": p_eq})


def credited_reward_test(n: int, mean: float, var: float, minimum: float) -> StatResult:
    """Interleaving: Δ = the mean over n impressions of the candidate's credited reward minus the baseline's
    (one paired difference per impression), se = sqrt(var/n) (sample variance); p_value = Φ((Δ − min)/se),
    p_equivalent = Φ((min − Δ)/se), as `reward_test`."""
    return _against_min(mean, math.sqrt(var / n), minimum, n, n, {"credited": True})


def _evaluate_credited(ctx: Any, deltas: Any) -> Any:
    c = ctx.check
    short = ctx.too_few(deltas.n, deltas.n, "rewarded interleaved impressions")
    if short:
        return ctx.inconclusive(short, deltas.n)
    minimum = c.min if c.min is not None else 0.0
    res = credited_reward_test(deltas.n, deltas.mean(), deltas.variance() or 0.0, minimum)
    ctx.tested[c.name] = {"samples": deltas.n, "spread": math.sqrt(deltas.variance() or 0.0), "se": res.detail["se"]}
    pj = ctx.judge_p(res.p_value, paired_alpha(c), res.value, p_pass=res.detail["p_equivalent"])
    what = (f"reward credited to the candidate's team minus the baseline's {fmt(res.value)} per impression "
            f"(95% CI {fmt(res.ci_low)} to {fmt(res.ci_high)}; {deltas.n} rewarded interleaved impressions)")
    return ctx.judged([_judgement(c.name, what, pj, res.value, minimum)], res.value, deltas.n, res)


def _judgement(name: str, what: str, pj: Any, value: float, minimum: float) -> Judgement:
    if pj.verdict is Verdict.FAIL:
        return Judgement(Verdict.FAIL, minimum, f"{name}: {what} shown below min {fmt(minimum)}: {pj.reason}")
    if value < minimum:
        return Judgement(Verdict.INCONCLUSIVE, minimum, f"{name}: {what} below min {fmt(minimum)} but not shown to "
                                                        f"be ({pj.reason})")
    return Judgement(Verdict.PASS, minimum, f"{name}: {what} >= min {fmt(minimum)}")


def evaluate_reward(ctx: Any) -> Any:
    c = ctx.check
    rb, rc = ctx.obs.baseline.reward, ctx.obs.candidate.reward
    n_b, n_c = (rb.n if rb is not None else 0), (rc.n if rc is not None else 0)
    il = ctx.obs.interleave
    deltas = il.reward_deltas if il is not None else None
    if n_b == 0 and n_c == 0 and deltas is not None and deltas.n > 0:
        return _evaluate_credited(ctx, deltas)       # an interleave step: every reward is on a merged ranking
    short = ctx.too_few(n_b, n_c, "rewards")
    if short:
        return ctx.inconclusive(short, n_c)
    minimum = c.min if c.min is not None else 0.0
    res = reward_test(n_b, rb.mean(), rb.variance() or 0.0, n_c, rc.mean(), rc.variance() or 0.0, minimum)
    ctx.tested[c.name] = {"samples": min(n_b, n_c), "spread": math.sqrt((rb.variance() or 0.0) +
                                                                        (rc.variance() or 0.0)),
                          "se": res.detail["se"]}
    pj = ctx.judge_p(res.p_value, paired_alpha(c), res.value, p_pass=res.detail["p_equivalent"])
    what = (f"mean reward candidate {fmt(res.detail['candidate_mean'])} vs baseline "
            f"{fmt(res.detail['baseline_mean'])}: difference {fmt(res.value)} (95% CI {fmt(res.ci_low)} to "
            f"{fmt(res.ci_high)}; {n_c} and {n_b} rewards)")
    return ctx.judged([_judgement(c.name, what, pj, res.value, minimum)], res.value, n_c, res)
