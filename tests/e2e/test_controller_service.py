"""Transparent mode on a real apiserver: the controller creates, owns and updates the Service a rollout's
spec.service names, and points it at the router pods with EndpointSlices that follow the router Service's.

This plane has no kubelet and no endpoint controller, so the "router pods" are an EndpointSlice the test
writes for a router Service in a namespace of its own, as the EndpointSlice controller would for real pods
(tests/node runs the same on a real node, kube-proxy and all)."""
from __future__ import annotations

import copy
import secrets

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import apply, events, get_rollout, logs, metric_value, rollout_doc, wait_event, wait_for

pytestmark = pytest.mark.usefixtures("mro_crd")

ROUTER_SLICE = "router-abc12"


def _router_slice(addresses: list[tuple[str, bool]]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": ROUTER_SLICE, "labels": {"kubernetes.io/service-name": "modelrollout-router",
                                                          "endpointslice.kubernetes.io/managed-by": "test"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready, "serving": ready, "terminating": False},
                           "nodeName": "node-1"} for a, ready in addresses]}


@pytest.fixture
def routers(k8s_api):
    """A namespace holding a router Service and its EndpointSlice (two router pods: one ready, one not)."""
    core, disc = client.CoreV1Api(k8s_api), client.DiscoveryV1Api(k8s_api)
    ns = f"routers-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service(ns, {"metadata": {"name": "modelrollout-router"}, "spec": {
        "selector": {"app": "router"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    disc.create_namespaced_endpoint_slice(ns, _router_slice([("10.1.0.5", True), ("10.1.0.6", False)]))
    try:
        yield ns
    finally:
        core.delete_namespace(ns)


def _service(k8s_api, ns: str, name: str) -> dict | None:
    try:
        return k8s_api.sanitize_for_serialization(client.CoreV1Api(k8s_api).read_namespaced_service(name, ns))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _slices(k8s_api, ns: str, service: str) -> list[dict]:
    got = client.DiscoveryV1Api(k8s_api).list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={service}").items
    return [k8s_api.sanitize_for_serialization(s) for s in got]


def _addresses(slices: list[dict]) -> list[tuple[str, bool]]:
    return sorted((a, e["conditions"].get("ready")) for s in slices for e in s.get("endpoints") or []
                  for a in e["addresses"])


def test_controller_creates_owns_and_follows_the_rollouts_service(procs, kubeconfig, kubectl, k8s_api, namespace,
                                                                   routers):
    """The Service is created with no selector, owned by the ModelRollout; its EndpointSlice lists the router
    pods (conditions kept) and follows them; a new port or name in spec.service is applied, and removing
    spec.service deletes what the rollout owned. An invalid edit changes nothing."""
    v1, v2 = procs.scorer("v1", seed=7), procs.scorer("v2", seed=7)
    ctl = procs.controller(kubeconfig, namespace, "--router-service", f"{routers}/modelrollout-router")
    doc = rollout_doc("fraud", namespace, v1, v2, service={"name": "fraud", "port": 8080})
    apply(kubectl, doc)
    diag = lambda: logs(ctl)  # noqa: E731
    svc = wait_for(lambda: _service(k8s_api, namespace, "fraud"), 30, "Service fraud created", diagnose=diag)
    uid = get_rollout(k8s_api, namespace, "fraud")["metadata"]["uid"]
    assert svc["metadata"]["ownerReferences"] == [{"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
                                                   "name": "fraud", "uid": uid, "controller": True}]
    assert svc["metadata"]["labels"]["modelrollout.io/rollout"] == "fraud"
    assert "selector" not in svc["spec"] and svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080}]
    cluster_ip = svc["spec"]["clusterIP"]

    slices = wait_for(lambda: _slices(k8s_api, namespace, "fraud"), 20, "EndpointSlice of fraud", diagnose=diag)
    assert [s["metadata"]["name"] for s in slices] == ["fraud-modelrollout-ipv4"]
    s = slices[0]
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "modelrollout.io"
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "fraud",
                                                 "uid": svc["metadata"]["uid"], "controller": True}]
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert _addresses(slices) == [("10.1.0.5", True), ("10.1.0.6", False)]
    assert s["endpoints"][0]["nodeName"] == "node-1"
    wait_event(k8s_api, namespace, "fraud", "ServiceCreated")
    assert metric_value(f"{ctl.url}/metrics", "modelrollout_service_endpoints", rollout_namespace=namespace,
                        service="fraud") == 2

    # a router pod replaced (rolling update): the rollout's Service follows through the watch
    disc = client.DiscoveryV1Api(k8s_api)
    disc.replace_namespaced_endpoint_slice(ROUTER_SLICE, routers, {
        **_router_slice([("10.1.0.5", True), ("10.1.0.7", True)]),
        "metadata": {**_router_slice([])["metadata"], "resourceVersion": disc.read_namespaced_endpoint_slice(
            ROUTER_SLICE, routers).metadata.resource_version}})
    wait_for(lambda: _addresses(_slices(k8s_api, namespace, "fraud")) == [("10.1.0.5", True), ("10.1.0.7", True)],
             20, "the rollout's slice following the routers", diagnose=diag)

    # an edit the CRD accepts but the parser refuses: nothing changes
    bad = copy.deepcopy(doc)
    bad["spec"]["service"]["port"] = 9090
    bad["spec"]["analysis"]["checks"][0]["minPValue"] = 0.01          # psi has no p-value
    apply(kubectl, bad)
    wait_for(lambda: any(e.reason == "InvalidSpec" for e in events(k8s_api, namespace, "fraud")), 20,
             "InvalidSpec reported", diagnose=diag)
    assert _service(k8s_api, namespace, "fraud")["spec"]["ports"][0]["port"] == 8080

    # a new port: same Service, same ClusterIP
    moved = copy.deepcopy(doc)
    moved["spec"]["service"]["port"] = 9090
    apply(kubectl, moved)
    svc = wait_for(lambda: (lambda x: x if x and x["spec"]["ports"][0]["port"] == 9090 else None)(
        _service(k8s_api, namespace, "fraud")), 20, "port 9090", diagnose=diag)
    assert svc["spec"]["clusterIP"] == cluster_ip

    # a new name: the old Service (and its slice) deleted, the new one created
    renamed = copy.deepcopy(moved)
    renamed["spec"]["service"]["name"] = "fraud-scorer"
    apply(kubectl, renamed)
    wait_for(lambda: _service(k8s_api, namespace, "fraud-scorer") and not _service(k8s_api, namespace, "fraud"),
             20, "Service renamed", diagnose=diag)
    assert _slices(k8s_api, namespace, "fraud") == []
    wait_for(lambda: _addresses(_slices(k8s_api, namespace, "fraud-scorer")) == [("10.1.0.5", True),
                                                                                  ("10.1.0.7", True)],
             20, "the new Service's slice", diagnose=diag)

    # no spec.service any more: the rollout's Service goes
    plain = copy.deepcopy(renamed)
    del plain["spec"]["service"]
    kubectl("replace", "-f", "-", input=__import__("yaml").safe_dump(plain))
    wait_for(lambda: _service(k8s_api, namespace, "fraud-scorer") is None, 20, "Service deleted", diagnose=diag)


