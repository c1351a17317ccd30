"""Decision quality of checks + state machine: how often a rollout is rolled back (or paused) when the
candidate's true drift is zero, half, 1.5x or 3x the check's threshold.

Each case evaluates real analysis windows with `policies.checks.evaluate` — on `VersionWindow` summaries
built through `from_dict`, as the controller receives them — `--evaluated` windows per candidate size; each
simulated rollout then replays a random sequence of those window results through `policies.machine.decide`
for up to `--windows` windows (evaluating every window of every rollout afresh would take ~10 ms a window).
The baseline is N(0, 1); the candidate N(mu, 1) with mu solved so the *population* metric (computed on
10^6 samples, printed as `true`) equals the target. Candidate windows hold 100-2,000 samples (one size per
rollout, log-spaced), baseline windows 2,000.

Targets: rollback <= 1% for A/A and <= 5% at half the threshold, >= 95% at 1.5x, and within 2 windows at 3x;
ks minPValue 0.01 over 20 A/A windows: false pause rate <= 1%.

`--gates` adds the checks that judge the model beyond one-dimensional drift, each with the same targets
(A/A <= 1% rollback, a tolerable change <= 5%, a harmful one >= 95%, a gross one within 2 windows):
  - mmd minPValue 0.001 on 32-dimensional embeddings, the candidate shifted on 8 coordinates by 0, half,
    1.5x and 3x of a stated effect (0.2 sd), windows of 100-400 embeddings per version;
  - latency-p99 maxRatioToBaseline 2 on lognormal latencies, candidate identical, 1.5x and 3x slower;
  - disparate-impact min 0.8 (the four-fifths rule) over segments x, y, z with 11% positives, the
    candidate identical or favouring x by +0.1 or +0.3 on scores of sd 0.25.

`--paired`: samples needed by the paired shadow tests vs their unpaired counterparts to catch a change of 1.5x
the tolerance (target: paired needs <= half), and shadow-wilcoxon rollouts (bench/decisions_paired.py).

`--sequential`: the same checks judged sequentially vs window by window: A/A false rollbacks with a look every
window (target <= 1%) and the time to a decision (bench/decisions_sequential.py).

    python bench/decisions.py [--quick] [--rollouts N] [--windows W] [--seed S] [--gates | --paired | --sequential]
"""
from __future__ import annotations

import argparse
import base64
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import stats, thresholds  # noqa: E402
from policies.checks import Observations, evaluate  # noqa: E402
from policies.machine import decide  # noqa: E402
from policies.spec import parse_spec  # noqa: E402
from policies.status import Phase  # noqa: E402
from policies.summaries import VersionWindow  # noqa: E402

THRESHOLDS = {"psi": 0.2, "js": 0.1, "wasserstein": 0.2}
MULTIPLES = (0.0, 0.5, 1.5, 3.0)
SIZES = (100, 250, 500, 1000, 2000)
BASELINE_N = 2000
POOL = 64          # baseline windows; each analysis window draws one
T0 = 1_800_000_000.0


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def window(values: np.ndarray, rng: np.random.Generator) -> VersionWindow:
    """A candidate/baseline window as a router replica would send it (JSON dict → from_dict)."""
    v = np.asarray(values, dtype=np.float64)
    pred = {"type": "numeric", "capacity": 2048, "n": int(v.size), "invalid": 0, "sum": [float(v.sum())],
            "sumsq": [float((v * v).sum())], "min": float(v.min()), "max": float(v.max()), "edges": None,
            "counts": None, "keys": _b64(rng.random(v.size)), "values": _b64(v)}
    doc = VersionWindow.new("score").to_dict()
    doc.update(requests=int(v.size), prediction=pred)
    return VersionWindow.from_dict(doc)


def population_value(metric: str, mu: float, rng: np.random.Generator, n: int = 1_000_000) -> float:
    """The metric between baseline and candidate populations, on 10^6 samples each."""
    return stats.compute(metric, rng.normal(0, 1, n), rng.normal(mu, 1, n)).value if metric != "wasserstein" \
        else stats.wasserstein(rng.normal(0, 1, n), rng.normal(mu, 1, n)).value


