"""Every bad input or failing model gets a clear JSON error with the right status, never a 500."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from modelrollout.models.proc import free_port
from tests.router_support import body, metric_value, rollout_doc, write_config


def _error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    doc = r.json()
    assert set(doc) == {"error", "detail"}
    for w in words:
        assert w in doc["detail"] or w in doc["error"], (w, doc)
    return doc


def test_client_errors_are_named_4xx(procs, tmp_path):
    """Malformed JSON → 400, a body over --max-body → 413, unknown rollout → 404, bad summaries window → 400."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url),
                                             rollout_doc("fraud", v1.url, v2.url, namespace="other")])
    router = procs.router(cfg, "--max-body", "2048")
    url = f"{router.url}/v1/rollouts/fraud/predict?namespace=ml"
    with httpx.Client(timeout=10) as c:
        _error(c.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400, "not valid JSON")
        _error(c.post(url, content=b""), 400, "not valid JSON")
        _error(c.post(url, content=b'{"features": "' + b"x" * 4096 + b'"}'), 413, "2048")
        _error(c.post(f"{router.url}/v1/rollouts/nope/predict", json=body()), 404, "'nope'", "ml/fraud")
        _error(c.post(f"{router.url}/v1/rollouts/fraud/predict", json=body()), 400, "ml, other", "namespace")
        _error(c.post(f"{router.url}/v1/rollouts/fraud/feedback?namespace=nope", json={}), 404, "nope")
        _error(c.get(f"{router.url}/v1/rollouts/fraud/summaries", params={"namespace": "ml", "start": "soon"}),
               400, "start", "'soon'")
        _error(c.get(f"{router.url}/v1/rollouts/fraud/summaries", params={"namespace": "ml", "end": "nan"}),
               400, "end")
        _error(c.get(f"{router.url}/no/such/path"), 404, "/no/such/path")
        _error(c.post(url, json=body(), headers={"x-request-id": "x" * 500}), 400, "x-request-id")
        assert c.post(url, json=body()).status_code == 200


def test_failing_models_are_502_or_504_and_counted(procs, tmp_path):
    """An unreachable model → 502, a model slower than spec.timeout → 504, a model 500 → 502; each is
    counted as that version's error in the summaries and metrics."""
    slow = procs.scorer("v2", "--latency-ms", "2000")
    broken = procs.scorer("v3", "--error-rate", "1")
    down = f"http://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "r.yaml", [
        rollout_doc("down", down, slow.url, timeout="300ms"),
        rollout_doc("slow", slow.url, down, timeout="300ms"),
        rollout_doc("broken", broken.url, down, versions=("v3", "v4"))])
    router = procs.router(cfg)
    with httpx.Client(timeout=10) as c:
        doc = _error(c.post(f"{router.url}/v1/rollouts/down/predict", json=body()), 502, "v1")
        assert doc["error"] == "model unreachable"
        doc = _error(c.post(f"{router.url}/v1/rollouts/slow/predict", json=body()), 504, "0.3s")
        assert doc["error"] == "model timeout"
        r = c.post(f"{router.url}/v1/rollouts/broken/predict", json=body())
        _error(r, 502, "500")
        assert r.headers["x-model-version"] == "v3"
        text = c.get(f"{router.url}/metrics").text
        sums = {name: c.get(f"{router.url}/v1/rollouts/{name}/summaries").json()["windows"]
                for name in ("down", "slow", "broken")}
    assert metric_value(text, "modelrollout_router_errors_total", rollout="down", kind="unreachable") == 1
    assert metric_value(text, "modelrollout_router_errors_total", rollout="slow", kind="timeout") == 1
    assert metric_value(text, "modelrollout_router_errors_total", rollout="broken", kind="http_5xx") == 1
    assert sums["down"][0]["baseline"]["errors"]["unreachable"] == 1
    assert sums["slow"][0]["baseline"]["errors"]["timeout"] == 1
    assert sums["broken"][0]["baseline"]["errors"]["http_5xx"] == 1


def test_nan_and_missing_outputs_count_as_invalid_output(procs, tmp_path):
    """A 200 answer whose prediction is NaN or absent is passed through but counted as invalid_output."""
    nan = procs.scorer("v1", "--nan-rate", "1")
    ok = procs.scorer("v2")
    doc = rollout_doc("fraud", nan.url, ok.url)
    doc["spec"]["output"]["path"] = "result.score"
    cfg = write_config(tmp_path / "r.yaml", [doc, rollout_doc("nan", nan.url, ok.url)])
    router = procs.router(cfg)
    with httpx.Client(timeout=10) as c:
        assert c.post(f"{router.url}/v1/rollouts/fraud/predict", json=body()).status_code == 200
        assert c.post(f"{router.url}/v1/rollouts/nan/predict", json=body()).status_code == 200
        for name in ("fraud", "nan"):
            w = c.get(f"{router.url}/v1/rollouts/{name}/summaries").json()["windows"]
            assert w[0]["baseline"]["errors"]["invalid_output"] == 1


def test_fuzzed_requests_never_get_a_server_error(procs, tmp_path):
    """Schemathesis-generated requests against every documented operation never get a 5xx from the router."""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=50)])
    router = procs.router(cfg)
    st = Path(sys.executable).with_name("st")
    # Aim the generated bodies, headers and ids at a served rollout (unknown names are covered above).
    (tmp_path / "schemathesis.toml").write_text('[parameters]\n"path.name" = "fraud"\n"query.namespace" = "ml"\n')
    run = subprocess.run(
        [str(st), "run", f"{router.url}/openapi.json", "--url", router.url, "--checks", "not_a_server_error",
         "--max-examples", "40", "--seed", "1", "--workers", "1", "--phases", "examples,fuzzing",
         "--request-timeout", "10"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    text = httpx.get(f"{router.url}/metrics").text
    assert metric_value(text, "modelrollout_router_requests_total", rollout="fraud") > 20   # models were reached
    assert metric_value(text, "modelrollout_router_feedback_total", rollout="fraud") > 5


def test_an_unreadable_upstream_ca_stops_the_router_with_its_path(tmp_path):
    """`--upstream-ca` naming a missing or non-PEM file exits 2 at startup and names the file."""
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", "https://127.0.0.1:1", "https://127.0.0.1:2")])
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    for ca in (tmp_path / "missing.pem", bogus):
        run = subprocess.run([sys.executable, "-m", "router.server", "--config", str(cfg), "--port",
                              str(free_port()), "--upstream-ca", str(ca)], capture_output=True, text=True,
                             timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert run.returncode == 2, run.stderr
        assert str(ca) in run.stderr and "CA" in run.stderr
