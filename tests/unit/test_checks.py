"""Checks evaluated on real summaries built from seeded samples."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from policies.checks import Observations, SourceError, evaluate, render_query
from policies.spec import load_documents, parse_rollout, parse_spec
from policies.status import Routing, RolloutStatus, Verdict
from policies.summaries import InterleaveSummary, PairedSummary, VersionWindow

ROOT = Path(__file__).resolve().parents[2]


def make_spec(checks, kind="score", steps=None, **analysis):
    an = {"interval": "1m", "minSamples": 200, "failureLimit": 2}
    an.update(analysis)
    an["checks"] = checks
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": "v2", "url": "http://c:1"},
        "output": {"kind": kind},
        "strategy": {"steps": steps or [{"shadow": {"duration": "10m"}},
                                        {"canary": {"weight": 20, "duration": "10m"}}]},
        "analysis": an,
    }, "fraud", "ml")


def window(values=(), kind="score", seed=0, latency=None, errors=None, features=None, requests=None):
    rng = np.random.default_rng(seed)
    w = VersionWindow.new(kind)
    for v in values:
        w.observe_prediction(v if kind == "score" else str(v), float(rng.random()))
    for name, vals in (features or {}).items():
        for v in vals:
            w.observe_feature(name, float(v), float(rng.random()))
    for s in latency if latency is not None else []:
        w.latency.add(float(s))
    for k, n in (errors or {}).items():
        w.errors[k] += n
    w.requests = requests if requests is not None else len(values) + sum((errors or {}).values())
    return w


def obs(b, c, **kw):
    return Observations(0.0, 60.0, b, c, **kw)


def status_at(step=0, routing=Routing(0, shadow=True), calibration=None):
    st = RolloutStatus(current_step=step, routing=routing)
    if calibration:
        from dataclasses import replace
        from policies.status import CheckState
        st = replace(st, checks=tuple(CheckState(n, calibration=tuple(v)) for n, v in calibration.items()))
    return st


def one(spec, o, status=None):
    (r,) = evaluate(spec, o, status or status_at())
    return r


RNG = np.random.default_rng(42)
B2000 = RNG.normal(0, 1, 2000)
C_SAME = RNG.normal(0, 1, 2000)
C_SHIFT = RNG.normal(1.0, 1, 2000)


# --- drift ------------------------------------------------------------------------------------

def test_psi_passes_on_the_same_distribution():
    """Two samples of one distribution pass a psi max check, with the value and a reason."""
    spec = make_spec([{"name": "score-psi", "metric": "psi", "max": 0.2}])
    r = one(spec, obs(window(B2000), window(C_SAME, seed=1)))
    assert r.verdict is Verdict.PASS and r.samples == 2000 and r.threshold == 0.2
    assert r.value < 0.2 and r.estimate is not None and r.reason.startswith("score-psi ")
    assert "<= 0.2" in r.reason


def test_psi_fails_on_a_large_shift_with_reason_naming_value_and_threshold():
    """A one-sigma shift fails psi max 0.2 and the reason says 'score-psi <value> > 0.2'."""
    spec = make_spec([{"name": "score-psi", "metric": "psi", "max": 0.2}])
    r = one(spec, obs(window(B2000), window(C_SHIFT, seed=1)))
    assert r.verdict is Verdict.FAIL and r.value > 0.2
    assert f"score-psi {r.value:.3g} > 0.2" in r.reason


def test_too_few_candidate_samples_is_inconclusive_never_pass():
    """Fewer candidate samples than minSamples gives Inconclusive naming both numbers."""
    spec = make_spec([{"name": "score-psi", "metric": "psi", "max": 0.2}])
    r = one(spec, obs(window(B2000), window(C_SAME[:150], seed=1)))
    assert r.verdict is Verdict.INCONCLUSIVE
    assert "candidate has 150 samples < minSamples 200" in r.reason


def test_too_few_baseline_samples_is_inconclusive():
    """A thin baseline is just as inconclusive as a thin candidate."""
    spec = make_spec([{"name": "score-ks", "metric": "ks", "minPValue": 0.01}])
    r = one(spec, obs(window(B2000[:20]), window(C_SHIFT, seed=1)))
    assert r.verdict is Verdict.INCONCLUSIVE and "baseline has 20 samples" in r.reason


def test_feature_drift_reads_the_named_feature():
    """on: feature:age compares the age feature summaries, not the predictions."""
    spec = make_spec([{"name": "age-drift", "metric": "psi", "on": "feature:age", "max": 0.2}])
    b = window(B2000, features={"age": RNG.normal(40, 10, 2000)})
    c = window(B2000, seed=1, features={"age": RNG.normal(55, 10, 2000)})
    r = one(spec, obs(b, c))
    assert r.verdict is Verdict.FAIL
    missing = one(spec, obs(window(B2000), window(B2000, seed=1)))
    assert missing.verdict is Verdict.INCONCLUSIVE and "feature 'age'" in missing.reason


def test_ks_p_value_check_uses_a_level_corrected_for_repeated_windows():
    """ks minPValue fails a real shift; the per-window level never exceeds minPValue."""
    spec = make_spec([{"name": "score-ks", "metric": "ks", "minPValue": 0.01}])
    r = one(spec, obs(window(B2000), window(C_SHIFT, seed=1)))
    assert r.verdict is Verdict.FAIL and r.p_value < r.threshold <= 0.01
    same = one(spec, obs(window(B2000), window(C_SAME, seed=1)))
    assert same.verdict is Verdict.PASS


def test_chi2_on_class_outputs():
    """chi2 compares class counts: a changed class mix fails, the same mix passes."""
    spec = make_spec([{"name": "cls", "metric": "chi2", "minPValue": 0.01}], kind="class")
    b = window(RNG.choice(["a", "b", "c"], 3000, p=[0.6, 0.3, 0.1]), kind="class")
    same = window(RNG.choice(["a", "b", "c"], 3000, p=[0.6, 0.3, 0.1]), kind="class")
    diff = window(RNG.choice(["a", "b", "c"], 3000, p=[0.4, 0.3, 0.3]), kind="class")
    assert one(spec, obs(b, same)).verdict is Verdict.PASS
    assert one(spec, obs(b, diff)).verdict is Verdict.FAIL


def test_drift_ratio_to_baseline_is_refused_with_reason():
    """maxRatioToBaseline has no meaning for a drift metric: the spec is refused, saying what to use instead."""
    from policies.spec import SpecError

    with pytest.raises(SpecError, match="use max or dynamic") as err:
        make_spec([{"name": "x", "metric": "psi", "maxRatioToBaseline": 1.5}])
    assert err.value.path.endswith("checks[0].maxRatioToBaseline")


# --- calibrated thresholds --------------------------------------------------------------------

def test_dynamic_threshold_calibrates_from_the_baseline_then_judges():
    """Until minWindows A/A values exist the check is calibrating (Inconclusive); afterwards an A/A
    candidate passes and a shifted candidate fails."""
    check = {"name": "cal", "metric": "psi", "dynamic": {"sigmas": 3, "minWindows": 5}}
    spec = make_spec([check])
    units: list[float] = []
    for i in range(5):
        b = window(np.random.default_rng(100 + i).normal(0, 1, 2000), seed=i)
        c = window(np.random.default_rng(200 + i).normal(0, 1, 2000), seed=50 + i)
        r = one(spec, obs(b, c), status_at(calibration={"cal": units}))
        assert r.aa_value is not None and r.aa_value > 0
        units.append(r.aa_value)
        if i < 4:
            assert r.verdict is Verdict.INCONCLUSIVE and r.calibrating
            assert f"calibrating: {i + 1}/5" in r.reason
    assert r.verdict is Verdict.PASS and r.threshold > 0
    st = status_at(step=1, routing=Routing(20), calibration={"cal": units})
    shifted = one(spec, obs(window(B2000), window(RNG.normal(0.3, 1, 2000), seed=3)), st)
    assert shifted.verdict is Verdict.FAIL and "A/A windows" in shifted.reason
    assert shifted.aa_value is None     # not learning outside the shadow step once calibrated


def test_dynamic_threshold_scales_with_the_candidate_sample_size():
    """The same A/A values give a higher limit for a smaller candidate window (plug-in bias grows)."""
    check = {"name": "cal", "metric": "psi", "dynamic": {"sigmas": 3, "minWindows": 3}}
    spec = make_spec([check], minSamples=100)
    st = status_at(step=1, routing=Routing(20), calibration={"cal": [9.0, 10.0, 11.0]})
    big = one(spec, obs(window(B2000), window(C_SAME, seed=1)), st)
    small = one(spec, obs(window(B2000), window(C_SAME[:200], seed=1)), st)
    assert small.threshold > big.threshold


# --- operational ------------------------------------------------------------------------------

def test_error_rate_counts_invalid_outputs_and_5xx():
    """NaN/unparseable outputs and 5xx both count as errors of the candidate."""
    spec = make_spec([{"name": "nan-or-5xx", "metric": "error-rate", "max": 0.01, "immediate": True}])
    c = window(list(C_SAME[:500]) + [math.nan] * 3, errors={"http_5xx": 4, "invalid_output": 2}, requests=510)
    r = one(spec, obs(window(B2000), c))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(9 / 510)
    assert "nan-or-5xx 0.0176 > 0.01" in r.reason and r.immediate


def test_error_rate_at_low_traffic_fails_only_when_proven():
    """Below minSamples: many errors already prove a Fail; a few errors are Inconclusive."""
    spec = make_spec([{"name": "err", "metric": "error-rate", "max": 0.01}])
    proven = one(spec, obs(window(B2000), window(C_SAME[:40], errors={"http_5xx": 10})))
    assert proven.verdict is Verdict.FAIL and "even if the next" in proven.reason
    unclear = one(spec, obs(window(B2000), window(C_SAME[:40], errors={"http_5xx": 1})))
    assert unclear.verdict is Verdict.INCONCLUSIVE and "minSamples 200" in unclear.reason


def test_latency_p99_ratio_to_baseline():
    """latency-p99 with maxRatioToBaseline fails when the candidate's p99 is twice the baseline's."""
    spec = make_spec([{"name": "latency", "metric": "latency-p99", "maxRatioToBaseline": 1.3}])
    lat_b = RNG.lognormal(math.log(0.05), 0.3, 3000)
    b = window(B2000, latency=lat_b)
    slow = one(spec, obs(b, window(C_SAME, latency=lat_b * 2)))
    same = one(spec, obs(b, window(C_SAME, latency=RNG.lognormal(math.log(0.05), 0.3, 3000))))
    assert slow.verdict is Verdict.FAIL and "x baseline" in slow.reason
    assert same.verdict is Verdict.PASS
    assert slow.threshold == pytest.approx(b.latency.quantile(0.99) * 1.3)


def test_latency_mean_absolute_max_in_seconds():
    """latency-mean max is in seconds."""
    spec = make_spec([{"name": "lat", "metric": "latency-mean", "max": 0.1}])
    r = one(spec, obs(window(B2000, latency=[0.05] * 300), window(C_SAME, latency=[0.2] * 300)))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(0.2)


def test_mann_whitney_latency_needs_significance_and_effect():
    """Kayenta's judge: a clearly slower candidate fails; a same-speed one passes."""
    spec = make_spec([{"name": "mw", "metric": "mann-whitney-latency", "minPValue": 0.02}])
    lat = lambda mu, n: RNG.lognormal(math.log(mu), 0.3, n)
    b = window(B2000, latency=lat(0.05, 2000))
    assert one(spec, obs(b, window(C_SAME, latency=lat(0.08, 1000)))).verdict is Verdict.FAIL
    assert one(spec, obs(b, window(C_SAME, latency=lat(0.05, 1000)))).verdict is Verdict.PASS