def _analytic(metric: str, mu: float) -> float:
    """Closed form on the population (deciles of N(0,1), candidate N(mu,1)) for solving mu."""
    from scipy.stats import norm
    if metric == "wasserstein":
        return abs(mu)
    edges = norm.ppf(np.linspace(0, 1, 11))
    p = np.full(10, 0.1)
    q = np.diff(norm.cdf(edges - mu))
    if metric == "psi":
        return float(np.sum((q - p) * np.log(q / p)))
    from scipy.spatial.distance import jensenshannon
    return float(jensenshannon(p, q, base=2))


def solve_mu(metric: str, target: float) -> float:
    return 0.0 if target == 0 else brentq(lambda m: _analytic(metric, m) - target, 1e-6, 10.0)


def rollout_spec(check: dict, windows: int, failure_limit: int = 2):
    half = max(1, windows // 2)
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": "v2", "url": "http://c:1"},
        "strategy": {"steps": [{"canary": {"weight": 10, "duration": f"{half}m"}},
                               {"canary": {"weight": 50, "duration": f"{windows - half}m"}}]},
        "analysis": {"interval": "1m", "minSamples": 100, "failureLimit": failure_limit, "inconclusiveLimit": 5,
                     "checks": [check]},
    }, "bench", "bench")


@dataclass
class Outcome:
    rolled_back: bool
    promoted: bool
    paused: bool
    windows: int


def window_results(spec, mu: float, n: int, count: int, rng: np.random.Generator, baselines) -> list:
    """`count` independent analysis windows of candidate size n, each judged by `evaluate` (fresh candidate
    sample, a baseline window drawn from the pool)."""
    out = []
    status = decide(spec, None, None, T0).status
    for _ in range(count):
        obs = Observations(T0, T0 + 60.0, baselines[rng.integers(len(baselines))], window(rng.normal(mu, 1, n), rng))
        out.append(evaluate(spec, obs, status))
    return out


def simulate(spec, windows: int, results_for) -> Outcome:
    """One rollout through `decide`; `results_for(status, now)` gives each window's check results."""
    status, now, paused = decide(spec, None, None, T0).status, T0, False
    for k in range(1, windows + 1):
        now += 60.0
        status = decide(spec, status, results_for(status, now), now).status
        paused = paused or status.phase is Phase.PAUSED
        if status.phase.is_terminal:
            return Outcome(status.phase is Phase.ROLLED_BACK, status.phase is Phase.PROMOTED, paused, k)
    return Outcome(False, False, paused, windows)


def run_case(spec, mu: float, rollouts: int, windows: int, per_size: int, rng: np.random.Generator, baselines):
    """Rollouts replaying window results evaluated beforehand (`per_size` per candidate size)."""
    evaluated = {n: window_results(spec, mu, n, per_size, rng, baselines) for n in SIZES}
    outs = []
    for i in range(rollouts):
        pool = evaluated[SIZES[i % len(SIZES)]]
        outs.append(simulate(spec, windows, lambda status, now: pool[rng.integers(len(pool))]))
    return outs


def run_live(spec, mu: float, rollouts: int, windows: int, rng: np.random.Generator, baselines):
    """Rollouts whose every window is evaluated afresh (needed when the check learns from status)."""
    def fresh(n):
        def results_for(status, now):
            obs = Observations(now - 60.0, now, baselines[rng.integers(len(baselines))],
                               window(rng.normal(mu, 1, n), rng))
            return evaluate(spec, obs, status)
        return results_for
    return [simulate(spec, windows, fresh(SIZES[i % len(SIZES)])) for i in range(rollouts)]


def calibrated_spec(shadow_windows: int, canary_windows: int):
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": "v2", "url": "http://c:1"},
        "strategy": {"steps": [{"shadow": {"duration": f"{shadow_windows}m"}},
                               {"canary": {"weight": 10, "duration": f"{canary_windows}m"}}]},
        "analysis": {"interval": "1m", "minSamples": 100, "failureLimit": 2, "inconclusiveLimit": 5,
                     "checks": [{"name": "cal", "metric": "psi", "dynamic": {"sigmas": 3, "minWindows": 5}}]},
    }, "bench", "bench")


