"""Sequential decisions and family-wise control through the real judging path (`evaluate` + `decide`) on
summaries built from seeded samples: the e-processes against independent computations, their error rate
under the null with a look every window, steps that end early with the reason in status, and Holm."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate

from policies.checks import Observations, evaluate
from policies.familywise import holm
from policies.machine import Command, decide
from policies.sequential import FAIL_GRID, log_mixture_p, log_rate_mixture
from policies.spec import SpecError, parse_spec
from policies.status import Phase, RolloutStatus, Verdict
from policies.summaries import PairedSummary, VersionWindow

T0 = 1_800_000_000.0


def make_spec(checks, steps=None, **analysis):
    an = {"interval": "1m", "minSamples": 100, "failureLimit": 2, **analysis, "checks": checks}
    return parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                       "candidate": {"version": "v2", "url": "http://c:1"},
                       "strategy": {"steps": steps or [{"canary": {"weight": 10, "duration": "10m"}},
                                                       {"canary": {"weight": 50, "duration": "10m"}}]},
                       "analysis": an}, "fraud", "ml")


def traffic(n, rate, rng, scores=None):
    w = VersionWindow.new("score")
    for v in (scores if scores is not None else []):
        w.observe_prediction(float(v), float(rng.random()))
    w.requests = n
    w.errors["http_5xx"] = int(rng.binomial(n, rate))
    return w


def run(spec, windows, make_obs, status=None, now=T0):
    """`windows` analysis windows through evaluate and decide; returns the statuses after each."""
    st = status or decide(spec, None, None, now).status
    out = []
    for _ in range(windows):
        now += 60.0
        res = evaluate(spec, make_obs(now), st)
        st = decide(spec, st, res, now).status
        out.append(st)
        if st.phase.is_terminal:
            break
    return out


# --- the e-processes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("t, s", [(1, 0.5), (1, 9.2), (3, 13.8), (10, 4.0), (25, 60.0), (40, 3.0)])
def test_mixture_of_calibrators_equals_its_integral(t, s):
    value, _ = integrate.quad(lambda k: k ** t * math.exp((1 - k) * s), 0, 1, epsabs=0, epsrel=1e-12, limit=200)
    assert log_mixture_p(t, s) == pytest.approx(math.log(value), rel=1e-9, abs=1e-9)


def test_rate_mixture_equals_the_mean_likelihood_ratio():
    e, n, r0 = 17, 900, 0.01
    lrs = [(min(r0 * m, 1 - 1e-12) / r0) ** e * ((1 - min(r0 * m, 1 - 1e-12)) / (1 - r0)) ** (n - e)
           for m in FAIL_GRID]
    assert log_rate_mixture(e, n, r0, FAIL_GRID) == pytest.approx(math.log(np.mean(lrs)), rel=1e-12)


def test_p_value_evidence_crosses_rarely_under_the_null_looking_every_window():
    """Uniform p-values (no difference) for 60 windows, 4,000 sequences: the evidence reaches 1/α = 100 in
    at most 1% of them (Ville's inequality), looking after every window."""
    rng = np.random.default_rng(1)
    crossed = 0
    for _ in range(4000):
        s = np.cumsum(-np.log(rng.random(60)))
        crossed += any(log_mixture_p(t + 1, s[t]) >= math.log(100) for t in range(60))
    assert crossed / 4000 <= 0.01


def test_error_rate_evidence_at_the_tolerated_rate_crosses_rarely():
    """A candidate erring exactly at max (the hardest acceptable case), 500 requests a window for 40 windows,
    2,000 rollouts: the evidence against it reaches 100 in at most 1%."""
    rng = np.random.default_rng(2)
    crossed = 0
    for _ in range(2000):
        e = np.cumsum(rng.binomial(500, 0.01, 40))
        n = 500 * np.arange(1, 41)
        crossed += any(log_rate_mixture(int(a), int(b), 0.01, FAIL_GRID) >= math.log(100) for a, b in zip(e, n))
    assert crossed / 2000 <= 0.01


# --- steps that end early, rollbacks that come early ----------------------------------------------------

def error_rate_spec(**kw):
    return make_spec([{"name": "err", "metric": "error-rate", "max": 0.01, **kw}])


def test_a_healthy_canary_step_ends_early_and_status_says_why():
    spec = error_rate_spec(sequential=True)
    rng = np.random.default_rng(3)
    sts = run(spec, 20, lambda now: Observations(now - 60, now, traffic(4500, 0.001, rng), traffic(500, 0.001, rng)))
    assert sts[-1].phase is Phase.PROMOTED and len(sts) < 10          # two 10-minute steps, ended in minutes
    early = [h for h in sts[-1].history if "ended early" in h.reason]
    assert len(early) == 2 and "err: evidence against 'rate >= 0.01' reached" in early[0].reason
    ev = sts[0].check("err").evidence["sequential"]
    assert ev["requests"] == 500 and ev["eFail"] < 1


def test_a_bad_canary_is_rolled_back_on_the_evidence_without_waiting_for_failure_limit():
    spec = error_rate_spec(sequential=True)
    rng = np.random.default_rng(4)
    sts = run(spec, 20, lambda now: Observations(now - 60, now, traffic(4500, 0.001, rng), traffic(500, 0.03, rng)))
    assert sts[-1].phase is Phase.ROLLED_BACK and len(sts) == 1
    assert "sequential: evidence against 'rate <= 0.01' reached" in sts[-1].message


def test_undecided_evidence_passes_windows_and_the_step_runs_its_duration():
    """A candidate at 0.9x max: neither side becomes decisive quickly; windows pass, the steps take their
    duration (the fixed-window behaviour)."""
    spec = error_rate_spec(sequential=True)
    rng = np.random.default_rng(5)
    sts = run(spec, 25, lambda now: Observations(now - 60, now, traffic(900, 0.009, rng), traffic(100, 0.009, rng)))
    assert sts[-1].phase is Phase.PROMOTED and len(sts) >= 20
    assert "sequential: undecided" in sts[3].check("err").reason


def test_the_evidence_for_the_candidate_is_per_step_and_against_it_per_rollout():
    spec = error_rate_spec(sequential=True)
    rng = np.random.default_rng(6)
    sts = run(spec, 30, lambda now: Observations(now - 60, now, traffic(4500, 0.001, rng), traffic(500, 0.001, rng)))
    first_of_step_2 = next(s for s in sts if s.current_step == 1 and s.check("err").evidence["sequential"]["step"] == 1)
    ev = first_of_step_2.check("err").evidence["sequential"]
    assert ev["stepRequests"] < ev["requests"]           # the step's own count restarted, the rollout's did not


def test_resume_starts_the_evidence_afresh_and_status_round_trips_it():
    spec = error_rate_spec(sequential=True, action="pause")
    rng = np.random.default_rng(7)
    sts = run(spec, 5, lambda now: Observations(now - 60, now, traffic(4500, 0.001, rng), traffic(500, 0.05, rng)))
    paused = sts[-1]
    assert paused.phase is Phase.PAUSED and paused.check("err").evidence["sequential"]["decided"] == "fail"
    again = RolloutStatus.from_status(json.loads(json.dumps(paused.to_status())))
    assert again.check("err").evidence == paused.check("err").evidence
    resumed = decide(spec, again, None, T0 + 1000, Command("resume", id="r")).status
    assert resumed.check("err").evidence is None


def test_sequential_p_value_check_fails_a_shift_and_never_ends_a_step_early_without_a_tolerance():
    spec = make_spec([{"name": "ks", "metric": "ks", "minPValue": 0.01, "sequential": True}])
    rng = np.random.default_rng(8)
    same = run(spec, 25, lambda now: Observations(now - 60, now, traffic(2000, 0, rng, rng.normal(0, 1, 2000)),
                                                  traffic(300, 0, rng, rng.normal(0, 1, 300))))
    assert same[-1].phase is Phase.PROMOTED and len(same) >= 20          # passes, but only at the durations
    shifted = run(spec, 25, lambda now: Observations(now - 60, now, traffic(2000, 0, rng, rng.normal(0, 1, 2000)),
                                                     traffic(300, 0, rng, rng.normal(0.3, 1, 300))))
    assert shifted[-1].phase is Phase.ROLLED_BACK and len(shifted) <= 5


def test_sequential_paired_tolerance_check_ends_the_shadow_step_early():
    """shadow-wilcoxon with a tolerance: the equivalence side shows a tiny shift within it and ends the
    shadow step early; a shift of 3x the tolerance fails."""
    spec = make_spec([{"name": "shift", "metric": "shadow-wilcoxon", "max": 0.02, "sequential": True}],
                     steps=[{"shadow": {"duration": "30m"}}, {"canary": {"weight": 10, "duration": "10m"}}])

    def obs(shift, rng):
        def make(now):
            p = PairedSummary()
            x = rng.beta(2, 5, 400)
            p.add_many(x, x + shift + rng.normal(0, 0.05, 400), rng.random(400), 0.5)
            w = traffic(400, 0, rng)
            return Observations(now - 60, now, w, w, paired=p)
        return make
    good = run(spec, 5, obs(0.002, np.random.default_rng(9)))
    assert good[-1].current_step == 1 and "ended early" in good[-1].history[-1].reason
    bad = run(spec, 5, obs(0.06, np.random.default_rng(10)))
    assert bad[-1].phase is Phase.ROLLED_BACK and len(bad) == 1


# --- the spec ------------------------------------------------------------------------------------------

def test_analysis_sequential_applies_to_the_checks_that_support_it():
    spec = make_spec([{"name": "err", "metric": "error-rate", "max": 0.01},
                      {"name": "ratio", "metric": "error-rate", "maxRatioToBaseline": 2},
                      {"name": "psi", "metric": "psi", "max": 0.2}], sequential=True)
    assert [c.sequential for c in spec.analysis.checks] == [True, False, False]


@pytest.mark.parametrize("check, analysis, path, message", [
    ({"metric": "psi", "max": 0.2, "sequential": True}, {}, "checks[0].sequential", "sequential decisions apply to"),
    ({"metric": "error-rate", "maxRatioToBaseline": 2, "sequential": True}, {}, "checks[0].sequential",
     "needs max"),
    ({"metric": "error-rate", "max": 0.01, "minPValue": 0.01}, {}, "checks[0].minPValue", "has no p-value"),
    ({"metric": "error-rate", "max": 0.01}, {"multipleTesting": "bonferroni"}, "multipleTesting",
     "expected one of none, holm"),
])
def test_sequential_and_familywise_fields_are_validated(check, analysis, path, message):
    with pytest.raises(SpecError) as e:
        make_spec([{"name": "c", **check}], **analysis)
    assert e.value.path == f"spec.analysis.{path}" and message in e.value.message


# --- Holm ----------------------------------------------------------------------------------------------

def holm_reference(ps: list[float]) -> list[float]:
    """Holm (1979) adjusted p-values: p̃₍ᵢ₎ = max_{j <= i} min(1, (m − j + 1)·p₍ⱼ₎)."""
    m = len(ps)
    order = np.argsort(ps, kind="stable")
    out, running = [0.0] * m, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * ps[k]))
        out[k] = running
    return out


