"""The user's journey on a real one-node cluster (tests/cluster/up.sh --image): the product image in pods,
`kubectl apply -k manifests/` as documented, model versions as Deployments + Services, cluster DNS, Services
through kube-proxy, RBAC as the pods really use it.

These tests start real kubelet/containerd/iptables state and take minutes: they run only with
MODELROLLOUT_NODE=1 (root needed). Without it the whole directory is reported as skipped, with that reason.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "cluster"
# The example model servers and the traffic generator, as Python modules inside the product image.
MODELS = "modelrollout.models"
IMAGE = "modelrollout:0.1.0"  # what manifests/kustomization.yaml deploys; up.sh --image loads it
SYSTEM_NS = "modelrollout-system"
ROUTER_URL_IN_CLUSTER = f"http://modelrollout-router.{SYSTEM_NS}.svc"

ENABLED = os.environ.get("MODELROLLOUT_NODE") == "1"


def pytest_collection_modifyitems(config, items):
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="node tests start a real kubelet/containerd cluster: set MODELROLLOUT_NODE=1 "
                                   "(as root) to run them")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


class Cluster:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.kubeconfig = env["KUBECONFIG"]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=REPO)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}\nstderr: {proc.stderr}\n"
                                 f"stdout: {proc.stdout}")
        return proc

    def apply(self, *docs: dict) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def rollout(self, namespace: str, name: str) -> dict:
        return self.get("modelrollout", name, "-n", namespace)

    def diagnose(self, *namespaces: str) -> str:
        out = [self.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout]
        for ns in (SYSTEM_NS, *namespaces):
            out.append(self.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False).stdout[-3000:])
        for comp in ("controller", "router"):
            out.append(f"--- logs {comp}")
            out.append(self.kubectl("logs", "-n", SYSTEM_NS, "-l", f"app.kubernetes.io/component={comp}",
                                    "--tail=40", "--prefix", check=False).stdout[-6000:])
        for ns in namespaces:
            out.append(self.kubectl("get", "mro", "-n", ns, "-o", "yaml", check=False).stdout[-6000:])
        return "\n".join(out)

    def wait_available(self, component: str, timeout: int = 400) -> None:
        proc = self.kubectl("rollout", "status", f"deployment/modelrollout-{component}", "-n", SYSTEM_NS,
                            f"--timeout={timeout}s", check=False, timeout=timeout + 20)
        assert proc.returncode == 0, f"{component} not available: {proc.stderr}\n{self.diagnose()}"

    def wait_phase(self, namespace: str, name: str, phases: set[str], timeout: float,
                   forbid: set[str] = frozenset()) -> dict:
        def check():
            obj = self.rollout(namespace, name)
            phase = (obj.get("status") or {}).get("phase")
            if phase in forbid:
                pytest.fail(f"{namespace}/{name} entered {phase}: {obj.get('status')}\n{self.diagnose(namespace)}")
            return obj if phase in phases else None
        return wait_for(check, timeout, f"{namespace}/{name} phase in {sorted(phases)}",
                        diagnose=lambda: self.diagnose(namespace))


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 1.0,
             diagnose: Callable[[], str] | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n"
                f"{diagnose() if diagnose else ''}")


def metrics_token(c: Cluster) -> str:
    """A token the routers' /metrics accepts (--internal-auth kubernetes): a ServiceAccount bound to
    modelrollout-metrics-reader, issued for the audience modelrollout-router, as a Prometheus would hold."""
    if c.kubectl("get", "serviceaccount", "metrics-probe", "-n", SYSTEM_NS, check=False).returncode != 0:
        c.kubectl("create", "serviceaccount", "metrics-probe", "-n", SYSTEM_NS)
        c.kubectl("create", "clusterrolebinding", "modelrollout-metrics-probe",
                  "--clusterrole=modelrollout-metrics-reader", f"--serviceaccount={SYSTEM_NS}:metrics-probe")
    out = c.kubectl("create", "token", "metrics-probe", "-n", SYSTEM_NS, "--audience", "modelrollout-router")
    return out.stdout.strip()


def http(url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 10):
    """POST `body` (or GET) straight to `url`: Service and pod addresses exist only on this machine, so no proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    with opener.open(req, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


@pytest.fixture(scope="package")
def node_cluster():
    """tests/cluster/up.sh --image, then the environment it prints; tests/cluster/down.sh at the end, which
    must leave nothing behind."""
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(CLUSTER / "up.sh"), "--image"], capture_output=True, text=True,
                          timeout=3000, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"up.sh --image exited {proc.returncode}\n{proc.stderr[-6000:]}", pytrace=False)
    env = dict(os.environ)
    for line in proc.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.replace("$PATH", env.get("PATH", ""))
    assert proc.stdout.strip().splitlines()[-1].startswith("export KUBECONFIG="), proc.stdout
    for var in ("NO_PROXY", "no_proxy"):
        env[var] = ",".join(filter(None, [env.get(var), "127.0.0.1", "localhost", "10.244.0.0/16", "10.96.0.0/16"]))
    print(f"\nnode cluster up in {time.monotonic() - t0:.0f}s")
    cluster = Cluster(env)
    yield cluster
    t1 = time.monotonic()
    down = subprocess.run(["bash", str(CLUSTER / "down.sh")], capture_output=True, text=True, timeout=600)
    print(f"\nnode cluster down in {time.monotonic() - t1:.0f}s")
    assert down.returncode == 0, f"down.sh left something behind:\n{down.stderr}"


