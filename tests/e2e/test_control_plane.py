"""The test control plane behaves like a real cluster where controller code depends on it: CRD schema
validation, the status subresource, watches, optimistic concurrency, RBAC, and surviving an apiserver restart.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.cluster.plane import BUILD_SCRIPT, ControlPlane, ControlPlaneError, KubectlError

GROUP, VERSION, PLURAL = "test.modelrollout.io", "v1", "widgets"

WIDGET_CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {PLURAL}.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: {PLURAL}, singular: widget, kind: Widget}}
  versions:
  - name: {VERSION}
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [replicas]
            properties:
              replicas: {{type: integer, minimum: 0, maximum: 10}}
              color: {{type: string, enum: [red, green, blue]}}
          status:
            type: object
            properties:
              phase: {{type: string}}
              observedGeneration: {{type: integer}}
"""


def widget(name: str, replicas: int = 1, **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name},
            "spec": {"replicas": replicas, **spec}}


def pinned_version() -> str:
    match = re.search(r"^K8S_VERSION=(\S+)$", BUILD_SCRIPT.read_text(), re.M)
    return f"v{match.group(1)}"


@pytest.fixture(scope="module")
def widget_crd(kubectl) -> str:
    """The Widget CRD, applied with kubectl and Established."""
    kubectl("apply", "-f", "-", input=WIDGET_CRD)
    kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")
    return f"{PLURAL}.{GROUP}"


@pytest.fixture
def objects(k8s_api, widget_crd) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s_api)


def test_kubectl_and_apiserver_report_the_pinned_version(control_plane, kubectl):
    """The built kubectl and kube-apiserver both report the release pinned in build.sh, not v0.0.0-master."""
    if control_plane.external:
        pytest.skip("KUBECONFIG_E2E cluster: its version is not ours to pin")
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == pinned_version()
    assert versions["serverVersion"]["gitVersion"] == pinned_version()


def test_custom_object_round_trips_through_kubectl(kubectl, namespace, widget_crd):
    """A custom object applied with kubectl is stored and read back with its spec."""
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(widget("w1", 3, color="green")))
    got = json.loads(kubectl("get", "widget", "w1", "-n", namespace, "-o", "json").stdout)
    assert got["spec"] == {"replicas": 3, "color": "green"}


@pytest.mark.parametrize("spec, complaint", [
    ({"replicas": 11}, "spec.replicas: Invalid value"),
    ({"replicas": 1, "color": "purple"}, "spec.color: Unsupported value"),
    ({"color": "red"}, "spec.replicas: Required value"),
])
def test_schema_validation_rejects_bad_object_naming_the_field(kubectl, namespace, widget_crd, spec, complaint):
    """An object violating the CRD schema is refused, kubectl's error names the field, and nothing is stored."""
    bad = widget("bad")
    bad["spec"] = spec
    proc = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert proc.returncode != 0
    assert complaint in proc.stderr
    missing = kubectl("get", "widget", "bad", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_status_patch_arrives_through_a_watch(objects, namespace):
    """A merge patch to /status is delivered as a MODIFIED event to a watch started at the earlier version."""
    created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w2"))
    start_rv = created["metadata"]["resourceVersion"]
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "w2",
                                                  {"status": {"phase": "Ready", "observedGeneration": 1}})
    stream = watch.Watch().stream(objects.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                  resource_version=start_rv, timeout_seconds=30)
    events = []
    for event in stream:
        events.append((event["type"], event["object"]["metadata"]["name"], event["object"].get("status")))
        if event["type"] == "MODIFIED":
            break
    assert events == [("MODIFIED", "w2", {"phase": "Ready", "observedGeneration": 1})]


def test_status_subresource_separates_spec_and_status_writes(objects, namespace):
    """Writes to the main endpoint ignore .status and writes to /status ignore .spec."""
    body = widget("w3", 2)
    body["status"] = {"phase": "Bogus"}
    created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert "status" not in created
    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w3", {"spec": {"replicas": 9}, "status": {"phase": "Ready"}})
    assert patched["spec"]["replicas"] == 2 and patched["status"] == {"phase": "Ready"}


def test_stale_resource_version_is_a_409_conflict(objects, namespace):
    """A status write carrying an outdated resourceVersion is rejected with 409 and leaves the object as is."""
    created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w4"))
    stale_rv = created["metadata"]["resourceVersion"]
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "w4",
                                                  {"status": {"phase": "First"}})
    with pytest.raises(ApiException) as err:
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "w4",
            {"metadata": {"resourceVersion": stale_rv}, "status": {"phase": "Second"}})
    assert err.value.status == 409
    current = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w4")
    assert current["status"] == {"phase": "First"}