def test_holm_with_equal_levels_is_the_standard_adjustment():
    rng = np.random.default_rng(11)
    for _ in range(200):
        ps = list(rng.random(int(rng.integers(2, 8))) ** 3)
        got = holm({f"c{i}": (p, 0.01) for i, p in enumerate(ps)})
        assert [got[f"c{i}"] for i in range(len(ps))] == pytest.approx([min(1.0, v * 0.01 / 0.01 * 1) for v in
                                                                        holm_reference(ps)])


def test_holm_controls_the_family_when_levels_differ():
    """Under the null with levels 0.01, 0.02 and 0.05 the chance that any check rejects after Holm is at most
    the largest level (the bound docs/statistics.md states), measured on 20,000 windows."""
    rng = np.random.default_rng(12)
    levels = {"a": 0.01, "b": 0.02, "c": 0.05}
    any_reject = 0
    for _ in range(20000):
        tested = {k: (float(rng.random()), a) for k, a in levels.items()}
        adj = holm(tested)
        any_reject += any(adj[k] < levels[k] for k in levels)
    assert any_reject / 20000 <= 0.05


def feature_window(rng, shifts, n):
    w = VersionWindow.new("score")
    for v in rng.normal(0, 1, n):
        w.observe_prediction(float(v), float(rng.random()))
    for name, shift in shifts.items():
        for v in rng.normal(shift, 1, n):
            w.observe_feature(name, float(v), float(rng.random()))
    w.requests = n
    return w


