"""Mergeable summaries: exact where promised, order-independent merges, JSON round trips, clear errors."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats as sps

from policies import stats as S
from policies.summaries import (CategoricalSummary, EmbeddingSummary, InterleaveSummary, LatencyHistogram,
                                NumericSummary, PairedSummary, SegmentCounts, SummaryError, VersionWindow,
                                key_from_request_id)

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
keys = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
stream = st.lists(st.tuples(finite, keys), max_size=60)


def _numeric(items, capacity=16, edges=None):
    s = NumericSummary(capacity, edges)
    for x, k in items:
        s.add(x, k)
    return s


def _roundtrip(x):
    return type(x).from_dict(json.loads(json.dumps(x.to_dict(), allow_nan=False)))


@settings(max_examples=100, deadline=None)
@given(stream, stream, stream)
def test_numeric_merge_is_associative_and_commutative(a, b, c):
    """Any merge order of three replicas' numeric summaries gives the identical summary."""
    edges = np.array([-np.inf, -1.0, 0.0, 5.0, np.inf])
    sa, sb, sc = (_numeric(x, edges=edges) for x in (a, b, c))
    left = sa.merge(sb).merge(sc).to_dict()
    assert left == sa.merge(sb.merge(sc)).to_dict()
    assert left == sc.merge(sa).merge(sb).to_dict()


@settings(max_examples=100, deadline=None)
@given(stream, stream)
def test_numeric_merge_is_bottom_k_of_union(a, b):
    """A merged sample is exactly the capacity smallest-key items of the union; totals are exact."""
    m = _numeric(a).merge(_numeric(b))
    union = sorted(a + b, key=lambda kv: (kv[1], kv[0]))[:16]
    np.testing.assert_array_equal(m.values(), [x for x, _ in union])
    assert m.n == len(a) + len(b)
    assert m.sum == pytest.approx(np.sum([x for x, _ in a + b], dtype=np.longdouble), rel=1e-12, abs=1e-6)
    assert m.min == (min(x for x, _ in a + b) if a + b else None)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=80), st.lists(finite, min_size=2, max_size=80))
def test_stats_on_merged_summaries_equal_stats_on_union(b, c):
    """When n ≤ capacity, statistics on merged replica summaries equal those on the raw union."""
    rng = random.Random(1)

    def replicas(values):
        parts = [NumericSummary(256) for _ in range(3)]
        for v in values:
            parts[rng.randrange(3)].add(v, rng.random())
        return parts[0].merge(parts[1]).merge(parts[2])

    mb, mc = replicas(b), replicas(c)
    assert sorted(mb.values()) == sorted(b)
    for metric in ("psi", "ks", "wasserstein"):
        assert S.compute(metric, mb.values(), mc.values()).value == S.compute(metric, b, c).value


def test_counts_over_frozen_edges_are_exact_beyond_capacity():
    """Bin counts over baseline edges stay exact when the stream outgrows the sample."""
    rng = np.random.default_rng(2)
    b, c = rng.normal(size=5000), rng.normal(0.3, 1, size=6000)
    edges = S.bin_edges(b)
    parts = [NumericSummary(64, edges) for _ in range(4)]
    for i, v in enumerate(c):
        parts[i % 4].add(float(v), float(rng.random()))
    merged = parts[0].merge(parts[1]).merge(parts[2].merge(parts[3]))
    np.testing.assert_array_equal(merged.counts(), S.binned_counts(c, edges))
    assert S.psi_from_counts(S.binned_counts(b, edges), merged.counts()).value == pytest.approx(
        S.psi(b, c).value, rel=1e-12)
    assert merged.values().size == 64
    assert merged.std() == pytest.approx(np.std(c), rel=1e-12)


def test_bottom_k_sample_is_uniform():
    """The bottom-k sample of a stream is a uniform sample (KS against the stream does not reject)."""
    rng = np.random.default_rng(3)
    stream_values = np.sort(rng.exponential(size=50_000))   # sorted: order must not bias the sample
    s = NumericSummary(2048)
    for v, k in zip(stream_values, rng.random(stream_values.size)):
        s.add(float(v), float(k))
    assert s.values().size == 2048
    assert sps.ks_2samp(s.values(), stream_values).pvalue > 0.01


