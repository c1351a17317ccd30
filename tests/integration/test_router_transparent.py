"""Transparent mode through a real router to real model processes that echo what they received
(modelrollout.models.echo): the Host names the rollout's Service, everything else passes through."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket

import httpx
import pytest

from policies.summaries import VersionWindow
from router.predlog import read_records
from tests.router_support import metric_value, metrics_once, rollout_doc, wait_until, write_config


def _doc(name: str, baseline: str, candidate: str, service: str | None = None, namespace: str = "ml", **kw) -> dict:
    doc = rollout_doc(name, baseline, candidate, namespace=namespace, **kw)
    doc["spec"]["service"] = {"name": service or name, "port": 8080}
    return doc


def _request(port: int, method: str, path: str, headers: list[tuple[str, str]], body=None,
             chunked: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request with exactly these header fields (http.client adds none); (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body, encode_chunked=chunked)
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def _get(port: int, host: str, path: str = "/echo") -> tuple[int, dict, bytes]:
    status, headers, body = _request(port, "GET", path, [("Host", host)])
    return status, dict(headers), body


def test_host_names_the_rollout_in_all_four_forms_with_any_port(procs, tmp_path):
    """name, name.ns, name.ns.svc and name.ns.svc.<domain>, with or without a port, in any case, reach the
    rollout's version; another rollout's Service reaches its own; a bare name two namespaces share is a 421;
    any other Host reaches the router's own API, whose predict route still works."""
    v1, v2, v3, v4 = procs.echo("v1"), procs.echo("v2"), procs.echo("v3"), procs.echo("v4")
    cfg = write_config(tmp_path / "r.yaml", [
        _doc("fraud", v1.url, v2.url, weight=0),
        _doc("ranker", v3.url, v2.url, service="scorer", weight=0),
        _doc("fraud", v4.url, v2.url, namespace="ops", service="shared", weight=0),
        _doc("other", v2.url, v1.url, service="shared", weight=0)])
    router = procs.router(cfg)
    for host in ("fraud", "fraud:8080", "fraud.ml", "fraud.ml:80", "fraud.ml.svc", "fraud.ml.svc:8080",
                 "fraud.ml.svc.cluster.local", "fraud.ml.svc.cluster.local:8080", "FRAUD.ML.SVC.cluster.local.",
                 "fraud.ml.svc.example.internal:31000"):
        status, headers, body = _get(router.port, host)
        assert status == 200, (host, body)
        assert headers["x-echo-version"] == "v1" and headers["x-model-version"] == "v1", host
        assert json.loads(body)["path"] == "/echo"
    assert _get(router.port, "scorer.ml.svc")[1]["x-echo-version"] == "v3"
    status, _, body = _get(router.port, "shared")
    assert status == 421 and json.loads(body)["error"] == "ambiguous host" and "ml, ops" in json.loads(body)["detail"]
    assert _get(router.port, "shared.ops")[1]["x-echo-version"] == "v4"
    assert _get(router.port, "shared.ml.svc.cluster.local")[1]["x-echo-version"] == "v2"
    # not a rollout's Service: the router's own API
    for host in (f"127.0.0.1:{router.port}", "fraud.elsewhere", "fraud.ml.example.com", "unknown"):
        status, headers, body = _get(router.port, host, "/healthz")
        assert status == 200 and json.loads(body) == {"ok": True} and "x-model-version" not in headers, host
    r = httpx.post(f"{router.url}/v1/rollouts/ranker/predict", json={"features": {"age": 3}})
    assert r.status_code == 200 and r.json()["version"] == "v3" and "prediction" in r.json()


def test_every_method_path_and_query_reach_the_model_unchanged(procs, tmp_path):
    v1 = procs.echo("v1")
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v1.url, weight=0)]))
    path = "/a/b%20c/%2F/x;p=1?q=1&q=2&x=%20y&empty="
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        body = b"payload" if method in ("POST", "PUT", "PATCH") else None
        status, _, answer = _request(router.port, method, path, [("Host", "fraud")], body)
        seen = json.loads(answer)
        assert status == 200 and seen["method"] == method and seen["path"] == path, (method, seen)
        assert seen["body_length"] == (len(body) if body else 0)
    status, headers, answer = _request(router.port, "HEAD", path, [("Host", "fraud")])
    assert status == 200 and answer == b"" and int(dict(headers)["content-length"]) > 0
    # the connection used for HEAD is not reused for a body it will never see: the next request is fine
    assert json.loads(_request(router.port, "GET", "/after", [("Host", "fraud")])[2])["path"] == "/after"


