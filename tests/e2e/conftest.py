"""Helpers for the controller's end-to-end tests: real model servers, routers reading the apiserver,
controller processes, traffic and Prometheus, all on 127.0.0.1 free ports and all stopped by the test.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
import yaml

from modelrollout.models.proc import Proc, free_port, start, wait_http

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "manifests" / "crd.yaml"
RBAC = REPO / "manifests" / "rbac.yaml"


@pytest.fixture(scope="session")
def mro_crd(control_plane):
    """manifests/crd.yaml applied and Established."""
    control_plane.run_kubectl("apply", "-f", str(CRD))
    control_plane.run_kubectl("wait", "--for=condition=Established", "--timeout=60s",
                              "crd/modelrollouts.modelrollout.io")
    return CRD


@pytest.fixture
def procs(tmp_path):
    """`procs.scorer(...)`, `procs.router(...)`, `procs.controller(...)`, `procs.traffic(...)`,
    `procs.prometheus(...)`: each starts a real process; every one is stopped when the test ends."""
    p = Processes(tmp_path)
    yield p
    p.stop_all()


class Processes:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[Proc] = []

    def _keep(self, proc: Proc) -> Proc:
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            try:
                proc.stop(signal.SIGTERM, timeout=5)
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass

    def scorer(self, version: str, **knobs) -> Proc:
        args = ["--version", version]
        for k, v in knobs.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        return self._keep(start("modelrollout.models.scorer", args, log_dir=self.tmp / "logs"))

    def router(self, kubeconfig: str, namespace: str, bucket: str = "1s", *extra: str) -> Proc:
        return self._keep(start("router.kube_source", ["--kube", "--kubeconfig", kubeconfig, "--namespace",
                                                       namespace, "--bucket", bucket, *extra],
                                ready="/healthz", log_dir=self.tmp / "logs"))

    def controller(self, kubeconfig: str, namespace: str, *args: str, identity: str | None = None,
                   lease: tuple[str, str, str] = ("4s", "3s", "1s")) -> Proc:
        """`python -m controller.kube` watching `namespace`, leases short enough for tests; ready once its
        /metrics answers."""
        port = free_port()
        ident = identity or f"ctl-{port}"
        argv = [sys.executable, "-m", "controller.kube", "--kubeconfig", kubeconfig, "--namespace", namespace,
                "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--lease-namespace", namespace,
                "--lease-duration", lease[0], "--renew-deadline", lease[1], "--retry-period", lease[2],
                "--resync", "10s", "--http-timeout", "2s", "--identity", ident, "--log-level", "INFO", *args]
        log = self.tmp / "logs" / f"controller-{ident}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            popen = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        proc = self._keep(Proc(argv, port, popen, log))
        proc.identity = ident  # type: ignore[attr-defined]
        try:
            wait_http(f"{proc.url}/metrics", 30, popen)
        except Exception as e:
            raise RuntimeError(f"controller did not start: {e}\n{proc.output()}") from e
        return proc

    def traffic(self, router: Proc, rollout: str, namespace: str, rps: float = 40, duration: float = 600,
                **kw) -> Proc:
        """modelrollout.models.traffic against the router, in the background for `duration` seconds (the router serves
        one namespace, so the rollout's name alone identifies it)."""
        argv = [sys.executable, "-m", "modelrollout.models.traffic", "--url",
                f"{router.url}/v1/rollouts/{rollout}", "--rps", str(rps),
                "--duration", str(duration), "--timeout", "5"]
        for k, v in kw.items():
            argv += [f"--{k.replace('_', '-')}", str(v)]
        log = self.tmp / "logs" / f"traffic-{rollout}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            popen = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        return self._keep(Proc(argv, 0, popen, log))

    def prometheus(self, targets: list[str], scrape: str = "1s", scrape_configs: list[dict] | None = None) -> Proc:
        """Debian's prometheus scraping `targets` (host:port) every `scrape`, or with `scrape_configs` as
        given; ready at /-/ready."""
        binary = _prometheus_binary()
        port = free_port()
        d = Path(tempfile.mkdtemp(prefix="prom-", dir=self.tmp))
        cfg = {"global": {"scrape_interval": scrape, "evaluation_interval": scrape},
               "scrape_configs": scrape_configs or [{"job_name": "router", "static_configs": [{"targets": targets}]}]}
        (d / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        argv = [binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"]
        log = d / "prometheus.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(argv, cwd=d, stdout=out, stderr=subprocess.STDOUT)
        proc = self._keep(Proc(argv, port, popen, log))
        try:
            wait_http(f"{proc.url}/-/ready", 60, popen)
        except Exception as e:
            raise RuntimeError(f"prometheus did not start: {e}\n{proc.output()}") from e
        return proc


def _prometheus_binary() -> str:
    for candidate in ("/usr/bin/prometheus", "/usr/local/bin/prometheus"):
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("Debian's prometheus is not installed: apt-get install -y prometheus")


# ---- the resource --------------------------------------------------------------------------------------

def rollout_doc(name: str, namespace: str, baseline: Proc, candidate: Proc, *, steps=None, checks=None,
                interval: str = "2s", min_samples: int = 20, failure_limit: int = 2, inconclusive_limit: int = 3,
                candidate_version: str = "v2", **spec_extra) -> dict:
    """A small ModelRollout for the e2e tests: short steps, 2 s analysis windows (1 s router buckets)."""
    if steps is None:
        steps = [{"shadow": {"duration": "3s"}}, {"canary": {"weight": 50, "duration": "3s"}}]
    if checks is None:
        checks = [{"name": "score-psi", "metric": "psi", "on": "prediction", "max": 0.5, "action": "rollback"},
                  {"name": "errors", "metric": "error-rate", "max": 0.05, "action": "rollback",
                   "immediate": True}]
    spec = {"baseline": {"version": "v1", "url": baseline.url},
            "candidate": {"version": candidate_version, "url": candidate.url},
            "predictPath": "/predict", "output": {"kind": "score", "path": "prediction"},
            "features": {"path": "features"},
            "strategy": {"steps": steps},
            "analysis": {"interval": interval, "minSamples": min_samples, "failureLimit": failure_limit,
                         "inconclusiveLimit": inconclusive_limit, "checks": checks}}
    spec.update(spec_extra)
    return {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def apply(kubectl: Callable, doc: dict, check: bool = True):
    return kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=check)


def get_rollout(k8s_api, namespace: str, name: str) -> dict:
    from kubernetes import client

    return client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        "modelrollout.io", "v1alpha1", namespace, "modelrollouts", name)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25,
             diagnose: Callable[[], str] | None = None):
    """Poll until `predicate()` is truthy (returns it); fail naming `what` and the diagnosis otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n"
                f"{diagnose() if diagnose else ''}")


def wait_phase(k8s_api, namespace: str, name: str, phases: set[str], timeout: float = 90,
               forbid: set[str] = frozenset(), diagnose: Callable[[], str] | None = None) -> dict:
    """Wait until the rollout's phase is one of `phases`; fail at once if it enters one of `forbid`."""
    def check():
        obj = get_rollout(k8s_api, namespace, name)
        phase = (obj.get("status") or {}).get("phase")
        if phase in forbid:
            pytest.fail(f"{namespace}/{name} entered forbidden phase {phase}: {obj.get('status')}\n"
                        f"{diagnose() if diagnose else ''}")
        return obj if phase in phases else None
    return wait_for(check, timeout, f"{namespace}/{name} phase in {sorted(phases)}", diagnose=diagnose)


def events(k8s_api, namespace: str, name: str) -> list:
    from kubernetes import client

    evs = client.CoreV1Api(k8s_api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return sorted(evs, key=lambda e: (e.first_timestamp or e.metadata.creation_timestamp, e.metadata.name))


def predict_versions(router: Proc, name: str, namespace: str, n: int = 40) -> dict[str, int]:
    """Send `n` predictions through the router and count the answering versions (x-model-version)."""
    import json as _json

    counts: dict[str, int] = {}
    for i in range(n):
        req = urllib.request.Request(f"{router.url}/v1/rollouts/{name}/predict?namespace={namespace}",
                                     data=_json.dumps({"features": {"age": 30 + i % 20, "i": i}}).encode(),
                                     headers={"content-type": "application/json", "x-user-id": f"probe-{i}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            v = r.headers.get("x-model-version", "?")
        counts[v] = counts.get(v, 0) + 1
    return counts


def metric_value(url: str, name: str, **labels) -> float | None:
    """The value of one sample of a Prometheus text exposition at `url`."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def logs(*procs: Proc) -> str:
    return "\n".join(f"--- {' '.join(p.args[:3])} ---\n{p.output()}" for p in procs)


def wait_event(k8s_api, namespace: str, name: str, reason: str, timeout: float = 10):
    """The first Event with `reason` on the rollout (Events are recorded just after the status write)."""
    return wait_for(lambda: next((e for e in events(k8s_api, namespace, name) if e.reason == reason), None),
                    timeout, f"Event {reason} on {namespace}/{name}",
                    diagnose=lambda: str([(e.reason, e.message) for e in events(k8s_api, namespace, name)]))
