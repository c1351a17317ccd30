"""Interleaving and feedback through a real router: credit per impression, label joins, refused replays."""
from __future__ import annotations

import json
import random
import time

import httpx
import pytest

from modelrollout.models.ranker import simulate_clicks
from policies.summaries import InterleaveSummary, VersionWindow
from tests.router_support import metric_value, post_many, rollout_doc, summaries, wait_until, write_config


def _ranking_body(i: int) -> dict:
    rng = random.Random(i)
    return {"user": f"u{i % 40}", "candidates": [f"i{rng.randrange(500)}" for _ in range(10)]}


def test_interleaving_merges_rankings_and_credits_the_team_that_placed_the_clicked_item(procs, tmp_path):
    """A click on the first merged item credits the ranker whose top item it is (win for the candidate,
    loss for the baseline), and the tally in the summaries equals the credited feedback."""
    r1, r2 = procs.ranker("r1", "--quality", "0.1"), procs.ranker("r2", "--quality", "0.9")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("rank", r1.url, r2.url, kind="ranking", interleave=True,
                                                         versions=("r1", "r2"))])
    router = procs.router(cfg)
    url = f"{router.url}/v1/rollouts/rank"
    expected = {"win": 0, "loss": 0}
    with httpx.Client(timeout=10) as c:
        for i in range(60):
            b = _ranking_body(i)
            r = c.post(f"{url}/predict", json=b)
            assert r.status_code == 200 and r.headers["x-model-version"] == "r1+r2"
            merged = r.json()["ranking"]
            own_a = c.post(f"{r1.url}/predict", json=b).json()["ranking"]
            own_b = c.post(f"{r2.url}/predict", json=b).json()["ranking"]
            assert sorted(merged) == sorted(set(own_a) | set(own_b))
            if own_a[0] == own_b[0]:
                continue
            outcome = "win" if merged[0] == own_b[0] else "loss"
            expected[outcome] += 1
            fb = c.post(f"{url}/feedback", json={"feedback_id": r.headers["x-feedback-id"], "clicks": [merged[0]]})
            assert fb.status_code == 200 and fb.json()["outcome"] == outcome
    assert expected["win"] > 0 and expected["loss"] > 0
    tally = InterleaveSummary()
    for w in summaries(router.url, "rank")["windows"]:
        if w["interleave"]:
            tally = tally.merge(InterleaveSummary.from_dict(w["interleave"]))
    assert (tally.wins, tally.losses, tally.ties) == (expected["win"], expected["loss"], 0)
    text = httpx.get(f"{router.url}/metrics").text
    assert metric_value(text, "modelrollout_router_interleave_outcomes_total", outcome="win") == expected["win"]


def _interleaved_impressions(procs, tmp_path, n: int = 300):
    """A router interleaving a poor ranker (r1, the baseline) with a good one (r2), and n impressions it
    served: (router, the rollout's API url, the request bodies, the answers)."""
    r1, r2 = procs.ranker("r1", "--quality", "0.1"), procs.ranker("r2", "--quality", "0.9")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("rank", r1.url, r2.url, kind="ranking", interleave=True,
                                                         versions=("r1", "r2"))])
    router = procs.router(cfg)
    url = f"{router.url}/v1/rollouts/rank"
    bodies = [_ranking_body(i) for i in range(n)]
    return router, url, bodies, post_many([(f"{url}/predict", b, {}) for b in bodies])


def test_better_ranker_wins_under_simulated_clicks(procs, tmp_path):
    """With simulated users, the higher-quality candidate ranker wins more impressions than it loses."""
    router, url, bodies, answers = _interleaved_impressions(procs, tmp_path)
    rng = random.Random(3)
    clicks = [(f"{url}/feedback", {"feedback_id": h["x-feedback-id"],
                                   "clicks": simulate_clicks(__import__("json").loads(raw)["ranking"], b["user"], rng)},
               {}) for (s, h, raw), b in zip(answers, bodies)]
    assert {s for s, _, _ in post_many(clicks)} == {200}
    tally = InterleaveSummary()
    for w in summaries(router.url, "rank")["windows"]:
        if w["interleave"]:
            tally = tally.merge(InterleaveSummary.from_dict(w["interleave"]))
    assert tally.n == 300
    assert tally.wins > 1.5 * tally.losses, (tally.wins, tally.losses, tally.ties)