# --- outcomes and external --------------------------------------------------------------------

def test_shadow_agreement_applies_only_while_mirroring():
    """shadow-agreement judges pairs during shadowing and is skipped (not failed, not passed) otherwise."""
    spec = make_spec([{"name": "agree", "metric": "shadow-agreement", "min": 0.9}], kind="class")
    p = PairedSummary()
    for i in range(300):
        p.add_categorical("a", "a" if i % 5 else "b")
    o = obs(window(["a"] * 300, kind="class"), window(["a"] * 300, kind="class"), paired=p)
    r = one(spec, o)
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(0.8)
    skipped = one(spec, o, status_at(step=1, routing=Routing(20)))
    assert skipped.skipped and skipped.verdict is Verdict.INCONCLUSIVE


def test_interleave_fails_when_candidate_significantly_loses():
    """interleave with minPValue fails when the candidate loses significantly, and passes when it wins."""
    spec = make_spec([{"name": "il", "metric": "interleave", "minPValue": 0.05}], kind="ranking",
                     steps=[{"interleave": {"duration": "10m"}}])
    st = status_at(routing=Routing(0, interleave=True))
    base = obs(window(kind="ranking"), window(kind="ranking"), interleave=InterleaveSummary(150, 300, 50))
    r = one(spec, base, st)
    assert r.verdict is Verdict.FAIL and r.value < 0
    good = obs(window(kind="ranking"), window(kind="ranking"), interleave=InterleaveSummary(300, 150, 50))
    assert one(spec, good, st).verdict is Verdict.PASS


