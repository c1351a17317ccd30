"""Summaries and the prediction log of real router processes: mergeable across replicas, replayable, durable."""
from __future__ import annotations

import signal
import threading

import httpx

from policies.spec import parse_rollout
from policies.summaries import PairedSummary, VersionWindow
from policies.outcome import rebuild
from router.predlog import read_records
from tests.router_support import body, metric_value, post_many, rollout_doc, summaries, wait_until, write_config


def _merge(windows: list[dict], arm: str) -> VersionWindow:
    out = VersionWindow.new("score")
    for w in windows:
        out = out.merge(VersionWindow.from_dict(w[arm]))
    return out


def test_summaries_of_two_replicas_merge_to_the_sum(procs, tmp_path):
    """Windows from two router processes merge into counts equal to the sum of what each one served."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--shift", "0.2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=30)])
    a = procs.router(cfg, "--replica-id", "a", "--bucket", "2s")
    b = procs.router(cfg, "--replica-id", "b", "--bucket", "2s")
    sent = {a.url: 250, b.url: 150}
    answers = {}
    for url, n in sent.items():
        answers[url] = post_many([(f"{url}/v1/rollouts/fraud/predict", body(age=20 + i % 40, i=i),
                                   {"x-user-id": f"{url}-u{i}"}) for i in range(n)])
    docs = [summaries(url, "fraud") for url in sent]
    assert [d["replica"] for d in docs] == ["a", "b"]
    for d in docs:
        assert d["bucket_seconds"] == 2.0 and d["rollout"] == "fraud" and d["namespace"] == "ml"
        for w in d["windows"]:
            assert w["start"] % 2 == 0 and w["end"] - w["start"] == 2
    windows = docs[0]["windows"] + docs[1]["windows"]
    base, cand = _merge(windows, "baseline"), _merge(windows, "candidate")
    served_v2 = sum(h["x-model-version"] == "v2" for ans in answers.values() for _, h, _ in ans)
    assert base.requests + cand.requests == 400
    assert cand.requests == cand.prediction.n == served_v2
    assert base.features["age"].n + cand.features["age"].n == 400
    each = [_merge(d["windows"], "candidate").requests for d in docs]
    assert sum(each) == cand.requests
    later = summaries(a.url, "fraud", start=max(w["end"] for w in docs[0]["windows"]) + 100)
    assert later["windows"] == []


def test_log_rotates_survives_sigterm_and_replays_to_the_same_summaries(procs, tmp_path):
    """After SIGTERM the rotated log holds exactly one record per outcome (primary, shadow, feedback), inputs
    are redacted, and replaying it rebuilds the summaries the router served."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--shift", "0.1")
    doc = rollout_doc("fraud", v1.url, v2.url, weight=0, shadow=True)
    doc["spec"]["privacy"] = {"inputs": "keep", "redact": ["features.amount"]}
    cfg = write_config(tmp_path / "r.yaml", [doc])
    logs = tmp_path / "log"
    router = procs.router(cfg, "--log-dir", str(logs), "--log-max-bytes", "40000", "--replica-id", "r1",
                          "--shadow-max-inflight", "1000")
    n = 300
    answers = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {}) for i in range(n)])
    labels = post_many([(f"{router.url}/v1/rollouts/fraud/feedback", {"feedback_id": h["x-feedback-id"], "label": i % 2},
                         {}) for i, (_, h, _) in enumerate(answers[:100])])
    assert {s for s, _, _ in answers} == {200} and {s for s, _, _ in labels} == {200}
    wait_until(lambda: metric_value(httpx.get(f"{router.url}/metrics").text,
                                    "modelrollout_router_shadow_inflight") == 0, what="shadows done")
    served = summaries(router.url, "fraud")["windows"]
    assert router.stop(signal.SIGTERM) == 0

    files = sorted(logs.glob("predictions-r1-*.jsonl"))
    assert len(files) > 1, "expected rotation at 40 kB"
    records = list(read_records(logs))
    roles = [r.role for r in records]
    assert roles.count("primary") == n and roles.count("shadow") == n and roles.count("feedback") == 100
    primary = [r for r in records if r.role == "primary"]
    assert {r.request_id for r in primary} == {h["x-request-id"] for _, h, _ in answers}
    assert all(r.input["features"]["amount"] == "[redacted]" and r.input["features"]["age"] == 40.0
               for r in primary)
    assert all(set(r.to_dict()) >= {"v", "time", "request_id", "rollout", "namespace", "revision", "version", "role", "status",
                          "error", "latency_ms", "output", "features", "segments"} for r in primary)
    rebuilt = [b.to_wire() for b in rebuild(records, parse_rollout(doc).spec, bucket_seconds=5.0)]
    assert rebuilt == served
    paired = PairedSummary()
    for w in rebuilt:
        if w["paired"] is not None:      # a bucket of feedback only (the labels came after the answers)
            paired = paired.merge(PairedSummary.from_dict(w["paired"]))
    assert paired.n == n


