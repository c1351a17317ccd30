"""The outcome record and its buckets (policies.outcome): the log line round trip on every line format the
router writes, the bucket wire form, exact merges, selection and rebuild."""
from __future__ import annotations

import pickle
import random

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from policies.outcome import (
    LOG_VERSION, Bucket, Buckets, Outcome, OutcomeError, bucket_start, fold, in_analysis_window, merge, rebuild,
    select,
)
from policies.spec import parse_rollout
from policies.summaries import SummaryError

IDENT = {"time": 1767225600.125, "request_id": "4f1c0e8a9b7d6c5e4f3a2b1c0d9e8f7a", "rollout": "fraud",
         "namespace": "ml", "revision": "v2@http://fraud-v2.ml.svc:8080", "version": "v1", "arm": "baseline"}
ANSWER = {"status": 200, "error": None, "latency_ms": 3.214, "output": 0.93, "features": {"amount": 12.5},
          "segments": {"country": "de"}}

# Every line the router wrote before the record had a type (no "v"), one per kind of record.
TODAYS_LINES = {
    "primary": {**IDENT, "role": "primary", **ANSWER},
    "primary, inputs logged": {**IDENT, "role": "primary", **ANSWER,
                               "input": {"features": {"amount": "[redacted]", "age": 40.0}}},
    "primary, attributions": {**IDENT, "role": "primary", **ANSWER, "attributions": {"amount": 0.4, "age": -0.1}},
    "primary, timed out": {**IDENT, "role": "primary", "status": None, "error": "timeout", "latency_ms": 10000.0,
                           "output": None, "features": None, "segments": None},
    "primary, 4xx": {**IDENT, "role": "primary", "status": 422, "error": None, "latency_ms": 1.0, "output": None,
                     "features": None, "segments": None},
    "primary, latency excluded": {**IDENT, "role": "primary", **ANSWER, "latency_excluded": "stalled"},
    "primary, overridden": {**IDENT, "role": "primary", **ANSWER, "override": True},
    "shadow": {**IDENT, "version": "v2", "arm": "candidate", "role": "shadow", **ANSWER, "output": 0.91,
               "primary_output": 0.93},
    "shadow, primary without output": {**IDENT, "version": "v2", "arm": "candidate", "role": "shadow", **ANSWER,
                                       "primary_output": None},
    "interleave": {**IDENT, "role": "interleave", **ANSWER, "output": ["a", "b", "c"], "features": None},
    "class output": {**IDENT, "role": "primary", **ANSWER, "output": "fraud"},
    "embedding output": {**IDENT, "role": "primary", **ANSWER, "output": [0.1, -0.2, 0.3]},
    "feedback, label": {**IDENT, "role": "feedback", "output": 0.93, "segments": {"country": "de"},
                        "prediction_time": 1767225599.5, "label": True},
    "feedback, numeric label": {**IDENT, "role": "feedback", "output": 0.93, "segments": None,
                                "prediction_time": 1767225599.5, "label": 0.7},
    "feedback, clicks": {**IDENT, "version": "v1+v2", "arm": "interleave", "role": "feedback",
                         "output": ["a", "b"], "segments": None, "prediction_time": 1767225599.5,
                         "clicks": ["b"], "outcome": "win"},
    "feedback, clicks without credit": {**IDENT, "role": "feedback", "output": ["a", "b"], "segments": None,
                                        "prediction_time": 1767225599.5, "clicks": ["a", 3], "outcome": None},
}


@pytest.mark.parametrize("name", sorted(TODAYS_LINES))
def test_every_line_format_round_trips(name):
    """An old line (no "v") parses; the record's line is the old line with "v" added, and parses back to the
    same record."""
    old = TODAYS_LINES[name]
    rec = Outcome.from_json(orjson.dumps(old))
    line = rec.to_json()
    assert orjson.loads(line) == {"v": LOG_VERSION, **old}
    assert Outcome.from_json(line) == rec
    assert Outcome.from_json(line + b"\n") == rec
    assert pickle.loads(pickle.dumps(rec, protocol=5)) == rec