def test_holm_turns_a_borderline_failure_into_a_pass_and_states_it():
    """Three ks checks; the shifted feature's p-value is below its own level but not below a third of it:
    without Holm it fails, with Holm it passes and its evidence and reason name the adjustment."""
    checks = [{"name": f"ks-{f}", "metric": "ks", "on": f"feature:{f}", "minPValue": 0.01, "immediate": True}
              for f in ("a", "b", "c")]
    plain, holmed = make_spec(checks), make_spec(checks, multipleTesting="holm")
    for seed in range(200):           # find a window whose smallest p lies between a/3 and a
        rng = np.random.default_rng(seed)
        o = Observations(0, 60, feature_window(rng, {"a": 0, "b": 0, "c": 0}, 600),
                         feature_window(rng, {"a": 0.17, "b": 0, "c": 0}, 600))
        r = evaluate(plain, o)[0]
        if r.verdict is Verdict.FAIL and r.p_value > r.threshold / 3:
            break
    else:
        pytest.fail("no borderline window in 200 seeds")
    h = evaluate(holmed, o)[0]
    assert h.verdict is Verdict.PASS and "Holm over 3 p-value checks" in h.reason
    note = h.evidence["holm"]
    assert note["family"] == ["ks-a", "ks-b", "ks-c"] and note["pValue"] == pytest.approx(r.p_value)
    assert note["adjustedPValue"] >= r.threshold > note["pValue"]


