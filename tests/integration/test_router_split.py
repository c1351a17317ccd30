"""Traffic splitting through a real router process to real model processes on loopback."""
from __future__ import annotations

import math
import threading

import httpx

from tests.router_support import body, post_many, rollout_doc, wait_until, write_config


def _versions(results) -> list[str]:
    return [h["x-model-version"] for status, h, _ in results]


def test_weight_split_within_binomial_tolerance(procs, tmp_path):
    """Without a sticky key, the candidate's share of answers matches candidateWeight within 4 sigma."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2", "--shift", "0.1")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=25, sticky=None)])
    router = procs.router(cfg)
    n = 2000
    url = f"{router.url}/v1/rollouts/fraud/predict"
    results = post_many([(url, body(i=i), {}) for i in range(n)])
    assert all(status == 200 for status, _, _ in results)
    share = _versions(results).count("v2") / n
    sigma = math.sqrt(0.25 * 0.75 / n)
    assert abs(share - 0.25) < 4 * sigma, share


def test_sticky_key_keeps_its_version_and_raising_weight_only_moves_keys_to_candidate(procs, tmp_path):
    """A stickiness key always gets the same version, and raising the weight never moves a key back."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=20)])
    router = procs.router(cfg)
    url = f"{router.url}/v1/rollouts/fraud/predict"
    users = [f"user-{i}" for i in range(300)]
    first = _versions(post_many([(url, body(i=i), {"x-user-id": u}) for i, u in enumerate(users)]))
    again = _versions(post_many([(url, body(i=i + 1), {"x-user-id": u}) for i, u in enumerate(users)]))
    assert first == again
    assert 0 < first.count("v2") < len(users)

    write_config(cfg, [rollout_doc("fraud", v1.url, v2.url, weight=60)])
    wait_until(lambda: httpx.get(f"{router.url}/metrics").text.count('candidate_weight{') and
               'modelrollout_router_candidate_weight{interleave="false",rollout="fraud",rollout_namespace="ml",shadow="false"}'
               ' 60.0' in httpx.get(f"{router.url}/metrics").text, what="weight 60 applied")
    later = _versions(post_many([(url, body(i=i), {"x-user-id": u}) for i, u in enumerate(users)]))
    assert all(b == "v2" for a, b in zip(first, later) if a == "v2"), "a candidate key went back to baseline"
    assert later.count("v2") > first.count("v2")


def test_promoted_rollout_and_missing_routing(procs, tmp_path):
    """Phase Promoted sends everything to the candidate; a rollout without status.routing is 100% baseline."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [
        rollout_doc("done", v1.url, v2.url, weight=10, phase="Promoted"),
        rollout_doc("fresh", v1.url, v2.url)])
    router = procs.router(cfg)
    done = post_many([(f"{router.url}/v1/rollouts/done/predict", body(i=i), {"x-user-id": f"u{i}"}) for i in range(50)])
    fresh = post_many([(f"{router.url}/v1/rollouts/fresh/predict", body(i=i), {"x-user-id": f"u{i}"})
                       for i in range(50)])
    assert set(_versions(done)) == {"v2"}
    assert set(_versions(fresh)) == {"v1"}


def test_request_id_is_kept_or_generated(procs, tmp_path):
    """The answer carries the client's x-request-id when sent, else a fresh unique one."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url)])
    router = procs.router(cfg)
    url = f"{router.url}/v1/rollouts/fraud/predict"
    assert httpx.post(url, json=body(), headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    ids = {httpx.post(url, json=body()).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_config_reload_changes_weight_without_dropping_requests(procs, tmp_path):
    """Rewriting the config file moves traffic to the new weight while every request keeps succeeding."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=0, sticky=None)])
    router = procs.router(cfg)
    url = f"{router.url}/v1/rollouts/fraud/predict"
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                r = c.post(url, json=body())
                statuses.append(r.status_code)
                versions.append(r.headers.get("x-model-version", "?"))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_until(lambda: len(statuses) > 100, what="traffic flowing")
        assert "v2" not in versions
        write_config(cfg, [rollout_doc("fraud", v1.url, v2.url, weight=100, sticky=None)])
        wait_until(lambda: versions[-20:].count("v2") == 20, what="all traffic on v2 after reload")
        write_config(cfg, [rollout_doc("fraud", v1.url, v2.url, weight=0, sticky=None)])
        wait_until(lambda: versions[-20:].count("v1") == 20, what="all traffic back on v1")
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert statuses and set(statuses) == {200}


def test_invalid_document_is_skipped_and_the_rest_served(procs, tmp_path):
    """One invalid ModelRollout in the file is logged with its path and skipped; the valid ones are served."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    bad = rollout_doc("broken", v1.url, v2.url)
    bad["spec"]["baseline"]["url"] = "ftp://nowhere"
    cfg = write_config(tmp_path / "r.yaml", [bad, rollout_doc("fraud", v1.url, v2.url)])
    router = procs.router(cfg)
    assert httpx.get(f"{router.url}/readyz").json()["rollouts"] == ["ml/fraud"]
    assert httpx.post(f"{router.url}/v1/rollouts/fraud/predict", json=body()).status_code == 200
    assert httpx.post(f"{router.url}/v1/rollouts/broken/predict", json=body()).status_code == 404
    assert "spec.baseline.url" in router.output()
