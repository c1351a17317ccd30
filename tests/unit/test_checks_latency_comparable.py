"""A latency check never judges a window whose latency the router could not time fairly."""
from __future__ import annotations

import math

import numpy as np
import pytest

from policies.checks import Observations, evaluate
from policies.status import Routing, RolloutStatus, Verdict
from policies.summaries import VersionWindow
from tests.unit.test_checks import make_spec

RNG = np.random.default_rng(3)


def _window(latencies, excluded=None) -> VersionWindow:
    w = VersionWindow.new("score")
    w.latency.add_many([float(x) for x in latencies])
    w.requests = len(latencies) + sum((excluded or {}).values())
    w.latency_excluded.update(excluded or {})
    return VersionWindow.from_dict(w.to_dict())       # through the wire form the controller reads


def _judge(metric: str, b: VersionWindow, c: VersionWindow):
    extra = {"maxRatioToBaseline": 1.5} if metric != "mann-whitney-latency" else {"minPValue": 0.05}
    spec = make_spec([{"name": "lat", "metric": metric, **extra}])
    (r,) = evaluate(spec, Observations(0.0, 60.0, b, c), RolloutStatus(routing=Routing(0, shadow=True)))
    return r


@pytest.mark.parametrize("metric", ["latency-p99", "latency-p50", "latency-mean"])
def test_calls_the_router_could_not_time_decide_only_what_holds_whatever_they_took(metric):
    """Left-out calls could have taken any time: a candidate 3x slower on what was timed fails anyway (even
    if every left-out call was instant); an identical one cannot be shown to pass a p99 or mean bound with
    2% of its calls unknown, so the window is Inconclusive and says why."""
    lat = RNG.lognormal(math.log(0.01), 0.2, 2000)
    base = _window(lat)
    assert _judge(metric, base, _window(lat * 3)).verdict is Verdict.FAIL
    r = _judge(metric, base, _window(lat * 3, {"stalled": 40, "connect": 3}))
    assert r.verdict is Verdict.FAIL and "43 of 2043 candidate calls not timed fairly" in r.reason
    same = _judge(metric, base, _window(lat, {"stalled": 40, "connect": 3}))
    if metric == "latency-p50":      # the median moves by at most 1% of the ranks: still clearly within 1.5x
        assert same.verdict is Verdict.PASS
    else:
        assert same.verdict is Verdict.INCONCLUSIVE
        assert "latency not comparable" in same.reason and "stalled" in same.reason and "connect" in same.reason
    r = _judge(metric, _window(lat, {"connect": 100}), _window(lat * 1.2))   # the baseline's side counts as much
    assert r.verdict is not Verdict.FAIL
    if r.verdict is Verdict.INCONCLUSIVE:
        assert "baseline calls" in r.reason


def test_mann_whitney_latency_is_inconclusive_when_calls_were_left_out():
    lat = RNG.lognormal(math.log(0.01), 0.2, 2000)
    r = _judge("mann-whitney-latency", _window(lat), _window(lat * 3, {"stalled": 40, "connect": 3}))
    assert r.verdict is Verdict.INCONCLUSIVE and "43 of 2043 candidate calls" in r.reason


def test_a_few_left_out_calls_still_judge():
    lat = RNG.lognormal(math.log(0.01), 0.2, 2000)
    r = _judge("latency-p99", _window(lat), _window(lat * 3, {"stalled": 5}))     # 0.25% < 1%
    assert r.verdict is Verdict.FAIL


def test_the_counts_merge_and_are_absent_from_the_wire_form_when_zero():
    assert "latency_excluded" not in VersionWindow.new("score").to_dict()
    a, b = _window([0.01], {"stalled": 2}), _window([0.01], {"stalled": 1, "connect": 4})
    assert a.merge(b).latency_excluded == {"stalled": 3, "connect": 4}