def test_end_to_end_headers_pass_and_hop_by_hop_headers_are_removed_both_ways(procs, tmp_path):
    v1 = procs.echo("v1")
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v1.url, weight=0)]))
    sent = [("Host", "fraud.ml.svc.cluster.local:8080"), ("Authorization", "Bearer s3cr3t"),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("tracestate", "congo=t61rcWkgMzE"), ("baggage", "userId=alice,serverNode=DF%2028"),
            ("Cookie", "session=abc"), ("X-Custom", "kept"), ("X-Forwarded-For", "203.0.113.7"),
            ("Connection", "keep-alive, X-Hop-A"), ("X-Hop-A", "must go"), ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"), ("Proxy-Connection", "keep-alive")]
    status, headers, answer = _request(router.port, "POST", "/echo", sent, b"x")
    assert status == 200
    seen = {}
    for k, v in json.loads(answer)["headers"]:
        seen.setdefault(k.lower(), []).append(v)
    for k, v in sent[1:8]:
        if k != "X-Forwarded-For":
            assert seen[k.lower()] == [v], k
    assert seen["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert seen["x-forwarded-host"] == ["fraud.ml.svc.cluster.local:8080"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["host"] == [v1.url.removeprefix("http://")]
    for hop in ("connection", "x-hop-a", "keep-alive", "te", "proxy-connection", "transfer-encoding"):
        assert hop not in seen, hop
    assert seen["x-modelrollout-via"] == ["ml/fraud"]
    back = dict(headers)
    assert back["set-cookie"] == "echo=v1; Path=/" and back["x-echo-version"] == "v1"
    # the echo answers "Connection: x-echo-hop", "x-echo-hop: 1" and "Keep-Alive: timeout=5": none reach the client
    assert "x-echo-hop" not in back and "keep-alive" not in back
    assert back.get("connection", "") in ("", "keep-alive"), back


def test_non_json_bodies_of_any_size_pass_both_ways_unchanged(procs, tmp_path):
    """Binary bodies larger than --max-body (not a predict request: nothing is held whole), in both
    framings the client may use, come back byte for byte with their content type."""
    v1 = procs.echo("v1")
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v1.url, weight=0)]),
                          "--max-body", "64KiB")
    blob = os.urandom(3 * 1024 * 1024 + 17)
    headers = [("Host", "fraud"), ("Content-Type", "application/x-protobuf")]
    status, back, answer = _request(router.port, "POST", "/raw", headers, blob)
    assert status == 200 and answer == blob and dict(back)["content-type"] == "application/x-protobuf"
    pieces = [blob[i:i + 100_000] for i in range(0, len(blob), 100_000)]
    status, back, answer = _request(router.port, "PUT", "/raw", headers, iter(pieces), chunked=True)
    assert status == 200 and answer == blob
    status, _, answer = _request(router.port, "POST", "/upload", [("Host", "fraud")], iter(pieces), chunked=True)
    seen = json.loads(answer)
    assert seen["body_length"] == len(blob) and seen["body_sha256"] == hashlib.sha256(blob).hexdigest()


def test_a_streamed_request_body_reaches_the_model_before_the_client_finishes_it(procs, tmp_path):
    """The router forwards each piece of a chunked upload as it comes: the model has the first piece while
    the client still holds back the rest (which it sends only once the model reports the first one)."""
    v1 = procs.echo("v1")
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v1.url, weight=0)]))
    token, first, rest = "up-1", b"a" * 5000, b"b" * 7000

    def body():
        yield first
        wait_until(lambda: httpx.get(f"{v1.url}/seen", params={"token": token}).json()["bytes"] >= len(first),
                   20, what="the model received the first piece before the client sent the rest")
        yield rest

    status, _, answer = _request(router.port, "POST", f"/upload?token={token}", [("Host", "fraud")], body(),
                                 chunked=True)
    seen = json.loads(answer)
    assert status == 200 and seen["body_length"] == len(first) + len(rest) and len(seen["pieces"]) >= 2


