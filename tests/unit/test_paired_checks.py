"""The paired shadow checks end to end in the pure core: outcome records of shadow pairs → the one fold →
the wire form → merged over replicas → `evaluate`; plus the spec's rules for them and the summary's
mergeable parts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from policies.checks import Observations, evaluate
from policies.outcome import Outcome, fold, merge
from policies.outcome.bucket import Bucket
from policies.reachability import unreachable
from policies.spec import SpecError, parse_spec
from policies.status import Routing, RolloutStatus, Verdict
from policies.summaries import PairedSummary, SummaryError, key_from_request_id

SHADOW = RolloutStatus(current_step=0, routing=Routing(0, shadow=True))


def make_spec(checks, kind="score", **analysis):
    an = {"interval": "1m", "minSamples": 200, "failureLimit": 2, **analysis, "checks": checks}
    return parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                       "candidate": {"version": "v2", "url": "http://c:1"}, "output": {"kind": kind},
                       "strategy": {"steps": [{"shadow": {"duration": "10m"}},
                                              {"canary": {"weight": 20, "duration": "10m"}}]},
                       "analysis": an}, "fraud", "ml")


def shadow_records(spec, primaries, shadows, t0=1_800_000_000.0):
    return [Outcome(t0 + i * 0.01, f"q{i}", spec.name, spec.namespace, spec.revision, "v2", "candidate", "shadow",
                    status=200, latency_ms=3.0, output=s, primary_output=p)
            for i, (p, s) in enumerate(zip(primaries, shadows))]


def observations(spec, primaries, shadows, replicas=3):
    """The records folded by `replicas` router replicas (every third request each), sent as JSON and merged."""
    recs = shadow_records(spec, primaries, shadows)
    wires = []
    for r in range(replicas):
        b = Bucket.new(recs[0].time, recs[0].time + 60, spec.revision, spec.output.kind)
        fold(b, recs[r::replicas], spec)
        wires.append(Bucket.from_wire(json.loads(json.dumps(b.to_wire()))))
    m = merge(wires, spec.output.kind)
    return Observations(0.0, 60.0, m.baseline, m.candidate, paired=m.paired)


def one(spec, o, status=SHADOW):
    (r,) = evaluate(spec, o, status)
    return r


def scores(shift, n=2000, seed=0, noise=0.03):
    """Baseline scores in (0, 1) and the candidate's on the same requests: shifted, with small noise."""
    rng = np.random.default_rng(seed)
    x = rng.beta(2, 5, n)
    return x.tolist(), (x + shift + rng.normal(0, noise, n)).tolist()


# --- shadow-wilcoxon -------------------------------------------------------------------------------------

@pytest.mark.parametrize("multiple, verdict", [(0.0, Verdict.PASS), (0.5, Verdict.PASS), (1.5, Verdict.FAIL),
                                               (3.0, Verdict.FAIL)])
def test_wilcoxon_acts_when_the_shift_exceeds_the_tolerance(multiple, verdict):
    """A paired shift of half the tolerance passes even though it is highly significant; 1.5x fails."""
    spec = make_spec([{"name": "shift", "metric": "shadow-wilcoxon", "max": 0.02}])
    r = one(spec, observations(spec, *scores(multiple * 0.02)))
    assert r.verdict is verdict, r.reason
    assert r.value == pytest.approx(multiple * 0.02, abs=0.003) and r.samples == 2000 and r.threshold == 0.02
    if multiple == 0.5:
        assert one(make_spec([{"name": "shift", "metric": "shadow-wilcoxon", "minPValue": 0.05}]),
                   observations(spec, *scores(0.01))).verdict is Verdict.FAIL      # without a tolerance: any shift


def test_wilcoxon_beyond_the_tolerance_but_not_shown_is_inconclusive():
    spec = make_spec([{"name": "shift", "metric": "shadow-wilcoxon", "max": 0.02}])
    r = one(spec, observations(spec, *scores(0.024, n=300, noise=0.1)))
    assert r.verdict is Verdict.INCONCLUSIVE and "not shown" in r.reason


