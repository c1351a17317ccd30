"""What crosses the wire between a client and a real router: every answer, prediction, error or API page,
is one write, so one TCP segment and one wake-up of the client (read from the kernel's own count of data
segments a socket received, TCP_INFO's tcpi_data_segs_in)."""
from __future__ import annotations

import json
import socket
import struct
import time

from tests.router_support import body, rollout_doc, write_config

_DATA_SEGS_IN = 152
"""Offset of tcpi_data_segs_in (u32) in Linux's struct tcp_info (since 4.6)."""


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, _DATA_SEGS_IN)[0]


def _exchange(sock: socket.socket, request: bytes) -> tuple[bytes, int]:
    """Send one request; return the whole answer and how many data segments carried it."""
    before = _data_segments_in(sock)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(rest) < length:
        rest += sock.recv(65536)
    time.sleep(0.05)                    # a second segment, if there were one, has arrived by now
    return head, _data_segments_in(sock) - before


def _post(path: str, payload: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


def test_each_answer_leaves_the_router_as_one_segment(procs, tmp_path):
    """Predictions, client errors and FastAPI pages on one keep-alive connection each arrive in exactly one
    data segment (uvicorn writes headers and body separately; the router's transport sends them together)."""
    v1 = procs.scorer("v1")
    cfg = write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v1.url, weight=0, shadow=True)])
    router = procs.router(cfg)
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        requests = [
            (_post("/v1/rollouts/fraud/predict", json.dumps(body()).encode()), b"200"),
            (_post("/v1/rollouts/fraud/predict", b"{not json"), b"400"),
            (_post("/v1/rollouts/nope/predict", b"{}"), b"404"),
            (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"200"),
            (b"GET /v1/rollouts/fraud/summaries HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"200"),
        ] * 3
        for request, status in requests:
            head, segments = _exchange(sock, request)
            assert head.split(b" ")[1] == status, head
            assert segments == 1, (request[:60], head[:60], segments)


def test_config_router_reports_its_server(procs, tmp_path):
    """`/metrics` names what serves the router: uvloop and the httptools protocol with coalesced writes (the
    same line `router --kube` shows, tests/e2e/test_router_kube.py)."""
    import httpx

    v1 = procs.scorer("v1")
    router = procs.router(write_config(tmp_path / "r.yaml", [rollout_doc("fraud", v1.url, v1.url)]))
    text = httpx.get(f"{router.url}/metrics", timeout=5).text
    info = [line for line in text.splitlines() if line.startswith("modelrollout_router_server_info{")]
    assert info == ['modelrollout_router_server_info{event_loop="uvloop",http="httptools-coalesced"} 1.0'], info
