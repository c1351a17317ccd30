"""Transparent mode on a real node: a client Pod calls a model by its Service name, `http://fraud:8080/predict`,
and changes nothing while the Service is handed over to a ModelRollout (spec.service) and the rollout runs to
Promoted: kube-proxy sends the Service to the router pods through the EndpointSlices the controller keeps,
the routers map the Host header to the rollout."""
from __future__ import annotations

import json
import time

import pytest

from tests.node.conftest import IMAGE, MODELS, SYSTEM_NS, http, metrics_token, model_server, rollout_doc, wait_for

pytestmark = pytest.mark.timeout(3000)

NS = "ml-transparent"


def client_pod(url: str, seconds: int) -> dict:
    """The traffic generator as a client that only knows the Service's name; a new connection per request."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": NS},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "client", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": ["python", "-m", f"{MODELS}.traffic", "--url", url, "--rps", "20",
                                                 "--duration", str(seconds), "--timeout", "5", "--no-keepalive"],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}]}}


def test_a_client_calls_the_service_by_name_unchanged_through_the_handover_and_a_whole_rollout(installed):
    c = installed
    c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    c.apply(*model_server(NS, "fraud-v1", "v1", "--seed", "7"), *model_server(NS, "fraud-v2", "v2", "--seed", "7"))
    for name in ("fraud-v1", "fraud-v2"):
        proc = c.kubectl("rollout", "status", f"deployment/{name}", "-n", NS, "--timeout=300s", check=False,
                         timeout=320)
        assert proc.returncode == 0, f"{name}: {proc.stderr}\n{c.diagnose(NS)}"
    # the Service the clients call today: the baseline's pods
    c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fraud", "namespace": NS},
             "spec": {"selector": {"app": "fraud-v1"}, "ports": [{"name": "web", "port": 8080, "targetPort": 8080}]}})
    cluster_ip = c.get("service", "fraud", "-n", NS)["spec"]["clusterIP"]
    c.apply(client_pod("http://fraud:8080/predict", 900))     # stopped below, once the rollout is Promoted
    wait_for(lambda: c.get("pod", "client", "-n", NS)["status"].get("phase") == "Running", 120, "client running",
             diagnose=lambda: c.diagnose(NS))

    # the hand-over, as the README says: label the Service, apply the rollout naming it
    c.kubectl("label", "service", "fraud", "-n", NS, "modelrollout.io/rollout=fraud")
    doc = rollout_doc(NS, "fraud", "fraud-v1", "fraud-v2")
    doc["spec"]["service"] = {"name": "fraud", "port": 8080}
    c.apply(doc)
    svc = wait_for(lambda: (lambda s: s if not s["spec"].get("selector") else None)(
        c.get("service", "fraud", "-n", NS)), 120, "the Service adopted", diagnose=lambda: c.diagnose(NS))
    assert svc["spec"]["clusterIP"] == cluster_ip
    routers = {p["status"]["podIP"] for p in c.get("pods", "-n", SYSTEM_NS, "-l",
                                                   "app.kubernetes.io/component=router")["items"]}
    # the routers' EndpointSlice (the controller's) at once; the model pod's (the endpoint controller's) goes
    # once that controller sees the selector gone
    def addresses(manager: str | None = None) -> set[str]:
        label = "kubernetes.io/service-name=fraud" + (f",endpointslice.kubernetes.io/managed-by={manager}"
                                                      if manager else "")
        return {a for s in c.get("endpointslices", "-n", NS, "-l", label)["items"]
                for e in s.get("endpoints") or [] for a in e["addresses"]}
    assert addresses("modelrollout.io") == routers
    wait_for(lambda: addresses() == routers, 60, "only the router pods behind the Service",
             diagnose=lambda: c.diagnose(NS))

    obj = c.wait_phase(NS, "fraud", {"Promoted"}, 400, forbid={"RolledBack", "Failed", "Paused"})
    assert all(ch["samples"] > 0 for ch in obj["status"]["checks"]), obj["status"]["checks"]
    # a few seconds of traffic to the promoted version, then the client stops (SIGTERM: it awaits the answers
    # in flight and prints its report) instead of running out its duration
    time.sleep(5)
    c.kubectl("exec", "client", "-n", NS, "--", "python", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")
    wait_for(lambda: c.get("pod", "client", "-n", NS)["status"].get("phase") in ("Succeeded", "Failed"), 60,
             "the client to finish", diagnose=lambda: c.diagnose(NS))
    report = json.loads(c.kubectl("logs", "client", "-n", NS).stdout.strip().splitlines()[-1])
    # every request answered 200, none failed, across the hand-over and every step of the rollout
    assert report["transport_errors"] == 0 and report["unfinished"] == 0, report
    assert report["statuses"] == {"200": report["sent"]}, report
    assert report["versions"].get("v2", 0) > 0 and report["versions"].get("v1", 0) > 0, report
    served, token = 0.0, metrics_token(c)   # the routers run --internal-auth kubernetes
    for ip in routers:
        _, _, body = http(f"http://{ip}:8080/metrics", headers={"authorization": f"Bearer {token}"})
        served += sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                      if line.startswith("modelrollout_router_requests_total") and 'rollout="fraud"' in line
                      and 'role="primary"' in line)
    assert served > 0
    c.kubectl("delete", "namespace", NS, "--wait=false")
