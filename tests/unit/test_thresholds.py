"""Threshold rules: bias-corrected drift, corrected p-values, calibration, and the decisions benchmark."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from policies.spec import load_documents, parse_rollout, parse_spec
from policies.status import Routing, Verdict
from policies.thresholds import (
    aa_unit, applies, calibrated_limit, effective_sigmas, failure_limit, judge_max, judge_p_value, lower_bound,
    planned_windows, sample_scale, window_alpha,
)

ROOT = Path(__file__).resolve().parents[2]


def test_drift_max_fails_only_when_the_lower_bound_exceeds_the_threshold():
    """Drift max judges the bias-corrected estimate: lower bound above max → Fail; only the estimate
    above → Inconclusive; estimate below → Pass, even when the plug-in value is above max."""
    fail = judge_max("score-psi", "psi", 0.5, 0.2, estimate=0.45, ci_low=0.35)
    assert fail.verdict is Verdict.FAIL and fail.reason.startswith("score-psi 0.5 > 0.2")
    unsure = judge_max("score-js", "js", 0.3, 0.2, estimate=0.22, ci_low=0.02)
    assert unsure.verdict is Verdict.INCONCLUSIVE and "too small to tell" in unsure.reason
    biased = judge_max("score-psi", "psi", 0.25, 0.2, estimate=0.05, ci_low=0.0)
    assert biased.verdict is Verdict.PASS


def test_non_estimated_max_uses_the_value():
    """error-rate (no estimate) compares its value to max directly."""
    assert judge_max("e", "error-rate", 0.02, 0.01).verdict is Verdict.FAIL
    assert judge_max("e", "error-rate", 0.01, 0.01).verdict is Verdict.PASS


def test_lower_bound_interpolates_the_interval():
    """The 97.5% one-sided bound is the 95% CI's lower end; the 50% bound is the estimate."""
    assert lower_bound(0.3, 0.1, 0.975) == pytest.approx(0.1, abs=1e-6)
    assert lower_bound(0.3, 0.1, 0.5) == pytest.approx(0.3)


def test_window_alpha_bounds_the_rollout_false_alarm_rate():
    """(N−L+1)·a^L <= alpha, and a never exceeds alpha."""
    for alpha, n, l in [(0.01, 20, 2), (0.01, 135, 2), (0.05, 10, 1), (0.01, 1, 3), (0.01, 5, 1)]:
        a = window_alpha(alpha, n, l)
        assert a <= alpha
        assert max(1, n - l + 1) * a**l <= alpha * (1 + 1e-9)
    assert window_alpha(0.01, 10, 1) == pytest.approx(0.001)


def test_p_value_judgement_states_the_correction():
    """A p-value Fail reason names p, the per-window level and how it was derived."""
    j = judge_p_value("score-ks", 1e-6, 0.01, 20, 1)
    assert j.verdict is Verdict.FAIL and "spread over 20 windows" in j.reason and j.threshold == pytest.approx(0.0005)
    assert judge_p_value("score-ks", 0.2, 0.01, 20, 2).verdict is Verdict.PASS


def test_planned_windows_of_the_design_example():
    """The example plans 30m+15m+30m+1h of timed steps at 1m: 135 windows."""
    spec = parse_rollout(load_documents((ROOT / "examples/rollouts/fraud-scorer.yaml").read_text())[0]).spec
    assert planned_windows(spec) == 135


def test_calibration_scales_with_sample_size():
    """A/A units are size-free; the limit scales by 1/n for divergences and 1/sqrt(n) for distances."""
    u = aa_unit("psi", 0.018, 500, 500)
    assert u == pytest.approx(0.018 / (2 / 500))
    lim_big = calibrated_limit("psi", [u, u, u], 3, 2000, 2000)
    lim_small = calibrated_limit("psi", [u, u, u], 3, 2000, 200)
    assert lim_small / lim_big == pytest.approx(sample_scale("psi", 2000, 200) / sample_scale("psi", 2000, 2000))
    assert sample_scale("js", 100, 100) == pytest.approx(math.sqrt(0.02))
    k = effective_sigmas(2, 3)
    assert calibrated_limit("ks", [1.0, 2.0, 3.0], 2, 100, 100) == pytest.approx((2 + k * 1.0) * math.sqrt(0.02))


def test_few_aa_windows_widen_the_calibrated_bound():
    """k sigmas from m A/A values is a prediction bound: wider for few windows, close to k for many."""
    assert effective_sigmas(3, 5) > 6
    assert 3 < effective_sigmas(3, 50) < 3.4
    assert effective_sigmas(3, 5) > effective_sigmas(3, 10) > effective_sigmas(3, 50)


def test_failure_limit_and_applicability():
    """immediate means one window; shadow pair checks apply only while mirroring."""
    spec = parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                       "candidate": {"version": "v2", "url": "http://c:1"},
                       "output": {"kind": "class"},
                       "strategy": {"steps": [{"shadow": {}}]},
                       "analysis": {"failureLimit": 3, "checks": [
                           {"name": "e", "metric": "error-rate", "max": 0.1, "immediate": True},
                           {"name": "a", "metric": "shadow-agreement", "min": 0.9},
                           {"name": "k", "metric": "chi2", "minPValue": 0.01, "failureLimit": 4}]}}, "r")
    assert [failure_limit(spec, c.name) for c in spec.analysis.checks] == [1, 3, 4]
    agree = spec.analysis.checks[1]
    assert applies(agree, Routing(0, shadow=True)) and not applies(agree, Routing(20))


def test_decisions_benchmark_runs_and_prints_its_table():
    """bench/decisions.py --quick runs end to end and prints every case row of its table."""
    out = subprocess.run([sys.executable, str(ROOT / "bench/decisions.py"), "--quick", "--rollouts", "50",
                          "--evaluated", "10", "--windows", "6", "--population", "20000"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for case in ("psi max 0.2 @ A/A", "js max 0.1 @ 1.5x", "wasserstein max 0.2 @ 3.0x", "psi dynamic 3sd @ A/A",
                 "ks minPValue 0.01 @ A/A"):
        assert case in out.stdout
    assert "rollback" in out.stdout and "targets missed:" in out.stdout
