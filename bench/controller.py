"""Controller load on the real path: N ModelRollouts at a 10 s analysis interval on a real kube-apiserver
+ etcd, real router processes serving summaries, real traffic, the controller as its own process. The same
run is made with a baseline controller (an older commit of this repository) and with this one; the table
prints both and their ratio.

What runs, per case (a fresh control plane each):

* two model servers (`modelrollout.models.scorer`: baseline and candidate);
* N rollouts in a one-hour canary step at 50%, one `error-rate` check, `minSamples: 1`;
* `--routers` router replicas (`modelrollout router --kube`: they list+watch the rollouts and follow
  `status.routing` as in a cluster), each answering the controller's summaries requests from what it
  recorded (`POST /v1/summaries`, one per replica for the windows due together; a baseline older than that
  route asks `GET /v1/rollouts/{name}/summaries` per rollout);
* a traffic process sending `--per-window` real predictions per rollout per analysis interval through the
  routers (keep-alive HTTP/1.1, rollouts and replicas taken round-robin), so every window of every rollout
  has real outcomes to judge;
* `python -m controller.kube` with `--router-url` for every replica and leader election on;
* the controller, the routers and the model servers run from the side's source tree (`PYTHONPATH`: the
  baseline's checkout or this one), so "before" is the system as it was (its routers re-parsed every
  rollout on every status write); the traffic generator and this bench run this tree's code;
* the bench's own watch of the namespace, which counts the watch events every client of the resource
  receives and reads, from each status write, how late its window was judged.

Measured over `--seconds` once every rollout has had a window judged: reconciles (the controller's
`modelrollout_reconcile_duration_seconds_count`), status writes (`modelrollout_status_writes_total`) and
watch events per rollout-window (rollouts x seconds / interval); controller CPU (user + system of its
process, in cores) and RSS (VmRSS at the end, VmHWM peak); the apiserver's mutating requests per second
(`apiserver_request_total`, all resources and modelrollouts/status alone); the routers' CPU (with their
worker processes), the model servers', the traffic generator's and this bench's own (its watch), and the
machine's busy CPU (/proc/stat) with the part no process of this bench used (neighbours), so the whole CPU
budget is on the table; the lag of window judgments: `lastAnalysisAt - (previous lastAnalysisAt or
stepStartedAt + interval)` ("judged", when the reconcile decided) and the watch event's arrival minus the
same due time ("seen", after evidence, write and watch), as p50/p90/p99/max. "Runnable, waiting for a CPU"
sums the run-queue delay of the controller's threads (/proc/PID/task/*/schedstat): time it was ready to run
but the machine's CPUs were busy with other work; "cores to judge every window on time" is its CPU per
judged window times rollouts / interval.

The routers' workers run at normal priority (`--worker-priority normal`): on a machine shared with other
jobs an idle-priority worker answers `/summaries` only when the neighbours leave CPU, which would measure
them, not the controller. The controller's CPU is its own process time, not affected by neighbours; lags
are (the load average is printed).

    python -m bench.controller [--rollouts 200 1000] [--seconds 60] [--baseline-ref REF | --baseline DIR]
                               [--only before|after]

`--baseline-ref` (default: the commit before the controller wrote status only on a change) is checked out
into a temporary `git worktree`, removed afterwards. Targets (issue 20): 200 rollouts: reconciles <= 1.2
and status writes <= 1.1 per rollout-window, CPU <= 0.25 core; 1,000 rollouts: CPU <= 1 core, RSS <= 500 MB,
no window judged later than one interval.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "bench"
BASELINE_REF = "d36b748"
"""main just before the controller wrote status only when something changed (issue 20)."""
TICK = os.sysconf("SC_CLK_TCK")


# ---- the traffic process ---------------------------------------------------------------------------------

async def _traffic(urls: list[str], names: list[str], rate: float, seconds: float, connections: int) -> dict:
    """Send `rate` predictions/s for `seconds`, request i to rollout names[i % N] over a keep-alive
    connection to one of `urls`; returns counts of statuses."""
    counts = COUNTS
    start = time.monotonic() + 0.2
    total = int(rate * seconds)
    index = iter(range(total))
    rng = random.Random(1)

    async def one_connection(k: int) -> None:
        host, port = urls[k % len(urls)].removeprefix("http://").split(":")
        reader = writer = None
        for i in index:
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            body = json.dumps({"features": {"age": round(rng.uniform(18, 80), 1), "amount": round(rng.expovariate(0.05), 2),
                                            "gender": rng.choice("fm"), "hour": rng.randrange(24)}}).encode()
            head = (f"POST /v1/rollouts/{names[i % len(names)]}/predict?namespace={NAMESPACE} HTTP/1.1\r\n"
                    f"Host: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(head.encode() + body)
                status_line = await reader.readuntil(b"\r\n")
                headers = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", headers)
                await reader.readexactly(int(m.group(1)) if m else 0)
                key = status_line.split()[1].decode()
            except (OSError, asyncio.IncompleteReadError, IndexError) as e:
                key = type(e).__name__
                if writer is not None:
                    writer.close()
                reader = writer = None
            counts[key] = counts.get(key, 0) + 1

    await asyncio.gather(*(one_connection(k) for k in range(connections)))
    return counts


COUNTS: dict[str, int] = {}


def traffic_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench.controller --traffic")
    p.add_argument("--url", action="append", required=True)
    p.add_argument("--rollouts", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--connections", type=int, default=16)
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        asyncio.run(_traffic(a.url, [name(i) for i in range(a.rollouts)], a.rate, a.seconds, a.connections))
    except KeyboardInterrupt:
        pass
    print(json.dumps(dict(sorted(COUNTS.items()))), flush=True)
    return 0


# ---- one case ----------------------------------------------------------------------------------------------

def name(i: int) -> str:
    return f"r{i:04d}"


def rollout(i: int, baseline: str, candidate: str, interval: float) -> dict:
    return {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name(i), "namespace": NAMESPACE},
            "spec": {"baseline": {"version": "v1", "url": baseline}, "candidate": {"version": "v2", "url": candidate},
                     "predictPath": "/predict", "output": {"kind": "score", "path": "prediction"},
                     "strategy": {"steps": [{"canary": {"weight": 50, "duration": "1h"}}]},
                     "analysis": {"interval": f"{interval:g}s", "minSamples": 1, "inconclusiveLimit": 1000,
                                  "checks": [{"name": "errors", "metric": "error-rate", "max": 0.05}]}}}


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of `pid` (and, with children, of every live descendant)."""
    pids = [pid] + (descendants(pid) if children else [])
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, from /proc/stat (busy: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    everything = sum(fields[:8])                # user nice system idle iowait irq softirq steal (guest is in user)
    return (everything - fields[3] - fields[4]) / TICK, everything / TICK


def runqueue_wait(pid: int) -> float:
    """Seconds the threads of `pid` have spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def descendants(pid: int) -> list[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def by_command(command: str) -> list[int]:
    """This process's descendants whose /proc comm is `command`."""
    out = []
    for p in descendants(os.getpid()):
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == command:
                out.append(p)
        except OSError:
            pass
    return out


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return parse_metrics(r.read().decode())


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            try:
                out[head] = out.get(head, 0.0) + float(value)
            except ValueError:
                pass
    return out


def total(metrics: dict[str, float], prefix: str, *needles: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix) and all(n in k for n in needles))


