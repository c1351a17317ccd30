"""Benchmark: the router's one-connection tail with and without a shadow, as wrk reports it and as the wire shows it.

wrk's p99 at one connection rose with a shadow to a slow candidate (1.5-2.2x) while a blocking client's did not
(bench/router.py, "paired"). This captures the loopback traffic of the same runs (tcpdump) and prints, per case:

* wrk's own p99;
* the router's p99 on the wire: from the client's request segment to the router's answer segment;
* a bound on what any closed-loop client could measure from these packets: the answer's time on the wire plus
  the client's gap before it (its clock read precedes its write) and after it (its next write follows its
  clock read). A client p99 above this bound is time the client lost between its clock reads and its syscalls.

    sudo python -m bench.wire [--pairs 6] [--seconds 3]

Needs `apt-get install -y nginx wrk libnginx-mod-http-echo tcpdump` and the right to capture on lo. Not run in CI.
"""
from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.router import SCORE_BODY, missing_tools, nginx_conf, rollout, start_nginx, wrk
from modelrollout.models import proc as _proc


def tcp_payload_packets(path: Path):
    """(time, source port, destination port) of every TCP segment with a payload in a classic pcap of lo."""
    with open(path, "rb") as f:
        magic = struct.unpack("<I", f.read(24)[:4])[0]
        scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
        while len(header := f.read(16)) == 16:
            seconds, fraction, captured, _ = struct.unpack("<IIII", header)
            frame = f.read(captured)
            ip = frame[14:]                                    # lo is captured as Ethernet
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            tcp = ip[ihl:]
            payload = struct.unpack(">H", ip[2:4])[0] - ihl - (tcp[12] >> 4) * 4
            if payload > 0:
                yield seconds + fraction * scale, *struct.unpack(">HH", tcp[:4])


def wire_latencies(path: Path, router_port: int) -> tuple[list[float], list[float]]:
    """Per answered request on one client connection: (router's request-in to answer-out, the client bound), ms."""
    cycles: list[list[float]] = []                 # [request time, last answer segment time]
    for t, src, dst in tcp_payload_packets(path):
        if dst == router_port:
            cycles.append([t, 0.0])
        elif src == router_port and cycles:
            cycles[-1][1] = t
    cycles = [c for c in cycles if c[1]]
    router = [(end - start) * 1e3 for start, end in cycles]
    bound = [(cycles[k + 1][0] - cycles[k - 1][1]) * 1e3 for k in range(1, len(cycles) - 1)]
    return router, bound


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.wire", description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=6, help="plain/shadow pairs, shuffled in each (default 6)")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per run (default 3)")
    args = p.parse_args(argv)
    if missing_tools("bench.wire", ("nginx", "wrk", "tcpdump")):
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-wire-"))
    ports = {k: _proc.free_port() for k in ("v1", "v2", "slow", "r1", "r2", "proxy")}
    up = lambda k: f"http://127.0.0.1:{ports[k]}"
    nginxes: list[subprocess.Popen] = []
    router = None
    rows: dict[str, list[tuple[float, float, float]]] = {"no shadow": [], "shadow": []}
    try:
        nginxes.append(start_nginx(tmp, nginx_conf(tmp, ports, 0.0), f"{up('proxy')}/"))
        nginxes.append(start_nginx(tmp / "slow", nginx_conf(tmp / "slow", ports, 0.001, only_slow=True),
                                   f"{up('slow')}/", idle=True))
        cfg = tmp / "rollouts.yaml"
        cfg.write_text(yaml.safe_dump_all([
            rollout("plain", up("v1"), up("v2"), {"candidateWeight": 0}),
            rollout("shadow", up("v1"), up("slow"), {"candidateWeight": 0, "shadow": True})]))
        router = _proc.start("router.server", ["--config", cfg, "--log-dir", tmp / "log", "--log-level", "warning"],
                             ready="/readyz", log_dir=tmp)
        url = lambda name: f"{router.url}/v1/rollouts/{name}/predict"
        for name in ("plain", "shadow"):
            wrk(url(name), SCORE_BODY, 32, 1.0, tmp)          # warm the pools and the worker
        rng = random.Random(11)
        for _ in range(args.pairs):
            order = [("no shadow", "plain"), ("shadow", "shadow")]
            rng.shuffle(order)
            for label, name in order:
                pcap = tmp / f"{name}.pcap"
                capture = subprocess.Popen(["tcpdump", "-i", "lo", "-w", str(pcap), "-s", "128", "-B", "65536",
                                            f"tcp port {router.port}"], stderr=subprocess.DEVNULL)
                time.sleep(1.0)                                   # tcpdump is listening
                res = wrk(url(name), SCORE_BODY, 1, args.seconds, tmp)
                time.sleep(0.2)
                _proc.stop_popen(capture, signal.SIGINT, 10)
                on_wire, bound = wire_latencies(pcap, router.port)
                rows[label].append((res["p99_ms"], p99(on_wire), p99(bound)))
    finally:
        if router is not None:
            router.stop()
        for nginx in nginxes:
            _proc.stop_popen(nginx, signal.SIGQUIT, 10)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\none connection, {args.pairs} pairs of {args.seconds:g} s runs; medians of p99 (ms)\n")
    print(f"{'case':10} {'wrk p99':>9} {'router on the wire p99':>23} {'client bound p99':>17}")
    med = {label: [statistics.median(r[i] for r in v) for i in range(3)] for label, v in rows.items()}
    for label, (w, r, b) in med.items():
        print(f"{label:10} {w:>9.3f} {r:>23.3f} {b:>17.3f}")
    ratio = lambda i: statistics.median(s[i] / n[i] for s, n in zip(rows["shadow"], rows["no shadow"]))
    print(f"{'shadow / no shadow, median of pairs':36}  wrk {ratio(0):.3f}   on the wire {ratio(1):.3f}   bound "
          f"{ratio(2):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