def test_an_absent_attribution_is_written_as_absent():
    """A router with `spec.output.attributions` wrote `"attributions": null` when the model gave none; the
    record drops the null (it reads back the same)."""
    old = {**TODAYS_LINES["primary"], "attributions": None}
    rec = Outcome.from_json(orjson.dumps(old))
    assert rec.attributions is None and "attributions" not in orjson.loads(rec.to_json())


def test_unknown_keys_survive_a_round_trip():
    newer = {"v": 7, **TODAYS_LINES["primary"], "gpu": "a100", "trace": {"span": "x"}}
    rec = Outcome.from_json(orjson.dumps(newer))
    assert rec.extra == {"gpu": "a100", "trace": {"span": "x"}}
    assert orjson.loads(rec.to_json()) == {**newer, "v": LOG_VERSION}


@pytest.mark.parametrize("line, field", [
    (b"not json", "not a JSON record"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"rollout": "r"}', "time: expected epoch seconds"),
    (b'{"time": "noon"}', "time: expected epoch seconds"),
    (b'{"time": true}', "time: expected epoch seconds"),
    (b'{"time": 1, "v": 0}', "v: expected a positive integer"),
    (b'{"time": 1, "rollout": 3}', "rollout: expected a string"),
    (b'{"time": 1, "status": "200"}', "status: expected an HTTP status code"),
    (b'{"time": 1, "latency_ms": "fast"}', "latency_ms: expected a number"),
    (b'{"time": 1, "features": [1]}', "features: expected an object"),
    (b'{"time": 1, "clicks": "a"}', "clicks: expected a list"),
    (b'{"time": 1, "override": "yes"}', "override: expected true, false or null"),
])
def test_bad_lines_name_the_field(line, field):
    with pytest.raises(OutcomeError, match=field):
        Outcome.from_json(line)


def test_a_hand_written_line_needs_only_a_time():
    rec = Outcome.from_json(b'{"time": 1, "rollout": "same", "namespace": "ci"}')
    assert (rec.time, rec.rollout, rec.namespace, rec.request_id, rec.output) == (1, "same", "ci", "", None)


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False,
                     allow_infinity=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                     max_leaves=6)
_opt_text = st.none() | st.text(max_size=6)
_opt_num = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_maps = st.none() | st.dictionaries(st.text(max_size=4), _json, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 2e9), st.text(max_size=8), st.sampled_from(["primary", "shadow", "interleave", "feedback"]),
       st.sampled_from(["baseline", "candidate", "interleave"]), st.none() | st.integers(100, 599), _opt_text,
       _opt_num, _opt_text, _json, _maps, _maps, _json, _maps, _json, _json,
       st.none() | st.lists(st.text(max_size=3) | st.integers(0, 9), max_size=3), _opt_text, _opt_num)
def test_any_record_round_trips(t, rid, role, arm, status, error, latency, excluded, output, features, segments,
                                primary, attributions, inp, label, clicks, outcome, prediction_time):
    rec = Outcome(t, rid, "r", "ns", "v2@x", "v", arm, role, status=status, error=error, latency_ms=latency,
                  latency_excluded=excluded, output=output, features=features, segments=segments,
                  primary_output=primary, attributions=attributions, input=inp, label=label, clicks=clicks,
                  outcome=outcome, prediction_time=prediction_time)
    back = Outcome.from_json(rec.to_json())
    # to_json drops nulls the line format does not require, so compare what a reader sees
    assert back.to_dict() == rec.to_dict()
    assert Outcome.from_json(back.to_json()) == back
    assert pickle.loads(pickle.dumps(rec, protocol=5)) == rec


# --- buckets ---------------------------------------------------------------------------------------------

def _spec(kind: str = "score", name: str = "fraud"):
    path = "ranking" if kind == "ranking" else "prediction"
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": name, "namespace": "ml"},
           "spec": {"baseline": {"version": "v1", "url": "http://127.0.0.1:1"},
                    "candidate": {"version": "v2", "url": "http://127.0.0.1:2"},
                    "output": {"kind": kind, "path": path}, "features": {"path": "features"},
                    "strategy": {"steps": [{"canary": {"weight": 50}}]}}}
    return parse_rollout(doc).spec