def test_wilcoxon_uses_the_deltas_of_the_same_requests():
    """The merged sample holds deltas of requests (bottom-k of their keys): equal to the deltas computed
    from the records, for the smallest keys."""
    spec = make_spec([{"name": "shift", "metric": "shadow-wilcoxon", "max": 0.02}])
    x, y = scores(0.01, n=3000)
    o = observations(spec, x, y)
    keys = np.array([key_from_request_id(f"q{i}") for i in range(3000)])
    order = np.argsort(keys)[:2048]
    np.testing.assert_allclose(o.paired.deltas(), (np.array(y) - np.array(x))[order], rtol=0, atol=1e-15)
    assert o.paired.n_numeric == 3000


def test_paired_checks_need_minsamples_and_mirroring():
    spec = make_spec([{"name": "shift", "metric": "shadow-wilcoxon", "max": 0.02}])
    short = one(spec, observations(spec, *scores(0.1, n=150)))
    assert short.verdict is Verdict.INCONCLUSIVE and "150 numeric shadow pairs < minSamples 200" in short.reason
    skipped = one(spec, observations(spec, *scores(0.1)), RolloutStatus(current_step=1, routing=Routing(20)))
    assert skipped.skipped


# --- shadow-mcnemar -------------------------------------------------------------------------------------

def test_mcnemar_thresholds_scores_at_output_threshold():
    """Decisions are score >= spec.output.threshold; more positives from the candidate on the same requests
    fail the exact test, and the decisions table counts exactly the flipped requests."""
    spec = make_spec([{"name": "flips", "metric": "shadow-mcnemar", "minPValue": 0.01}])
    x, _ = scores(0.0, n=1000)
    y = [v + 0.05 if 0.42 <= v < 0.5 else v for v in x]          # pushes those just below 0.5 over it
    r = one(spec, observations(spec, x, y))
    flipped = sum(0.45 <= v < 0.5 for v in x)
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(flipped / 1000)
    assert "positive-rate change" in r.reason


def test_mcnemar_on_class_outputs_uses_output_positive():
    spec = parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                       "candidate": {"version": "v2", "url": "http://c:1"},
                       "output": {"kind": "class", "positive": "fraud"},
                       "strategy": {"steps": [{"shadow": {"duration": "10m"}}]},
                       "analysis": {"minSamples": 100, "checks": [
                           {"name": "flips", "metric": "shadow-mcnemar", "max": 0.02}]}}, "f", "ml")
    x = ["fraud" if i % 4 == 0 else "ok" for i in range(800)]
    y = ["fraud" if i % 4 == 0 or i % 10 == 1 else "ok" for i in range(800)]     # 10% more positives
    r = one(spec, observations(spec, x, y))
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(sum(i % 10 == 1 for i in range(800)) / 800)
    same = one(spec, observations(spec, x, x))
    assert same.verdict is Verdict.PASS and same.value == 0


# --- ranking agreement ----------------------------------------------------------------------------------

def rankings(n, swap_top, seed=0):
    rng = np.random.default_rng(seed)
    items = [f"doc{j}" for j in range(20)]
    base, cand = [], []
    for _ in range(n):
        r = list(rng.permutation(items)[:10])
        c = list(r)
        if rng.random() < swap_top:
            c[0], c[3] = c[3], c[0]
        base.append(r)
        cand.append(c)
    return base, cand


def test_rbo_and_ndcg_checks_read_the_agreements_the_fold_kept():
    spec = make_spec([{"name": "rbo", "metric": "shadow-rbo", "min": 0.9},
                      {"name": "ndcg", "metric": "shadow-ndcg", "min": 0.95, "k": 5}], kind="ranking")
    same = evaluate(spec, observations(spec, *rankings(400, 0.0)), SHADOW)
    assert [r.verdict for r in same] == [Verdict.PASS, Verdict.PASS]
    assert same[0].value == pytest.approx(1.0) and same[1].value == pytest.approx(1.0)
    swapped = evaluate(spec, observations(spec, *rankings(400, 1.0)), SHADOW)
    assert [r.verdict for r in swapped] == [Verdict.FAIL, Verdict.FAIL], [r.reason for r in swapped]
    assert "mean rbo:0.9" in swapped[0].reason and "mean ndcg:5" in swapped[1].reason


