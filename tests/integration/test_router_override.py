"""The override header `x-modelrollout-version` through a real router to real model processes: off by default,
and when a router allows it, overridden answers are logged with a flag, counted apart and never analysed."""
from __future__ import annotations

import signal

import httpx

from policies.summaries import VersionWindow
from router.predlog import read_records
from tests.router_support import body, metric_value, post_many, rollout_doc, wait_until, write_config

OVERRIDE = "x-modelrollout-version"


def _requests(windows: list[dict], arm: str) -> int:
    out = VersionWindow.new("score")
    for w in windows:
        out = out.merge(VersionWindow.from_dict(w[arm]))
    return out.requests


def _windows(router_url: str) -> list[dict]:
    """The rollout's windows; [] while the router's idle-priority worker is too busy to answer (503)."""
    r = httpx.get(f"{router_url}/v1/rollouts/fraud/summaries", timeout=10)
    return r.json()["windows"] if r.status_code == 200 else []


def test_override_header_is_ignored_by_default(procs, tmp_path):
    """Without --allow-override a client cannot pick the version: the split decides, even for a version the
    header names, and those answers are analysed like any other."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=0)])
    router = procs.router(cfg, "--bucket", "1s")
    url = f"{router.url}/v1/rollouts/fraud/predict"
    answers = post_many([(url, body(i=i), {OVERRIDE: "v2"}) for i in range(40)])
    assert {h["x-model-version"] for _, h, _ in answers} == {"v1"}
    r = httpx.post(url, json=body(), headers={OVERRIDE: "v9"})   # not even read: no 400 for an unknown version
    assert r.status_code == 200 and r.headers["x-model-version"] == "v1"
    wait_until(lambda: _requests(_windows(router.url), "baseline") == 41, 20,
               what="every answer in the baseline's summaries")
    metrics = httpx.get(f"{router.url}/metrics").text
    assert metric_value(metrics, "modelrollout_router_override_requests_total") == 0
    assert metric_value(metrics, "modelrollout_router_requests_total", rollout="fraud", role="primary") == 41


def test_allowed_override_picks_the_version_and_stays_out_of_the_analysis(procs, tmp_path):
    """With --allow-override the header picks the version (an unknown one is a 400); the overridden answers
    are counted in their own metric, logged with override: true, left out of the summaries, and accept no
    feedback; the other requests of the same rollout are analysed as usual."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=0, shadow=True)])
    logs = tmp_path / "log"
    router = procs.router(cfg, "--allow-override", "--bucket", "1s", "--log-dir", str(logs), "--replica-id", "o")
    url = f"{router.url}/v1/rollouts/fraud/predict"
    forced = post_many([(url, body(i=i), {OVERRIDE: "v2", "x-request-id": f"forced-{i}"}) for i in range(30)])
    assert all(s == 200 and h["x-model-version"] == "v2" for s, h, _ in forced)
    normal = post_many([(url, body(i=i), {"x-request-id": f"normal-{i}"}) for i in range(20)])
    assert all(s == 200 and h["x-model-version"] == "v1" for s, h, _ in normal)
    bad = httpx.post(url, json=body(), headers={OVERRIDE: "v9"})
    assert bad.status_code == 400 and "v9" in bad.json()["detail"] and "v1" in bad.json()["detail"]

    # the shadow mirrors only the 20 routed requests: the candidate's 20 shadow answers, never the forced ones
    wait_until(lambda: metric_value(httpx.get(f"{router.url}/metrics").text, "modelrollout_router_requests_total",
                                    rollout="fraud", role="shadow") == 20, what="20 shadow calls")
    windows = wait_until(lambda: (lambda w: w if _requests(w, "baseline") >= 20 and _requests(w, "candidate") >= 20
                                  else None)(_windows(router.url)), 20, what="the routed answers in the summaries")
    assert _requests(windows, "baseline") == 20
    assert _requests(windows, "candidate") == 20          # shadow answers only
    metrics = httpx.get(f"{router.url}/metrics").text
    assert metric_value(metrics, "modelrollout_router_override_requests_total", rollout="fraud", version="v2",
                        code="200") == 30
    assert metric_value(metrics, "modelrollout_router_requests_total", rollout="fraud", role="primary") == 20

    assert not any("x-feedback-id" in h for _, h, _ in forced)      # an overridden answer takes no feedback
    accepted = httpx.post(f"{router.url}/v1/rollouts/fraud/feedback",
                          json={"feedback_id": normal[3][1]["x-feedback-id"], "label": True})
    assert accepted.status_code == 200 and accepted.json()["request_id"] == "normal-3", accepted.text

    assert router.stop(signal.SIGTERM) == 0
    records = list(read_records(logs))
    flagged = [r for r in records if r.override]
    assert sorted(r.request_id for r in flagged) == sorted(f"forced-{i}" for i in range(30))
    assert {(r.version, r.role) for r in flagged} == {("v2", "primary")}
    assert all(not r.override for r in records if r.request_id.startswith("normal-"))
