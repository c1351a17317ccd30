"""The one fold (`policies.outcome.fold`, batched) builds exactly the buckets that the rules applied to each
outcome record in order build, one value at a time (the router's fold before it was batched, kept here as the
reference); the recorder and `rebuild` build the same buckets from the same records."""
from __future__ import annotations

import asyncio
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from policies._paired import ndcg, rbo
from policies.outcome import Bucket, Outcome, in_analysis_window, label_positive, merge, positive, rebuild
from policies.spec import parse_rollout
from policies.summaries import InterleaveSummary, PairedSummary, key_from_request_id
from router.recorder import Recorder


def _spec(kind: str):
    path = "ranking" if kind == "ranking" else "prediction"
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "r", "namespace": "ml"},
           "spec": {"baseline": {"version": "v1", "url": "http://127.0.0.1:1"},
                    "candidate": {"version": "v2", "url": "http://127.0.0.1:2"},
                    "output": {"kind": kind, "path": path},
                    "strategy": {"steps": [{"canary": {"weight": 50}}]}}}
    if kind == "ranking":               # the ranking agreements the fold keeps are those the checks read
        doc["spec"]["analysis"] = {"checks": [{"name": "rbo", "metric": "shadow-rbo", "min": 0.5, "p": 0.8},
                                              {"name": "ndcg", "metric": "shadow-ndcg", "min": 0.5, "k": 2}]}
    return parse_rollout(doc).spec


OUTPUT = {"score": st.one_of(st.floats(0, 1), st.integers(0, 3), st.none()),
          "class": st.one_of(st.sampled_from(["a", "b", "c"]), st.none()),
          "ranking": st.one_of(st.lists(st.sampled_from(["i1", "i2", "i3"]), max_size=3), st.none())}


@st.composite
def records(draw, kind: str):
    out = OUTPUT[kind]
    role = draw(st.sampled_from(["primary", "primary", "shadow", "feedback"]))
    rec = {"time": draw(st.sampled_from([1000.0, 1003.0, 1007.5])), "request_id": f"q{draw(st.integers(0, 30))}",
           "rollout": "r", "namespace": "ml", "revision": draw(st.sampled_from(["rev1", "rev1", "rev2"])),
           "arm": draw(st.sampled_from(["baseline", "candidate", "candidate"])), "role": role}
    if role == "feedback":
        rec["output"] = draw(out)
        rec["segments"] = draw(st.sampled_from([None, {"g": "f"}, {"g": "m"}]))
        if kind == "ranking" and draw(st.booleans()):
            rec["clicks"] = ["i1"]
            rec["outcome"] = draw(st.sampled_from(["win", "loss", "tie", None]))
        else:
            rec["label"] = draw(st.one_of(st.none(), st.booleans(), st.sampled_from(["a", "b", 1, 0, 0.7])))
        if draw(st.booleans()):
            rec["reward"] = draw(st.one_of(st.floats(-5, 5), st.integers(0, 3)))
            rec["propensity"] = draw(st.sampled_from([0.1, 0.5, 1.0]))
        return rec
    error = draw(st.sampled_from([None, None, None, "timeout", "http_5xx", "invalid_output"]))
    rec.update(status=None if error == "timeout" else 200, error=error,
               latency_ms=draw(st.floats(0, 5000)), output=None if error else draw(out),
               features=draw(st.one_of(st.none(), st.fixed_dictionaries(
                   {"age": st.one_of(st.integers(18, 90), st.floats(-1, 1), st.none()),
                    "country": st.sampled_from(["de", "fr", None])}))),
               segments=draw(st.sampled_from([None, {"g": "f"}, {"g": "m"}])),
               latency_excluded=draw(st.sampled_from([None, None, None, "stalled", "connect"])),
               attributions=draw(st.one_of(st.none(), st.fixed_dictionaries(
                   {"age": st.floats(-1, 1), "amount": st.floats(-5, 5)}))))
    if role == "shadow":
        rec["primary_output"] = draw(out)
    return rec


_WINNER = {"win": "candidate", "loss": "baseline", "tie": "tie"}


def reference_fold(w: Bucket, rec: dict, spec) -> None:
    """The fold of one record, one value at a time: the rules as the router applied them before the fold
    was batched and moved to policies.outcome."""
    role = rec.get("role")
    arm = rec.get("arm")
    if role == "feedback":
        if rec.get("reward") is not None and arm in ("baseline", "candidate"):
            getattr(w, arm).observe_reward(rec["reward"])
        if "clicks" in rec:
            outcome = rec.get("outcome")
            if outcome is not None:
                if w.interleave is None:
                    w.interleave = InterleaveSummary()
                w.interleave.add(_WINNER[outcome])
        elif arm in ("baseline", "candidate") and rec.get("label") is not None:
            output, label = rec.get("output"), rec.get("label")
            predicted, actual = positive(spec, output), label_positive(label, spec)
            correct = predicted == actual if spec.output.kind == "score" else str(output) == str(label)
            getattr(w, arm).segments.add_label(rec.get("segments") or {"all": "all"}, correct=correct,
                                               label_positive=actual, predicted_positive=predicted)
        return
    if arm not in ("baseline", "candidate"):
        return
    vw = getattr(w, arm)
    key = key_from_request_id(str(rec.get("request_id", "")))
    vw.requests += 1
    error = rec.get("error")
    if error:
        vw.add_error(error)
    excluded = rec.get("latency_excluded")
    if excluded:
        vw.latency_excluded[excluded] = vw.latency_excluded.get(excluded, 0) + 1
    elif rec.get("status") is not None:
        vw.latency.add(rec.get("latency_ms", 0.0) / 1000.0)
    output = rec.get("output")
    if output is not None:
        vw.observe_prediction(output, key)
        segments = rec.get("segments")
        if segments:
            vw.segments.add(segments, positive=positive(spec, output))
    for name, value in (rec.get("features") or {}).items():
        if value is not None:
            vw.observe_feature(name, value, key)
    attributions = rec.get("attributions")
    if attributions and output is not None:
        vw.observe_attributions(attributions)
    primary = rec.get("primary_output")
    if role == "shadow" and output is not None and primary is not None:
        if w.paired is None:
            w.paired = PairedSummary(w.candidate.capacity)
        kind = spec.output.kind
        if kind == "score":
            w.paired.add(primary, output, key, spec.output.threshold)
        elif kind == "ranking":
            w.paired.add_categorical(str(primary[0]) if primary else "", str(output[0]) if output else "")
            if primary:
                w.paired.add_agreement("rbo:0.8", rbo(primary, output, 0.8))
                w.paired.add_agreement("ndcg:2", ndcg(primary, output, 2))
            else:                       # an empty baseline ranking has no NDCG
                w.paired.add_agreement("rbo:0.8", rbo(primary, output, 0.8))
        elif kind == "class":
            w.paired.add_categorical(str(primary), str(output), (positive(spec, primary), positive(spec, output)))