MUTATING = ('verb="POST"', 'verb="PUT"', 'verb="PATCH"', 'verb="DELETE"', 'verb="APPLY"', 'verb="CREATE"',
            'verb="UPDATE"', 'verb="DELETECOLLECTION"')


def apiserver_writes(metrics: dict[str, float]) -> tuple[float, float]:
    """(every mutating request, PUTs of modelrollouts/status) the apiserver has answered so far."""
    allw = sum(v for k, v in metrics.items() if k.startswith("apiserver_request_total{")
               and any(m in k for m in MUTATING))
    status = sum(v for k, v in metrics.items() if k.startswith("apiserver_request_total{")
                 and 'resource="modelrollouts"' in k and 'subresource="status"' in k and any(m in k for m in MUTATING))
    return allw, status


@dataclass
class Watch:
    """The bench's own watch of the namespace: counts events, and the lag of each judged window."""

    interval: float
    events: list[float] = field(default_factory=list)
    lags: list[tuple[float, float, float]] = field(default_factory=list)   # (judged at, judged lag, seen lag)
    verdicts: list[tuple[float, str, int]] = field(default_factory=list)   # (judged at, verdict, samples)
    reasons: list[tuple[float, str]] = field(default_factory=list)      # (judged at, an Inconclusive's reason)
    sizes: list[int] = field(default_factory=list)                      # bytes of each judged object (JSON)
    last: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, api_client) -> None:
        from kubernetes import client, watch

        from policies.status import parse_time

        co = client.CustomObjectsApi(api_client)
        rv = co.list_namespaced_custom_object("modelrollout.io", "v1alpha1", NAMESPACE, "modelrollouts")[
            "metadata"]["resourceVersion"]
        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(co.list_namespaced_custom_object, "modelrollout.io", "v1alpha1", NAMESPACE,
                                   "modelrollouts", resource_version=rv, timeout_seconds=5,
                                   allow_watch_bookmarks=True):
                    obj = ev["raw_object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if ev["type"] == "BOOKMARK":
                        continue
                    now = time.time()
                    self.events.append(now)
                    st = obj.get("status") or {}
                    key = obj["metadata"]["name"]
                    judged = parse_time(st.get("lastAnalysisAt"))
                    before = self.last.get(key)
                    if judged is not None and judged != before:
                        base = before if before is not None else parse_time(st.get("stepStartedAt"))
                        if base is not None:
                            due = base + self.interval
                            self.lags.append((judged, judged - due, now - due))
                        for c in st.get("checks") or []:
                            self.verdicts.append((judged, str(c.get("verdict")), int(c.get("samples") or 0)))
                            if c.get("verdict") == "Inconclusive":
                                self.reasons.append((judged, re.sub(r"[0-9.]+", "N", str(c.get("reason")))[:160]))
                        self.sizes.append(len(json.dumps(obj)))
                        self.last[key] = judged
                    if self.stop.is_set():
                        w.stop()
            except Exception as e:  # noqa: BLE001 - the bench keeps watching through a hiccup
                print(f"  (bench watch: {type(e).__name__}: {str(e)[:120]}; rewatching)", file=sys.stderr)
                time.sleep(0.5)
                rv = co.list_namespaced_custom_object("modelrollout.io", "v1alpha1", NAMESPACE,
                                                      "modelrollouts")["metadata"]["resourceVersion"]


def histogram_quantiles(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """p50/p90/p99/max (upper bucket bounds) of a Prometheus histogram's observations between two scrapes."""
    buckets = sorted((float(re.search(r'le="([^"]+)"', k).group(1)), after[k] - before.get(k, 0.0)) for k in after)
    count = buckets[-1][1] if buckets else 0
    out = {}
    for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (1.0, "max")):
        out[name] = next((le for le, c in buckets if count and c >= q * count), float("nan"))
    return out


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {k: float("nan") for k in ("p50", "p90", "p99", "max")}
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(q * len(v)))]  # noqa: E731
    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": v[-1]}


