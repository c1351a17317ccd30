"""The chart on a real node, as a platform team uses it: `helm install` from charts/modelrollout, a rollout
runs and completes; `helm upgrade` to the next chart version (with an additive CRD change) and then with a
changed controller setting, both while the rollout holds a 30% canary (a manual pause step, so the upgrades
take as long as they take), change nothing a user of the rollout sees (phase, step, weight, the versions
answering), and the upgraded controller takes the rollout on from there when a user promotes it past the
pause; `helm uninstall` leaves only what docs/install.md says it leaves (the CRD, kept with every rollout, and
the controller's Lease).

This file sorts before the tests that install with the kustomization (the cluster is one per package), so it
runs on a cluster without any install of ours, and it leaves none behind but the CRD, which
`kubectl apply -k manifests/` then takes over."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import yaml

from modelrollout.plugin.kube import command_annotation
from policies.api import COMMAND_ANNOTATION
from tests.e2e.test_chart import CHART
from tests.node.conftest import SYSTEM_NS, http, model_server, rollout_doc, traffic_pod, wait_for

pytestmark = pytest.mark.timeout(3000)

NS = "ml-helm"
RELEASE = "modelrollout"
CANARY = 30
STEPS = [{"shadow": {"duration": "20s"}}, {"canary": {"weight": CANARY, "duration": "20s"}}, {"pause": {}},
         {"canary": {"weight": 60, "duration": "20s"}}]
OURS = ("deployments,services,poddisruptionbudgets,serviceaccounts,configmaps,networkpolicies,roles,rolebindings,"
        "clusterroles,clusterrolebindings,customresourcedefinitions")


def next_chart_version(tmp_path) -> str:
    """A copy of the chart as its next release would be: version 0.1.1 and an additive CRD change (a new
    optional field in the spec schema, as the upgrade rules in docs/install.md allow)."""
    chart = tmp_path / "modelrollout"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.1"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    crd = yaml.safe_load((chart / "files" / "crd.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["owner"] = {"type": "string", "description": "added in chart 0.1.1 (upgrade test)"}
    (chart / "files" / "crd.yaml").write_text(yaml.safe_dump(crd))
    return str(chart)


def seen_by_users(c) -> dict:
    """What a user of the rollout sees: its phase, step and routing, and which versions answer."""
    status = c.rollout(NS, "upgraded")["status"]
    return {"phase": status["phase"], "step": status.get("currentStep"), "routing": status.get("routing")}


def host_versions(c, n: int = 60) -> Counter:
    ip = c.get("service", "modelrollout-router", "-n", SYSTEM_NS)["spec"]["clusterIP"]
    versions = Counter()
    for i in range(n):
        status, headers, body = http(f"http://{ip}/v1/rollouts/upgraded/predict?namespace={NS}",
                                     {"features": {"age": 30 + i % 20}}, {"x-user-id": f"user-{i}"})
        assert status == 200 and "prediction" in json.loads(body), body
        versions[headers.get("x-model-version", "?")] += 1
    return versions


def pod_uids(c) -> dict[str, set[str]]:
    return {comp: {p["metadata"]["uid"] for p in c.get("pods", "-n", SYSTEM_NS, "-l",
                                                       f"app.kubernetes.io/component={comp}")["items"]}
            for comp in ("controller", "router")}


@pytest.fixture
def helm_release(node_cluster, helm):
    """Whatever the test leaves installed, it leaves for the kustomization's tests a cluster without it."""
    yield
    if helm("status", RELEASE, "-n", SYSTEM_NS, check=False, kubeconfig=node_cluster.kubeconfig).returncode == 0:
        helm("uninstall", RELEASE, "-n", SYSTEM_NS, "--wait", check=False, kubeconfig=node_cluster.kubeconfig)
    node_cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=180s",
                         check=False, timeout=200)
    node_cluster.kubectl("delete", "lease", "modelrollout-controller", "-n", SYSTEM_NS, "--ignore-not-found",
                         check=False)


