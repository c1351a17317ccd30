"""manifests/: every rendered object passes a server-side dry run, and the RBAC identities get exactly what they need."""
from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_crd import example_text, install_crd

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"

# Only what `kubectl apply --dry-run=server` needs to accept a PrometheusRule: the Prometheus Operator's
# CRD is not part of this project, so a schema-less stand-in with the same group/kind is installed.
PROMETHEUS_RULE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"kind": "PrometheusRule", "plural": "prometheusrules", "singular": "prometheusrule"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


@pytest.fixture(scope="module")
def crd(kubectl):
    install_crd(kubectl)


def test_kustomize_renders_into_one_namespace(kubectl):
    """`kubectl kustomize manifests/` puts every namespaced object in modelrollout-system, bindings included."""
    docs = list(yaml.safe_load_all(kubectl("kustomize", str(MANIFESTS)).stdout))
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "Role", "RoleBinding", "Deployment", "Service"} <= kinds
    # the default install needs nothing but Kubernetes: monitoring objects are opt-in
    assert "PrometheusRule" not in kinds
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in cluster_scoped} == \
        {"modelrollout-system"}
    subjects = [s for d in docs if d["kind"].endswith("Binding") for s in d["subjects"]]
    assert subjects and {s["namespace"] for s in subjects} == {"modelrollout-system"}


def test_every_rendered_manifest_passes_a_server_side_dry_run(kubectl):
    """Deployments, Services, RBAC and the CRD are accepted by the apiserver's validation on a cluster without
    the Prometheus Operator; the opt-in PrometheusRule (alerts.yaml) once the operator's CRD is there."""
    ns = kubectl("get", "namespace", "modelrollout-system", check=False)
    if ns.returncode != 0:
        kubectl("create", "namespace", "modelrollout-system")
    rendered = kubectl("kustomize", str(MANIFESTS)).stdout
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert "deployment.apps/modelrollout-controller" in out.stdout
    assert "deployment.apps/modelrollout-router" in out.stdout
    kubectl("apply", "-f", "-", input=json.dumps(PROMETHEUS_RULE_CRD))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/prometheusrules.monitoring.coreos.com")
    out = kubectl("apply", "--dry-run=server", "-n", "modelrollout-system", "-f", str(MANIFESTS / "alerts.yaml"))
    assert "prometheusrule.monitoring.coreos.com/modelrollout" in out.stdout