def test_disparate_impact_from_segment_counts():
    """disparate-impact min 0.8 fails when one group's positive rate is far below another's."""
    spec = make_spec([{"name": "fair", "metric": "disparate-impact", "segment": "gender", "min": 0.8}])
    c = window(C_SAME[:10])
    for i in range(400):
        c.segments.add({"gender": "f"}, positive=i % 4 == 0)   # 25%
        c.segments.add({"gender": "m"}, positive=i % 2 == 0)   # 50%
    r = one(spec, obs(window(B2000), c))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(0.5)
    assert "gender=f vs m" in r.reason


def test_a_statistic_error_is_inconclusive_with_its_message():
    """A statistic that cannot be computed (one segment only) gives Inconclusive with the StatError text."""
    spec = make_spec([{"name": "fair", "metric": "disparate-impact", "segment": "gender", "min": 0.8}])
    c = window(C_SAME[:10])
    for i in range(400):
        c.segments.add({"gender": "f"}, positive=i % 2 == 0)
    r = one(spec, obs(window(B2000), c))
    assert r.verdict is Verdict.INCONCLUSIVE and "at least two segments" in r.reason


def test_accuracy_from_joined_labels():
    """accuracy min fails when fewer labelled predictions are correct than required."""
    spec = make_spec([{"name": "acc", "metric": "accuracy", "min": 0.9}])
    c = window(C_SAME[:10])
    for i in range(300):
        c.segments.add_label({"all": "all"}, correct=i % 5 != 0, label_positive=True, predicted_positive=True)
    r = one(spec, obs(window(B2000), c))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(0.8) and r.samples == 300