def test_restricted_identity_gets_only_what_its_role_grants(control_plane, kubectl, namespace, widget_crd,
                                                            restricted_kubeconfig):
    """A ServiceAccount token is forbidden (403) until a Role grants it, and then only for the granted verbs."""
    sa_config = restricted_kubeconfig(namespace, "reader")
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(widget("w5")))
    with control_plane.api_client(sa_config) as sa_api:
        sa_objects = client.CustomObjectsApi(sa_api)
        with pytest.raises(ApiException) as before:
            sa_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        assert before.value.status == 403

        kubectl("create", "role", "widget-reader", "-n", namespace, "--verb=get,list,watch",
                f"--resource={PLURAL}.{GROUP}")
        kubectl("create", "rolebinding", "widget-reader", "-n", namespace, "--role=widget-reader",
                f"--serviceaccount={namespace}:reader")
        listed = sa_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["w5"]

        with pytest.raises(ApiException) as create:
            sa_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w6"))
        assert create.value.status == 403
        with pytest.raises(ApiException) as other_ns:
            client.CoreV1Api(sa_api).list_namespaced_config_map("default")
        assert other_ns.value.status == 403

    denied = control_plane.run_kubectl("delete", "widget", "w5", "-n", namespace, kubeconfig=sa_config,
                                       check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    assert f"system:serviceaccount:{namespace}:reader" in denied.stderr


def test_state_survives_apiserver_restart(control_plane, k8s_api, namespace):
    """After restart_apiserver() the same server URL serves the objects written before, and accepts writes."""
    if control_plane.external:
        pytest.skip("KUBECONFIG_E2E cluster: the apiserver is not ours to restart")
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}, "data": {"k": "v1"}})
    server = control_plane.server
    control_plane.restart_apiserver()
    assert control_plane.server == server
    assert core.read_namespaced_config_map("before", namespace).data == {"k": "v1"}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}, "data": {"k": "v2"}})
    names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
    assert {"before", "after"} <= names


def test_missing_binaries_are_named(tmp_path, monkeypatch):
    """A bin dir without the binaries fails start() with an error naming what is missing, and leaves no temp dir."""
    monkeypatch.delenv("KUBECONFIG_E2E", raising=False)
    (tmp_path / "kubectl").write_text("#!/bin/sh\n")
    (tmp_path / "kubectl").chmod(0o755)
    plane = ControlPlane(bin_dir=tmp_path)
    with pytest.raises(ControlPlaneError, match=r"lacks executable etcd, kube-apiserver"):
        plane.start()
    assert plane.workdir is None


def test_kubectl_error_shows_stderr(kubectl):
    """A failing kubectl call raises an error whose message carries kubectl's own explanation."""
    with pytest.raises(KubectlError, match="NotFound|not found") as err:
        kubectl("get", "configmap", "does-not-exist", "-n", "default")
    assert err.value.returncode != 0


def test_stop_kills_both_servers_and_deletes_the_data_dir(control_plane):
    """Leaving the context manager stops etcd and kube-apiserver and removes certs, data and logs."""
    if control_plane.external:
        pytest.skip("KUBECONFIG_E2E cluster: no local servers to stop")
    with ControlPlane() as plane:
        procs = [plane._etcd, plane._apiserver]
        workdir = plane.workdir
        assert all(p.poll() is None for p in procs) and workdir.is_dir()
        plane.run_kubectl("get", "namespace", "default")
    assert all(p.poll() is not None for p in procs)
    assert not workdir.exists()


def test_kubeconfig_e2e_adopts_an_existing_cluster_without_starting_or_stopping_it(control_plane, monkeypatch):
    """With KUBECONFIG_E2E set, a ControlPlane uses that cluster and kubectl from PATH, and stop() leaves it up."""
    monkeypatch.setenv("KUBECONFIG_E2E", control_plane.kubeconfig)
    monkeypatch.setenv("PATH", f"{Path(control_plane.kubectl).parent}{os.pathsep}{os.environ['PATH']}")
    with ControlPlane() as adopted:
        assert adopted.external and adopted._etcd is None and adopted._apiserver is None
        assert adopted.server == control_plane.server
        assert adopted.kubectl == control_plane.kubectl
        adopted.run_kubectl("create", "namespace", "adopted-e2e")
        sa_config = adopted.service_account_kubeconfig("adopted-e2e", "bot")
        whoami = adopted.run_kubectl("auth", "whoami", "-o", "json", kubeconfig=sa_config)
        assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == \
            "system:serviceaccount:adopted-e2e:bot"
    assert control_plane.run_kubectl("get", "namespace", "adopted-e2e").returncode == 0
    control_plane.run_kubectl("delete", "namespace", "adopted-e2e", "--wait=false")


@pytest.mark.parametrize("namespace_arg, name_arg, field", [("Bad_NS", "bot", "namespace='Bad_NS'"),
                                                             ("ok", "", "name=''")])
def test_service_account_kubeconfig_rejects_invalid_names(control_plane, namespace_arg, name_arg, field):
    """An invalid namespace or ServiceAccount name is refused with an error naming the argument and value."""
    with pytest.raises(ValueError, match=re.escape(field) + ".*DNS-1123 label"):
        control_plane.service_account_kubeconfig(namespace_arg, name_arg)