# --- the spec -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("check, kind, path, message", [
    ({"metric": "shadow-wilcoxon", "max": 0.1}, "class", "metric", "needs spec.output.kind score"),
    ({"metric": "shadow-rbo", "minPValue": 0.05}, "ranking", "min", "needs min"),
    ({"metric": "shadow-rbo", "min": 0.8, "k": 3}, "ranking", "k", "k does not apply to shadow-rbo"),
    ({"metric": "shadow-ndcg", "min": 1.5}, "ranking", "min", "expected a number in [0, 1]"),
    ({"metric": "shadow-wilcoxon", "min": 0.1}, "score", "min", "takes max (the tolerance) and minPValue"),
    ({"metric": "psi", "max": 0.2, "k": 3}, "score", "k", "k applies to shadow-ndcg"),
    ({"metric": "shadow-rbo", "min": 0.8, "p": 1.0}, "ranking", "p", "strictly between 0 and 1"),
])
def test_paired_checks_are_validated_naming_the_field(check, kind, path, message):
    with pytest.raises(SpecError) as e:
        make_spec([{"name": "c", **check}], kind=kind)
    assert e.value.path == f"spec.analysis.checks[0].{path}" and message in e.value.message


def test_reachability_flags_a_mcnemar_tolerance_it_can_never_exceed():
    spec = make_spec([{"name": "c", "metric": "shadow-mcnemar", "max": 1.0}])
    ((i, u),) = unreachable(spec)
    assert u.field == "max" and "can never fail" in u.message


# --- the summary's mergeable parts -------------------------------------------------------------------

def test_paired_parts_merge_exactly_and_round_trip():
    rng = np.random.default_rng(9)
    x = rng.random(900)
    y = x + rng.normal(0, 0.05, 900)
    keys = rng.random(900)
    whole, parts = PairedSummary(64), [PairedSummary(64) for _ in range(3)]
    whole.add_many(x, y, keys, 0.5)
    for i in range(3):
        parts[i].add_many(x[i::3], y[i::3], keys[i::3], 0.5)
        parts[i].add_agreement("rbo:0.9", 0.5 + i / 10)
    m = PairedSummary.from_dict(json.loads(json.dumps(parts[2].merge(parts[0]).merge(parts[1]).to_dict())))
    assert m.to_dict()["deltas"] == whole.to_dict()["deltas"]
    expected = np.bincount(2 * (x >= 0.5) + (y >= 0.5), minlength=4)
    assert m.decisions.tolist() == expected.tolist() == whole.decisions.tolist()
    n, s, q = m.agreement("rbo:0.9")
    assert (n, s, q) == (3, pytest.approx(1.8), pytest.approx(0.25 + 0.36 + 0.49))


def test_an_older_paired_wire_form_decodes_without_the_test_parts():
    old = {"type": "paired", "n_numeric": 3, "n_categorical": 0, "agree": 0, "invalid": 0,
           "sums": {k: [1.0] for k in ("x", "y", "xx", "yy", "xy", "absdiff")}}
    p = PairedSummary.from_dict(old)
    assert p.n_decisions == 0 and p.deltas().size == 0 and p.agreement_names() == []


@pytest.mark.parametrize("patch, message", [
    ({"decisions": [1, 2, 3]}, "decisions: expected 4 counts"),
    ({"decisions": [5, 0, 0, 0]}, "5 decisions but only 3 pairs"),
    ({"deltas": {"capacity": 8, "keys": "AAAAAAAA8D8=", "values": "AAAAAAAA+H8="}}, "keys must be in"),
])
def test_bad_paired_parts_are_rejected_naming_the_field(patch, message):
    d = {"type": "paired", "n_numeric": 3, "n_categorical": 0, "agree": 0, "invalid": 0,
         "sums": {k: [] for k in ("x", "y", "xx", "yy", "xy", "absdiff")}, **patch}
    with pytest.raises(SummaryError, match=message):
        PairedSummary.from_dict(d)


def test_agreement_values_outside_0_1_are_refused():
    with pytest.raises(SummaryError, match=r"expected a number in \[0, 1\]"):
        PairedSummary().add_agreement("rbo:0.9", math.nan)