@pytest.fixture(scope="package")
def installed(node_cluster):
    """`kubectl apply -k manifests/` exactly as manifests/README.md says; the controller Deployment available
    and both router pods running (the router only turns Ready once a ModelRollout exists: see
    test_install.py)."""
    c = node_cluster
    c.kubectl("apply", "-k", "manifests/")
    c.wait_available("controller")

    def routers_running():
        pods = c.get("pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/component=router")["items"]
        return len(pods) == 2 and all(
            (cs.get("state") or {}).get("running") for p in pods for cs in p["status"].get("containerStatuses", []))
    wait_for(routers_running, 300, "two running router pods", diagnose=c.diagnose)
    return c


def model_server(namespace: str, name: str, version: str, *args: str) -> list[dict]:
    """A Deployment + Service running the example scorer from the product image."""
    labels = {"app": name}
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{
                         "name": "model", "image": IMAGE, "imagePullPolicy": "Never",
                         "command": ["python", "-m", f"{MODELS}.scorer", "--host", "0.0.0.0", "--port", "8080",
                                     "--version", version, *args],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                         "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}}}]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
               "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}
    return [deploy, service]


def traffic_pod(namespace: str, rollout: str, rps: int = 30, duration: int = 900) -> dict:
    """A Pod inside the cluster sending users' requests to the router Service, by its DNS name."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"traffic-{rollout}", "namespace": namespace,
                                                            "labels": {"app": "traffic"}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "traffic", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": ["python", "-m", f"{MODELS}.traffic", "--url",
                                                 f"{ROUTER_URL_IN_CLUSTER}/v1/rollouts/{rollout}",
                                                 "--rps", str(rps), "--duration", str(duration), "--timeout", "5"],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}]}}


def rollout_doc(namespace: str, name: str, baseline: str, candidate: str, *, steps=None,
                interval: str = "10s") -> dict:
    """A ModelRollout whose versions are the model Services, addressed as the README does (NAME.NS.svc)."""
    steps = steps or [{"shadow": {"duration": "30s"}}, {"canary": {"weight": 50, "duration": "30s"}}]
    return {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"baseline": {"version": "v1", "url": f"http://{baseline}.{namespace}.svc:8080"},
                     "candidate": {"version": "v2", "url": f"http://{candidate}.{namespace}.svc:8080"},
                     "predictPath": "/predict", "output": {"kind": "score", "path": "prediction"},
                     "features": {"path": "features"},
                     "strategy": {"stickiness": {"header": "x-user-id"}, "steps": steps},
                     "analysis": {"interval": interval, "minSamples": 20, "failureLimit": 2,
                                  "inconclusiveLimit": 6,
                                  "checks": [{"name": "score-psi", "metric": "psi", "on": "prediction", "max": 0.5,
                                              "action": "rollback"},
                                             {"name": "errors", "metric": "error-rate", "max": 0.05,
                                              "action": "rollback", "immediate": True}]}}}