def _records(n: int, spec, seed: int = 1, t0: float = 1_800_000_000.0, span: float = 30.0) -> list[Outcome]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = t0 + rng.random() * span
        arm = rng.choice(["baseline", "candidate"])
        role = "shadow" if arm == "candidate" and rng.random() < 0.5 else "primary"
        error = rng.choice([None] * 12 + ["timeout", "http_5xx", "invalid_output"])
        out.append(Outcome(t, f"{seed}-{i}", spec.name, spec.namespace, spec.revision, arm[:2], arm, role,
                           status=None if error == "timeout" else 200, error=error,
                           latency_ms=rng.lognormvariate(1, 1), output=None if error else rng.random(),
                           features={"age": rng.randint(18, 90), "country": rng.choice("ab")},
                           segments={"g": rng.choice("fm")},
                           primary_output=rng.random() if role == "shadow" else None,
                           latency_excluded="stalled" if rng.random() < 0.02 else None))
        if rng.random() < 0.1:
            out.append(Outcome(t + 0.5, f"{seed}-{i}", spec.name, spec.namespace, spec.revision, arm[:2], arm,
                               "feedback", output=out[-1].output, segments={"g": "f"}, label=rng.random() < 0.5,
                               prediction_time=t))
    out.sort(key=lambda r: r.time)
    return out


def test_wire_form_round_trips_through_json():
    spec = _spec()
    buckets = rebuild(_records(600, spec), spec, 5.0, 64)
    assert len(buckets) == 7 and any(b.paired is not None for b in buckets)
    for b in buckets:
        wire = orjson.loads(orjson.dumps(b.to_wire()))
        assert Bucket.from_wire(wire).to_wire() == b.to_wire()


def test_bad_wire_forms_raise_summary_error():
    with pytest.raises(SummaryError, match="bucket.start"):
        Bucket.from_wire({"end": 5})
    with pytest.raises(SummaryError):
        Bucket.from_wire({"start": 0, "end": 5, "baseline": {"type": "version_window"}})
    half = Bucket.from_wire({"start": 0, "end": 5, "revision": None, "baseline": None})
    assert half.baseline is None and half.candidate is None


@pytest.mark.parametrize("kind", ["score", "class", "ranking"])
def test_merge_is_associative_and_commutative(kind):
    spec = _spec(kind)
    recs = _records(300, spec, seed=5)
    if kind != "score":
        choices = ["a", "b", "c"]
        recs = [Outcome(r.time, r.request_id, r.rollout, r.namespace, r.revision, r.version, r.arm, r.role,
                        status=r.status, error=r.error, latency_ms=r.latency_ms,
                        output=None if r.output is None else (
                            choices[int(r.output * 3)] if kind == "class" else [choices[int(r.output * 3)], "z"]),
                        features=r.features, segments=r.segments,
                        primary_output=None if r.primary_output is None else (
                            "a" if kind == "class" else ["a"]), label=r.label, prediction_time=r.prediction_time)
                for r in recs]
    a, b, c = (rebuild(part, spec, 30.0, 32)[0] for part in (recs[:100], recs[100:200], recs[200:]))
    left = a.merge(b).merge(c).to_wire()
    assert left == a.merge(b.merge(c)).to_wire()
    assert left == c.merge(a).merge(b).to_wire()
    assert merge([c, b, a], kind).to_wire() == left


def test_merge_of_nothing_has_both_arms_empty():
    m = merge([], "score")
    assert m.baseline.requests == 0 and m.candidate.requests == 0 and m.paired is None and m.interleave is None


