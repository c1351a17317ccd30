"""Paired vs unpaired: how many requests per version each test needs to catch a change of 1.5x the tolerance
with power >= 0.8 at the same level, and how the paired checks decide over a rollout.

`python bench/decisions.py --paired` runs both parts (this module holds them):

1. **Samples needed.** Baseline scores x ~ Beta(2, 5) (sd 0.16); the candidate answers the same request
   with y = x + δ + ε, ε ~ N(0, σ) (a retrained model: small per-request noise σ). The tolerance on the
   score shift is t = 0.02, the change to catch δ = 1.5·t.
   - paired (shadow step, both versions answer each request): `policies._paired.signed_rank_p`, the
     shadow-wilcoxon test of |shift| <= t: p = 2·min(p_greater(d − t), p_less(d + t)), d = y − x;
   - unpaired (the same change seen in two independent samples, as a canary's two arms): the two-sample
     rank test of the same hypothesis, Mann–Whitney of y − t vs x (greater) and y + t vs x (less),
     `scipy.stats.mannwhitneyu`, p = 2·min.
   For class decisions: a 2x2 table with background flips q both ways and Δ = 1.5·t_d more flips to
   positive (t_d = 0.02); paired: shadow-mcnemar with tolerance t_d (Agresti–Min Wald); unpaired: the
   two-proportion Wald test of |Δ| <= t_d on independent arms.
   Level 0.05 for both; n grows by 1.15x until the power over `--sims` simulations reaches 0.8.
   Target: the paired test needs at most half the requests.
2. **Rollouts.** shadow-wilcoxon `max` t = 0.02 through `evaluate` and `decide`, windows of 100-2,000 pairs
   (σ = 0.05), candidate shift 0, 0.5x, 1.5x and 3x the tolerance: the same targets as the drift checks (A/A
   <= 1% and half the tolerance <= 5% rolled back — a significant change below the tolerance must pass —,
   1.5x >= 95%, 3x within 2 windows).
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy import stats as sps

from policies._paired import mcnemar, signed_rank_p
from policies.checks import Observations, evaluate
from policies.machine import decide
from policies.spec import parse_spec
from policies.summaries import PairedSummary, VersionWindow

TOLERANCE = 0.02
POWER = 0.8
LEVEL = 0.05


def _wilcoxon_power(n, delta, sigma, sims, rng, paired: bool) -> float:
    hits = 0
    t = TOLERANCE
    for _ in range(sims):
        if paired:
            x = rng.beta(2, 5, n)
            d = delta + rng.normal(0, sigma, n)
            p = 2 * min(signed_rank_p(d - t, "greater")[1], signed_rank_p(d + t, "less")[1])
        else:
            x = rng.beta(2, 5, n)
            y = rng.beta(2, 5, n) + delta + rng.normal(0, sigma, n)    # other requests, same model change
            p = 2 * min(sps.mannwhitneyu(y - t, x, alternative="greater").pvalue,
                        sps.mannwhitneyu(y + t, x, alternative="less").pvalue)
        hits += p < LEVEL
    return hits / sims


def _mcnemar_power(n, delta, flips, sims, rng, paired: bool, base_rate: float = 0.2) -> float:
    hits = 0
    t = TOLERANCE
    for _ in range(sims):
        if paired:
            # cells: neither, candidate only, baseline only, both
            probs = [1 - base_rate - flips - delta, flips + delta, flips, base_rate - flips]
            r = mcnemar(*[int(v) for v in rng.multinomial(n, probs)], t)
            p = r.p_value
        else:
            kb, kc = rng.binomial(n, base_rate), rng.binomial(n, base_rate + delta)
            pb, pc = (kb + 0.5) / (n + 1), (kc + 0.5) / (n + 1)
            se = math.sqrt(pb * (1 - pb) / n + pc * (1 - pc) / n)
            diff = pc - pb
            p = min(1.0, 2 * min(sps.norm.sf((diff - t) / se), sps.norm.cdf((diff + t) / se)))
        hits += p < LEVEL
    return hits / sims


def samples_needed(power_at, start: int = 20, limit: int = 200_000) -> int:
    """The smallest n on the grid start·1.15^k whose power reaches POWER."""
    n = start
    while n <= limit:
        if power_at(n) >= POWER:
            return n
        n = int(math.ceil(n * 1.15))
    return -1


def paired_vs_unpaired(sims: int, seed: int) -> int:
    print(f"samples per version to catch a change of 1.5x the tolerance (t = {TOLERANCE}) with power >= {POWER} at "
          f"level {LEVEL}; {sims} simulations per n")
    header = f"{'case':<46}{'rho':>6}{'paired n':>10}{'unpaired n':>12}{'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    misses = 0
    rows = []
    for sigma in (0.02, 0.05, 0.1):
        x = np.random.default_rng(0).beta(2, 5, 200_000)
        rho = float(np.corrcoef(x, x + np.random.default_rng(1).normal(0, sigma, x.size))[0, 1])
        rows.append((f"shadow-wilcoxon shift, per-request noise {sigma}", rho,
                     lambda n, paired, s=sigma: _wilcoxon_power(n, 1.5 * TOLERANCE, s, sims,
                                                               np.random.default_rng(seed + n), paired)))
    for flips in (0.01, 0.03, 0.06):
        rows.append((f"shadow-mcnemar positive rate, flips {flips:.0%} each way", float("nan"),
                     lambda n, paired, f=flips: _mcnemar_power(n, 1.5 * TOLERANCE, f, sims,
                                                              np.random.default_rng(seed + n), paired)))
    for name, rho, power in rows:
        t = time.perf_counter()
        n_p = samples_needed(lambda n: power(n, True))
        n_u = samples_needed(lambda n: power(n, False), start=max(20, n_p))
        ratio = n_p / n_u if n_p > 0 and n_u > 0 else float("nan")
        ok = ratio <= 0.5
        misses += not ok
        rho_s = "-" if math.isnan(rho) else f"{rho:.3f}"
        print(f"{name:<46}{rho_s:>6}{n_p:>10}{n_u:>12}{ratio:>8.3f}  {'ok' if ok else 'MISS (target <= 0.5)'}"
              f"   ({time.perf_counter() - t:.0f}s)", flush=True)
    return misses


# --- rollouts ------------------------------------------------------------------------------------------

SIZES = (100, 250, 500, 1000, 2000)
T0 = 1_800_000_000.0


def _spec(windows: int):
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
        "strategy": {"steps": [{"shadow": {"duration": f"{windows}m"}}]},
        "analysis": {"interval": "1m", "minSamples": 100, "failureLimit": 2, "inconclusiveLimit": 5,
                     "checks": [{"name": "shift", "metric": "shadow-wilcoxon", "max": TOLERANCE}]},
    }, "bench", "bench")


def _paired_window(n: int, shift: float, sigma: float, rng) -> PairedSummary:
    p = PairedSummary()
    x = rng.beta(2, 5, n)
    p.add_many(x, x + shift + rng.normal(0, sigma, n), rng.random(n), 0.5)
    return PairedSummary.from_dict(p.to_dict())


def rollouts(rollouts_per_case: int, per_size: int, windows: int, seed: int, simulate, summarize, verdict) -> int:
    rng = np.random.default_rng(seed)
    spec = _spec(windows)
    status = decide(spec, None, None, T0).status
    empty = VersionWindow.new("score")
    print(f"\nshadow-wilcoxon max {TOLERANCE} over {windows} windows of 1m (failureLimit 2), {per_size} windows "
          f"evaluated per size {SIZES}, per-request noise 0.05")
    header = (f"{'case':<34}{'rollback':>10}{'mean win':>10}{'<=2 win':>9}{'paused':>8}{'promoted':>10}  target")
    print(header)
    print("-" * len(header))
    misses = 0
    for multiple in (0.0, 0.5, 1.5, 3.0):
        t = time.perf_counter()
        pools = {n: [evaluate(spec, Observations(T0, T0 + 60, empty, empty,
                                                 paired=_paired_window(n, multiple * TOLERANCE, 0.05, rng)), status)
                     for _ in range(per_size)] for n in SIZES}
        outs = []
        for i in range(rollouts_per_case):
            pool = pools[SIZES[i % len(SIZES)]]
            outs.append(simulate(spec, windows, lambda st, now: pool[rng.integers(len(pool))]))
        rate, mean_w, within2, paused, promoted = summarize(outs)
        v = verdict(multiple, rate, within2)
        misses += v != "ok"
        name = f"shift {'A/A' if multiple == 0 else f'{multiple}x'} tolerance"
        print(f"{name:<34}{rate:>10.1%}{mean_w:>10.2f}{within2:>9.1%}{paused:>8.1%}{promoted:>10.1%}  {v}"
              f"   ({time.perf_counter() - t:.0f}s)", flush=True)
    return misses
