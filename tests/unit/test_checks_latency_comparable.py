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


@pytest.mark.parametrize("metric", ["latency-p99", "latency-p50", "latency-mean", "mann-whitney-latency"])
def test_a_window_with_calls_the_router_could_not_time_is_inconclusive_and_says_why(metric):
    lat = RNG.lognormal(math.log(0.01), 0.2, 2000)
    base = _window(lat)
    slow = _window(lat * 3)
    assert _judge(metric, base, slow).verdict is Verdict.FAIL       # judged when every call was timed fairly
    stalled = _window(lat * 3, {"stalled": 40, "connect": 3})
    r = _judge(metric, base, stalled)
    assert r.verdict is Verdict.INCONCLUSIVE
    assert "latency not comparable" in r.reason and "43 of 2043 candidate calls" in r.reason
    assert "stalled" in r.reason and "connect" in r.reason
    r = _judge(metric, _window(lat, {"connect": 100}), slow)     # the baseline's side counts as much
    assert r.verdict is Verdict.INCONCLUSIVE and "baseline calls" in r.reason


def test_a_few_left_out_calls_still_judge():
    lat = RNG.lognormal(math.log(0.01), 0.2, 2000)
    r = _judge("latency-p99", _window(lat), _window(lat * 3, {"stalled": 5}))     # 0.25% < 1%
    assert r.verdict is Verdict.FAIL


def test_the_counts_merge_and_are_absent_from_the_wire_form_when_zero():
    assert "latency_excluded" not in VersionWindow.new("score").to_dict()
    a, b = _window([0.01], {"stalled": 2}), _window([0.01], {"stalled": 1, "connect": 4})
    assert a.merge(b).latency_excluded == {"stalled": 3, "connect": 4}
