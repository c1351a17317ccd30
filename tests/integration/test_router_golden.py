"""`POST /v1/rollouts/NAME/golden` on `modelrollout router --config` with real model processes: both versions
answer every golden request (the same output extraction as live traffic: NaN and non-JSON answers are
`invalid_output`), the calls are counted apart and never reach the summaries or the live metrics, and bad
requests get a clear 4xx, never a 5xx."""
from __future__ import annotations

import math

import httpx

from tests.router_support import body, metric_value, rollout_doc, summaries, write_config


def _golden(router, name: str, payload, **params) -> httpx.Response:
    kw = {"json": payload} if not isinstance(payload, bytes) else {"content": payload}
    return httpx.post(f"{router.url}/v1/rollouts/{name}/golden", params=params, timeout=30, **kw)


def test_both_versions_answer_the_golden_set_and_nothing_is_analysed(procs, tmp_path):
    base = procs.scorer("v1", "--seed", "0")
    same = procs.scorer("v2", "--seed", "0")
    nan = procs.scorer("v3", "--seed", "0", "--nan-rate", "1")
    config = write_config(tmp_path / "rollouts.yaml", [
        rollout_doc("same", base.url, same.url, weight=0),
        rollout_doc("nan", base.url, nan.url, weight=0, versions=("v1", "v3"))])
    router = procs.router(config, "--bucket", "1s")
    requests = [body(age=20 + i, i=i) for i in range(10)]
    r = _golden(router, "same", {"revision": f"v2@{same.url}", "requests": requests}, namespace="ml")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["rollout"], doc["baseline"], doc["candidate"]) == ("same", "v1", "v2")
    assert len(doc["answers"]) == 10
    for pair in doc["answers"]:
        b, c = pair["baseline"], pair["candidate"]
        assert b["status"] == c["status"] == 200 and b["error"] is c["error"] is None
        assert isinstance(b["output"], float) and b["output"] == c["output"]     # same seed: same score
    # what the model process got: the golden header, nothing counted as live traffic
    for model in (base, same):
        counts = httpx.get(f"{model.url}/healthz", timeout=5).json()["requests"]
        assert counts == {"live": 0, "shadow": 0, "golden": 10}, counts
    nan_answers = _golden(router, "nan", {"revision": f"v3@{nan.url}", "requests": requests[:3]}).json()["answers"]
    assert [p["candidate"]["error"] for p in nan_answers] == ["invalid_output"] * 3
    assert all(p["candidate"]["output"] is None and math.isfinite(p["baseline"]["output"]) for p in nan_answers)
    # never analysed: no summary window holds a request; the live request counters stay at zero
    for name in ("same", "nan"):
        windows = summaries(router.url, name)["windows"]
        assert all((w.get(arm) or {}).get("requests", 0) == 0 for w in windows for arm in ("baseline", "candidate"))
    text = httpx.get(f"{router.url}/metrics", timeout=5).text
    assert metric_value(text, "modelrollout_router_requests_total") == 0
    assert metric_value(text, "modelrollout_router_golden_requests_total", rollout="same", version="v2",
                        code="200") == 10
    assert metric_value(text, "modelrollout_router_golden_requests_total", rollout="nan") == 6


def test_golden_requests_that_cannot_be_served_get_clear_errors(procs, tmp_path):
    base = procs.scorer("v1")
    cand = procs.scorer("v2")
    config = write_config(tmp_path / "rollouts.yaml", [rollout_doc("fraud", base.url, cand.url, weight=0)])
    router = procs.router(config, "--max-body", "200")
    revision = f"v2@{cand.url}"
    cases = {
        "stale revision": ({"revision": "v9@http://other", "requests": [body()]}, 409, "revision mismatch"),
        "not JSON": (b"{", 400, "malformed JSON"),
        "no requests": ({"revision": revision, "requests": []}, 400, "invalid golden set"),
        "not an object": ([1, 2], 400, "invalid golden set"),
        "over --max-body": ({"revision": revision, "requests": [{"x": "a" * 300}]}, 400, "invalid golden set"),
    }
    for what, (payload, status, error) in cases.items():
        r = _golden(router, "fraud", payload)
        assert (r.status_code, r.json()["error"]) == (status, error), (what, r.text)
    r = _golden(router, "nobody", {"revision": revision, "requests": [body()]})
    assert r.status_code == 404 and r.json()["error"] == "unknown rollout"
    for model in (base, cand):
        assert httpx.get(f"{model.url}/healthz", timeout=5).json()["requests"]["golden"] == 0
