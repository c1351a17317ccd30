"""The kube-apiserver's CPU per ModelRollout status write, alone: the floor under `bench.controller` at scale.

A fresh control plane (tests/cluster, the same binaries as the e2e tests) with manifests/crd.yaml and N
rollouts; a client PUTs `/status` (`kubeio.client.replace_status`, as the controller does) at `--rate` writes
a second for `--seconds`, each rollout in turn, with `--watchers` `kubeio.watch.ListWatcher`s following the
namespace (the controller, the routers and the dashboards each hold one). The status is one a judged
rollout has: one check with `--recent` windows in `checks[].recent` (the controller keeps up to 60), the
conditions and one history entry. Prints the apiserver's and etcd's CPU in cores and the apiserver's CPU per
write (minus its idle CPU), side by side for the CRD as shipped and the same CRD without its CEL rules
(`x-kubernetes-validations`), with their ratio: whether validation is what a write costs.

    python -m bench.apiserver [--rollouts 1000] [--rate 100] [--seconds 20] [--watchers 4] [--recent 12]

At 1,000 rollouts with a 10 s interval the controller writes one status per window: 100 writes a second.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import threading
import time

from bench.controller import NAMESPACE, by_command, cpu_seconds, rollout

GROUP, VERSION, PLURAL = "modelrollout.io", "v1alpha1", "modelrollouts"


def judged_status(recent: int, now: float) -> dict:
    from policies.status import rfc3339

    routing = {"candidateWeight": 50, "shadow": False, "interleave": False}
    return {"phase": "Progressing", "observedGeneration": 1, "currentStep": 0, "routing": routing,
            "checks": [{"name": "errors", "metric": "error-rate", "value": 0.0, "threshold": 0.05, "verdict": "Pass",
                        "samples": 5, "failures": 0, "inconclusive": 0, "reason": "", "action": "rollback",
                        "recent": [{"time": rfc3339(now - 10 * i), "value": 0.0, "verdict": "Pass",
                                    "threshold": 0.05, "samples": 5} for i in range(recent)],
                        "calibration": []}],
            "conditions": [{"type": t, "status": "True", "reason": "Progressing", "message": "step 1/1 (canary 50%)",
                            "lastTransitionTime": rfc3339(now)} for t in ("Progressing", "Ready", "Analysis")],
            "history": [{"time": rfc3339(now), "step": 0, "action": "start", "reason": "started",
                         "phase": "Progressing", "routing": routing}],
            "revision": "abcdef012345", "stepStartedAt": rfc3339(now), "stepDurationSeconds": 3600,
            "stepWindows": 1, "lastAnalysisAt": rfc3339(now), "message": "step 1/1 (canary 50%)",
            "stable": {"version": "v1", "url": "http://127.0.0.1:1"}}


def _without_cel(o):
    if isinstance(o, dict):
        o.pop("x-kubernetes-validations", None)
        for v in o.values():
            _without_cel(v)
    elif isinstance(o, list):
        for v in o:
            _without_cel(v)
    return o


def run(a, cel: bool) -> dict:
    import tempfile
    from pathlib import Path

    import yaml
    from kubernetes import client

    from kubeio.client import replace_status
    from kubeio.watch import ListWatcher
    from tests.cluster.plane import ControlPlane

    crd = (Path(__file__).resolve().parent.parent / "manifests" / "crd.yaml").read_text()
    if not cel:
        crd = yaml.safe_dump(_without_cel(yaml.safe_load(crd)))
    with ControlPlane() as plane, tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "crd.yaml").write_text(crd)
        plane.run_kubectl("apply", "-f", str(Path(tmp) / "crd.yaml"))
        plane.run_kubectl("wait", "--for=condition=Established", "crd/modelrollouts.modelrollout.io")
        api = plane.api_client()
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        co = client.CustomObjectsApi(api)
        objs = [co.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                                   rollout(i, "http://127.0.0.1:1", "http://127.0.0.1:2", 10.0))
                for i in range(a.rollouts)]
        status = judged_status(a.recent, time.time())
        watchers = []
        for _ in range(a.watchers):
            stop, w = threading.Event(), ListWatcher(api, NAMESPACE, resync=3600)
            threading.Thread(target=w.run, args=(stop,), daemon=True).start()
            watchers.append((stop, w))
        time.sleep(3)
        apiservers, etcds = by_command("kube-apiserver"), by_command("etcd")
        i0 = sum(cpu_seconds(p) for p in apiservers)
        time.sleep(5)
        idle = (sum(cpu_seconds(p) for p in apiservers) - i0) / 5

        def put(i: int, n: int) -> None:
            o = objs[i]
            meta = {"name": o["metadata"]["name"], "namespace": NAMESPACE,
                    "resourceVersion": o["metadata"]["resourceVersion"]}
            body = {"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": meta, "spec": o["spec"],
                    "status": dict(status, observedGeneration=1, stepWindows=n)}
            objs[i] = replace_status(api, GROUP, VERSION, NAMESPACE, PLURAL, meta["name"], body)

        a0, e0, t0 = sum(cpu_seconds(p) for p in apiservers), sum(cpu_seconds(p) for p in etcds), time.monotonic()
        k, futures = 0, []
        with cf.ThreadPoolExecutor(8) as pool:
            while time.monotonic() - t0 < a.seconds:
                delay = t0 + k / a.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(put, k % a.rollouts, k))
                k += 1
            for f in futures:
                f.result()
        wall = time.monotonic() - t0
        api_cores = (sum(cpu_seconds(p) for p in apiservers) - a0) / wall
        etcd_cores = (sum(cpu_seconds(p) for p in etcds) - e0) / wall
        for stop, w in watchers:
            stop.set()
            w.stop()
        return {"rollouts": a.rollouts, "watchers": a.watchers, "cel": cel, "object_bytes": len(json.dumps(objs[0])),
                "writes_per_s": k / wall, "apiserver_idle_cores": idle, "apiserver_cores": api_cores,
                "apiserver_ms_per_write": 1000 * (api_cores - idle) / (k / wall), "etcd_cores": etcd_cores}


ROWS = [("ModelRollout JSON (bytes)", "object_bytes", "{:.0f}"), ("status writes/s", "writes_per_s", "{:.1f}"),
        ("apiserver CPU (cores)", "apiserver_cores", "{:.3f}"), ("apiserver idle CPU (cores)", "apiserver_idle_cores", "{:.3f}"),
        ("apiserver CPU ms / status write", "apiserver_ms_per_write", "{:.2f}"), ("etcd CPU (cores)", "etcd_cores", "{:.3f}")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.apiserver", description=__doc__.splitlines()[0])
    p.add_argument("--rollouts", type=int, default=1000)
    p.add_argument("--rate", type=float, default=100.0, help="status writes per second (default 100)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--watchers", type=int, default=4, help="ListWatchers following the namespace (default 4)")
    p.add_argument("--recent", type=int, default=12, help="windows in the check's recent list (default 12)")
    a = p.parse_args(argv)
    results = {"CRD": run(a, True), "no CEL": run(a, False)}
    print(f"{a.rollouts} rollouts, {a.watchers} watchers, {a.rate:g} status writes/s asked for {a.seconds:g} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"{'':34}{'CRD':>10}{'no CEL':>10}{'ratio':>8}")
    for label, key, fmt in ROWS:
        x, y = results["CRD"][key], results["no CEL"][key]
        print(f"{label:34}{fmt.format(x):>10}{fmt.format(y):>10}{(y / x if x else float('nan')):>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