def test_a_streamed_answer_reaches_the_client_before_the_model_finishes_it(procs, tmp_path):
    """The model sends its first chunk and then waits to be released; the client reads that chunk through the
    router first (a router that held the answer whole would deliver nothing), then releases the rest."""
    v1 = procs.echo("v1")
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v1.url, weight=0)]))
    token = "down-1"
    with socket.create_connection(("127.0.0.1", router.port), timeout=20) as sock:
        sock.sendall(f"GET /stream?chunks=3&size=1000&token={token} HTTP/1.1\r\nHost: fraud\r\n\r\n".encode())
        conn = http.client.HTTPResponse(sock)
        conn.begin()
        assert conn.status == 200 and conn.getheader("transfer-encoding") == "chunked"
        assert conn.read(1000) == b"A" * 1000           # before the model produced the rest
        assert httpx.get(f"{v1.url}/release", params={"token": token}).json() == {"released": True}
        assert conn.read() == b"B" * 1000 + b"C" * 1000


def _windows(router_url: str, name: str) -> list[dict]:
    r = httpx.get(f"{router_url}/v1/rollouts/{name}/summaries", timeout=10)
    return r.json()["windows"] if r.status_code == 200 else []     # 503: the idle worker is busy, ask again


def _requests(windows: list[dict]) -> dict[str, int]:
    out = {}
    for arm in ("baseline", "candidate"):
        total = VersionWindow.new("score")
        for w in windows:
            total = total.merge(VersionWindow.from_dict(w[arm]))
        out[arm] = total.requests
    return out


def test_sticky_split_records_predict_requests_and_counts_the_rest(procs, tmp_path):
    """The split is sticky per user as on the API; predictPath requests with a JSON answer are recorded (and
    accept feedback), every other request is only counted per rollout."""
    v1, v2 = procs.echo("v1"), procs.echo("v2")
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v2.url, weight=50)]),
                          "--bucket", "1s")
    client = httpx.Client(base_url=router.url, headers={"Host": "fraud"}, timeout=10)
    users = [f"user-{i}" for i in range(120)]
    first = [client.post("/predict", json={"features": {"age": 20 + i % 40}}, headers={"x-user-id": u})
             for i, u in enumerate(users)]
    again = [client.post("/predict", json={"features": {"age": 30}}, headers={"x-user-id": u}) for u in users]
    versions = [r.headers["x-model-version"] for r in first]
    assert versions == [r.headers["x-model-version"] for r in again]
    assert 0 < versions.count("v2") < len(users)
    assert all(r.json()["prediction"] is not None and len(r.headers["x-request-id"]) == 32 for r in first)
    # the same user on the router's API gets the same version: one split
    api = httpx.post(f"{router.url}/v1/rollouts/fraud/predict", json={"features": {}},
                     headers={"x-user-id": users[0]})
    assert api.headers["x-model-version"] == versions[0]
    for i in range(15):
        assert client.get(f"/status/{i}").status_code == 200
    assert client.post("/raw", content=b"not json", headers={"content-type": "text/plain"}).status_code == 200
    wait_until(lambda: sum(_requests(_windows(router.url, "fraud")).values()) >= 241, 20,
               what="the predict requests in the summaries")
    counts = _requests(_windows(router.url, "fraud"))
    assert counts == {"baseline": 2 * versions.count("v1") + (versions[0] == "v1"),
                      "candidate": 2 * versions.count("v2") + (versions[0] == "v2")}
    metrics = httpx.get(f"{router.url}/metrics").text
    assert metric_value(metrics, "modelrollout_router_passthrough_requests_total", rollout="fraud") == 16
    assert metric_value(metrics, "modelrollout_router_requests_total", rollout="fraud", role="primary") == 241
    rid = first[3].headers["x-request-id"]
    feedback = httpx.post(f"{router.url}/v1/rollouts/fraud/feedback", json={"request_id": rid, "label": True})
    assert feedback.status_code == 200 and feedback.json()["version"] == versions[3]