def test_deployments_run_non_root_with_probes_and_limits(kubectl):
    """Both Deployments run as non-root without privilege escalation, with probes, requests and scrape annotations."""
    docs = list(yaml.safe_load_all(kubectl("kustomize", str(MANIFESTS)).stdout))
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"modelrollout-controller", "modelrollout-router"}
    for d in deployments:
        pod = d["spec"]["template"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert pod["spec"]["serviceAccountName"] == d["metadata"]["name"]
        for c in pod["spec"]["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["livenessProbe"] and c["readinessProbe"] and c["resources"]["requests"]
            # a slow start (no bytecode cache, a busy node) is not a failed liveness probe
            startup = c["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, startup
            assert c["args"][0] in ("controller", "router")


# ---- RBAC ---------------------------------------------------------------------------------------------

def rbac_for(namespace: str, suffix: str) -> list[dict]:
    """manifests/rbac.yaml bound to ServiceAccounts in `namespace`; cluster-scoped names get `suffix` so
    tests never share (or clobber) each other's ClusterRoles."""
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text()) if d]
    for d in docs:
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            d["metadata"]["name"] += suffix
        if d["kind"] == "ClusterRoleBinding" and not d["roleRef"]["name"].startswith("system:"):
            d["roleRef"]["name"] += suffix      # the built-in system: roles keep their names
        if d["kind"].endswith("Binding"):
            for s in d["subjects"]:
                s["namespace"] = namespace
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            d["metadata"]["namespace"] = namespace
    return [d for d in docs if not d["metadata"]["name"].startswith(("modelrollout-edit", "modelrollout-view"))]


@contextlib.contextmanager
def manifests_rbac(kubectl, namespace: str):
    """`rbac_for` applied in `namespace` with a fresh suffix (yielded); its cluster-scoped objects deleted after."""
    suffix = f"-{secrets.token_hex(3)}"
    docs = rbac_for(namespace, suffix)
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        yield suffix
    finally:
        for d in docs:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found")


@pytest.fixture
def identities(crd, kubectl, namespace, restricted_kubeconfig):
    """(controller kubeconfig, router kubeconfig) bound only by manifests/rbac.yaml, plus one rollout to act on."""
    with manifests_rbac(kubectl, namespace):
        kubectl("apply", "-f", "-", input=example_text(namespace))
        kubectl("create", "secret", "generic", "db-password", "-n", namespace, "--from-literal=p=hunter2")
        yield (restricted_kubeconfig(namespace, "modelrollout-controller"),
               restricted_kubeconfig(namespace, "modelrollout-router"))


def as_identity(control_plane, kubeconfig, *args, input=None):
    return control_plane.run_kubectl(*args, input=input, check=False, kubeconfig=kubeconfig)


def can_i(control_plane, kubeconfig, verb, resource, namespace, subresource=None) -> bool:
    args = ["auth", "can-i", verb, resource, "-n", namespace]
    if subresource:
        args += ["--subresource", subresource]
    out = as_identity(control_plane, kubeconfig, *args)
    return out.stdout.strip() == "yes"


def test_controller_identity_can_write_status_but_not_delete_or_read_secrets(control_plane, identities, namespace):
    """The controller patches status, records Events and holds a Lease, but cannot delete rollouts or read Secrets."""
    controller, _ = identities
    patch = json.dumps({"status": {"phase": "Shadowing", "currentStep": 0}})
    out = as_identity(control_plane, controller, "patch", "mro", "fraud-scorer", "-n", namespace,
                      "--subresource=status", "--type=merge", "-p", patch)
    assert out.returncode == 0, out.stderr
    denied = as_identity(control_plane, controller, "delete", "mro", "fraud-scorer", "-n", namespace)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    secret = as_identity(control_plane, controller, "get", "secret", "db-password", "-n", namespace)
    assert secret.returncode != 0 and "forbidden" in secret.stderr.lower()
    spec = as_identity(control_plane, controller, "patch", "mro", "fraud-scorer", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"spec": {"predictPath": "/v2/predict"}}))
    assert spec.returncode != 0 and "forbidden" in spec.stderr.lower()
    assert can_i(control_plane, controller, "list", "modelrollouts.modelrollout.io", "default")
    assert can_i(control_plane, controller, "watch", "modelrollouts.modelrollout.io", "default")
    assert can_i(control_plane, controller, "create", "events", "default")
    assert can_i(control_plane, controller, "list", "endpointslices.discovery.k8s.io", "default")
    # transparent mode: the rollouts' own Services and their EndpointSlices, and nothing else of the workload
    for verb in ("create", "update", "delete"):
        assert can_i(control_plane, controller, verb, "services", namespace)
        assert can_i(control_plane, controller, verb, "endpointslices.discovery.k8s.io", namespace)
    assert not can_i(control_plane, controller, "patch", "services", namespace)
    assert not can_i(control_plane, controller, "update", "deployments.apps", namespace)
    assert can_i(control_plane, controller, "update", "leases.coordination.k8s.io", namespace)
    assert not can_i(control_plane, controller, "update", "leases.coordination.k8s.io", "default")
    assert not can_i(control_plane, controller, "create", "pods", namespace)
    # golden steps: the golden set's ConfigMap, read only
    assert can_i(control_plane, controller, "get", "configmaps", namespace)
    assert not can_i(control_plane, controller, "update", "configmaps", namespace)


def test_router_identity_is_read_only(control_plane, identities, namespace):
    """The router may read rollouts and nothing more: no status writes, no commands, no Secrets."""
    _, router = identities
    got = as_identity(control_plane, router, "get", "mro", "fraud-scorer", "-n", namespace, "-o", "name")
    assert got.returncode == 0 and got.stdout.strip() == "modelrollout.modelrollout.io/fraud-scorer"
    assert can_i(control_plane, router, "watch", "modelrollouts.modelrollout.io", "default")
    for verb, resource, sub in (("patch", "modelrollouts.modelrollout.io", "status"),
                                ("patch", "modelrollouts.modelrollout.io", None),
                                ("delete", "modelrollouts.modelrollout.io", None),
                                ("get", "secrets", None), ("create", "events", None)):
        assert not can_i(control_plane, router, verb, resource, namespace, sub), (verb, resource, sub)


def test_plugin_reports_forbidden_for_a_read_only_identity(control_plane, identities, namespace):
    """`kubectl modelrollout promote` as the router identity fails with a 'forbidden' message, not a traceback."""
    import os
    import sys

    _, router = identities
    env = control_plane.kubectl_env(router)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    out = subprocess.run([control_plane.kubectl, "modelrollout", "promote", "fraud-scorer", "-n", namespace],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert out.stderr.startswith("error: forbidden:") and "Traceback" not in out.stderr


def test_deployment_args_are_accepted_by_the_programs(kubectl):
    """The controller's and router's container args parse with the programs' own command-line parsers."""
    from controller.kube import parse_args
    from router.kube_source import parser as router_parser

    docs = list(yaml.safe_load_all(kubectl("kustomize", str(MANIFESTS)).stdout))
    args = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["args"]
            for d in docs if d["kind"] == "Deployment"}
    ns, settings = parse_args(args["modelrollout-controller"][1:])
    assert settings.router_service == "$(POD_NAMESPACE)/modelrollout-router" and ns.metrics_port == 9090
    router = router_parser().parse_args(args["modelrollout-router"][1:])
    assert router.kube and router.port == 8080 and router.host == "0.0.0.0"
