"""The recorder's batched fold builds exactly the windows that folding each outcome record in order builds."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings, strategies as st

from policies.spec import parse_rollout
from router.recorder import Recorder, Windows, fold, replay


def _spec(kind: str):
    path = "ranking" if kind == "ranking" else "prediction"
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "r", "namespace": "ml"},
           "spec": {"baseline": {"version": "v1", "url": "http://127.0.0.1:1"},
                    "candidate": {"version": "v2", "url": "http://127.0.0.1:2"},
                    "output": {"kind": kind, "path": path},
                    "strategy": {"steps": [{"canary": {"weight": 50}}]}}}
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
            rec["label"] = draw(st.one_of(st.booleans(), st.sampled_from(["a", "b", 1, 0, 0.7])))
        return rec
    error = draw(st.sampled_from([None, None, None, "timeout", "http_5xx", "invalid_output"]))
    rec.update(status=None if error == "timeout" else 200, error=error,
               latency_ms=draw(st.floats(0, 5000)), output=None if error else draw(out),
               features=draw(st.one_of(st.none(), st.fixed_dictionaries(
                   {"age": st.one_of(st.integers(18, 90), st.floats(-1, 1), st.none()),
                    "country": st.sampled_from(["de", "fr", None])}))),
               segments=draw(st.sampled_from([None, {"g": "f"}, {"g": "m"}])))
    if role == "shadow":
        rec["primary_output"] = draw(out)
    return rec


def _one_at_a_time(recs, spec, bucket=5.0):
    windows: dict = {}
    for rec in recs:
        start = (rec["time"] // bucket) * bucket
        key = (start, rec.get("revision") or spec.revision)
        if key not in windows:
            windows[key] = Windows(start, start + bucket, key[1], spec.output.kind, 8)
        fold(windows[key], rec, spec)
    return [w.to_dict() for _, w in sorted(windows.items())]


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(OUTPUT)), st.data())
def test_batched_fold_equals_folding_each_record(kind, data):
    """Whatever the batch sizes, the recorder's windows equal those of folding every record in order."""
    spec = _spec(kind)
    recs = data.draw(st.lists(records(kind), max_size=60))
    chunk = data.draw(st.sampled_from([1, 3, 16, 256]))
    rec = Recorder(5.0, float("inf"), 8)
    for r in recs:
        rec.add(spec, r)
    asyncio.run(rec.fold_queued(chunk))
    assert rec.pending == 0
    assert rec.windows(spec.key) == _one_at_a_time(recs, spec)


def test_every_queued_outcome_is_folded_and_replay_matches():
    """Each queued outcome counts once in its window after a flush, and replay() of the same records
    rebuilds identical windows."""
    spec = _spec("score")
    recs = [{"time": 1000.0 + i * 0.01, "request_id": f"id{i}", "rollout": "r", "namespace": "ml",
             "revision": spec.revision, "arm": "candidate" if i % 3 == 0 else "baseline",
             "role": "shadow" if i % 3 == 0 else "primary", "status": 200, "error": None,
             "latency_ms": 1.0 + i % 7, "output": (i % 100) / 100.0, "primary_output": 0.5,
             "features": {"age": 20 + i % 50}, "segments": {"g": "fm"[i % 2]}} for i in range(3000)]
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
    assert replay(recs, spec, 5.0, 64) == windows