def test_invalid_values_are_counted_not_sampled():
    """NaN, inf and non-numbers count as invalid and never reach the sample or the sums."""
    s = NumericSummary(8)
    for x in (1.0, float("nan"), float("inf"), "x", None, 2.0):
        s.add(x, 0.5)
    assert (s.n, s.invalid, s.sum) == (2, 4, 3.0)
    with pytest.raises(SummaryError, match="key must be in"):
        s.add(1.0, 1.5)


def test_aa_split_halves_are_disjoint_and_cover_sample():
    """A/A halves partition the sample and each holds roughly half of it."""
    rng = random.Random(4)
    s = NumericSummary(1000)
    for _ in range(1000):
        s.add(rng.gauss(0, 1), rng.random())
    h1, h2 = s.aa_split()
    assert sorted(np.concatenate((h1.values(), h2.values()))) == sorted(s.values())
    assert 400 < h1.n < 600 and h1.n + h2.n == 1000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcdefgh"), max_size=50), st.lists(st.sampled_from("abcdefgh"), max_size=50))
def test_categorical_merge_exact_under_cap(a, b):
    """Category counts merge exactly (order-independent) while under the category cap."""
    sa, sb = CategoricalSummary(), CategoricalSummary()
    for v in a:
        sa.add(v)
    for v in b:
        sb.add(v)
    m = sa.merge(sb)
    assert m.counts() == {k: (a + b).count(k) for k in set(a + b)}
    assert m.to_dict() == sb.merge(sa).to_dict() == _roundtrip(m).to_dict()


def test_categorical_cap_folds_into_other():
    """Beyond max_categories new values count under "__other__" and the total is kept."""
    s = CategoricalSummary(max_categories=3)
    for v in "aabbcdde":
        s.add(v)
    assert s.counts() == {"a": 2, "b": 2, "c": 1, "__other__": 3}
    t = CategoricalSummary(max_categories=3)
    for v in "ddd":
        t.add(v)
    m = s.merge(t)
    assert m.counts() == {"d": 3, "a": 2, "b": 2, "__other__": 4}
    assert m.n == 11


def test_embedding_summary_bottom_k_and_roundtrip():
    """Embedding samples merge by key, keep float32 vectors, and count bad vectors as invalid."""
    rng = np.random.default_rng(5)
    a, b = EmbeddingSummary(capacity=10), EmbeddingSummary(capacity=10)
    rows = []
    for i in range(30):
        v, k = rng.normal(size=4), float(rng.random())
        rows.append((k, v.astype(np.float32)))
        (a if i % 2 else b).add(v, k)
    a.add([1.0, 2.0], 0.1)
    b.add([np.nan] * 4, 0.2)
    m = a.merge(b)
    expected = np.array([v for _, v in sorted(rows, key=lambda kv: kv[0])[:10]], dtype=np.float64)
    np.testing.assert_array_equal(m.matrix(), expected)
    assert (m.n, m.invalid) == (30, 2)
    np.testing.assert_array_equal(_roundtrip(m).matrix(), m.matrix())
    assert b.merge(a).to_dict() == m.to_dict()


def test_paired_summary_matches_numpy_on_union():
    """Mean |Δ|, Pearson r and agreement of merged pairs equal numpy/scipy on all pairs."""
    rng = np.random.default_rng(6)
    x = rng.normal(100, 5, size=400)
    y = x + rng.normal(0, 1, size=400)
    parts = [PairedSummary() for _ in range(3)]
    for i, (p, q) in enumerate(zip(x, y)):
        parts[i % 3].add(float(p), float(q))
        parts[i % 3].add_categorical("A" if p > 100 else "B", "A" if q > 100 else "B")
    parts[0].add(float("nan"), 1.0)
    m = _roundtrip(parts[2].merge(parts[0]).merge(parts[1]))
    assert m.mean_abs_delta == pytest.approx(np.mean(np.abs(x - y)), rel=1e-12)
    assert m.correlation == pytest.approx(sps.pearsonr(x, y).statistic, rel=1e-10)
    assert m.agreement_rate == pytest.approx(np.mean((x > 100) == (y > 100)))
    assert (m.n, m.invalid) == (800, 1)


