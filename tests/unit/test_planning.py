"""Planning: the samples a check needs to tell its tolerance from 1.5x of it with power 0.8, checked by
simulating the very test the check runs; the plan in status and `kubectl modelrollout status`; and
`lint --rate`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rich.console import Console

from modelrollout import plugin
from modelrollout.plugin.render import status_view
from policies._paired import signed_rank_p
from policies.checks import Observations, evaluate
from policies.machine import decide
from policies.planning import needed
from policies.sequential import FAIL_GRID, log_rate_mixture
from policies.spec import parse_spec
from policies.summaries import PairedSummary, VersionWindow

T0 = 1_800_000_000.0


def make_spec(checks, steps=None, **analysis):
    an = {"interval": "1m", "minSamples": 100, **analysis, "checks": checks}
    return parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                       "candidate": {"version": "v2", "url": "http://c:1"},
                       "strategy": {"steps": steps or [{"canary": {"weight": 10, "duration": "10m"}}]},
                       "analysis": an}, "fraud", "ml")


def test_fixed_error_rate_plan_gives_the_stated_power():
    """n = needed(...) requests: the one-sided z-test of rate <= 0.01 at 5% rejects at 0.015 in ~80%."""
    (c,) = make_spec([{"name": "e", "metric": "error-rate", "max": 0.01}]).analysis.checks
    n = needed(c, 0.05)
    rng = np.random.default_rng(0)
    rates = rng.binomial(n, 0.015, 20000) / n
    z = (rates - 0.01) / math.sqrt(0.01 * 0.99 / n)
    assert 0.76 <= float(np.mean(z > 1.6448536)) <= 0.84


def test_sequential_error_rate_plan_is_conservative_but_not_wildly():
    """The sequential test's evidence crosses 1/α by the planned n in >= 80% of candidates at 1.5x max, and
    by half of it in fewer than 80%."""
    (c,) = make_spec([{"name": "e", "metric": "error-rate", "max": 0.01, "sequential": True}]).analysis.checks
    n = needed(c, 0.01)
    rng = np.random.default_rng(1)

    def power(total, sims=400, w=250):
        hits = 0
        for _ in range(sims):
            e = np.cumsum(rng.binomial(w, 0.015, total // w))
            ns = w * np.arange(1, total // w + 1)
            hits += any(log_rate_mixture(int(a), int(b), 0.01, FAIL_GRID) >= math.log(100) for a, b in zip(e, ns))
        return hits / sims
    assert power(n) >= 0.8 and power(n // 2) < 0.8


def test_wilcoxon_plan_gives_the_stated_power():
    """n pairs with the measured sd of the deltas: the tolerance test (level 0.05 two-sided) rejects a shift
    of 1.5x the tolerance in about 80% of windows."""
    (c,) = make_spec([{"name": "w", "metric": "shadow-wilcoxon", "max": 0.02}],
                     steps=[{"shadow": {"duration": "1m"}}]).analysis.checks
    n = needed(c, 0.025, spread=0.05)
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(600):
        d = 0.03 + rng.normal(0, 0.05, n)
        p = 2 * min(signed_rank_p(d - 0.02, "greater")[1], signed_rank_p(d + 0.02, "less")[1])
        hits += p < 0.05
    assert 0.74 <= hits / 600 <= 0.88


def _traffic(n, rate, rng):
    w = VersionWindow.new("score")
    w.requests = n
    w.errors["http_5xx"] = int(rng.binomial(n, rate))
    return w


def test_the_plan_is_in_status_and_in_kubectl_modelrollout_status():
    """At 100 candidate requests a minute a 10-minute step cannot tell 1% from 1.5%: the plan says how many
    requests and how long, and that the step is too short; `status` shows it."""
    spec = make_spec([{"name": "errors", "metric": "error-rate", "max": 0.01, "sequential": True}])
    rng = np.random.default_rng(3)
    st = decide(spec, None, None, T0).status
    res = evaluate(spec, Observations(T0, T0 + 60, _traffic(900, 0.001, rng), _traffic(100, 0.001, rng)), st)
    st = decide(spec, st, res, T0 + 60).status
    plan = st.check("errors").evidence["plan"]
    assert plan["per"] == "step" and plan["samples"] == needed(spec.analysis.checks[0], 0.01)
    assert plan["rate"] == pytest.approx(100 / 60) and plan["enough"] is False
    assert plan["seconds"] == pytest.approx(plan["samples"] / plan["rate"])
    console = Console(width=250, record=True)
    console.print(status_view({"metadata": {"name": "fraud"}, "spec": {}, "status": st.to_status()}, T0 + 60))
    text = console.export_text()
    assert "Evidence" in text and f"needs {plan['samples']} per step" in text and "step too short (10m)" in text
    assert "undecided: against" in text


def test_lint_rate_warns_about_short_steps_without_failing(tmp_path, capsys):
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout", "metadata": {"name": "r"},
           "spec": {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
                    "strategy": {"steps": [{"canary": {"weight": 5, "duration": "15m"}}]},
                    "analysis": {"minSamples": 50, "checks": [{"name": "errors", "metric": "error-rate", "max": 0.01}]}}}
    f = tmp_path / "r.yaml"
    f.write_text(json.dumps(doc))
    assert plugin.main(["lint", str(f), "--rate", "20"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "step 1 (canary 5% for 15m)" in err and "per window" in err
    assert plugin.main(["lint", str(f), "--rate", "5000", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
    assert plugin.main(["lint", str(f), "--rate", "-1"]) == 1
    assert "--rate: expected a positive number" in capsys.readouterr().err


def test_paired_plan_uses_the_measured_spread():
    spec = make_spec([{"name": "w", "metric": "shadow-wilcoxon", "max": 0.02}], steps=[{"shadow": {"duration": "30m"}}])
    rng = np.random.default_rng(4)
    p = PairedSummary()
    x = rng.beta(2, 5, 600)
    p.add_many(x, x + rng.normal(0, 0.05, 600), rng.random(600), 0.5)
    st = decide(spec, None, None, T0).status
    (r,) = evaluate(spec, Observations(T0, T0 + 60, _traffic(600, 0, rng), _traffic(600, 0, rng), paired=p), st)
    plan = r.evidence["plan"]
    assert plan["per"] == "window" and plan["rate"] == pytest.approx(10.0)
    assert plan["samples"] == needed(spec.analysis.checks[0], plan["level"], spread=float(np.std(p.deltas(), ddof=1)))


@pytest.mark.parametrize("check, bad, good", [
    ({"name": "agree", "metric": "shadow-agreement", "min": 0.96}, 0.06, 0.04),   # disagreement 4% vs 6%
    ({"name": "acc", "metric": "accuracy", "min": 0.9}, 0.15, 0.10),              # error 10% vs 15%
    ({"name": "il", "metric": "interleave", "min": -0.1}, 0.35, 0.40),            # candidate share 40% vs 35%
])
def test_proportion_plans_give_the_stated_power(check, bad, good):
    """needed() for the checks on a proportion: n samples of a one-sided z-test at 5% against the tolerance
    (the `good` proportion) reject at 1.5x of it (`bad`) in ~80% of 20,000 simulated windows."""
    spec = make_spec([check]) if check["metric"] != "interleave" else parse_spec(
        {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
         "output": {"kind": "ranking", "path": "ranking"},
         "strategy": {"steps": [{"interleave": {"duration": "10m"}}]},
         "analysis": {"interval": "1m", "minSamples": 100, "checks": [check]}}, "rank", "ml")
    (c,) = spec.analysis.checks
    n = needed(c, 0.05)
    rng = np.random.default_rng(7)
    share = rng.binomial(n, bad, 20000) / n
    z = (share - good) / math.sqrt(good * (1 - good) / n) * (1 if bad > good else -1)
    assert 0.76 <= float(np.mean(z > 1.6448536)) <= 0.84, n


def test_shadow_agreement_plan_is_in_status():
    spec = make_spec([{"name": "agree", "metric": "shadow-agreement", "min": 0.96}],
                     steps=[{"shadow": {"duration": "30m"}}])
    rng = np.random.default_rng(5)
    p = PairedSummary()
    labels = rng.integers(0, 3, 600)
    flip = rng.random(600) < 0.03
    for x, f in zip(labels, flip):
        p.add_categorical(str(x), str((x + 1) % 3) if f else str(x))
    st = decide(spec, None, None, T0).status
    (r,) = evaluate(spec, Observations(T0, T0 + 60, _traffic(600, 0, rng), _traffic(600, 0, rng), paired=p), st)
    plan = r.evidence["plan"]
    assert plan["samples"] == needed(spec.analysis.checks[0], 0.05) and plan["rate"] == pytest.approx(10.0)
    assert plan["enough"] is (plan["samples"] <= 600)