def test_a_foreign_service_is_left_alone_until_labelled_then_adopted_and_given_back_keeping_its_cluster_ip(
        procs, kubeconfig, kubectl, k8s_api, namespace, routers):
    """A Service the rollout does not own is not touched (Warning Event, conflict metric); labelled
    modelrollout.io/rollout=NAME it is taken over in place: selector removed, ownerReference added, the
    router endpoints added, its ClusterIP kept (clients connected to it are never cut off). Without
    spec.service it is given back as it was, the routers' EndpointSlice removed once its own pods are listed."""
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service(namespace, {"metadata": {"name": "legacy"}, "spec": {
        "selector": {"app": "legacy-model"}, "ports": [{"name": "web", "port": 80, "targetPort": 8080}]}})
    cluster_ip = _service(k8s_api, namespace, "legacy")["spec"]["clusterIP"]
    # what Kubernetes' endpoint controllers made for its selector (this plane runs none: written here)
    core.create_namespaced_endpoints(namespace, {"metadata": {"name": "legacy"}, "subsets": [
        {"addresses": [{"ip": "10.2.0.8"}], "ports": [{"name": "web", "port": 8080}]}]})
    model_pods = _router_slice([("10.2.0.8", True)])
    model_pods["metadata"] = {"name": "legacy-abcde", "labels": {
        "kubernetes.io/service-name": "legacy", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}}
    client.DiscoveryV1Api(k8s_api).create_namespaced_endpoint_slice(namespace, model_pods)
    v1, v2 = procs.scorer("v1", seed=7), procs.scorer("v2", seed=7)
    ctl = procs.controller(kubeconfig, namespace, "--router-service", f"{routers}/modelrollout-router")
    doc = rollout_doc("legacy-rollout", namespace, v1, v2, service={"name": "legacy", "port": 80})
    apply(kubectl, doc)
    event = wait_event(k8s_api, namespace, "legacy-rollout", "ServiceConflict", timeout=30)
    assert "legacy" in event.message and "modelrollout.io/rollout=legacy-rollout" in event.message
    assert metric_value(f"{ctl.url}/metrics", "modelrollout_service_conflict", rollout_namespace=namespace,
                        service="legacy") == 1
    left = _service(k8s_api, namespace, "legacy")
    assert left["spec"]["selector"] == {"app": "legacy-model"} and not left["metadata"].get("ownerReferences")
    assert [s["metadata"]["name"] for s in _slices(k8s_api, namespace, "legacy")] == ["legacy-abcde"]

    kubectl("label", "service", "legacy", "-n", namespace, "modelrollout.io/rollout=legacy-rollout")
    adopted = wait_for(lambda: (lambda x: x if x and not x["spec"].get("selector") else None)(
        _service(k8s_api, namespace, "legacy")), 40, "Service adopted", diagnose=lambda: logs(ctl))
    assert adopted["spec"]["clusterIP"] == cluster_ip
    assert adopted["metadata"]["ownerReferences"][0]["name"] == "legacy-rollout"
    assert adopted["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    # the selector's leftovers are gone (Kubernetes keeps them when a selector is removed), so every new
    # connection goes to a router: only the routers' slice, no Endpoints to mirror
    wait_for(lambda: [s["metadata"]["name"] for s in _slices(k8s_api, namespace, "legacy")] ==
             ["legacy-modelrollout-ipv4"], 20, "only the routers' slice", diagnose=lambda: logs(ctl))
    assert _addresses(_slices(k8s_api, namespace, "legacy")) == [("10.1.0.5", True), ("10.1.0.6", False)]
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_endpoints("legacy", namespace)
    assert gone.value.status == 404
    wait_event(k8s_api, namespace, "legacy-rollout", "ServiceAdopted")
    assert metric_value(f"{ctl.url}/metrics", "modelrollout_service_conflict", rollout_namespace=namespace,
                        service="legacy") == 0

    # handing it back: the model pods' own slice (the endpoint controller's, written here) appears once the
    # selector is back, and only then do the routers' endpoints go
    del doc["spec"]["service"]
    kubectl("replace", "-f", "-", input=__import__("yaml").safe_dump(doc))
    back = wait_for(lambda: (lambda x: x if x and x["spec"].get("selector") else None)(
        _service(k8s_api, namespace, "legacy")), 40, "Service given back", diagnose=lambda: logs(ctl))
    assert back["spec"]["selector"] == {"app": "legacy-model"} and back["spec"]["clusterIP"] == cluster_ip
    assert back["spec"]["ports"] == [{"name": "web", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert not back["metadata"].get("ownerReferences")
    assert "modelrollout.io/rollout" not in (back["metadata"].get("labels") or {})
    assert [s["metadata"]["name"] for s in _slices(k8s_api, namespace, "legacy")] == ["legacy-modelrollout-ipv4"]
    own = _router_slice([("10.2.0.9", True)])
    own["metadata"] = {"name": "legacy-pods", "labels": {"kubernetes.io/service-name": "legacy",
                                                         "endpointslice.kubernetes.io/managed-by": "test"}}
    client.DiscoveryV1Api(k8s_api).create_namespaced_endpoint_slice(namespace, own)
    wait_for(lambda: [s["metadata"]["name"] for s in _slices(k8s_api, namespace, "legacy")] == ["legacy-pods"], 20,
             "the routers' slice removed after the pods' own appeared", diagnose=lambda: logs(ctl))
    wait_event(k8s_api, namespace, "legacy-rollout", "ServiceReleased")