def test_rewards_on_interleaved_rankings_are_credited_to_the_team_that_placed_the_clicked_items(procs, tmp_path):
    """Clicks with a reward (revenue: 2.0 per clicked item) on interleaved impressions: the router credits each
    rewarded impression's reward to the teams by the clicked items they placed, and the window holds the
    candidate's credit minus the baseline's per impression; the better candidate earns more."""
    router, url, bodies, answers = _interleaved_impressions(procs, tmp_path)
    rng = random.Random(5)
    posts, rewarded = [], 0
    for (_, h, raw), b in zip(answers, bodies):
        clicked = simulate_clicks(json.loads(raw)["ranking"], b["user"], rng)
        rewarded += bool(clicked)
        posts.append((f"{url}/feedback", {"feedback_id": h["x-feedback-id"], "clicks": clicked,
                                          "reward": 2.0 * len(clicked)}, {}))
    assert {s for s, _, _ in post_many(posts)} == {200}
    tally = InterleaveSummary()
    for w in summaries(router.url, "rank")["windows"]:
        if w["interleave"]:
            tally = tally.merge(InterleaveSummary.from_dict(w["interleave"]))
    assert tally.n == 300
    deltas = tally.reward_deltas
    assert deltas is not None and deltas.n == rewarded > 0      # impressions without a click are not credited
    # each credited difference is 2 x (candidate's clicked items - baseline's): its sum is twice the click margin
    assert deltas.mean() > 0 and deltas.sum % 2 == 0, (deltas.n, deltas.mean())