def run_case(n: int, controller_tree: Path, a) -> dict:
    """One case: a fresh plane, N rollouts, routers, traffic, the controller from `controller_tree`."""
    from kubernetes import client

    from modelrollout.models.proc import free_port, start, stop_popen, wait_http
    from tests.cluster.plane import ControlPlane

    logs = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    procs: list = []
    ctl = traffic = None
    env = {**os.environ, "PYTHONPATH": str(controller_tree)}     # models, routers and controller of this side
    with ControlPlane() as plane:
        try:
            plane.run_kubectl("apply", "-f", str(REPO / "manifests" / "crd.yaml"))
            plane.run_kubectl("wait", "--for=condition=Established", "crd/modelrollouts.modelrollout.io")
            api = plane.api_client()
            client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
            v1 = start("modelrollout.models.scorer", ["--version", "v1", "--seed", "3"], log_dir=logs, env=env)
            v2 = start("modelrollout.models.scorer", ["--version", "v2", "--seed", "3"], log_dir=logs, env=env)
            procs += [v1, v2]
            co = client.CustomObjectsApi(api)
            for i in range(n):
                co.create_namespaced_custom_object("modelrollout.io", "v1alpha1", NAMESPACE, "modelrollouts",
                                                   rollout(i, v1.url, v2.url, a.interval))
            routers = [start("router.kube_source", ["--kube", "--kubeconfig", plane.kubeconfig, "--namespace",
                                                    NAMESPACE, "--worker-priority", "normal", "--log-level", "warning"],
                             ready="/readyz", log_dir=logs, env=env, timeout=60) for _ in range(a.routers)]
            procs += routers
            for r in routers:   # every router knows every rollout before traffic starts
                deadline = time.monotonic() + 120
                while len(json.load(urllib.request.urlopen(f"{r.url}/readyz", timeout=10))["rollouts"]) < n:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"router {r.url} did not load {n} rollouts")
                    time.sleep(0.5)
            rate = n * a.per_window / a.interval
            warm = a.interval * 4 + n / 50.0
            traffic = subprocess.Popen([sys.executable, "-m", "bench.controller", "--traffic", "--rollouts", str(n),
                                        "--rate", str(rate), "--seconds", str(warm + a.seconds + 10),
                                        *sum((["--url", r.url] for r in routers), [])],
                                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                                       stderr=open(logs / "traffic.log", "wb"))
            watcher = Watch(a.interval)
            wt = threading.Thread(target=watcher.run, args=(api,), daemon=True)
            wt.start()
            port = free_port()
            ctl_log = open(logs / "controller.log", "wb")
            ctl = subprocess.Popen(
                [sys.executable, "-m", "controller.kube", "--kubeconfig", plane.kubeconfig, "--namespace", NAMESPACE,
                 *sum((["--router-url", r.url] for r in routers), []), "--metrics-port", str(port),
                 "--metrics-host", "127.0.0.1", "--lease-namespace", NAMESPACE, "--log-level", "WARNING"],
                cwd=controller_tree, env=env, stdout=ctl_log, stderr=subprocess.STDOUT)
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            wait_http(metrics_url, 60, ctl)
            # warm-up: every rollout has had a window judged (then one more interval)
            deadline = time.monotonic() + warm + 60
            while len(watcher.last) < n and time.monotonic() < deadline:
                time.sleep(0.5)
            judged_all = len(watcher.last)
            time.sleep(a.interval)
            pids = {"apiserver": by_command("kube-apiserver"), "etcd": by_command("etcd")}

            def snapshot() -> dict:
                m = scrape(metrics_url)
                api_m = parse_metrics(plane.run_kubectl("get", "--raw", "/metrics").stdout)
                return {"t": time.monotonic(), "wall": time.time(), "ctl_cpu": cpu_seconds(ctl.pid),
                        "ctl_wait": runqueue_wait(ctl.pid),
                        "router_cpu": sum(cpu_seconds(r.pid, children=True) for r in routers),
                        "apiserver_cpu": sum(cpu_seconds(p) for p in pids["apiserver"]),
                        "etcd_cpu": sum(cpu_seconds(p) for p in pids["etcd"]),
                        "models_cpu": sum(cpu_seconds(p.pid) for p in (v1, v2)),
                        "traffic_cpu": cpu_seconds(traffic.pid),
                        "bench_cpu": cpu_seconds(os.getpid()),
                        "machine": machine_cpu(),
                        "reconciles": total(m, "modelrollout_reconcile_duration_seconds_count"),
                        "durations": {k: v for k, v in m.items()
                                      if k.startswith("modelrollout_reconcile_duration_seconds_bucket")},
                        "writes": total(m, "modelrollout_status_writes_total"),
                        "conflicts": total(m, "modelrollout_status_conflicts_total"),
                        "errors": total(m, "modelrollout_reconcile_errors_total"),
                        "events": len(watcher.events), "api_writes": apiserver_writes(api_m)}
            load0 = os.getloadavg()[0]
            s0 = snapshot()
            time.sleep(a.seconds)
            s1 = snapshot()
            load1 = os.getloadavg()[0]
            rss, hwm = memory_mb(ctl.pid)
            alive = ctl.poll() is None
            watcher.stop.set()
            stop_popen(ctl, signal.SIGTERM, 15)
            stop_popen(traffic, signal.SIGTERM, 5)
            sent = traffic.stdout.read().decode().strip() if traffic.stdout else ""
        finally:
            for popen in (ctl, traffic):        # still running when the case failed half-way
                if popen is not None and popen.poll() is None:
                    stop_popen(popen, signal.SIGKILL, 5)
            for p in reversed(procs):
                p.stop()
    wall = s1["t"] - s0["t"]
    rollout_windows = n * wall / a.interval
    lags = [(j, s) for t, j, s in watcher.lags if s0["wall"] <= t <= s1["wall"]]
    verdicts: dict[str, int] = {}
    samples = [k for t, v, k in watcher.verdicts if s0["wall"] <= t <= s1["wall"]]
    for t, v, _ in watcher.verdicts:
        if s0["wall"] <= t <= s1["wall"]:
            verdicts[v] = verdicts.get(v, 0) + 1
    reasons: dict[str, int] = {}
    for t, why in watcher.reasons:
        if s0["wall"] <= t <= s1["wall"]:
            reasons[why] = reasons.get(why, 0) + 1
    return {
        "inconclusive_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:3]),
        "object_bytes": quantiles(watcher.sizes[-1000:])["p50"] if watcher.sizes else 0,
        "reconcile_seconds": histogram_quantiles(s0["durations"], s1["durations"]),
        "rollouts": n, "seconds": wall, "rollout_windows": rollout_windows, "judged_before_measuring": judged_all,
        "reconciles": (s1["reconciles"] - s0["reconciles"]) / rollout_windows,
        "writes": (s1["writes"] - s0["writes"]) / rollout_windows,
        "events": (s1["events"] - s0["events"]) / rollout_windows,
        "conflicts": s1["conflicts"] - s0["conflicts"], "errors": s1["errors"] - s0["errors"],
        "cpu": (s1["ctl_cpu"] - s0["ctl_cpu"]) / wall, "rss": rss, "hwm": hwm,
        "ctl_wait": (s1["ctl_wait"] - s0["ctl_wait"]) / wall,
        "router_cpu": (s1["router_cpu"] - s0["router_cpu"]) / wall,
        "apiserver_cpu": (s1["apiserver_cpu"] - s0["apiserver_cpu"]) / wall,
        "etcd_cpu": (s1["etcd_cpu"] - s0["etcd_cpu"]) / wall,
        "models_cpu": (s1["models_cpu"] - s0["models_cpu"]) / wall,
        "traffic_cpu": (s1["traffic_cpu"] - s0["traffic_cpu"]) / wall,
        "bench_cpu": (s1["bench_cpu"] - s0["bench_cpu"]) / wall,
        "machine_busy": (s1["machine"][0] - s0["machine"][0]) / wall,
        "machine_cores": (s1["machine"][1] - s0["machine"][1]) / wall,
        "others_cpu": ((s1["machine"][0] - s0["machine"][0]) - sum(
            s1[k] - s0[k] for k in ("ctl_cpu", "router_cpu", "apiserver_cpu", "etcd_cpu", "models_cpu",
                                    "traffic_cpu", "bench_cpu"))) / wall,
        "api_writes": (s1["api_writes"][0] - s0["api_writes"][0]) / wall,
        "api_status_writes": (s1["api_writes"][1] - s0["api_writes"][1]) / wall,
        "windows": len(lags), "windows_per": len(lags) / rollout_windows,
        "cpu_per_window_ms": 1000 * (s1["ctl_cpu"] - s0["ctl_cpu"]) / max(1, len(lags)),
        "reconciles_per_window": (s1["reconciles"] - s0["reconciles"]) / max(1, len(lags)),
        "cores_needed": (s1["ctl_cpu"] - s0["ctl_cpu"]) / max(1, len(lags)) * n / a.interval, "judged_lag": quantiles([j for j, _ in lags]), "seen_lag": quantiles([s for _, s in lags]),
        "verdicts": verdicts, "samples_p50": quantiles(samples)["p50"] if samples else 0,
        "load": (load0, load1), "controller_alive": alive, "traffic": sent, "logs": str(logs),
    }