def test_prometheus_check_bounds_and_source_errors():
    """A PromQL value is judged against min/max; a SourceError or NaN is Inconclusive with the reason."""
    spec = make_spec([{"name": "business", "prometheus": {"query": "sum(x)", "min": 10}}])
    o = lambda v: obs(window(B2000), window(C_SAME), prometheus={"business": v})
    assert one(spec, o(12.0)).verdict is Verdict.PASS
    low = one(spec, o(3.0))
    assert low.verdict is Verdict.FAIL and "business 3 < 10" in low.reason
    err = one(spec, o(SourceError("prometheus http://p:9090 timed out")))
    assert err.verdict is Verdict.INCONCLUSIVE and "timed out" in err.reason
    assert one(spec, o(float("nan"))).verdict is Verdict.INCONCLUSIVE
    assert one(spec, obs(window(B2000), window(C_SAME))).verdict is Verdict.INCONCLUSIVE


def test_render_query_substitutes_rollout_names():
    """{{candidate}} {{baseline}} {{name}} {{namespace}} are replaced in PromQL."""
    spec = make_spec([{"name": "q", "prometheus": {
        "query": 'rate(x{v="{{candidate}}",b="{{ baseline }}",r="{{name}}",ns="{{namespace}}"}[5m])', "max": 1}}])
    assert render_query(spec.analysis.checks[0], spec) == 'rate(x{v="v2",b="v1",r="fraud",ns="ml"}[5m])'


def test_design_example_evaluates_one_result_per_check_in_order():
    """Every check of the README's example (examples/rollouts/fraud-scorer.yaml) yields a result with a reason, in spec order."""
    doc = load_documents((ROOT / "examples/rollouts/fraud-scorer.yaml").read_text())[0]
    spec = parse_rollout(doc).spec
    lat = RNG.lognormal(math.log(0.05), 0.3, 2000)
    b = window(B2000, latency=lat, features={"age": RNG.normal(40, 10, 2000)})
    c = window(C_SAME, seed=1, latency=lat, features={"age": RNG.normal(40, 10, 2000)})
    rs = evaluate(spec, obs(b, c, prometheus={"business": 20.0}), None)
    assert [r.name for r in rs] == [c.name for c in spec.analysis.checks]
    assert all(r.reason for r in rs)
    by = {r.name: r for r in rs}
    assert by["score-psi"].verdict is Verdict.PASS and by["nan-or-5xx"].verdict is Verdict.PASS
    assert by["calibrated"].calibrating and by["fairness"].verdict is Verdict.INCONCLUSIVE


# --- peer failure reports, through evaluate() and decide() together ---------------------------

def _run(spec, windows, make_obs, status=None, t0=1_800_000_000.0):
    from policies.machine import decide
    status = decide(spec, status, None, t0).status
    for k in range(1, windows + 1):
        status = decide(spec, status, evaluate(spec, make_obs(k), status), t0 + 60 * k).status
    return status


def test_provider_timeouts_never_roll_back():
    """A Prometheus source that keeps timing out pauses the rollout; it never fails it (argo#2892, #4813)."""
    from policies.status import Phase
    spec = make_spec([{"name": "business", "prometheus": {"query": "sum(x)", "min": 10}}], inconclusiveLimit=3)
    s = _run(spec, 8, lambda k: obs(window(B2000), window(C_SAME),
                                    prometheus={"business": SourceError("prometheus: timed out after 5s")}))
    assert s.phase is Phase.PAUSED and s.pause_reason == "inconclusive"
    assert "timed out" in s.message