def _one_at_a_time(recs, spec, bucket=5.0):
    windows: dict = {}
    for rec in recs:
        start = (rec["time"] // bucket) * bucket
        key = (start, rec.get("revision") or spec.revision)
        if key not in windows:
            windows[key] = Bucket.new(start, start + bucket, key[1], spec.output.kind, 8)
        reference_fold(windows[key], rec, spec)
    return [w.to_wire() for _, w in sorted(windows.items())]


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(OUTPUT)), st.data())
def test_batched_fold_equals_folding_each_record(kind, data):
    """Whatever the batch sizes, the recorder's windows equal those of folding every record in order."""
    spec = _spec(kind)
    recs = data.draw(st.lists(records(kind), max_size=60))
    chunk = data.draw(st.sampled_from([1, 3, 16, 256]))
    rec = Recorder(5.0, float("inf"), 8)
    for r in recs:
        rec.add(spec, Outcome.from_dict(r))
    asyncio.run(rec.fold_queued(chunk))
    assert rec.pending == 0
    expected = _one_at_a_time(recs, spec)
    assert rec.windows(spec.key) == expected
    assert [b.to_wire() for b in rebuild([Outcome.from_dict(r) for r in recs], spec, 5.0, 8)] == expected


def test_every_queued_outcome_is_folded_and_rebuild_matches():
    """Each queued outcome counts once in its bucket after a flush, and rebuild() of the same records
    rebuilds identical buckets."""
    spec = _spec("score")
    recs = [{"time": 1000.0 + i * 0.01, "request_id": f"id{i}", "rollout": "r", "namespace": "ml",
             "revision": spec.revision, "arm": "candidate" if i % 3 == 0 else "baseline",
             "role": "shadow" if i % 3 == 0 else "primary", "status": 200, "error": None,
             "latency_ms": 1.0 + i % 7, "output": (i % 100) / 100.0, "primary_output": 0.5,
             "features": {"age": 20 + i % 50}, "segments": {"g": "fm"[i % 2]}} for i in range(3000)]
    recs = [Outcome.from_dict(r) for r in recs]
    rec = Recorder(5.0, float("inf"), 64)
    for r in recs:
        rec.add(spec, r)
    assert rec.pending == 3000
    rec.flush()
    assert rec.pending == 0
    windows = rec.windows(spec.key)
    assert sum(w["baseline"]["requests"] + w["candidate"]["requests"] for w in windows) == 3000
    assert sum(w["paired"]["n_numeric"] for w in windows) == 1000
    assert sum(w["candidate"]["latency"]["buckets"][b] for w in windows
               for b in w["candidate"]["latency"]["buckets"]) == 1000
    assert [b.to_wire() for b in rebuild(recs, spec, 5.0, 64)] == windows


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(OUTPUT)), st.data())
def test_a_merged_window_is_what_the_controller_merges_from_the_buckets(kind, data):
    """`POST /v1/summaries`'s answer for a window (`Recorder.merged_window`, merged on the router) holds the
    same summaries as the controller's decode and merge of that window's buckets (`in_analysis_window` over
    `GET /v1/rollouts/{name}/summaries`): of the candidate revision only, from the bucket holding the window's
    start to the buckets ended by its end."""
    spec = _spec(kind)
    recs = data.draw(st.lists(records(kind), max_size=60))
    start = data.draw(st.sampled_from([990.0, 1000.0, 1002.5, 1005.0, 1007.0]))
    end = data.draw(st.sampled_from([1005.0, 1009.9, 1010.0, 1020.0]))
    revision = data.draw(st.sampled_from([spec.revision, "v9@http://127.0.0.1:9"]))
    rec = Recorder(5.0, float("inf"), 8)
    for r in recs:
        rec.add(spec, Outcome.from_dict(r))
    rec.flush()
    (merged,) = rec.merged_windows([(spec.key, revision, start, end)])
    wanted = spec if revision == spec.revision else replace(spec, candidate=replace(spec.candidate, version="v9",
                                                                                   url="http://127.0.0.1:9"))
    buckets = [b for b in in_analysis_window(rec.windows(spec.key, None, end), wanted, start, 5.0)
               if b.revision == revision]
    if not buckets:
        assert merged == []
        return
    expected = merge(buckets, kind).to_wire()
    assert merged == [expected]
    assert Bucket.from_wire(merged[0]).to_wire() == expected