def test_holm_leaves_a_clear_failure_failing():
    checks = [{"name": f"ks-{f}", "metric": "ks", "on": f"feature:{f}", "minPValue": 0.01} for f in ("a", "b")]
    rng = np.random.default_rng(0)
    o = Observations(0, 60, feature_window(rng, {"a": 0, "b": 0}, 600), feature_window(rng, {"a": 0.6, "b": 0}, 600))
    r = evaluate(make_spec(checks, multipleTesting="holm"), o)[0]
    assert r.verdict is Verdict.FAIL and r.evidence["holm"]["adjustedPValue"] < r.threshold


def test_sequential_checks_are_not_in_the_holm_family():
    checks = [{"name": "ks-a", "metric": "ks", "on": "feature:a", "minPValue": 0.01, "sequential": True},
              {"name": "ks-b", "metric": "ks", "on": "feature:b", "minPValue": 0.01}]
    rng = np.random.default_rng(0)
    o = Observations(0, 60, feature_window(rng, {"a": 0, "b": 0}, 300), feature_window(rng, {"a": 0, "b": 0}, 300))
    res = evaluate(make_spec(checks, multipleTesting="holm"), o)
    assert all("holm" not in (r.evidence or {}) for r in res)      # a family of one: nothing to adjust
    assert "sequential" in res[0].evidence and replace(res[1], evidence=None).evidence is None


