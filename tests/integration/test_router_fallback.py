"""spec.fallback on a real router in front of real model processes: a failing version's caller gets the
fallback's answer (static, or a real heuristic service's), marked with x-modelrollout-fallback; the version's
failure is recorded and summarised exactly as without a fallback; a fallback that fails too is one clear
502, never a 500 or a stack trace. Both the predict API and transparent mode (`spec.service`)."""
from __future__ import annotations

import httpx

from modelrollout.models.proc import free_port
from tests.router_support import body, metric_value, rollout_doc, write_config

STATIC = {"prediction": 0.05, "source": "fallback"}


def with_fallback(doc: dict, fallback: dict, service: str | None = None) -> dict:
    doc["spec"]["fallback"] = fallback
    if service:
        doc["spec"]["service"] = {"name": service, "port": 8080}
    return doc


def test_failing_versions_are_answered_by_the_fallback_and_still_count(procs, tmp_path):
    """5xx, NaN, garbage, timeout and unreachable versions: 200 with the fallback's answer and the reason in
    x-modelrollout-fallback, no feedback id; summaries and error metrics count each version's failure; the
    fallback counter counts the answers it gave; the prediction log flags the records."""
    broken = procs.scorer("v1", "--error-rate", "1")
    nan = procs.scorer("v2", "--nan-rate", "1")
    garbage = procs.scorer("v3", "--garbage-rate", "1")
    slow = procs.scorer("v4", "--latency-ms", "2000")
    heuristic = procs.scorer("heuristic", "--seed", "7")
    down = f"http://127.0.0.1:{free_port()}"
    url = {"url": f"{heuristic.url}/predict", "timeout": "2s"}
    cfg = write_config(tmp_path / "r.yaml", [
        with_fallback(rollout_doc("e5xx", broken.url, nan.url, weight=0), {"static": STATIC}),
        with_fallback(rollout_doc("nan", nan.url, broken.url, weight=0), url),
        with_fallback(rollout_doc("garbage", garbage.url, broken.url, weight=0), url),
        with_fallback(rollout_doc("slow", slow.url, broken.url, weight=0, timeout="300ms"), {"static": STATIC}),
        with_fallback(rollout_doc("down", down, broken.url, weight=0), url),
        rollout_doc("plain", broken.url, nan.url, weight=0)])
    router = procs.router(cfg, "--log-dir", str(tmp_path / "log"))
    expected = {"e5xx": "http_5xx", "nan": "invalid_output", "garbage": "invalid_output", "slow": "timeout",
                "down": "unreachable"}
    with httpx.Client(timeout=10) as c:
        for name, reason in expected.items():
            for i in range(3):
                r = c.post(f"{router.url}/v1/rollouts/{name}/predict", json=body(i=i))
                assert r.status_code == 200, (name, r.status_code, r.text)
                assert r.headers["x-modelrollout-fallback"] == reason, (name, r.headers)
                assert "x-feedback-id" not in r.headers and r.headers["x-request-id"]
                if name in ("e5xx", "slow"):
                    assert r.json() == STATIC
                else:
                    assert r.json()["version"] == "heuristic" and 0 <= r.json()["prediction"] <= 1
        # without a fallback the failure reaches the caller as before
        r = c.post(f"{router.url}/v1/rollouts/plain/predict", json=body())
        assert r.status_code == 502 and "x-modelrollout-fallback" not in r.headers
        text = c.get(f"{router.url}/metrics").text
        windows = {name: c.get(f"{router.url}/v1/rollouts/{name}/summaries").json()["windows"] for name in expected}
    for name, reason in expected.items():
        assert metric_value(text, "modelrollout_router_fallback_total", rollout=name, reason=reason,
                            result="served") == 3, name
        assert metric_value(text, "modelrollout_router_errors_total", rollout=name, kind=reason) == 3, name
        errors = sum(w["baseline"]["errors"][reason] for w in windows[name])
        requests = sum(w["baseline"]["requests"] for w in windows[name])
        assert (errors, requests) == (3, 3), (name, windows[name])
    assert metric_value(text, "modelrollout_router_fallback_total", rollout="plain") == 0
    procs.stop_all()                      # the worker writes and fsyncs the log on SIGTERM
    lines = [line for f in sorted((tmp_path / "log").glob("*.jsonl")) for line in f.read_text().splitlines()]
    flagged = [line for line in lines if '"fallback":"served"' in line]
    assert len(flagged) == 15 and all('"role":"primary"' in line for line in flagged)