def test_selection_by_time_and_analysis_window():
    spec = _spec()
    recs = _records(400, spec, t0=1_800_000_000.0, span=29.0)
    old = [Outcome(r.time, r.request_id, r.rollout, r.namespace, "v0@x", r.version, r.arm, r.role,
                   status=r.status, output=r.output) for r in recs[:50]]
    buckets = rebuild(recs + old, spec, 5.0, 16)
    starts = sorted({b.start for b in buckets})
    assert starts == [1_800_000_000.0 + 5 * i for i in range(6)]
    inside = select(buckets, starts[1], starts[3] + 5.0)
    assert {b.start for b in inside} == set(starts[1:4])
    assert all(starts[1] <= b.start and b.end <= starts[3] + 5.0 for b in inside)
    assert inside == sorted(inside, key=lambda b: (b.start, b.revision))
    wire = [b.to_wire() for b in buckets] + ["junk", {"start": "x"}]
    # the window starting mid-bucket reads that whole bucket, only of the revision under test
    got = in_analysis_window(wire, spec, starts[2] + 2.5, 5.0)
    assert {b.revision for b in got} == {spec.revision}
    assert sorted(b.start for b in got) == starts[2:]
    total = merge(got, "score")
    assert total.baseline.requests + total.candidate.requests == sum(
        1 for r in recs if r.role != "feedback" and r.time >= starts[2])


def test_rebuild_equals_the_live_buckets_whatever_the_batches():
    """The router folds records in the batches they arrive in; rebuild folds a log in one go: same buckets."""
    spec, other = _spec(), _spec(name="other")
    recs = _records(500, spec, seed=9) + _records(50, other, seed=10)
    recs.sort(key=lambda r: r.time)
    live = Buckets(spec, 5.0, 32)
    rng = random.Random(4)
    mine = [r for r in recs if r.rollout == spec.name]
    i = 0
    while i < len(mine):
        n = rng.randint(1, 40)
        live.add(mine[i:i + n])
        i += n
    assert [b.to_wire() for b in rebuild(recs, spec, 5.0, 32)] == [b.to_wire() for b in live.select()]


def test_fold_adds_each_record_once_per_arm():
    spec = _spec()
    recs = [r for r in _records(200, spec, span=4.0) if r.role != "feedback"]
    b = Bucket.new(bucket_start(recs[0].time, 5.0), bucket_start(recs[0].time, 5.0) + 5.0, spec.revision, "score")
    fold(b, recs, spec)
    assert b.baseline.requests == sum(r.arm == "baseline" for r in recs)
    assert b.candidate.requests == sum(r.arm == "candidate" for r in recs)
    assert sum(b.candidate.latency_excluded.values()) + sum(b.baseline.latency_excluded.values()) == sum(
        r.latency_excluded is not None for r in recs)
    assert b.paired.n == sum(r.role == "shadow" and r.output is not None for r in recs)


def test_fold_leaves_out_overridden_answers():
    """An answer whose caller picked the version (`override`) is in the log but in no summary: the bucket of
    the records with some overridden equals the bucket of the others alone."""
    spec = _spec()
    recs = [r for r in _records(200, spec, span=4.0) if r.role == "primary"]
    forced = {r.request_id for r in recs[::3]}
    marked = [Outcome.from_dict({**r.to_dict(), "override": True}) if r.request_id in forced else r for r in recs]
    start = bucket_start(recs[0].time, 5.0)
    with_forced, without = (Bucket.new(start, start + 5.0, spec.revision, "score") for _ in range(2))
    fold(with_forced, marked, spec)
    fold(without, [r for r in recs if r.request_id not in forced], spec)
    assert with_forced.to_wire() == without.to_wire()
    assert with_forced.baseline.requests + with_forced.candidate.requests == len(recs) - len(forced) > 0


def test_the_request_path_constructor_builds_the_same_record():
    """`Outcome.answer` (the router's fast constructor) and the dataclass constructor give equal records, the
    same line and the same pickle round trip; unknown fields are refused."""
    args = (1.5, "id", "fraud", "ml", "v2@x", "v2", "candidate", "shadow", 200, None, 2.5, 0.4, {"age": 3}, None)
    fast = Outcome.answer(*args, primary_output=0.3, latency_excluded="stalled")
    full = Outcome(*args[:8], status=200, error=None, latency_ms=2.5, output=0.4, features={"age": 3},
                   segments=None, primary_output=0.3, latency_excluded="stalled")
    assert fast == full and fast.to_json() == full.to_json()
    assert fast.label is None and fast.extra is None
    assert pickle.loads(pickle.dumps(fast, protocol=5)) == full
    with pytest.raises(TypeError, match="colour"):
        Outcome.answer(*args, colour="red")
    with pytest.raises(Exception, match="cannot assign"):
        fast.output = 1.0