def test_holm_over_anytime_p_values_bounds_any_false_fail_over_every_look():
    """Three sequential checks under their null (uniform p-values, 40 windows, α = 0.05 each), 4,000 rollouts:
    deciding each alone (E >= 1/α) fails some check in up to 3α of them (the mixtures are conservative:
    about 4% here); deciding on Holm over the anytime p-values min(1, 1/sup E), as `policies.familywise` does
    every window, fails one in at most α, and in fewer rollouts than alone."""
    from policies.familywise import holm as holm_adjust
    rng = np.random.default_rng(4)
    alone = together = 0
    for _ in range(4000):
        s = np.cumsum(-np.log(rng.random((3, 40))), axis=1)
        sup = np.zeros(3)
        any_alone = any_holm = False
        for t in range(40):
            e = np.array([math.exp(min(log_mixture_p(t + 1, s[k, t]), 700)) for k in range(3)])
            sup = np.maximum(sup, e)
            any_alone |= bool((e >= 20).any())
            adj = holm_adjust({k: (min(1.0, 1 / sup[k]), 0.05) for k in range(3)})
            any_holm |= any(adj[k] < 0.05 and e[k] >= 20 for k in range(3))
        alone += any_alone
        together += any_holm
    assert together / 4000 <= 0.05 and together < alone and alone / 4000 <= 0.15, (together, alone)


def test_holm_holds_back_a_sequential_fail_that_is_decisive_alone_but_not_in_its_family():
    from policies.sequential import apply
    check = make_spec([{"name": "ks-a", "metric": "ks", "on": "feature:a", "minPValue": 0.05,
                        "sequential": True}]).analysis.checks[0]
    window = replace(evaluate(make_spec([{"name": "ks-a", "metric": "ks", "on": "feature:a", "minPValue": 0.05}]),
                              Observations(0, 60, feature_window(np.random.default_rng(0), {"a": 0}, 300),
                                           feature_window(np.random.default_rng(1), {"a": 0}, 300)))[0])
    prior = {"sequential": {"windows": 3, "sumLogInvP": 9.0, "step": 0}}     # E after one more p = 0.01: ~26
    alone = apply(check, prior, 0, {"p": 0.01}, window)
    assert alone.verdict is Verdict.FAIL and alone.evidence["sequential"]["eFail"] >= 20
    held = apply(check, prior, 0, {"p": 0.01}, window, holm=(0.07, 2))
    assert held.verdict is not Verdict.FAIL and held.evidence["sequential"]["decided"] is None
    assert "Holm over 2 sequential checks: adjusted anytime p 0.07 >= 0.05" in held.reason
    assert held.evidence["sequential"]["holm"] == {"adjustedPValue": 0.07, "family": 2}


def test_sequential_checks_form_a_holm_family_of_their_own():
    """With multipleTesting holm, two sequential checks: a clear shift decides Fail with the family stated;
    the other carries its adjusted anytime p-value and stays undecided."""
    checks = [{"name": f"ks-{f}", "metric": "ks", "on": f"feature:{f}", "minPValue": 0.05, "sequential": True}
              for f in ("a", "b")]
    rng = np.random.default_rng(0)
    o = Observations(0, 60, feature_window(rng, {"a": 0, "b": 0}, 600), feature_window(rng, {"a": 0.8, "b": 0}, 600))
    a, b = evaluate(make_spec(checks, multipleTesting="holm"), o)
    assert a.verdict is Verdict.FAIL and "Holm over 2 sequential checks" in a.reason
    assert b.evidence["sequential"]["decided"] is None and b.evidence["sequential"]["holm"]["family"] == 2
    assert a.evidence["sequential"]["holm"]["adjustedPValue"] < 0.05 <= b.evidence["sequential"]["holm"][
        "adjustedPValue"]