# ---- the table -------------------------------------------------------------------------------------------------

ROWS = [
    ("reconciles / rollout-window", "reconciles", "{:.2f}"),
    ("status writes / rollout-window", "writes", "{:.2f}"),
    ("watch events / rollout-window", "events", "{:.2f}"),
    ("controller CPU (cores)", "cpu", "{:.3f}"),
    ("controller runnable, waiting for a CPU (s/s)", "ctl_wait", "{:.3f}"),
    ("controller RSS (MB)", "rss", "{:.0f}"),
    ("controller peak RSS (MB)", "hwm", "{:.0f}"),
    ("apiserver writes/s (all)", "api_writes", "{:.1f}"),
    ("apiserver modelrollouts/status writes/s", "api_status_writes", "{:.1f}"),
    ("apiserver CPU (cores)", "apiserver_cpu", "{:.3f}"),
    ("etcd CPU (cores)", "etcd_cpu", "{:.3f}"),
    ("routers CPU (cores, with workers)", "router_cpu", "{:.3f}"),
    ("model servers CPU (cores)", "models_cpu", "{:.3f}"),
    ("traffic generator CPU (cores)", "traffic_cpu", "{:.3f}"),
    ("this bench's CPU (its watch; cores)", "bench_cpu", "{:.3f}"),
    ("machine CPU busy (cores)", "machine_busy", "{:.2f}"),
    ("  of which not this bench's processes", "others_cpu", "{:.2f}"),
    ("windows judged in the interval", "windows", "{:.0f}"),
    ("windows judged / rollout-window", "windows_per", "{:.2f}"),
    ("reconciles / window judged", "reconciles_per_window", "{:.2f}"),
    ("controller CPU ms / window judged", "cpu_per_window_ms", "{:.1f}"),
    ("cores to judge every window on time", "cores_needed", "{:.2f}"),
]
LAGS = ("p50", "p90", "p99", "max")
TARGETS = {200: {"reconciles": 1.2, "writes": 1.1, "cpu": 0.25}, 1000: {"cpu": 1.0, "rss": 500.0}}


