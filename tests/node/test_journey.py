"""The journey a user takes, on a real node: install with `kubectl apply -k manifests/`, serve two model
versions as Deployments + Services, `kubectl apply -f` a ModelRollout, send traffic from a Pod and from the
host to the router Service; a drifting candidate is RolledBack, a healthy one Promoted, and `kubectl
modelrollout status` says why."""
from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from tests.node.conftest import (SYSTEM_NS, http, metrics_token, model_server, rollout_doc, traffic_pod, wait_for)

# the first test also waits for the package's cluster (up.sh --image): minutes on a cold machine
pytestmark = pytest.mark.timeout(3000)

NS = "ml-node"


@pytest.fixture(scope="module")
def models(installed):
    c = installed
    c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    c.apply(*model_server(NS, "scorer-v1", "v1", "--seed", "7"),
            *model_server(NS, "scorer-v2", "v2", "--seed", "7"),
            *model_server(NS, "scorer-drift", "v2", "--seed", "7", "--shift", "0.35"))
    for name in ("scorer-v1", "scorer-v2", "scorer-drift"):
        proc = c.kubectl("rollout", "status", f"deployment/{name}", "-n", NS, "--timeout=300s", check=False,
                         timeout=320)
        assert proc.returncode == 0, f"{name}: {proc.stderr}\n{c.diagnose(NS)}"
    return c


def router_cluster_ip(c) -> str:
    return c.get("service", "modelrollout-router", "-n", SYSTEM_NS)["spec"]["clusterIP"]


def host_predictions(c, rollout: str, n: int) -> Counter:
    """`n` predictions from the host through the router Service's ClusterIP (kube-proxy's rules)."""
    ip = router_cluster_ip(c)
    versions = Counter()
    for i in range(n):
        status, headers, body = http(f"http://{ip}/v1/rollouts/{rollout}/predict?namespace={NS}",
                                     {"features": {"age": 30 + i % 20, "i": i}}, {"x-user-id": f"host-{i}"})
        assert status == 200, body
        assert "prediction" in json.loads(body), body
        versions[headers.get("x-model-version") or headers.get("X-Model-Version", "?")] += 1
    return versions


def test_cluster_dns_and_services_from_a_pod(models):
    """A pod resolves NAME.NAMESPACE.svc.cluster.local through the cluster DNS and reaches a model Service."""
    c = models
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": NS},
           "spec": {"restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "probe", "image": "modelrollout:0.1.0", "imagePullPolicy": "Never",
                                    "command": ["python", "-c",
                                                "import json, socket, urllib.request as u\n"
                                                f"print(socket.gethostbyname('scorer-v1.{NS}.svc.cluster.local'))\n"
                                                "r = u.urlopen(u.Request("
                                                f"'http://scorer-v1.{NS}.svc:8080/predict', "
                                                "data=json.dumps({'features': {'age': 40}}).encode(), "
                                                "headers={'content-type': 'application/json'}), timeout=10)\n"
                                                "print(r.status, r.read().decode())\n"],
                                    "securityContext": {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}}]}}
    c.apply(pod)
    wait_for(lambda: c.get("pod", "probe", "-n", NS)["status"].get("phase") in ("Succeeded", "Failed"), 120,
             "probe pod to finish", diagnose=lambda: c.diagnose(NS))
    out = c.kubectl("logs", "probe", "-n", NS).stdout
    svc_ip = c.get("service", "scorer-v1", "-n", NS)["spec"]["clusterIP"]
    assert c.get("pod", "probe", "-n", NS)["status"]["phase"] == "Succeeded", out
    assert out.splitlines()[0] == svc_ip, out
    assert out.splitlines()[1].startswith("200 ") and "prediction" in out, out
    c.kubectl("delete", "pod", "probe", "-n", NS, "--wait=false")


def test_drifting_candidate_is_rolled_back_and_status_says_why(models):
    """Traffic from a Pod through the router Service; the candidate's scores are shifted, so score-psi fails
    and the controller pod rolls back; the host's requests then all go to the baseline."""
    c = models
    c.apply(rollout_doc(NS, "drifty", "scorer-v1", "scorer-drift"))
    c.wait_available("router")  # Ready once it has a rollout to serve
    c.apply(traffic_pod(NS, "drifty"))
    assert sum(host_predictions(c, "drifty", 10).values()) == 10
    obj = c.wait_phase(NS, "drifty", {"RolledBack"}, 300, forbid={"Promoted", "Failed"})
    st = obj["status"]
    assert "score-psi" in st["message"], st
    psi = next(ch for ch in st["checks"] if ch["name"] == "score-psi")
    assert psi["verdict"] == "Fail" and psi["value"] > psi["threshold"], psi
    assert st["routing"]["candidateWeight"] == 0
    status = subprocess.run(["kubectl", "modelrollout", "status", "drifty", "-n", NS], capture_output=True,
                            text=True, env=c.env, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "RolledBack" in status.stdout and "score-psi" in status.stdout, status.stdout
    assert host_predictions(c, "drifty", 20) == Counter({"v1": 20})
    c.kubectl("delete", "pod", "traffic-drifty", "-n", NS, "--wait=false")


def test_healthy_candidate_is_promoted_with_both_routers_serving(models):
    """A candidate like the baseline goes shadow → canary 50% → Promoted. Both router replicas serve the
    Service's traffic (each one's /metrics counts requests for the rollout) and the controller reads them
    through the Service's EndpointSlices."""
    c = models
    c.apply(rollout_doc(NS, "healthy", "scorer-v1", "scorer-v2"))
    c.wait_available("router")
    c.apply(traffic_pod(NS, "healthy"))
    c.wait_phase(NS, "healthy", {"Progressing"}, 240, forbid={"RolledBack", "Failed"})
    # The traffic pod keeps its connections alive, so it may stick to one replica; each host request is a new
    # connection, which kube-proxy sends to either replica at random (all 30 to one: p = 2^-29).
    assert set(host_predictions(c, "healthy", 30)) <= {"v1", "v2"}
    routers = c.get("pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/component=router")["items"]
    assert len(routers) == 2, [p["metadata"]["name"] for p in routers]
    token = metrics_token(c)
    for pod in routers:
        ip = pod["status"]["podIP"]
        status, _, body = http(f"http://{ip}:8080/metrics", headers={"authorization": f"Bearer {token}"})
        served = [line for line in body.decode().splitlines()
                  if line.startswith("modelrollout_router_requests_total") and 'rollout="healthy"' in line]
        assert served and any(float(line.rsplit(" ", 1)[1]) > 0 for line in served), \
            f"router {pod['metadata']['name']} served no request for 'healthy':\n{body.decode()[:3000]}"
    obj = c.wait_phase(NS, "healthy", {"Promoted"}, 300, forbid={"RolledBack", "Failed", "Paused"})
    st = obj["status"]
    assert st["routing"]["candidateWeight"] == 100
    assert all(ch["samples"] > 0 for ch in st["checks"]), st["checks"]
    assert host_predictions(c, "healthy", 20) == Counter({"v2": 20})
    table = c.kubectl("get", "mro", "-n", NS).stdout
    assert "Promoted" in table and "RolledBack" in table, table
    c.kubectl("delete", "pod", "traffic-healthy", "-n", NS, "--wait=false")