def test_sigterm_drains_in_flight_requests_into_the_log(procs, tmp_path):
    """Requests in flight when SIGTERM arrives still get their answers, and each one is in the log."""
    slow = procs.scorer("v1", "--latency-ms", "1500")
    v2 = procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", slow.url, v2.url, weight=0, timeout="10s")])
    logs = tmp_path / "log"
    router = procs.router(cfg, "--log-dir", str(logs))
    n = 40
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(
        post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {}) for i in range(n)], concurrency=n)))
    worker.start()
    try:
        wait_until(lambda: httpx.get(f"{slow.url}/healthz").json()["served"] >= n, what="all requests in flight")
        router.popen.send_signal(signal.SIGTERM)
    finally:
        worker.join(60)
    assert router.popen.wait(30) == 0
    assert [s for s, _, _ in results] == [200] * n
    records = list(read_records(logs))
    assert sorted(r.request_id for r in records) == sorted(h["x-request-id"] for _, h, _ in results)


def test_batch_summaries_answer_each_window_merged_in_the_order_asked(procs, tmp_path):
    """`POST /v1/summaries` of a real router: per rollout asked, its candidate revision's buckets of the window
    merged into one (the same summaries as merging `GET /v1/rollouts/{name}/summaries`' buckets), in order; a
    rollout it does not serve is an error of its item; a malformed batch is a 400 naming the field. The
    controller's `RouterSummaries` gathers the same evidence through it as through the per-rollout route."""
    from controller.evidence import RouterSummaries
    from policies.outcome import Bucket, merge

    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--shift", "0.2")
    docs = [rollout_doc(name, v1.url, v2.url, weight=50) for name in ("fraud", "churn")]
    cfg = write_config(tmp_path / "r.yaml", docs)
    routers = [procs.router(cfg, "--replica-id", r, "--bucket", "1s") for r in ("a", "b")]
    specs = {d["metadata"]["name"]: parse_rollout(d).spec for d in docs}
    for k, r in enumerate(routers):
        post_many([(f"{r.url}/v1/rollouts/{name}/predict", body(age=20 + i % 40, i=i), {"x-user-id": f"u{k}-{i}"})
                   for name in specs for i in range(120)])
    per_bucket = {name: summaries(routers[0].url, name)["windows"] for name in specs}
    # from inside the first bucket to the last one's end, over both replicas' buckets (a busy machine may
    # spread the posts to the second replica over later seconds)
    starts = sorted({w["start"] for r in routers for name in specs for w in summaries(r.url, name)["windows"]})
    start, end = starts[0] + 0.5, starts[-1] + 1.0
    asked = [{"rollout": "churn", "namespace": "ml", "revision": specs["churn"].revision, "start": start, "end": end},
             {"rollout": "nope", "namespace": "ml", "revision": "v2@x", "start": start, "end": end},
             {"rollout": "fraud", "namespace": "ml", "revision": specs["fraud"].revision, "start": start, "end": end},
             {"rollout": "fraud", "namespace": "ml", "revision": "v0@elsewhere", "start": start, "end": end}]
    r = httpx.post(f"{routers[0].url}/v1/summaries", json={"windows": asked}, timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["replica"] == "a" and doc["bucket_seconds"] == 1.0 and isinstance(doc["instance"], str)
    items = doc["windows"]
    assert [i["rollout"] for i in items] == ["churn", "nope", "fraud", "fraud"]
    assert items[1]["error"]["status"] == 404 and items[1]["error"]["error"] == "unknown rollout"
    assert items[3]["windows"] == []                        # no bucket of that revision
    for item in (items[0], items[2]):
        (window,) = item["windows"]
        expected = merge([Bucket.from_wire(w) for w in per_bucket[item["rollout"]]], "score")
        assert Bucket.from_wire(window).to_wire() == expected.to_wire()
        assert window["baseline"]["requests"] + window["candidate"]["requests"] == 120
    bad = httpx.post(f"{routers[0].url}/v1/summaries", json={"windows": [{**asked[0], "start": "soon"}]}, timeout=10)
    assert bad.status_code == 400 and bad.json() == {
        "error": "invalid windows", "detail": "windows[0].start: expected seconds since the epoch, got 'soon'"}
    assert httpx.post(f"{routers[0].url}/v1/summaries", content=b"{", timeout=10).status_code == 400

    urls = [r.url for r in routers]
    with httpx.Client(timeout=10) as http:
        batched = RouterSummaries(http, lambda s: urls, batch=True)
        per_rollout = RouterSummaries(http, lambda s: urls, batch=False)
        for spec in specs.values():
            a, b = batched.gather(spec, start, end), per_rollout.gather(spec, start, end)
            assert a.complete and b.complete
            for arm in ("baseline", "candidate"):
                assert getattr(a.observations, arm).to_dict() == getattr(b.observations, arm).to_dict()
            assert a.observations.baseline.requests + a.observations.candidate.requests == 240
            # windows that start and end inside buckets, as a step's first window does (it starts when the
            # step did): both paths read the same buckets and merge them to the same evidence
            for lo in starts:
                for hi in starts:
                    if hi < lo:
                        continue
                    w0, w1 = lo + 0.37, hi + 1.0 + 0.21
                    a, b = batched.gather(spec, w0, w1), per_rollout.gather(spec, w0, w1)
                    assert a.complete and b.complete
                    for arm in ("baseline", "candidate"):
                        assert getattr(a.observations, arm).to_dict() == getattr(b.observations, arm).to_dict(), \
                            (spec.key, w0, w1, arm)
        batched.close()