def table(n: int, results: dict[str, dict], interval: float) -> str:
    cols = list(results)
    loads = ", ".join(f"{k} {r['load'][0]:.1f}->{r['load'][1]:.1f}" for k, r in results.items())
    lines = [f"{n} rollouts, {interval:g} s interval, measured {max(r['seconds'] for r in results.values()):.0f} s "
             f"(load average {loads})"]
    head = f"{'':42}" + "".join(f"{c:>12}" for c in cols) + ("       ratio" if len(cols) == 2 else "") + "   target"
    lines.append(head)
    rows = ROWS + [(f"reconcile duration {q} <= (s)", ("reconcile_seconds", q), "{:g}") for q in LAGS] + \
        [(f"window lag judged {q} (s)", ("judged_lag", q), "{:.2f}") for q in LAGS] + \
        [(f"window lag seen {q} (s)", ("seen_lag", q), "{:.2f}") for q in LAGS]
    for label, key, fmt in rows:
        vals = [results[c][key[0]][key[1]] if isinstance(key, tuple) else results[c][key] for c in cols]
        line = f"{label:42}" + "".join(f"{fmt.format(v):>12}" for v in vals)
        if len(vals) == 2:
            line += f"{(vals[1] / vals[0]) if vals[0] else float('nan'):>12.3f}"
        target = TARGETS.get(n, {}).get(key) if isinstance(key, str) else None
        if isinstance(key, tuple) and key[1] == "max" and n in TARGETS and key[0] == "judged_lag":
            target = interval
        if target is not None:
            ok = vals[-1] <= target
            line += f"   <= {target:g} {'ok' if ok else 'MISSED'}"
        lines.append(line)
    for c in cols:
        r = results[c]
        lines.append(f"  {c}: window verdicts {r['verdicts']} (median samples {r['samples_p50']}), conflicts "
                     f"{r['conflicts']:.0f}, reconcile errors {r['errors']:.0f}, controller "
                     f"{'alive' if r['controller_alive'] else 'DIED'}, traffic {r['traffic']}, machine "
                     f"{r['machine_cores']:.1f} cores, a judged ModelRollout's JSON {r['object_bytes']:.0f} bytes "
                     f"(median)")
        if r["inconclusive_reasons"]:
            lines.append(f"  {c}: Inconclusive because {r['inconclusive_reasons']}")
    return "\n".join(lines)


