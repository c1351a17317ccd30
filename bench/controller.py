"""Controller load: N ModelRollouts (10 s analysis interval) on a real kube-apiserver, one in-process
controller. Prints reconcile latency p50/p99, controller CPU (cores) and RSS against the targets
(<= 0.5 core, <= 300 MB).

    python -m bench.controller [--rollouts 200] [--seconds 40]      (KUBECONFIG_E2E=... to use a cluster)
"""
from __future__ import annotations

import argparse
import resource
import time

from kubernetes import client

from controller.kube.controller import Controller, ControllerSettings
from tests.cluster.plane import ControlPlane


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def doc(i: int, ns: str) -> dict:
    return {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": f"r{i:04d}", "namespace": ns},
            "spec": {"baseline": {"version": "v1", "url": "http://127.0.0.1:9"},
                     "candidate": {"version": "v2", "url": "http://127.0.0.1:10"},
                     "strategy": {"steps": [{"canary": {"weight": 10, "duration": "1h"}}]},
                     "analysis": {"interval": "10s", "checks": [
                         {"name": "errors", "metric": "error-rate", "max": 0.01}]}}}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rollouts", type=int, default=200)
    p.add_argument("--seconds", type=float, default=40.0)
    a = p.parse_args()
    with ControlPlane() as plane:
        from pathlib import Path
        plane.run_kubectl("apply", "-f", str(Path(__file__).resolve().parent.parent / "manifests" / "crd.yaml"))
        plane.run_kubectl("wait", "--for=condition=Established", "crd/modelrollouts.modelrollout.io")
        api = plane.api_client()
        ns = "bench"
        client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        co = client.CustomObjectsApi(api)
        for i in range(a.rollouts):
            co.create_namespaced_custom_object("modelrollout.io", "v1alpha1", ns, "modelrollouts", doc(i, ns))
        # no router answers: every window is Inconclusive after a bounded failed fetch (the worst ordinary case)
        ctl = Controller(api, ControllerSettings(namespace=ns, router_urls=("http://127.0.0.1:9",),
                                                 leader_elect=False, http_timeout=1.0))
        cpu0, t0 = time.process_time(), time.monotonic()
        ctl.start()
        time.sleep(a.seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        ctl.stop()
        h = ctl.metrics.reconcile_seconds
        buckets = [(float(s.labels["le"]), s.value) for s in h.collect()[0].samples if s.name.endswith("_bucket")]
        total = buckets[-1][1]

        def q(x):
            return next(le for le, c in buckets if c >= x * total)
        print(f"rollouts={a.rollouts} interval=10s seconds={wall:.0f} reconciles={ctl.reconciles} "
              f"writes={ctl.metrics.status_writes._value.get():.0f}")
        print(f"reconcile latency p50<={q(0.5)}s p99<={q(0.99)}s (histogram bucket bounds)")
        print(f"controller CPU {cpu / wall:.3f} cores (target <= 0.5), RSS {rss_mb():.0f} MB "
              f"(target <= 300; process incl. test harness), maxrss "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