def summarize(outs: list[Outcome]) -> tuple[float, float, float, float, float]:
    rb = [o for o in outs if o.rolled_back]
    rate = len(rb) / len(outs)
    mean_w = float(np.mean([o.windows for o in rb])) if rb else float("nan")
    within2 = sum(o.windows <= 2 for o in rb) / len(outs)
    paused = sum(o.paused for o in outs) / len(outs)
    promoted = sum(o.promoted for o in outs) / len(outs)
    return rate, mean_w, within2, paused, promoted


def verdict(multiple: float, rate: float, within2: float) -> str:
    if multiple == 0:
        return "ok" if rate <= 0.01 else "MISS (target <= 1%)"
    if multiple == 0.5:
        return "ok" if rate <= 0.05 else "MISS (target <= 5%)"
    if multiple == 1.5:
        return "ok" if rate >= 0.95 else "MISS (target >= 95%)"
    return "ok" if within2 >= 0.95 else "MISS (target: >= 95% within 2 windows)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rollouts (~1 minute)")
    ap.add_argument("--rollouts", type=int, default=None, help="rollouts per case (default 1000, quick 300)")
    ap.add_argument("--windows", type=int, default=10, help="analysis windows per drift rollout")
    ap.add_argument("--evaluated", type=int, default=None,
                    help="windows evaluated per (case, candidate size) (default 200, quick 60; wasserstein half)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--metrics", default="psi,js,wasserstein")
    ap.add_argument("--confidence", type=float, default=None, help="override thresholds.DRIFT_CONFIDENCE")
    ap.add_argument("--gates", action="store_true", help="only the mmd, latency and fairness gate cases")
    ap.add_argument("--population", type=int, default=1_000_000, help="samples for the true metric values")
    ap.add_argument("--paired", action="store_true",
                    help="only the paired cases: samples needed paired vs unpaired, and shadow-wilcoxon rollouts")
    ap.add_argument("--sequential", action="store_true",
                    help="only sequential vs fixed windows: A/A false rollbacks and time to a decision")
    ap.add_argument("--sims", type=int, default=None, help="simulations per n for --paired (default 400, quick 150)")
    args = ap.parse_args(argv)
    if args.confidence is not None:
        thresholds.DRIFT_CONFIDENCE = {m: args.confidence for m in thresholds.DRIFT_CONFIDENCE}
    rollouts = args.rollouts or (300 if args.quick else 1000)
    per_size = args.evaluated or (60 if args.quick else 200)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    if args.gates:
        return gates(rollouts, max(20, per_size // 2), args.windows, rng, started)
    if args.sequential:
        from bench import decisions_sequential
        misses = decisions_sequential.run(rollouts, max(args.windows, 20), args.seed, simulate)
        print(f"targets missed: {misses}; total {time.perf_counter() - started:.0f}s")
        return 0
    if args.paired:
        from bench import decisions_paired
        misses = decisions_paired.paired_vs_unpaired(args.sims or (150 if args.quick else 400), args.seed)
        misses += decisions_paired.rollouts(rollouts, per_size, args.windows, args.seed, simulate, summarize, verdict)
        print(f"targets missed: {misses}; total {time.perf_counter() - started:.0f}s")
        return 0
    baselines = [window(rng.normal(0, 1, BASELINE_N), rng) for _ in range(POOL)]

    print(f"decision quality: {rollouts} rollouts per case, {args.windows} windows of 1m, failureLimit 2, "
          f"candidate n in {SIZES}, baseline n {BASELINE_N}; {per_size} windows evaluated per size "
          f"(wasserstein {per_size // 2}), drift confidence {thresholds.DRIFT_CONFIDENCE}")
    header = (f"{'case':<26}{'true':>8}{'rollback':>10}{'mean win':>10}{'<=2 win':>9}{'paused':>8}"
              f"{'promoted':>10}  target")
    print(header)
    print("-" * len(header))
    misses = 0
    for metric in [m for m in args.metrics.split(",") if m]:
        thr = THRESHOLDS[metric]
        spec = rollout_spec({"name": f"{metric}-drift", "metric": metric, "max": thr}, args.windows)
        for mult in MULTIPLES:
            t = time.perf_counter()
            mu = solve_mu(metric, mult * thr)
            true = population_value(metric, mu, rng, args.population)
            k = per_size // 2 if metric == "wasserstein" else per_size    # its bootstrap costs ~30 ms a call
            outs = run_case(spec, mu, rollouts, args.windows, k, rng, baselines)
            rate, mean_w, within2, paused, promoted = summarize(outs)
            v = verdict(mult, rate, within2)
            misses += v != "ok"
            name = f"{metric} max {thr} @ {'A/A' if mult == 0 else f'{mult}x'}"
            print(f"{name:<26}{true:>8.3f}{rate:>10.1%}{mean_w:>10.2f}{within2:>9.1%}{paused:>8.1%}"
                  f"{promoted:>10.1%}  {v}"
                  f"   ({time.perf_counter() - t:.0f}s)", flush=True)
    # Calibrated threshold (dynamic: 3 sigmas, 5 A/A windows learned in a 5-window shadow step).
    spec = calibrated_spec(5, 5)
    live = max(20, rollouts // 5)
    for target in (0.0, 0.1):
        t = time.perf_counter()
        mu = solve_mu("psi", target)
        outs = run_live(spec, mu, live, 10, rng, baselines)
        rate, mean_w, within2, paused, promoted = summarize(outs)
        v = ("ok" if rate <= 0.01 else "MISS (target <= 1%)") if target == 0 else "(any real difference)"
        misses += v.startswith("MISS")
        name = f"psi dynamic 3sd @ {'A/A' if target == 0 else target}"
        print(f"{name:<26}{target:>8.3f}{rate:>10.1%}{mean_w:>10.2f}{within2:>9.1%}{paused:>8.1%}{promoted:>10.1%}  {v}"
              f"   ({time.perf_counter() - t:.0f}s, {live} rollouts)", flush=True)
    # Repeated p-value testing: ks minPValue 0.01 (action pause) over 20 A/A windows.
    ks_windows = 20
    spec = rollout_spec({"name": "ks", "metric": "ks", "minPValue": 0.01, "action": "pause"}, ks_windows)
    t = time.perf_counter()
    outs = run_case(spec, 0.0, rollouts, ks_windows, per_size, rng, baselines)
    paused = sum(o.paused for o in outs) / len(outs)
    v = "ok" if paused <= 0.01 else "MISS (target <= 1%)"
    misses += v != "ok"
    promoted = sum(o.promoted for o in outs) / len(outs)
    print(f"{'ks minPValue 0.01 @ A/A':<26}{0.0:>8.3f}{0.0:>10.1%}{'':>10}{'':>9}{paused:>8.1%}{promoted:>10.1%}  {v}"
          f"   ({time.perf_counter() - t:.0f}s, {ks_windows} windows)")
    print(f"targets missed: {misses}; total {time.perf_counter() - started:.0f}s")
    return 0


# --- the gates beyond one-dimensional drift ---------------------------------------------------------

MMD_EFFECT = 0.2          # sd shift on 8 of 32 coordinates: the stated effect
GATE_SIZES = (100, 200, 400)
"""Embeddings per version and window (the exact MMD with up to 2,000 permutations costs ~N² each)."""
SIZES_1MIN = (300, 600, 1200)
"""Requests per version in a 1-minute window at 5, 10 and 20 requests per second (latency, fairness)."""


def _gate_spec(check: dict, windows: int, kind: str = "score"):
    half = max(1, windows // 2)
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
        "output": {"kind": kind},
        "strategy": {"steps": [{"canary": {"weight": 10, "duration": f"{half}m"}},
                               {"canary": {"weight": 50, "duration": f"{windows - half}m"}}]},
        "analysis": {"interval": "1m", "minSamples": 100, "failureLimit": 2, "inconclusiveLimit": 5,
                     "checks": [check]},
    }, "bench", "bench")


def _emb_window(n: int, shift: float, rng: np.random.Generator) -> VersionWindow:
    w = VersionWindow.new("embedding")
    x = rng.normal(0, 1, (n, 32))
    x[:, :8] += shift
    for v in x:
        w.observe_prediction(v.tolist(), float(rng.random()))
    w.requests = n
    return w


def _latency_window(n: int, slower: float, rng: np.random.Generator) -> VersionWindow:
    w = VersionWindow.new("score")
    for v in rng.normal(0, 1, 50):
        w.observe_prediction(float(v), float(rng.random()))
    for s in rng.lognormal(np.log(0.02), 0.4, n) * slower:
        w.latency.add(float(s))
    w.requests = n
    return w


def _segment_window(n: int, favour: float, rng: np.random.Generator) -> VersionWindow:
    """Scores N(0.3, 0.25); positive above the 89th percentile (11% positives); segment x's scores + favour."""
    w = VersionWindow.new("score")
    threshold = 0.3 + 1.2265 * 0.25
    for i in range(n):
        seg = "xyz"[i % 3]
        score = rng.normal(0.3, 0.25) + (favour if seg == "x" else 0.0)
        w.segments.add({"segment": seg}, positive=bool(score > threshold))
    w.requests = n
    return w


def _gate_case(spec, make, cand_arg, rollouts, per_size, windows, rng):
    evaluated = {}
    status = decide(spec, None, None, T0).status
    sizes = GATE_SIZES if make is _emb_window else SIZES_1MIN
    for n in sizes:
        evaluated[n] = [evaluate(spec, Observations(T0, T0 + 60.0, make(n, 0.0 if make is not _latency_window
                                                                            else 1.0, rng),
                                                    make(n, cand_arg, rng)), status)
                        for _ in range(per_size)]
    outs = []
    for i in range(rollouts):
        pool = evaluated[sizes[i % len(sizes)]]
        outs.append(simulate(spec, windows, lambda status, now: pool[rng.integers(len(pool))]))
    return outs


def gates(rollouts: int, per_size: int, windows: int, rng: np.random.Generator, started: float) -> int:
    print(f"gates: {rollouts} rollouts per case, {windows} windows of 1m, failureLimit 2, window sizes per version "
          f"{GATE_SIZES} (mmd) and {SIZES_1MIN} (latency, fairness), {per_size} windows evaluated per size")
    header = f"{'case':<40}{'rollback':>10}{'mean win':>10}{'<=2 win':>9}{'paused':>8}{'promoted':>10}  target"
    print(header)
    print("-" * len(header))
    cases = [
        (_gate_spec({"name": "emb", "metric": "mmd", "minPValue": 0.001}, windows, "embedding"), _emb_window,
         [(f"mmd p<0.001 @ {lab}", m, m * MMD_EFFECT) for lab, m in
          (("A/A", 0.0), ("half", 0.5), ("1.5x", 1.5), ("3x", 3.0))]),
        (_gate_spec({"name": "lat", "metric": "latency-p99", "maxRatioToBaseline": 2}, windows), _latency_window,
         [("latency-p99 ratio 2 @ identical", 0.0, 1.0), ("latency-p99 ratio 2 @ 1.5x slower", 0.5, 1.5),
          ("latency-p99 ratio 2 @ 3x slower", 3.0, 3.0)]),
        (_gate_spec({"name": "fair", "metric": "disparate-impact", "segment": "segment", "min": 0.8}, windows),
         _segment_window,
         [("four-fifths @ identical", 0.0, 0.0), ("four-fifths @ x favoured +0.1", 1.5, 0.1),
          ("four-fifths @ x favoured +0.3", 3.0, 0.3)]),
    ]
    misses = 0
    for spec, make, rows in cases:
        for name, multiple, arg in rows:
            t = time.perf_counter()
            outs = _gate_case(spec, make, arg, rollouts, per_size, windows, rng)
            rate, mean_w, within2, paused, promoted = summarize(outs)
            v = verdict(multiple, rate, within2)
            misses += v != "ok"
            print(f"{name:<40}{rate:>10.1%}{mean_w:>10.2f}{within2:>9.1%}{paused:>8.1%}{promoted:>10.1%}  {v}"
                  f"   ({time.perf_counter() - t:.0f}s)", flush=True)
    print(f"targets missed: {misses}; total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