def baseline_tree(args, stack: list) -> tuple[Path, str]:
    if args.baseline:
        tree = Path(args.baseline).resolve()
    else:
        tree = Path(tempfile.mkdtemp(prefix="bench-controller-baseline-"))
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline_ref],
                       check=True, capture_output=True)
        stack.append(lambda: subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                                            capture_output=True))
    rev = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    return tree, rev


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--traffic"]:
        return traffic_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench.controller", description=__doc__.splitlines()[0])
    p.add_argument("--rollouts", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per case (default 60)")
    p.add_argument("--per-window", type=float, default=4.0, help="predictions per rollout per interval (default 4)")
    p.add_argument("--routers", type=int, default=2, help="router replicas (default 2)")
    p.add_argument("--baseline-ref", default=BASELINE_REF, help=f"git ref of the baseline (default {BASELINE_REF})")
    p.add_argument("--baseline", help="a checkout of the baseline instead of --baseline-ref")
    p.add_argument("--only", choices=("before", "after"), help="run one side only")
    p.add_argument("--json", help="also write the results to this JSON file")
    a = p.parse_args(argv)
    cleanup: list = []
    out: dict = {}
    try:
        sides: list[tuple[str, Path]] = []
        if a.only != "after":
            tree, rev = baseline_tree(a, cleanup)
            sides.append((f"before {rev}", tree))
        if a.only != "before":
            rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "controller", "policies",
                                    "kubeio"], capture_output=True, text=True).stdout.strip()
            sides.append((f"after {rev}{'+' if dirty else ''}", REPO))
        for n in a.rollouts:
            results = {}
            for label, tree in sides:
                print(f"-- {n} rollouts, controller {label} ...", file=sys.stderr, flush=True)
                results[label] = run_case(n, tree, a)
            out[n] = results
            print(table(n, results, a.interval), flush=True)
            print(flush=True)
    finally:
        for undo in reversed(cleanup):
            undo()
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
