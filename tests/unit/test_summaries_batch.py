"""Batch adds on the summaries build exactly the summary that adding one value at a time builds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from policies.summaries import (OTHER, CategoricalSummary, ExactSum, LatencyHistogram, NumericSummary,
                                PairedSummary, SummaryError, VersionWindow)

# Finite floats over the whole exponent range (subnormals, signed zeros, squares that overflow), but
# with sums that stay finite; plus things that are not numbers at all.
wide = st.floats(min_value=-1e200, max_value=1e200, allow_nan=False, allow_infinity=False)
numbers = st.one_of(wide, st.integers(-10**6, 10**6), st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e-310]))
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.just(math.nan), st.just(math.inf),
                 st.just(-math.inf), st.just(10**400))
values = st.one_of(numbers, numbers, numbers, junk)
keys = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def _chunks(items, cuts):
    """``items`` split at the given cut points (sorted, clipped), so batches of any sizes are exercised."""
    bounds = sorted({min(c, len(items)) for c in cuts} | {0, len(items)})
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(values, keys), max_size=80), st.lists(st.integers(0, 80), max_size=4),
       st.sampled_from([1, 4, 16, 64]), st.booleans())
def test_numeric_add_many_equals_adding_one_at_a_time(items, cuts, capacity, with_edges):
    """NumericSummary.add_many in any batches gives the same to_dict() as add() per value."""
    edges = np.array([-np.inf, -1.0, 0.0, 5.0, np.inf]) if with_edges else None
    one, many = NumericSummary(capacity, edges), NumericSummary(capacity, edges)
    for x, k in items:
        one.add(x, k)
    for chunk in _chunks(items, cuts):
        many.add_many([x for x, _ in chunk], [k for _, k in chunk])
    assert many.to_dict() == one.to_dict()
    np.testing.assert_array_equal(many.values(), one.values())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(wide, keys), min_size=1, max_size=60))
def test_numeric_add_many_accepts_arrays(items):
    """Numpy arrays of values and keys are recorded exactly like the same values added one by one."""
    one, many = NumericSummary(8), NumericSummary(8)
    for x, k in items:
        one.add(x, k)
    many.add_many(np.array([x for x, _ in items]), np.array([k for _, k in items]))
    assert many.to_dict() == one.to_dict()


def test_numeric_add_many_rejects_bad_keys_before_recording():
    """A bad key in a batch raises a SummaryError naming it and leaves the summary untouched."""
    s = NumericSummary(8)
    with pytest.raises(SummaryError, match=r"key must be in \[0, 1\), got 1.5"):
        s.add_many([1.0, 2.0], np.array([0.1, 1.5]))
    with pytest.raises(SummaryError, match="key must be a number"):
        s.add_many([1.0, 2.0], [0.1, "x"])
    with pytest.raises(SummaryError, match="one key per value"):
        s.add_many([1.0, 2.0], [0.1])
    assert s.n == 0 and s.invalid == 0 and s.values().size == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(wide, max_size=120))
def test_exact_sum_add_many_is_exact(xs):
    """A batch added to an exact sum leaves exactly the same sum as adding each value."""
    one, many = ExactSum(), ExactSum()
    for x in xs:
        one.add(x)
    many.add_many(np.array(xs, dtype=np.float64))
    assert many.to_list() == one.to_list()
    assert many.value == math.fsum(xs)


def test_exact_sum_add_many_rejects_non_finite():
    """A NaN or infinity in a batch is refused with the offending value in the message."""
    with pytest.raises(SummaryError, match="non-finite value inf"):
        ExactSum().add_many(np.array([1.0, 2.0, 3.0, 4.0, 5.0, math.inf]))


cats = st.one_of(st.sampled_from(["a", "b", "c", "d", "e", OTHER]), st.integers(0, 6), st.none(),
                 st.just([1]), st.just({"k": 1}), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(cats, max_size=80), st.lists(st.integers(0, 80), max_size=4), st.integers(1, 8))
def test_categorical_add_many_equals_adding_one_at_a_time(items, cuts, cap):
    """CategoricalSummary.add_many keeps the same counts, cap overflow and invalid count as add()."""
    one, many = CategoricalSummary(cap), CategoricalSummary(cap)
    for v in items:
        one.add(v)
    for chunk in _chunks(items, cuts):
        many.add_many(chunk)
    assert many.to_dict() == one.to_dict()
    assert list(many.counts()) == list(one.counts())


lat = st.one_of(st.floats(min_value=0.0, max_value=100.0), st.floats(min_value=-1.0, max_value=1e6),
                st.sampled_from([-0.0, 0.0, 1e-4, 60.0, math.nan, math.inf, "0.5", "x", None, True]))


@settings(max_examples=300, deadline=None)
@given(st.lists(lat, max_size=80), st.lists(st.integers(0, 80), max_size=4))
def test_latency_add_many_equals_adding_one_at_a_time(items, cuts):
    """LatencyHistogram.add_many fills the same buckets, sum, min/max and invalid count as add()."""
    one, many = LatencyHistogram(), LatencyHistogram()
    for v in items:
        one.add(v)
    for chunk in _chunks(items, cuts):
        many.add_many(chunk)
    assert many.to_dict() == one.to_dict()


pair_side = st.one_of(st.floats(min_value=-1e160, max_value=1e160), st.integers(-100, 100),
                      st.sampled_from([math.nan, math.inf, None, True, "2.5", "no", 1e200]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(pair_side, pair_side, keys), max_size=60), st.lists(st.integers(0, 60), max_size=4),
       st.booleans(), st.sampled_from([None, 0.5, 0.0]), st.sampled_from([1, 4, 64]))
def test_paired_add_many_equals_adding_one_at_a_time(pairs, cuts, with_keys, threshold, capacity):
    """PairedSummary.add_many keeps the same exact sums, pair count, invalid count, decisions and delta sample
    as add()."""
    one, many = PairedSummary(capacity), PairedSummary(capacity)
    for a, b, k in pairs:
        one.add(a, b, k if with_keys else None, threshold)
    for chunk in _chunks(pairs, cuts):
        many.add_many([a for a, _, _ in chunk], [b for _, b, _ in chunk],
                      [k for _, _, k in chunk] if with_keys else None, threshold)
    assert many.to_dict() == one.to_dict()


def test_paired_add_many_needs_equal_lengths():
    """Primaries and shadows of different lengths are refused, naming both counts."""
    with pytest.raises(SummaryError, match=r"expected one per primary \(2\), got 1"):
        PairedSummary().add_many([1.0, 2.0], [1.0])


outputs = {"score": st.one_of(numbers, junk), "class": cats,
           "ranking": st.one_of(st.lists(st.sampled_from(["i1", "i2", "i3"]), max_size=3), st.none(),
                                st.just([None]))}
feature = st.one_of(st.integers(0, 100), st.floats(-5, 5), st.sampled_from(["de", "fr", None, True]))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(outputs)), st.data())
def test_version_window_batch_observe_equals_one_at_a_time(kind, data):
    """observe_predictions/observe_features give the same window as the one-at-a-time observes."""
    n = data.draw(st.integers(0, 40))
    outs = data.draw(st.lists(outputs[kind], min_size=n, max_size=n))
    ks = data.draw(st.lists(keys, min_size=n, max_size=n))
    ages = data.draw(st.lists(feature, min_size=n, max_size=n))
    one, many = VersionWindow.new(kind, capacity=8), VersionWindow.new(kind, capacity=8)
    for o, a, k in zip(outs, ages, ks):
        one.observe_prediction(o, k)
        one.observe_feature("age", a, k)
    many.observe_predictions(outs, ks)
    many.observe_features("age", ages, np.array(ks))
    assert many.to_dict() == one.to_dict()


def test_aa_split_equals_adding_each_half_one_at_a_time():
    """The vectorised A/A split holds exactly the values of its key-bit half, added one by one."""
    rng = np.random.default_rng(5)
    s = NumericSummary(256, np.array([-np.inf, 0.0, 1.0, np.inf]))
    s.add_many(rng.normal(size=1000), rng.random(1000))
    h1, h2 = s.aa_split()
    keys, vals = s.keys(), s.values()
    bit = (np.floor(keys * 2.0**32).astype(np.int64) & 1) == 0
    for half, mask in ((h1, bit), (h2, ~bit)):
        ref = NumericSummary(256, s.edges)
        for k, v in zip(keys[mask], vals[mask]):
            ref.add(float(v), float(k))
        assert half.to_dict() == ref.to_dict()
    assert h1.n + h2.n == s.values().size == 256


def test_values_are_stable_between_adds_and_follow_new_adds():
    """Repeated values() calls return the same sample; an add after them is reflected in the next call."""
    s = NumericSummary(4)
    s.add_many([5.0, 6.0, 7.0], [0.5, 0.6, 0.7])
    first = s.values()
    first[0] = 99.0                      # callers get a copy: mutating it cannot corrupt the summary
    np.testing.assert_array_equal(s.values(), [5.0, 6.0, 7.0])
    s.add(1.0, 0.1)
    np.testing.assert_array_equal(s.values(), [1.0, 5.0, 6.0, 7.0])
    s.add(2.0, 0.2)
    np.testing.assert_array_equal(s.values(), [1.0, 2.0, 5.0, 6.0])


seg_op = st.tuples(st.dictionaries(st.sampled_from(["g", "c"]), st.sampled_from(["a", "b", "c", "d", 1]),
                                   min_size=1, max_size=2),
                   st.booleans(), st.booleans(), st.booleans(), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(seg_op, max_size=40), st.integers(1, 3))
def test_segment_add_counts_of_summed_rows_equals_each_add(ops, cap):
    """Rows summed per distinct segments and applied in first-appearance order count exactly like each
    add/add_label in order, including which values overflow into "__other__"."""
    from policies.summaries import SegmentCounts
    one, many = SegmentCounts(cap), SegmentCounts(cap)
    tally: dict = {}
    for segments, is_label, a, b, c in ops:
        row = [1, a, 0, 0, 0, 0] if not is_label else [0, 0, 1, a, b, b and c]
        if is_label:
            one.add_label(segments, correct=a, label_positive=b, predicted_positive=c)
        else:
            one.add(segments, positive=a)
        key = tuple(segments.items())
        if key not in tally:
            tally[key] = (segments, [0] * 6)
        tally[key] = (tally[key][0], [x + int(y) for x, y in zip(tally[key][1], row)])
    for segments, row in tally.values():
        many.add_counts(segments, row)
    assert many.to_dict() == one.to_dict()


def test_segment_add_counts_rejects_bad_rows():
    """A row of the wrong length or with a negative count is refused, naming the six counters."""
    from policies.summaries import SegmentCounts
    with pytest.raises(SummaryError, match="expected 6 non-negative integers"):
        SegmentCounts().add_counts({"g": "a"}, [1, 0])
    with pytest.raises(SummaryError, match="n_true_positive"):
        SegmentCounts().add_counts({"g": "a"}, [1, 0, 0, 0, 0, -1])