def test_helm_install_upgrade_mid_rollout_and_uninstall(node_cluster, helm, helm_release, tmp_path):
    c = node_cluster
    present = c.kubectl("get", "deployments", "-n", SYSTEM_NS, "-o", "name", check=False).stdout.strip()
    if present:
        pytest.fail(f"expected a cluster without an install of ours, found {present}: run tests/node as a package")

    def h(*args: str, timeout: float = 600):
        return helm(*args, kubeconfig=c.kubeconfig, timeout=timeout)

    # install as docs/install.md says
    c.kubectl("create", "namespace", SYSTEM_NS)
    c.kubectl("label", "namespace", SYSTEM_NS, "pod-security.kubernetes.io/enforce=restricted")
    h("install", RELEASE, str(CHART), "-n", SYSTEM_NS, "--wait", "--timeout", "8m")
    c.wait_available("controller")
    c.wait_available("router")
    assert c.get("crd", "modelrollouts.modelrollout.io")["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # a rollout, with users' traffic from a pod through the router Service
    c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    c.apply(*model_server(NS, "fraud-v1", "v1", "--seed", "7"), *model_server(NS, "fraud-v2", "v2", "--seed", "7"))
    for name in ("fraud-v1", "fraud-v2"):
        proc = c.kubectl("rollout", "status", f"deployment/{name}", "-n", NS, "--timeout=300s", check=False,
                         timeout=320)
        assert proc.returncode == 0, f"{name}: {proc.stderr}\n{c.diagnose(NS)}"
    c.apply(rollout_doc(NS, "upgraded", "fraud-v1", "fraud-v2", steps=STEPS), traffic_pod(NS, "upgraded", rps=30))
    wait_for(lambda: seen_by_users(c)["step"] == 2 and seen_by_users(c)["phase"] == "Paused", 300,
             "the pause step holding the canary", diagnose=lambda: c.diagnose(NS))
    before, pods_before = seen_by_users(c), pod_uids(c)
    assert before["routing"]["candidateWeight"] == CANARY, before

    # 1. the next chart version: the CRD gains a field, nothing else changes, so no pod restarts
    h("upgrade", RELEASE, next_chart_version(tmp_path), "-n", SYSTEM_NS, "--wait", "--timeout", "5m")
    crd = c.get("crd", "modelrollouts.modelrollout.io")
    assert "owner" in crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert pod_uids(c) == pods_before, "a chart-only upgrade restarted pods"
    assert seen_by_users(c) == before
    versions = host_versions(c)
    assert set(versions) == {"v1", "v2"}, versions

    # 2. a setting of the controller changes: its pods roll, the Lease moves, the rollout goes on where it was
    h("upgrade", RELEASE, next_chart_version(tmp_path / "again"), "-n", SYSTEM_NS, "--reuse-values",
      "--set", "controller.extraArgs={--workers=2}", "--wait", "--timeout", "5m")
    c.wait_available("controller")
    # `--wait` returns once the new pods are ready; the old ones may still be terminating
    wait_for(lambda: not pod_uids(c)["controller"] & pods_before["controller"], 180,
             "the previous controller pods to be gone", diagnose=c.diagnose)
    assert pod_uids(c)["router"] == pods_before["router"], "a controller setting restarted the routers"
    assert seen_by_users(c) == before, "the upgrade changed what users see"
    versions = host_versions(c)
    assert set(versions) == {"v1", "v2"}, versions

    # promoted past the pause (`kubectl modelrollout promote`: the command annotation), the rollout completes
    # under the upgraded release, once, from where it was
    _, command = command_annotation("promote")
    c.kubectl("annotate", "modelrollout", "upgraded", "-n", NS, f"{COMMAND_ANNOTATION}={command}", "--overwrite")
    obj = c.wait_phase(NS, "upgraded", {"Promoted"}, 420, forbid={"RolledBack", "Failed"})
    assert sum(1 for h_ in obj["status"]["history"] if h_["action"] == "Started") == 1, obj["status"]["history"]

    # uninstall: every object of the release is gone; the CRD (and so the rollout) stays, as documented
    h("uninstall", RELEASE, "-n", SYSTEM_NS, "--wait", "--timeout", "5m")
    wait_for(lambda: not c.get("pods", "-n", SYSTEM_NS)["items"], 180, "the release's pods to go",
             diagnose=c.diagnose)
    left = c.get(OURS, "-A", "-l", "app.kubernetes.io/name=modelrollout")["items"]
    assert [(o["kind"], o["metadata"]["name"]) for o in left] == \
        [("CustomResourceDefinition", "modelrollouts.modelrollout.io")], left
    assert c.rollout(NS, "upgraded")["status"]["phase"] == "Promoted"
    leases = [o["metadata"]["name"] for o in c.get("leases", "-n", SYSTEM_NS)["items"]]
    assert leases == ["modelrollout-controller"], leases      # created by the controller at run time
    secrets = c.get("secrets", "-n", SYSTEM_NS, "-l", f"owner=helm,name={RELEASE}")["items"]
    assert secrets == [], "helm kept release records"
    # helm_release then leaves the cluster as the kustomization's tests expect it: no rollout, no Lease