def test_paired_summary_empty_is_none():
    """Without pairs the paired statistics are None, never a silent 0."""
    p = PairedSummary()
    assert (p.agreement_rate, p.mean_abs_delta, p.correlation) == (None, None, None)


def test_latency_histogram_quantiles_within_bucket_error():
    """Histogram quantiles are within the 12% bucket ratio of the exact quantile, and merge exactly."""
    rng = np.random.default_rng(7)
    lat = rng.lognormal(np.log(0.05), 0.8, size=20_000)
    parts = [LatencyHistogram() for _ in range(2)]
    for i, v in enumerate(lat):
        parts[i % 2].add(float(v))
    h = _roundtrip(parts[0].merge(parts[1]))
    assert h.count == lat.size and h.sum == pytest.approx(lat.sum(), rel=1e-12)
    for q in (0.5, 0.9, 0.99):
        assert h.quantile(q) == pytest.approx(np.quantile(lat, q), rel=0.125)
    assert h.quantile(1.0) == pytest.approx(lat.max())
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        h.quantile(99)
    assert LatencyHistogram().quantile(0.5) is None


def test_segment_counts_feed_fairness():
    """Segment counts merge exactly and give the inputs of disparate impact and equal opportunity."""
    a, b = SegmentCounts(), SegmentCounts()
    for i in range(100):
        (a if i % 2 else b).add({"gender": "f" if i < 40 else "m"}, positive=i % 4 == 0)
        (a if i % 2 else b).add_label({"gender": "f" if i < 40 else "m"}, correct=i % 3 != 0,
                                      label_positive=i % 2 == 0, predicted_positive=i % 4 == 0)
    m = _roundtrip(a.merge(b))
    assert m.positives("gender") == {"f": (40, 10), "m": (60, 15)}
    assert m.tpr_counts("gender") == {"f": (20, 10), "m": (30, 15)}
    assert S.disparate_impact(m.positives("gender")).value == pytest.approx(1.0)
    assert m.to_dict() == b.merge(a).to_dict()


def test_interleave_summary_merges_and_tests():
    """Interleave tallies add up across replicas and feed the binomial test."""
    a, b = InterleaveSummary(), InterleaveSummary()
    for w in ["candidate"] * 30 + ["baseline"] * 10 + ["tie"] * 5:
        a.add(w)
    b.add("candidate")
    m = _roundtrip(a.merge(b))
    assert (m.wins, m.losses, m.ties) == (31, 10, 5)
    assert m.test().p_value == pytest.approx(sps.binomtest(31, 41).pvalue)
    with pytest.raises(SummaryError, match="winner must be"):
        a.add("a")


def _window(seed, kind="score"):
    rng = random.Random(seed)
    w = VersionWindow.new(kind, capacity=64)
    for i in range(200):
        w.requests += 1
        if i % 50 == 0:
            w.add_error("http_5xx")
            continue
        key = key_from_request_id(f"{seed}-{i}")
        out = {"score": rng.random(), "class": rng.choice("xyz"), "ranking": ["i3", "i1"],
               "embedding": [rng.random() for _ in range(3)]}[kind]
        w.observe_prediction(out, key)
        w.observe_feature("age", rng.randint(18, 90), key)
        w.observe_feature("country", rng.choice(["de", "fr"]), key)
        w.latency.add(rng.expovariate(30))
        w.segments.add({"country": "de"}, rng.random() < 0.5)
    return w


@pytest.mark.parametrize("kind", ["score", "class", "ranking", "embedding"])
def test_version_window_roundtrip_and_merge(kind):
    """Windows serialise to strict JSON, round-trip exactly and merge order-independently."""
    a, b, c = _window(1, kind), _window(2, kind), _window(3, kind)
    text = json.dumps(a.to_dict(), allow_nan=False)
    assert VersionWindow.from_dict(json.loads(text)).to_dict() == a.to_dict()
    left = a.merge(b).merge(c)
    assert left.to_dict() == c.merge(a.merge(b)).to_dict()
    assert left.requests == 600 and left.error_count() == 12
    assert left.error_rate() == pytest.approx(12 / 600)
    assert VersionWindow.new(kind).error_rate() is None


