"""Hostile input against a real router process over raw sockets: more than 10,000 malformed requests (broken
and deeply nested JSON, wrong methods and content types, bad chunking and lengths, invalid UTF-8, oversized
bodies and headers, hundreds of headers, request-line garbage, hostile feedback and summaries parameters)
while 200 slow clients hold half-sent requests open. No answer of the router's own is >= 500 (a model's 5xx
passed on as 502 with x-model-version is the model's), its memory stays bounded, it answers normally
afterwards, and the counts are printed. Schema-driven fuzzing (schemathesis) of the same router follows."""
from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.router_support import body, post_many, rollout_doc, write_config

MAX_BODY = 256 * 1024
PATHS = ["/v1/rollouts/fraud/predict", "/v1/rollouts/fraud/feedback", "/v1/rollouts/fraud/summaries", "/metrics",
         "/healthz", "/readyz", "/openapi.json", "/v1/rollouts/nope/predict", "/", "/v1/rollouts//predict"]
VALID = json.dumps({"features": {"age": 41, "gender": "f", "amount": 12.5}}).encode()


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and its children (the router's worker), KiB."""
    total = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def exchange(port: int, parts: list[bytes], timeout: float = 2.0, gap: float = 0.0) -> tuple[str, bytes]:
    """Send `parts` on a new connection and read the answer's head: (status or what happened, head bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            for i, part in enumerate(parts):
                if gap and i:
                    time.sleep(gap)
                s.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass                              # the router stopped reading (413, a parse error): read its answer
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 1 << 16:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            return ("reset" if not data else _status(data)), data
        except socket.timeout:
            return ("timeout" if not data else _status(data)), data
        return (_status(data) if data else "closed"), data
    finally:
        s.close()


def _status(data: bytes) -> str:
    if data.startswith(b"HTTP/1.") and len(data) >= 12:
        return data[9:12].decode("latin-1")
    return "garbage"


def request(method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
            length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1", "replace"), b"Host: 127.0.0.1"]
    for k, v in headers or ():
        lines.append(k.encode("latin-1", "replace") + b": " + v.encode("latin-1", "replace"))
    if length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def cases(rng: random.Random) -> list[tuple[str, list[bytes]]]:
    """(category, parts to send) for every hostile request."""
    out: list[tuple[str, list[bytes]]] = []
    json_ct = [("Content-Type", "application/json")]
    predict, feedback = PATHS[0], PATHS[1]

    def add(cat: str, *parts: bytes) -> None:
        out.append((cat, list(parts)))

    for i in range(2500):                                     # broken JSON
        b = bytearray(VALID)
        op = i % 5
        if op == 0:
            b = b[: rng.randrange(len(b))]
        elif op == 1:
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:
            b = bytearray(rng.randbytes(rng.randint(0, 300)))
        elif op == 3:
            b = bytearray(rng.choice([b"", b"{", b"}", b"[", b"null", b"NaN", b"1e999999", b'{"a":}', b"{'a':1}",
                                      b'{"features": NaN}', b'"\\ud800"', b"\x00" * 50, b'{"features":{"age":1e400}}']))
        else:
            b = bytearray(rng.choice([b"[]", b"1", b'"x"', b"true", b'{"features": []}', b'{"features": "x"}',
                                      b'{"features": {"age": {"deep": [1, 2]}}}', b'{"features": null}']))
        add("broken json", request("POST", predict if i % 3 else feedback, bytes(b), json_ct))
    for depth in [10, 100, 500, 1000, 2000, 5000, 20000, 100000] * 25:   # deeply nested JSON
        doc = (b"[" * depth + b"]" * depth) if depth % 2 else (b'{"a":' * depth + b"1" + b"}" * depth)
        nested = b'{"features": ' + doc + b"}" if depth < 1000 else doc
        add("nested json", request("POST", predict if depth % 3 else feedback, nested[:MAX_BODY], json_ct))
    for i in range(800):                                      # wrong methods
        method = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO", "get", "P0ST"][i % 10]
        add("wrong method", request(method, PATHS[i % len(PATHS)], VALID if i % 2 else b"", json_ct))
    types = ["text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "", "*/*",
             "application/json; charset=ebcdic", "application/xml", "image/png", "application/json\x7f"]
    for i in range(600):                                      # wrong content types
        payload = [VALID, b"a=1&b=2", b"--x\r\nContent-Disposition: form-data\r\n\r\n1\r\n--x--", rng.randbytes(64)][i % 4]
        add("content type", request("POST", PATHS[i % 2], payload, [("Content-Type", types[i % len(types)])]))
    bad_chunks = [b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nab\r\n0\r\n\r\n", b"-1\r\n\r\n", b"ffffffffffffffffff\r\nab\r\n",
                  b"3;ext=\x01\r\nabc\r\n0\r\n\r\n", b"3\r\nabc0\r\n\r\n", b"3\nabc\n0\n\n", b"0\r\nX-Trailer: 1\r\n\r\n",
                  b"100000\r\n" + b"a" * 100, b"5\r\n" + VALID[:5] + b"\r\n" + b"1" * 3000]
    for i in range(1200):                                     # bad chunking
        te = ["chunked", "chunked, chunked", "gzip, chunked", "identity", "chunked\x00", "Chunked"][i % 6]
        head = request("POST", PATHS[i % 2], b"", [("Content-Type", "application/json"), ("Transfer-Encoding", te)]
                       + ([("Content-Length", "5")] if i % 4 == 0 else []), length=False)
        add("bad chunking", head, bad_chunks[i % len(bad_chunks)])
    for i in range(1200):                                     # bad lengths
        value = ["-1", "abc", "99999999999999999999999", "1, 2", " 5", "0x10", "5.0", "", "+3", "007"][i % 10]
        head = request("POST", PATHS[i % 2], b"", [("Content-Type", "application/json"), ("Content-Length", value)]
                       + ([("Content-Length", "3")] if i % 7 == 0 else []), length=False)
        add("bad length", head + VALID[: rng.randint(0, len(VALID))])
    for i in range(300):                                      # declared length longer than what comes, then close
        add("short body", request("POST", predict, b"", json_ct + [("Content-Length", "1000")], length=False) + b"{")
    for i in range(1000):                                     # invalid UTF-8 in body, path, query, header
        junk = rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"])
        where = i % 4
        if where == 0:
            add("invalid utf-8", request("POST", predict, b'{"features": {"g": "' + junk + b'"}}', json_ct))
        elif where == 1:
            add("invalid utf-8", request("GET", "/v1/rollouts/%ff%fe/summaries", b"") if i % 8 == 1 else
                request("POST", "/v1/rollouts/fr%c3%28aud/predict", VALID, json_ct))
        elif where == 2:
            add("invalid utf-8", request("GET", "/v1/rollouts/fraud/summaries?namespace=%ff&start=%fe", b""))
        else:
            add("invalid utf-8", request("POST", predict, VALID, json_ct).replace(
                b"Host: 127.0.0.1", b"Host: 127.0.0.1\r\nx-user-id: " + junk + b"\r\nx-request-id: " + junk))
    for i in range(100):                                      # oversized bodies, by length and chunked
        big = b'{"features": {"pad": "' + b"x" * (MAX_BODY * 2) + b'"}}'
        if i % 2:
            add("oversized body", request("POST", PATHS[i % 2], big, json_ct))
        else:
            head = request("POST", predict, b"", json_ct + [("Transfer-Encoding", "chunked")], length=False)
            add("oversized body", head, b"".join(b"%x\r\n%s\r\n" % (65536, b"y" * 65536) for _ in range(8)) + b"0\r\n\r\n")
    for i in range(100):                                      # oversized headers
        size = [8 << 10, 64 << 10, 256 << 10, 1 << 20][i % 4]
        add("oversized header", request("POST" if i % 2 else "GET", PATHS[i % 4], VALID if i % 2 else b"",
                                        json_ct + [("x-user-id" if i % 3 else "x-big", "u" * size)]))
    for i in range(300):                                      # hundreds of headers
        n = [100, 300, 1000, 3000][i % 4]
        add("many headers", request("POST", predict, VALID, json_ct + [(f"x-h{j}", "v" * (j % 50)) for j in range(n)]))
    lines = [b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\r\n\r\n\r\n",
             b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"GET " + b"/a" * 50000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
             b"POST /v1/rollouts/fraud/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" * 3,
             b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3,
             b"GET / HTTP/1.1\r\nHost: x\r\n Folded: header\r\n\r\n", b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
             b"GET /.. HTTP/1.1\r\nHost:\x00x\r\n\r\n", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n"]
    for i in range(800):                                      # request-line and framing garbage
        add("garbage", lines[i % len(lines)])
    fb = [b'{"request_id": 1, "label": 1}', b'{"request_id": "' + b"a" * 5000 + b'", "label": 1}',
          b'{"request_id": "x", "label": null}', b'{"request_id": "x", "clicks": [[1]]}',
          b'{"request_id": "x", "label": 1, "clicks": []}', b'{"request_id": "x", "clicks": "a"}',
          b'{"request_id": "x", "label": {"a": 1}}', b'{"request_id": "x", "label": 1e400}', b'{"request_id": {}}',
          b'{"request_id": "x", "clicks": [' + b"1," * 20000 + b"1]}"]
    for i in range(800):                                      # hostile feedback
        add("feedback", request("POST", feedback + ("?namespace=ml" if i % 2 else "?namespace=%00"),
                                fb[i % len(fb)], json_ct))
    params = ["start=nan", "end=inf", "start=-1e308&end=1e308", "start=1e999", "start=x", "namespace=" + "n" * 5000,
              "start=1&start=2", "end=", "namespace=ml&end=0", "start=%00"]
    for i in range(500):                                      # hostile summaries parameters
        add("summaries", request("GET", f"/v1/rollouts/{['fraud', 'x' * 300, '%2e%2e'][i % 3]}/summaries?"
                                        f"{params[i % len(params)]}", b""))
    rng.shuffle(out)
    return out


def test_ten_thousand_hostile_requests_get_no_server_error_and_memory_stays_bounded(procs, tmp_path, capsys):
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    doc = rollout_doc("fraud", v1.url, v2.url, weight=50, shadow=False)
    router = procs.router(write_config(tmp_path / "r.yaml", [doc]), "--max-body", str(MAX_BODY),
                          "--log-dir", str(tmp_path / "log"))
    port = router.port
    warm = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {}) for i in range(200)])
    assert {s for s, _, _ in warm} == {200}
    for _ in range(20):                       # the worker's first answers load what it needs for them
        httpx.get(f"{router.url}/metrics", timeout=30)
        httpx.get(f"{router.url}/v1/rollouts/fraud/summaries", timeout=30)
    rss_before = rss_kib(router.pid)

    # 200 slow clients: half a request line, or headers without their end, or a body that never completes.
    slow = []
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall([b"POST /v1/rollouts/fraud/pre", b"POST /v1/rollouts/fraud/predict HTTP/1.1\r\nHost: x\r\nX-A: ",
                   b"POST /v1/rollouts/fraud/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 100\r\n\r\n{\"feat"][i % 3])
        slow.append(s)

    peak = [rss_before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(router.pid))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample)
    sampler.start()
    todo = cases(random.Random(14))
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda c: (c[0], exchange(port, c[1])), todo))
    finally:
        stop.set()
        sampler.join()
    seconds = time.monotonic() - t0

    by_cat: dict[str, Counter] = {}
    own_5xx, model_5xx = [], 0
    for cat, (status, head) in results:
        by_cat.setdefault(cat, Counter())[status] += 1
        if status.isdigit() and int(status) >= 500:
            if int(status) in (502, 504) and b"x-model-version:" in head.lower():
                model_5xx += 1
            else:
                own_5xx.append((cat, head[:300]))
    # Half the slow clients finish their requests now: the router answers them.
    finished = Counter()
    for i, s in enumerate(slow):
        if i % 2 == 0 and i % 3 == 2:
            try:
                s.sendall(b'ures": {"age": 3}}' + b" " * 76)       # exactly the 100 bytes declared
                finished[_status(s.recv(4096))] += 1
            except OSError as e:
                finished[type(e).__name__] += 1
        s.close()
    after = post_many([(f"{router.url}/v1/rollouts/fraud/predict", body(i=i), {}) for i in range(100)])
    rss_after = rss_kib(router.pid)
    # Bounded, not just lower than a limit: the same barrage again (less the slow ones) barely moves it.
    again = [c for c in todo if c[0] not in ("short body", "garbage")]
    with ThreadPoolExecutor(16) as pool:
        second = list(pool.map(lambda c: exchange(port, c[1])[0], again))
    rss_again = rss_kib(router.pid)
    with capsys.disabled():
        print(f"\nhostile requests: {len(results)} in {seconds:.1f}s, plus {len(slow)} slow half-sent clients")
        for cat, counts in sorted(by_cat.items()):
            print(f"  {cat:17s} {sum(counts.values()):5d}  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        print(f"  answers >= 500 from the router itself: {len(own_5xx)}; a model's 5xx passed on as 502: {model_5xx}")
        print(f"  slow clients that finished: {dict(finished)}")
        print(f"  router + worker RSS: {rss_before // 1024} MiB before, {peak[0] // 1024} MiB peak, "
              f"{rss_after // 1024} MiB after, {rss_again // 1024} MiB after {len(second)} more")
    assert len(results) >= 10_000
    assert own_5xx == [], own_5xx[:5]
    assert {s for s, _, _ in after} == {200}
    assert httpx.get(f"{router.url}/healthz", timeout=10).status_code == 200
    assert finished == Counter({"200": sum(1 for i in range(200) if i % 2 == 0 and i % 3 == 2)}), finished
    assert peak[0] - rss_before < 256 * 1024 and rss_after - rss_before < 128 * 1024, (rss_before, peak, rss_after)
    assert rss_again - rss_after < 32 * 1024, (rss_after, rss_again)
    assert not [s for s in second if s.isdigit() and int(s) >= 500 and s not in ("502", "504")]
    assert router.alive()


def test_schema_driven_fuzzing_gets_no_server_error(procs, tmp_path, capsys):
    """schemathesis (the test extras) generates requests for every operation of the router's OpenAPI document,
    aimed at a served rollout; not one answer is a 5xx. (Its "coverage" phase is left out: schemathesis 4.32
    itself fails in it with a KeyError on this document.)"""
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    router = procs.router(write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v2.url, weight=50)]))
    (tmp_path / "schemathesis.toml").write_text('[parameters]\n"path.name" = "fraud"\n"query.namespace" = "ml"\n')
    st = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [str(st), "run", f"{router.url}/openapi.json", "--url", router.url, "--checks", "not_a_server_error",
         "--max-examples", "300", "--seed", "14", "--workers", "2", "--phases", "examples,fuzzing",
         "--request-timeout", "10"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    summary = [line for line in run.stdout.splitlines() if any(w in line for w in (
        "Operations", "Test cases", "passed", "failed", "generated", "Seed"))]
    with capsys.disabled():
        print("\nschemathesis:\n  " + "\n  ".join(summary[-8:]))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert router.alive()