@pytest.mark.parametrize("where", ["worker", "event loop"])
def test_a_shadowed_transparent_answer_is_recorded_mirrored_and_takes_feedback_by_request_id(procs, tmp_path, where):
    """A transparent predictPath answer is recorded from its raw bytes after it left — by the router's worker,
    or with --no-worker on the router's own loop — the same way: its record (inputs, segments, prediction,
    propensity), its mirror to the shadowed candidate paired with the baseline's prediction, and feedback
    naming its x-request-id, which carries the answer's prediction and segments."""
    v1, v2 = procs.echo("v1"), procs.echo("v2")
    logs = tmp_path / "log"
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v2.url, shadow=True)]),
                          "--log-dir", str(logs), *(["--no-worker"] if where == "event loop" else []))
    client = httpx.Client(base_url=router.url, headers={"Host": "fraud"}, timeout=10)
    sent = [client.post("/predict", json={"features": {"age": 20 + i, "gender": "fm"[i % 2]}}) for i in range(30)]
    assert all(r.status_code == 200 and r.headers["x-model-version"] == "v1" for r in sent)
    ids = [r.headers["x-request-id"] for r in sent]
    bad = client.post("/predict", content=b"not json", headers={"content-type": "text/plain"})
    assert bad.status_code == 400          # the model's own answer to a request it cannot read
    feedback = httpx.post(f"{router.url}/v1/rollouts/fraud/feedback", json={"request_id": ids[3], "label": 1})
    assert feedback.status_code == 200, feedback.text
    assert feedback.json()["version"] == "v1"
    again = httpx.post(f"{router.url}/v1/rollouts/fraud/feedback", json={"request_id": ids[3], "label": 1})
    assert again.status_code == 409
    unknown = httpx.post(f"{router.url}/v1/rollouts/fraud/feedback", json={"request_id": "nope", "label": 1})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown request_id"

    def logged():
        return [r for r in read_records(logs) if r.rollout == "fraud"]
    wait_until(lambda: sum(r.role == "shadow" for r in logged()) >= 30 and any(r.role == "feedback" for r in logged()),
               20, what="30 shadow answers and the feedback in the prediction log")
    records = logged()
    primary = {r.request_id: r for r in records if r.role == "primary"}
    shadow = {r.request_id: r for r in records if r.role == "shadow"}
    assert set(primary) == {*ids, bad.headers["x-request-id"]}      # the non-JSON request too, unparsed,
    assert primary[bad.headers["x-request-id"]].status == 400        # and not mirrored
    assert set(shadow) == set(ids)
    for i, rid in enumerate(ids):
        p = primary[rid]
        assert (p.version, p.arm, p.propensity, p.error) == ("v1", "baseline", 1.0, None)
        assert p.features == {"age": 20 + i} and p.segments == {"gender": "fm"[i % 2]}
        assert p.output is not None and shadow[rid].primary_output == p.output
        assert shadow[rid].version == "v2" and shadow[rid].segments == p.segments
    (fb,) = [r for r in records if r.role == "feedback"]
    assert (fb.request_id, fb.label, fb.output, fb.segments) == (ids[3], 1, primary[ids[3]].output, {"gender": "m"})


def test_override_header_in_transparent_mode_is_opt_in_and_never_analysed(procs, tmp_path):
    v1, v2 = procs.echo("v1"), procs.echo("v2")
    cfg = write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v2.url, weight=0)])
    plain = procs.router(cfg)
    r = httpx.post(f"{plain.url}/predict", json={}, headers={"Host": "fraud", "x-modelrollout-version": "v2"})
    assert r.headers["x-model-version"] == "v1"
    allowing = procs.router(cfg, "--allow-override", "--bucket", "1s")
    for _ in range(5):
        r = httpx.post(f"{allowing.url}/predict", json={}, headers={"Host": "fraud", "x-modelrollout-version": "v2"})
        assert r.status_code == 200 and r.headers["x-model-version"] == "v2"
    bad = httpx.get(f"{allowing.url}/x", headers={"Host": "fraud", "x-modelrollout-version": "v7"})
    assert bad.status_code == 400 and bad.json()["error"] == "unknown version"
    httpx.post(f"{allowing.url}/predict", json={}, headers={"Host": "fraud"})
    wait_until(lambda: sum(_requests(_windows(allowing.url, "fraud")).values()) >= 1, 20, what="summaries")
    assert _requests(_windows(allowing.url, "fraud")) == {"baseline": 1, "candidate": 0}
    metrics = metrics_once(allowing.url, "modelrollout_router_override_requests_total", 5, rollout="fraud")
    assert metric_value(metrics, "modelrollout_router_override_requests_total", rollout="fraud", version="v2") == 5


