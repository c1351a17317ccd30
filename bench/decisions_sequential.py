"""Sequential vs fixed windows: false rollbacks with a look every window, and the time to a decision.

`python bench/decisions.py --sequential` runs it. Every window is evaluated afresh through
`policies.checks.evaluate` with the rollout's current status (a sequential check reads its evidence from it)
and decided by `policies.machine.decide`, as the controller does. Two canary steps of `--windows`/2 one-minute
windows each (failureLimit 2 for the fixed checks).

- error-rate `max` 0.01, the candidate erring at 0.5x (A/A: as the baseline), 1x (the tolerated rate itself,
  the hardest acceptable case), 1.5x and 3x of it; 100, 300 or 1,000 candidate requests a window (1.5x: 100
  and 1,000 separately — the plan, policies/planning.py, says the sequential test needs ~9,800 requests to
  catch 1.5x with power 0.8, more than 20 windows of 100 hold);
- ks `minPValue` 0.01 on N(0, 1) scores, the candidate identical (A/A) or shifted by 0.3 sd; 300 candidate
  values a window against 2,000 of the baseline;
- shadow-wilcoxon `max` 0.02 in a shadow step then a canary, the candidate's paired shift 0, 0.5x, 1.5x and 3x
  the tolerance, 300 pairs a window (per-request noise 0.05).

Targets: A/A false rollback with sequential looks every window <= 1% (error-rate, ks and shadow-wilcoxon),
and at the tolerated rate itself <= 1% (the test's level); a harmful candidate (1.5x, 3x) rolled back in
>= 95%; the time to a decision printed side by side (mean windows until promoted or rolled back).
"""
from __future__ import annotations

import time

import numpy as np

from policies.checks import Observations, evaluate
from policies.spec import parse_spec
from policies.summaries import PairedSummary, VersionWindow

T0 = 1_800_000_000.0


def _spec(check: dict, windows: int, shadow: bool = False):
    half = max(1, windows // 2)
    steps = ([{"shadow": {"duration": f"{half}m"}}] if shadow else
             [{"canary": {"weight": 10, "duration": f"{half}m"}}]) + [
        {"canary": {"weight": 50, "duration": f"{windows - half}m"}}]
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
        "strategy": {"steps": steps},
        "analysis": {"interval": "1m", "minSamples": 100, "failureLimit": 2, "inconclusiveLimit": 5,
                     "checks": [check]},
    }, "bench", "bench")


def _errors(n: int, rate: float, rng) -> VersionWindow:
    w = VersionWindow.new("score")
    w.requests = n
    w.errors["http_5xx"] = int(rng.binomial(n, rate))
    return w


def _scores(values: np.ndarray, rng) -> VersionWindow:
    w = VersionWindow.new("score")
    w.prediction.add_many(values, rng.random(values.size))
    w.requests = values.size
    return w


def _paired(n: int, shift: float, rng) -> PairedSummary:
    p = PairedSummary()
    x = rng.beta(2, 5, n)
    p.add_many(x, x + shift + rng.normal(0, 0.05, n), rng.random(n), 0.5)
    return p


def _row(name, fixed, seq, target_fn) -> tuple[str, int]:
    def stats(outs):
        rb = [o for o in outs if o.rolled_back]
        decided = [o.windows for o in outs if o.rolled_back or o.promoted]
        return (len(rb) / len(outs), sum(o.promoted for o in outs) / len(outs),
                float(np.mean(decided)) if decided else float("nan"))
    f, s = stats(fixed), stats(seq)
    verdict = target_fn(s[0])
    line = (f"{name:<40}{f[0]:>9.1%}{f[1]:>9.1%}{f[2]:>8.2f}   {s[0]:>9.1%}{s[1]:>9.1%}{s[2]:>8.2f}  {verdict}")
    return line, verdict != "ok"


def run(rollouts: int, windows: int, seed: int, simulate) -> int:
    rng = np.random.default_rng(seed)
    print(f"sequential vs fixed: {rollouts} rollouts per case, 2 steps of {windows // 2} one-minute windows, a look "
          f"every window; 'time' = mean windows until promoted or rolled back")
    header = (f"{'case':<40}{'fixed':>9}{'':>9}{'':>8}   {'sequential':>9}{'':>9}{'':>8}  target\n"
              f"{'':<40}{'rollback':>9}{'promoted':>9}{'time':>8}   {'rollback':>9}{'promoted':>9}{'time':>8}")
    print(header)
    print("-" * 110)
    misses = 0
    aa = lambda rate: "ok" if rate <= 0.01 else "MISS (target <= 1%)"  # noqa: E731
    bad = lambda rate: "ok" if rate >= 0.95 else "MISS (target >= 95%)"  # noqa: E731
    free = lambda rate: "(between: either)"  # noqa: E731

    cases = []
    short = lambda rate: "(fewer requests than the plan)"  # noqa: E731
    for mult, target, label, sizes in ((0.5, aa, "A/A (= baseline 0.5x max)", (100, 300, 1000)),
                                       (1.0, aa, "at max itself", (100, 300, 1000)),
                                       (1.5, short, "1.5x max, 100/window", (100,)),
                                       (1.5, bad, "1.5x max, 1000/window", (1000,)),
                                       (3.0, bad, "3x max", (100, 300, 1000))):
        def make(n, rate=mult * 0.01):
            return lambda status, now: (Observations(now - 60, now, _errors(9 * n, 0.005, rng), _errors(n, rate, rng)))
        cases.append((f"error-rate 0.01 @ {label}", {"name": "e", "metric": "error-rate", "max": 0.01}, make, target,
                      sizes, False))
    for shift, target, label in ((0.0, aa, "A/A"), (0.3, bad, "shift 0.3 sd")):
        def make(n, shift=shift):
            return lambda status, now: Observations(now - 60, now, _scores(rng.normal(0, 1, 2000), rng),
                                                    _scores(rng.normal(shift, 1, n), rng))
        cases.append((f"ks minPValue 0.01 @ {label}", {"name": "k", "metric": "ks", "minPValue": 0.01}, make, target,
                      (300,), False))
    for mult, target, label in ((0.0, aa, "A/A"), (0.5, free, "0.5x tolerance"), (1.5, bad, "1.5x tolerance"),
                                (3.0, bad, "3x tolerance")):
        def make(n, shift=mult * 0.02):
            def obs(status, now):
                w = _errors(n, 0.0, rng)
                return Observations(now - 60, now, w, w, paired=_paired(n, shift, rng))
            return obs
        cases.append((f"shadow-wilcoxon 0.02 @ {label}", {"name": "w", "metric": "shadow-wilcoxon", "max": 0.02},
                      make, target, (300,), True))

    for name, check, make, target, sizes, shadow in cases:
        t = time.perf_counter()
        fixed_spec = _spec(check, windows, shadow)
        seq_spec = _spec({**check, "sequential": True}, windows, shadow)
        outs = {}
        for label, spec in (("fixed", fixed_spec), ("seq", seq_spec)):
            outs[label] = []
            for i in range(rollouts):
                make_obs = make(sizes[i % len(sizes)])
                outs[label].append(simulate(spec, windows, lambda status, now, m=make_obs, s=spec:
                                            evaluate(s, m(status, now), status)))
        line, miss = _row(name, outs["fixed"], outs["seq"], target)
        misses += miss
        print(f"{line}   ({time.perf_counter() - t:.0f}s)", flush=True)
    return misses