def test_version_window_prediction_kinds():
    """Each output kind gets the summary docs/architecture.md "Summaries" names (ranking → top item counts)."""
    assert isinstance(_window(1, "score").prediction, NumericSummary)
    assert _window(1, "ranking").prediction.counts() == {"i3": 196}
    assert _window(1, "embedding").prediction.matrix().shape == (196, 3)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("requests"), "missing field 'requests'"),
    (lambda d: d.update(requests=-1), "requests: must be >= 0"),
    (lambda d: d.update(output_kind="video"), "output_kind: must be one of"),
    (lambda d: d["errors"].update(oops=1), "unknown error kind 'oops'"),
    (lambda d: d["prediction"].update(keys="###"), "'keys' is not base64"),
    (lambda d: d["prediction"].update(sum=["x"]), "prediction: numeric summary.sum"),
    (lambda d: d["latency"]["buckets"].update({"999": 1}), "latency histogram.buckets\\[999\\]"),
])
def test_from_dict_rejects_bad_fields_by_name(mutate, message):
    """Corrupt summaries fail with SummaryError naming the field, never an unrelated crash."""
    d = json.loads(json.dumps(_window(1).to_dict()))
    mutate(d)
    with pytest.raises(SummaryError, match=message):
        VersionWindow.from_dict(d)


def test_merge_conflicts_are_named():
    """Merging incompatible windows names what differs."""
    with pytest.raises(SummaryError, match="output kinds 'score' and 'class'"):
        _window(1).merge(_window(1, "class"))
    with pytest.raises(SummaryError, match="different edges"):
        _numeric([(1.0, 0.1)], edges=[-np.inf, 0, np.inf]).merge(_numeric([(1.0, 0.2)], edges=[-np.inf, 1, np.inf]))
    with pytest.raises(SummaryError, match="error kind must be one of"):
        VersionWindow.new("score").add_error("boom")


def test_request_id_keys_are_uniform_and_stable():
    """Request-id keys are deterministic and uniform on [0, 1)."""
    ks = np.array([key_from_request_id(f"req-{i}") for i in range(5000)])
    assert key_from_request_id("req-1") == ks[1]
    assert ks.min() >= 0 and ks.max() < 1
    assert sps.kstest(ks, "uniform").pvalue > 0.01


def test_default_window_stays_compact():
    """A full score window with one numeric feature serialises to well under 200 kB of JSON."""
    rng = random.Random(9)
    w = VersionWindow.new("score")
    for i in range(20_000):
        w.requests += 1
        w.observe_prediction(rng.random(), rng.random())
        w.observe_feature("x", rng.gauss(0, 1), rng.random())
        w.latency.add(rng.expovariate(10))
    assert len(json.dumps(w.to_dict())) < 200_000
    assert w.prediction.values().size == 2048


json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) |
                           st.text(max_size=8),
                           lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6),
                                                                                               children, max_size=4),
                           max_leaves=10)


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


_VALID = json.loads(json.dumps(_window(7).to_dict()))
_PATHS = list(_paths(_VALID))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_PATHS), json_values)
def test_from_dict_never_crashes_on_corrupt_fields(path, value):
    """Replacing any field of a valid window with arbitrary JSON either decodes or raises SummaryError."""
    d = json.loads(json.dumps(_VALID))
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    try:
        VersionWindow.from_dict(d)
    except SummaryError:
        pass


def test_from_dict_rejects_non_finite_samples_and_bad_keys():
    """A decoded sample holds only finite values with keys in [0, 1), like one built by add()."""
    import base64
    d = _numeric([(1.0, 0.1), (2.0, 0.2)]).to_dict()
    bad = dict(d, values=base64.b64encode(np.array([1.0, np.nan], dtype="<f8").tobytes()).decode())
    with pytest.raises(SummaryError, match="must be finite"):
        NumericSummary.from_dict(bad)
    bad = dict(d, keys=base64.b64encode(np.array([0.1, 3.0], dtype="<f8").tobytes()).decode())
    with pytest.raises(SummaryError, match="keys must be in"):
        NumericSummary.from_dict(bad)