def test_an_unreachable_version_is_a_502_recorded_on_predict_and_counted_elsewhere(procs, tmp_path):
    from modelrollout.models.proc import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", dead, dead, weight=0)]))
    r = httpx.post(f"{router.url}/predict", json={}, headers={"Host": "fraud"})
    assert r.status_code == 502 and r.json()["error"] == "model unreachable" and r.headers["x-model-version"] == "v1"
    r = httpx.get(f"{router.url}/other", headers={"Host": "fraud"})
    assert r.status_code == 502
    metrics = metrics_once(router.url, "modelrollout_router_errors_total", 1, rollout="fraud")
    assert metric_value(metrics, "modelrollout_router_errors_total", rollout="fraud", kind="unreachable") == 1
    assert metric_value(metrics, "modelrollout_router_passthrough_requests_total", rollout="fraud", code="0") == 1


def test_a_request_that_comes_back_to_its_own_rollout_is_refused(procs, tmp_path):
    """Every request passed on names the rollouts it went through (x-modelrollout-via); one that reaches the
    same rollout again (a version whose url leads back to the rollout's Service, e.g. by its ClusterIP) is a
    508 instead of a loop; a chain through another rollout is fine."""
    v1 = procs.echo("v1")
    router = procs.router(write_config(tmp_path / "r.yaml", [_doc("fraud", v1.url, v1.url, weight=0)]))
    r = httpx.get(f"{router.url}/x", headers={"Host": "fraud", "x-modelrollout-via": "ops/ranker, ml/fraud"})
    assert r.status_code == 508 and r.json()["error"] == "loop detected", r.text
    r = httpx.get(f"{router.url}/x", headers={"Host": "fraud", "x-modelrollout-via": "ops/ranker"})
    assert r.status_code == 200
    seen = dict((k.lower(), v) for k, v in r.json()["headers"])
    assert seen["x-modelrollout-via"] == "ops/ranker, ml/fraud"


def test_a_silent_model_is_a_504_and_an_answer_that_stalls_breaks_the_connection(procs, tmp_path):
    """No answer within spec.timeout: 504 model timeout (recorded on predictPath). An answer whose body stops
    for longer than spec.timeout after its head went out: the client's connection is closed before the
    end of the body, so a cut answer is never taken for a whole one."""
    silent = procs.scorer("v1", "--hang-after", "0")
    slow = procs.echo("v2")
    router = procs.router(write_config(tmp_path / "r.yaml", [
        _doc("fraud", silent.url, silent.url, weight=0, timeout="1s"),
        _doc("stream", slow.url, slow.url, weight=0, timeout="1s")]))
    r = httpx.post(f"{router.url}/predict", json={"features": {"age": 3}}, headers={"Host": "fraud"}, timeout=10)
    assert r.status_code == 504 and r.json()["error"] == "model timeout", r.text
    metrics = metrics_once(router.url, "modelrollout_router_errors_total", 1, rollout="fraud")
    assert metric_value(metrics, "modelrollout_router_errors_total", rollout="fraud", kind="timeout") == 1
    with socket.create_connection(("127.0.0.1", router.port), timeout=20) as sock:
        sock.sendall(b"GET /stream?chunks=3&size=100&token=stall HTTP/1.1\r\nHost: stream\r\n\r\n")
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 200
        try:
            body = answer.read()
        except http.client.IncompleteRead as e:
            body = e.partial
        else:
            raise AssertionError(f"a stalled answer ended as if whole: {body!r}")
        assert body == b"A" * 100