def test_low_traffic_pauses_instead_of_failing_or_passing():
    """At low traffic (no values found) the rollout neither fails nor advances: it pauses, resumably
    (flagger#883, #1689, #1581)."""
    from policies.status import Phase
    spec = make_spec([{"name": "score-psi", "metric": "psi", "max": 0.2},
                      {"name": "err", "metric": "error-rate", "max": 0.01}], inconclusiveLimit=4)
    s = _run(spec, 30, lambda k: obs(window(B2000[:30]), window(C_SHIFT[:12], errors={"http_5xx": 0})))
    assert s.phase is Phase.PAUSED and s.current_step == 0
    assert "12 samples < minSamples 200" in s.message


def test_status_carries_values_thresholds_and_samples():
    """Every check's last value, threshold, verdict and sample count are in the written status (flagger#1810)."""
    spec = make_spec([{"name": "score-psi", "metric": "psi", "max": 0.2}])
    s = _run(spec, 2, lambda k: obs(window(B2000), window(C_SAME, seed=k)))
    (c,) = s.to_status()["checks"]
    assert c["name"] == "score-psi" and c["verdict"] == "Pass" and c["threshold"] == 0.2
    assert c["samples"] == 2000 and 0 <= c["value"] < 0.2 and len(c["recent"]) == 2


def test_drifting_candidate_is_rolled_back_end_to_end():
    """A candidate whose scores drift far beyond max is rolled back after failureLimit windows, with
    check, value, threshold and window count in the message."""
    from policies.status import Phase
    spec = make_spec([{"name": "score-psi", "metric": "psi", "max": 0.2}])
    s = _run(spec, 3, lambda k: obs(window(B2000), window(C_SHIFT, seed=k)))
    assert s.phase is Phase.ROLLED_BACK and s.routing.candidate_weight == 0 and not s.routing.shadow
    assert "score-psi" in s.message and "> 0.2" in s.message and "for 2 windows" in s.message


def test_equal_opportunity_from_joined_labels():
    """equal-opportunity min fails when one group's true-positive rate is far below another's."""
    spec = make_spec([{"name": "eo", "metric": "equal-opportunity", "segment": "region", "min": 0.8}])
    c = window(C_SAME[:10])
    for i in range(300):
        c.segments.add_label({"region": "north"}, correct=True, label_positive=True, predicted_positive=True)
        c.segments.add_label({"region": "south"}, correct=i % 2 == 0, label_positive=True,
                             predicted_positive=i % 2 == 0)
    r = one(spec, obs(window(B2000), c))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(0.5) and "region=south vs north" in r.reason


def test_shadow_mean_abs_delta_on_score_pairs():
    """shadow-mean-abs-delta max judges |primary − shadow| averaged over mirrored requests."""
    spec = make_spec([{"name": "delta", "metric": "shadow-mean-abs-delta", "max": 0.05}])
    p = PairedSummary()
    for x in C_SAME[:400]:
        p.add(float(x), float(x) + 0.1)
    r = one(spec, obs(window(B2000), window(C_SAME), paired=p))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(0.1) and r.samples == 400


def test_mmd_on_embeddings():
    """mmd minPValue compares embedding summaries: shifted embeddings fail, same ones pass."""
    spec = make_spec([{"name": "emb", "metric": "mmd", "minPValue": 0.01}], kind="embedding")

    def emb(shift, seed):
        rng = np.random.default_rng(seed)
        w = VersionWindow.new("embedding")
        for v in rng.normal(shift, 1, (250, 8)):
            w.observe_prediction(v.tolist(), float(rng.random()))
        w.requests = 250
        return w
    assert one(spec, obs(emb(0, 1), emb(0.5, 2))).verdict is Verdict.FAIL
    assert one(spec, obs(emb(0, 1), emb(0, 3))).verdict is Verdict.PASS


def test_hellinger_and_kl_use_the_bias_corrected_rule():
    """hellinger and kl max checks carry a bias-corrected estimate and pass on the same distribution."""
    for metric in ("hellinger", "kl"):
        spec = make_spec([{"name": metric, "metric": metric, "max": 0.1}])
        r = one(spec, obs(window(B2000), window(C_SAME, seed=1)))
        assert r.verdict is Verdict.PASS and r.estimate is not None and "bias-corrected" in r.reason
        assert one(spec, obs(window(B2000), window(C_SHIFT, seed=1))).verdict is Verdict.FAIL