def test_feedback_refuses_forged_replayed_foreign_and_expired_ids(procs, tmp_path):
    """Feedback counts once per feedback id issued for that rollout: forged, altered, foreign or expired → 404,
    replayed → 409; a request_id names the prediction on the replica that answered it."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url),
                                             rollout_doc("other", v1.url, v2.url)])
    router = procs.router(cfg, "--feedback-ttl", "1s")
    base = f"{router.url}/v1/rollouts"
    with httpx.Client(timeout=10) as c:
        answer = c.post(f"{base}/fraud/predict", json={"features": {"age": 30}}, headers={"x-request-id": "rq-1"})
        fid = answer.headers["x-feedback-id"]
        foreign = c.post(f"{base}/other/feedback", json={"feedback_id": fid, "label": 1})
        assert foreign.status_code == 404 and "issued for rollout ml/fraud" in foreign.json()["detail"]
        first = c.post(f"{base}/fraud/feedback", json={"feedback_id": fid, "label": 1})
        assert first.status_code == 200 and first.json()["version"] == "v1" and first.json()["request_id"] == "rq-1"
        again = c.post(f"{base}/fraud/feedback", json={"feedback_id": fid, "label": 0})
        assert again.status_code == 409 and "rq-1" in again.json()["detail"]
        forged = c.post(f"{base}/fraud/feedback", json={"feedback_id": "f" * 32, "label": 1})
        assert forged.status_code == 404 and forged.json()["error"] == "unknown feedback_id"
        head, kid, payload, mac = fid.split(".")
        tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
        altered = c.post(f"{base}/fraud/feedback", json={"feedback_id": f"{head}.{kid}.{tampered}.{mac}", "label": 1})
        assert altered.status_code == 404 and "signature" in altered.json()["detail"]
        # the request id names the same prediction on the replica that answered it (credited already)
        by_rid = c.post(f"{base}/fraud/feedback", json={"request_id": "rq-1", "label": 1})
        assert by_rid.status_code == 409, by_rid.text
        other = c.post(f"{base}/fraud/predict", json={"features": {"age": 31}}, headers={"x-request-id": "rq-2"})
        by_rid = c.post(f"{base}/fraud/feedback", json={"request_id": "rq-2", "label": 1})
        assert by_rid.status_code == 200 and by_rid.json()["version"] == other.headers["x-model-version"]
        unknown = c.post(f"{base}/fraud/feedback", json={"request_id": "rq-9", "label": 1})
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown request_id"
        old = c.post(f"{base}/fraud/predict", json={"features": {"age": 30}}).headers["x-feedback-id"]
        time.sleep(1.3)
        late = c.post(f"{base}/fraud/feedback", json={"feedback_id": old, "clicks": []})
        assert late.status_code == 404 and late.json()["error"] == "expired feedback_id"
        for bad, field in (({"label": 1}, "feedback_id"), ({"feedback_id": fid}, "label, clicks or reward"),
                           ({"feedback_id": fid, "clicks": "x"}, "clicks"), ([1, 2], "JSON object"),
                           ({"feedback_id": fid, "label": 1, "clicks": []}, "not both"),
                           ({"feedback_id": fid, "reward": "12"}, "reward: expected a finite number"),
                           ({"feedback_id": 7, "label": 1}, "feedback_id")):
            r = c.post(f"{base}/fraud/feedback", json=bad)
            assert r.status_code == 400 and field in r.json()["detail"], r.text


def test_a_shared_key_lets_any_replica_accept_any_feedback_once(procs, tmp_path):
    """Two router processes with the same --feedback-key-file: every label for a prediction of one, posted to
    the other, is accepted once and joined to the right version and segment; a router with another key
    refuses it. Rotation: with the new key added first in the file, ids signed with the old one still count."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--mean", "0.9", "--std", "0.01")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=50)])
    keys = tmp_path / "keys"
    keys.write_text("old-key-0123456789abcdef\n")
    a = procs.router(cfg, "--feedback-key-file", str(keys))
    b = procs.router(cfg, "--feedback-key-file", str(keys))
    other = tmp_path / "other-keys"
    other.write_text("another-installation-key\n")
    stranger = procs.router(cfg, "--feedback-key-file", str(other))
    answers = post_many([(f"{a.url}/v1/rollouts/fraud/predict", {"features": {"age": 30, "gender": "fm"[i % 2]}},
                          {"x-user-id": f"u{i}"}) for i in range(70)])
    versions = [h["x-model-version"] for _, h, _ in answers]
    assert set(versions) == {"v1", "v2"}
    refused = httpx.post(f"{stranger.url}/v1/rollouts/fraud/feedback",
                         json={"feedback_id": answers[0][1]["x-feedback-id"], "label": 1})
    assert refused.status_code == 404 and "unknown key" in refused.json()["detail"]
    posted = post_many([(f"{b.url}/v1/rollouts/fraud/feedback", {"feedback_id": h["x-feedback-id"], "label": 1}, {})
                        for _, h, _ in answers[:60]])
    assert [s for s, _, _ in posted] == [200] * 60
    assert [json.loads(raw)["version"] for _, _, raw in posted] == versions[:60]
    again = httpx.post(f"{b.url}/v1/rollouts/fraud/feedback", json={"feedback_id": answers[0][1]["x-feedback-id"],
                                                                    "label": 1})
    assert again.status_code == 409
    cand = VersionWindow.new("score")
    for w in summaries(b.url, "fraud")["windows"]:
        cand = cand.merge(VersionWindow.from_dict(w["candidate"]))
    n_cand = {g: sum(1 for i, v in enumerate(versions[:60]) if v == "v2" and "fm"[i % 2] == g) for g in "fm"}
    assert cand.segments.accuracy("gender") == {g: (n_cand[g], n_cand[g]) for g in "fm" if n_cand[g]}
    # rotation: the new key first (it signs), the old one still verifies; both routers re-read the file
    old_kid = answers[0][1]["x-feedback-id"].split(".")[1]
    keys.write_text("new-key-0123456789abcdef\nold-key-0123456789abcdef\n")

    def new_id(router):
        fid = httpx.post(f"{router.url}/v1/rollouts/fraud/predict", json={"features": {"age": 1}}).headers["x-feedback-id"]
        return fid if fid.split(".")[1] != old_kid else None

    fid = wait_until(lambda: new_id(b), 10, what="b signing with the new key")
    wait_until(lambda: new_id(a), 10, what="a signing with the new key")
    assert httpx.post(f"{a.url}/v1/rollouts/fraud/feedback", json={"feedback_id": fid, "label": 0}).status_code == 200
    late = post_many([(f"{b.url}/v1/rollouts/fraud/feedback", {"feedback_id": h["x-feedback-id"], "label": 1}, {})
                      for _, h, _ in answers[60:]])
    assert [s for s, _, _ in late] == [200] * 10           # signed with the old key before the rotation