def test_a_failing_fallback_is_one_clear_502(procs, tmp_path):
    """The version fails and so does the fallback (unreachable, an error, no valid prediction): 502
    `fallback failed` naming both, counted as result=failed; never a 500."""
    broken = procs.scorer("v1", "--error-rate", "1")
    fb_broken = procs.scorer("fb", "--error-rate", "1")
    fb_nan = procs.scorer("fb2", "--nan-rate", "1")
    down = f"http://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "r.yaml", [
        with_fallback(rollout_doc("fb-down", broken.url, broken.url, weight=0), {"url": f"{down}/predict"}),
        with_fallback(rollout_doc("fb-5xx", broken.url, broken.url, weight=0), {"url": f"{fb_broken.url}/predict"}),
        with_fallback(rollout_doc("fb-nan", broken.url, broken.url, weight=0), {"url": f"{fb_nan.url}/predict"}),
        with_fallback(rollout_doc("svc", broken.url, broken.url, weight=0), {"url": f"{down}/predict"}, "scorer")])
    router = procs.router(cfg)
    with httpx.Client(timeout=10) as c:
        for name, words in (("fb-down", "unreachable"), ("fb-5xx", "HTTP 500"), ("fb-nan", "no valid JSON")):
            r = c.post(f"{router.url}/v1/rollouts/{name}/predict", json=body())
            assert r.status_code == 502, r.text
            doc = r.json()
            assert doc["error"] == "fallback failed" and "'v1' answered HTTP 500" in doc["detail"], doc
            assert words in doc["detail"] and "Traceback" not in r.text, doc
            assert r.headers["x-modelrollout-fallback"] == "http_5xx"
        r = c.post(f"{router.url}/predict", json=body(), headers={"host": "scorer"})
        assert r.status_code == 502 and r.json()["error"] == "fallback failed", r.text
        text = c.get(f"{router.url}/metrics").text
    assert metric_value(text, "modelrollout_router_fallback_total", result="failed") == 4
    assert metric_value(text, "modelrollout_router_fallback_total", result="served") == 0


def test_transparent_mode_answers_with_the_fallback(procs, tmp_path):
    """A rollout answering as a Service: a 5xx, NaN or unreachable version's predictPath answer is replaced
    by the fallback's (the caller's headers reach the fallback service); a good answer passes unchanged;
    other paths are passed through as before (no fallback)."""
    broken = procs.scorer("v1", "--error-rate", "1")
    nan = procs.scorer("v2", "--nan-rate", "1")
    good = procs.scorer("v3")
    fb = procs.echo("fb")                   # answers the request it received, with a prediction
    down = f"http://127.0.0.1:{free_port()}"
    url = {"url": f"{fb.url}/predict"}
    cfg = write_config(tmp_path / "r.yaml", [
        with_fallback(rollout_doc("a", broken.url, good.url, weight=0), url, "svc-5xx"),
        with_fallback(rollout_doc("b", nan.url, good.url, weight=0), {"static": STATIC}, "svc-nan"),
        with_fallback(rollout_doc("c", down, good.url, weight=0), url, "svc-down"),
        with_fallback(rollout_doc("d", good.url, broken.url, weight=0), url, "svc-good")])
    router = procs.router(cfg)
    with httpx.Client(timeout=10) as c:
        r = c.post(f"{router.url}/predict", json=body(), headers={"host": "svc-5xx", "authorization": "Bearer t"})
        assert r.status_code == 200 and r.headers["x-modelrollout-fallback"] == "http_5xx", r.text
        seen = {k.lower(): v for k, v in r.json()["headers"]}
        assert r.json()["version"] == "fb" and seen["authorization"] == "Bearer t", r.json()
        r = c.post(f"{router.url}/predict", json=body(), headers={"host": "svc-nan"})
        assert r.status_code == 200 and r.json() == STATIC and r.headers["x-modelrollout-fallback"] == "invalid_output"
        r = c.post(f"{router.url}/predict", json=body(), headers={"host": "svc-down"})
        assert r.status_code == 200 and r.headers["x-modelrollout-fallback"] == "unreachable", r.text
        r = c.post(f"{router.url}/predict", json=body(), headers={"host": "svc-good"})
        assert r.status_code == 200 and "x-modelrollout-fallback" not in r.headers
        assert r.json()["version"] == "v3" and r.headers["x-model-version"] == "v1"
        r = c.get(f"{router.url}/healthz-of-model", headers={"host": "svc-5xx"})
        assert "x-modelrollout-fallback" not in r.headers
        text = c.get(f"{router.url}/metrics").text
        w = c.get(f"{router.url}/v1/rollouts/a/summaries").json()["windows"]
    assert sum(x["baseline"]["errors"]["http_5xx"] for x in w) == 1
    assert metric_value(text, "modelrollout_router_fallback_total", result="served") == 3