def test_labels_join_their_prediction_by_segment(procs, tmp_path):
    """A label is counted against the version and segment values of the prediction it answers."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--mean", "0.9", "--std", "0.01")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=50)])
    router = procs.router(cfg)
    base = f"{router.url}/v1/rollouts/fraud"
    answers = post_many([(f"{base}/predict", {"features": {"age": 30, "gender": "fm"[i % 2]}}, {"x-user-id": f"u{i}"})
                         for i in range(200)])
    versions = [h["x-model-version"] for _, h, _ in answers]
    posted = post_many([(f"{base}/feedback", {"feedback_id": h["x-feedback-id"], "label": 1}, {})
                        for _, h, _ in answers])
    assert {s for s, _, _ in posted} == {200}
    cand = VersionWindow.new("score")
    for w in summaries(router.url, "fraud")["windows"]:
        cand = cand.merge(VersionWindow.from_dict(w["candidate"]))
    acc = cand.segments.accuracy("gender")
    n_cand = {g: sum(1 for i, v in enumerate(versions) if v == "v2" and "fm"[i % 2] == g) for g in "fm"}
    # v2 scores ~0.9 (predicted positive) and every label is 1: all its labelled predictions are correct
    assert {g: acc[g] for g in acc} == {g: (n_cand[g], n_cand[g]) for g in "fm" if n_cand[g]}


def test_rewards_join_their_prediction_with_the_propensity_of_its_arm(procs, tmp_path):
    """A reward (alone or with a label) is counted in the summaries of the version that answered, and its log
    record, like the answer's own, carries the probability with which the router chose that version: the
    canary's 30% share for the candidate, 70% for the baseline. replay --estimate reward recovers each version's mean reward."""
    import json
    import signal

    from modelrollout.replay import reward_estimates
    from policies.spec import parse_rollout
    from router.predlog import read_records

    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--mean", "0.9", "--std", "0.01")
    doc = rollout_doc("shop", v1.url, v2.url, weight=30)
    logs = tmp_path / "log"
    router = procs.router(write_config(tmp_path / "r.yaml", [doc]), "--log-dir", str(logs))
    base = f"{router.url}/v1/rollouts/shop"
    answers = post_many([(f"{base}/predict", {"features": {"age": 30}}, {"x-user-id": f"u{i}"}) for i in range(300)])
    reward_of = {"v1": 1.0, "v2": 3.0}
    posts = []
    for i, (_, h, _) in enumerate(answers):
        fb = {"request_id": h["x-request-id"], "reward": reward_of[h["x-model-version"]]}
        if i % 3 == 0:
            fb["label"] = 1
        posts.append((f"{base}/feedback", fb, {}))
    replies = post_many(posts)
    assert {s for s, _, _ in replies} == {200}
    assert {json.loads(b)["kind"] for _, _, b in replies} == {"reward", "label"}
    served = {v: sum(h["x-model-version"] == v for _, h, _ in answers) for v in ("v1", "v2")}

    def windows_when_served():          # 503 "try again" while a busy machine's worker has not answered yet
        try:
            return summaries(router.url, "shop")["windows"]
        except httpx.HTTPStatusError as e:
            if e.response.status_code != 503:
                raise
            return None
    windows = wait_until(windows_when_served, timeout=60, every=1.0, what="summaries served")
    merged = {arm: VersionWindow.new("score") for arm in ("baseline", "candidate")}
    for w in windows:
        for arm in merged:
            merged[arm] = merged[arm].merge(VersionWindow.from_dict(w[arm]))
    assert merged["baseline"].reward.n == served["v1"] and merged["baseline"].reward.mean() == 1.0
    assert merged["candidate"].reward.n == served["v2"] and merged["candidate"].reward.mean() == 3.0
    assert router.stop(signal.SIGTERM) == 0
    records = list(read_records(logs))
    feedback = [r for r in records if r.role == "feedback"]
    assert len(feedback) == 300
    assert {(r.arm, r.propensity) for r in feedback} == {("baseline", 0.7), ("candidate", 0.3)}
    # every answer is logged with the same probability, so a log without feedback can be reweighted too
    answered = [r for r in records if r.role == "primary"]
    assert len(answered) == 300
    assert {(r.arm, r.propensity) for r in answered} == {("baseline", 0.7), ("candidate", 0.3)}
    est = reward_estimates(parse_rollout(doc).spec, feedback)
    # IPW of a constant reward per version: the version's share of the log over its propensity, times it
    assert est["candidate"]["snipw"] == pytest.approx(3.0) and est["baseline"]["snipw"] == pytest.approx(1.0)
    assert est["candidate"]["ipw"] == pytest.approx(3.0 * served["v2"] / 300 / 0.3)
