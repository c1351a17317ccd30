"""Transparent mode in a cluster: the Service a ModelRollout with `spec.service` answers as.

For `spec.service: {name, port}` the controller keeps, in the rollout's namespace:

* a Service `name` with no selector and one port (`port`, named `http`), owned by the ModelRollout
  (ownerReference, controller) and labelled `app.kubernetes.io/managed-by: modelrollout`,
  `modelrollout.io/rollout: <rollout name>`;
* its EndpointSlices `<name>-modelrollout-<ipv4|ipv6>`, owned by that Service, labelled
  `kubernetes.io/service-name: <name>` and `endpointslice.kubernetes.io/managed-by: modelrollout.io`, listing
  the router pods as the router Service's own EndpointSlices list them (addresses, conditions, node, zone,
  and the port named `http`), followed through a watch.

kube-proxy then sends `<ClusterIP>:port` to a router pod, and the router maps the Host header to the
rollout (router/transparent.py). Why this way: a selector reaches only pods of the Service's own namespace
(the routers run in modelrollout-system), and an ExternalName Service is a DNS alias only — kube-proxy
would not map its port, so clients would have to call the router's port instead of their own.

A Service of that name that the rollout does not own is left alone (a Warning Event `ServiceConflict` and
`modelrollout_service_conflict` = 1), unless it carries the label `modelrollout.io/rollout: <rollout name>`
and no other controller owner: then it is adopted (its selector removed, ports set, ownerReference added) —
its ClusterIP, and so every client's connection, stays; the Endpoints and EndpointSlices Kubernetes made for
its selector are deleted then (its controllers leave them behind when a selector goes, and kube-proxy would
keep sending part of the traffic to the model pods). That is how an existing Service is handed over
without a gap, and how a Service orphaned by `kubectl delete mro --cascade=orphan` is taken back when the
rollout is applied again. When the spec no longer names a Service, or names another, a Service the rollout
created is deleted and one it adopted is given back as it was (selector and ports, kept in the annotation
`modelrollout.io/original-service`; the routers' EndpointSlices go once its own pods are listed). An invalid
spec changes nothing (the last valid Service keeps serving).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from prometheus_client import CollectorRegistry, Gauge

from policies.api import API_VERSION, KIND
from policies.spec import SpecError, parse_rollout

log = logging.getLogger("modelrollout.services")

ROLLOUT_LABEL = "modelrollout.io/rollout"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelrollout"}
SLICE_MANAGER = "modelrollout.io"
PORT_NAME = "http"
ORIGINAL = "modelrollout.io/original-service"
"""Annotation of an adopted Service: its selector and ports before, restored when the rollout lets it go."""
HANDBACK_WAIT = 10.0
"""Seconds a Service given back may wait for its own pods' endpoints before the routers' are removed."""
_INVALID = object()
"""A spec that does not parse (its Service is left as it was)."""

RECHECK_SECONDS = 30.0
"""A Service found as wanted is read again after this long (someone may have changed or deleted it)."""


class RouterEndpoints:
    """The router pods as the router Service's EndpointSlices list them, kept by list+watch in a thread;
    `on_change()` runs after each change."""

    def __init__(self, api_client: client.ApiClient, namespace: str, service: str,
                 on_change: Callable[[], None] = lambda: None):
        self.api = client.DiscoveryV1Api(api_client)
        self.namespace, self.service, self.on_change = namespace, service, on_change
        self.slices: dict[str, dict] = {}
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._watch: watch.Watch | None = None

    def current(self) -> tuple[int | None, dict[str, list[dict]]]:
        """(the routers' port named http, {addressType: [endpoint, ...]}) from every slice, deduplicated."""
        port, by_type, seen = None, {}, set()
        with self._lock:
            slices = list(self.slices.values())
        for s in slices:
            ports = s.get("ports") or []
            p = next((x.get("port") for x in ports if x.get("name") == PORT_NAME), None)
            if p is None and ports:
                p = ports[0].get("port")
            port = port or p
            for ep in s.get("endpoints") or []:
                addresses = tuple(ep.get("addresses") or ())
                if not addresses or addresses in seen:
                    continue
                seen.add(addresses)
                keep = {"addresses": list(addresses), "conditions": dict(ep.get("conditions") or {})}
                for k in ("nodeName", "zone"):
                    if ep.get(k):
                        keep[k] = ep[k]
                by_type.setdefault(s.get("addressType") or "IPv4", []).append(keep)
        for eps in by_type.values():
            eps.sort(key=lambda e: e["addresses"])
        return port, by_type

    def run(self, stop: threading.Event) -> None:
        selector = f"kubernetes.io/service-name={self.service}"
        backoff = 0.2
        while not stop.is_set():
            try:
                listed = self.api.list_namespaced_endpoint_slice(self.namespace, label_selector=selector,
                                                                 _request_timeout=30)
                items = {s.metadata.name: self.api.api_client.sanitize_for_serialization(s) for s in listed.items}
                with self._lock:
                    changed = items != self.slices
                    self.slices = items
                self.synced.set()
                if changed:
                    self.on_change()
                backoff = 0.2
                w = self._watch = watch.Watch()
                for event in w.stream(self.api.list_namespaced_endpoint_slice, self.namespace,
                                      label_selector=selector, resource_version=listed.metadata.resource_version,
                                      timeout_seconds=60, _request_timeout=70):
                    if stop.is_set():
                        break
                    obj = self.api.api_client.sanitize_for_serialization(event["object"])
                    name = (obj.get("metadata") or {}).get("name")
                    if event["type"] == "ERROR" or not name:
                        break
                    with self._lock:
                        if event["type"] == "DELETED":
                            self.slices.pop(name, None)
                        else:
                            self.slices[name] = obj
                    self.on_change()
            except Exception as e:  # noqa: BLE001 - the apiserver may be restarting: relist after a pause
                if stop.is_set():
                    break
                log.warning("router endpoints of %s/%s: %s; relisting in %.1fs", self.namespace, self.service,
                            str(e)[:200], backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()


class ServiceKeeper:
    """`ensure(obj)`: make the cluster hold the Service (and EndpointSlices) `obj`'s spec.service asks for."""

    def __init__(self, api_client: client.ApiClient, routers: RouterEndpoints | None, events,
                 registry: CollectorRegistry | None = None, may_write: Callable[[], bool] = lambda: True):
        self.core = client.CoreV1Api(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.serialize = api_client.sanitize_for_serialization
        self.routers, self.events, self.may_write = routers, events, may_write
        self._done: dict[str, tuple] = {}
        """rollout key -> (what was ensured, when): unchanged and recent → nothing to read or write."""
        self._parsed: dict[str, tuple] = {}
        """rollout key -> ((uid, generation), its spec.service or _INVALID)."""
        self._warned: dict[str, str] = {}
        self.endpoints = Gauge("modelrollout_service_endpoints", "Router endpoints (ready or not) in the "
                               "EndpointSlices of a rollout's Service (transparent mode)",
                               ["rollout_namespace", "service"], registry=registry)
        self.conflict = Gauge("modelrollout_service_conflict", "1 while another object holds the name of the "
                              "Service a rollout asks for (spec.service), so clients do not reach the router",
                              ["rollout_namespace", "rollout", "service"], registry=registry)

    def ensure(self, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        ns, name, uid = meta.get("namespace", "default"), meta.get("name", ""), meta.get("uid")
        key = f"{ns}/{name}"
        version = (uid, meta.get("generation"))
        parsed = self._parsed.get(key)
        if parsed is None or parsed[0] != version or None in version:
            try:               # parsed once per spec change (generation), not on every reconcile
                parsed = (version, parse_rollout(obj).spec.service)
            except SpecError:
                parsed = (version, _INVALID)
            self._parsed[key] = parsed
        service = parsed[1]
        if service is _INVALID:
            return                      # fail-static: the last valid Service keeps serving
        port, endpoints = self.routers.current() if self.routers is not None else (None, {})
        wanted = (uid, service, port, repr(sorted(endpoints.items())))
        done = self._done.get(key)
        # Without spec.service only Services an earlier spec made can be left to drop: looked for once per
        # change, not every RECHECK_SECONDS (a LIST per rollout every 30 s, for nothing).
        if done is not None and done[0] == wanted and (service is None or
                                                      time.monotonic() - done[1] < RECHECK_SECONDS):
            return
        if not self.may_write():
            return
        self._drop_others(obj, ns, name, uid, service.name if service else None)
        if service is not None:
            if not self._service(obj, ns, name, uid, service, port, endpoints):
                self._done.pop(key, None)
                return
        self._done[key] = (wanted, time.monotonic())

    def forget(self, key: str) -> None:
        """The rollout is gone (its Services go with it: the garbage collector follows the ownerReference)."""
        self._done.pop(key, None)
        self._parsed.pop(key, None)

    # ---- the Service ---------------------------------------------------------------------------------

    def _service(self, obj: dict, ns: str, name: str, uid: str, service, port: int | None,
                 endpoints: dict[str, list[dict]]) -> bool:
        owner = {"apiVersion": obj.get("apiVersion", API_VERSION), "kind": obj.get("kind", KIND), "name": name,
                 "uid": uid, "controller": True}
        ports = [{"name": PORT_NAME, "port": service.port, "protocol": "TCP", "targetPort": port or 8080}]
        labels = {**MANAGED_BY, ROLLOUT_LABEL: name}
        current = self._read(self.core.read_namespaced_service, service.name, ns)
        if current is None:
            body = {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": service.name, "namespace": ns, "labels": labels,
                                 "ownerReferences": [owner]},
                    "spec": {"type": "ClusterIP", "ports": ports}}
            current = self.serialize(self.core.create_namespaced_service(ns, body, _request_timeout=10))
            self._slices(ns, service.name, current, port, endpoints)
            self._event(obj, "Normal", "ServiceCreated", f"Service {service.name} (port {service.port}) created: "
                        f"its clients now reach the rollout through the router")
        else:
            cm = current["metadata"]
            controller = next((r for r in cm.get("ownerReferences") or [] if r.get("controller")), None)
            ours = controller is not None and controller.get("uid") == uid
            adoptable = controller is None and (cm.get("labels") or {}).get(ROLLOUT_LABEL) == name
            if not (ours or adoptable):
                self.conflict.labels(ns, name, service.name).set(1)
                holder = f"{controller['kind']} {controller['name']}" if controller else "nobody (not labelled " \
                         f"{ROLLOUT_LABEL}={name})"
                self._event(obj, "Warning", "ServiceConflict", f"Service {service.name} exists and is owned by "
                            f"{holder}: left alone, so its clients do not reach the rollout. Delete it, or label it "
                            f"{ROLLOUT_LABEL}={name} to hand it over (its ClusterIP is kept)", once=True)
                return False
            # slices first: while a selector is still set, kube-proxy uses both, so nobody is ever cut off
            had_selector = bool(current["spec"].get("selector"))
            self._slices(ns, service.name, current, port, endpoints, exclusive=not had_selector)
            spec = current["spec"]
            refs = [r for r in cm.get("ownerReferences") or [] if not r.get("controller")] + [owner]
            if not ours and ORIGINAL not in (cm.get("annotations") or {}):
                # what to give back when the rollout lets the Service go (spec.service removed or renamed)
                cm["annotations"] = {**(cm.get("annotations") or {}), ORIGINAL: json.dumps(
                    {"selector": spec.get("selector"), "ports": spec.get("ports")}, sort_keys=True)}
            if (spec.get("selector") or spec.get("ports") != ports or not ours
                    or any((cm.get("labels") or {}).get(k) != v for k, v in labels.items())):
                cm["labels"] = {**(cm.get("labels") or {}), **labels}
                cm["ownerReferences"] = refs
                spec.pop("selector", None)
                spec["ports"] = ports
                self.core.replace_namespaced_service(service.name, ns, current, _request_timeout=10)
                if had_selector:
                    self._drop_foreign(ns, service.name)
                if not ours:
                    self._event(obj, "Normal", "ServiceAdopted", f"Service {service.name} taken over (ClusterIP "
                                f"{spec.get('clusterIP')} kept): its clients now reach the rollout")
        self.conflict.labels(ns, name, service.name).set(0)
        self.endpoints.labels(ns, service.name).set(sum(map(len, endpoints.values())))
        return True

    def _slices(self, ns: str, service_name: str, svc: dict, port: int | None,
                endpoints: dict[str, list[dict]], exclusive: bool = True) -> None:
        """One EndpointSlice per address type of the router endpoints (an empty IPv4 one when there are none);
        `exclusive` (the Service has no selector): any other EndpointSlice of the Service is deleted too."""
        meta = svc["metadata"]
        owner = {"apiVersion": "v1", "kind": "Service", "name": service_name, "uid": meta["uid"], "controller": True}
        labels = {"kubernetes.io/service-name": service_name, "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                  **MANAGED_BY}
        existing = {}
        for s in self.discovery.list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={service_name}", _request_timeout=10).items:
            if (s.metadata.labels or {}).get("endpointslice.kubernetes.io/managed-by") == SLICE_MANAGER:
                existing[s.metadata.name] = self.serialize(s)
            elif exclusive:
                self._delete(self.discovery.delete_namespaced_endpoint_slice, s.metadata.name, ns)
        wanted = endpoints or {"IPv4": []}
        for address_type, eps in wanted.items():
            slice_name = f"{service_name}-modelrollout-{address_type.lower()}"
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": slice_name, "namespace": ns, "labels": labels, "ownerReferences": [owner]},
                    "addressType": address_type, "endpoints": eps,
                    "ports": [{"name": PORT_NAME, "port": port or 8080, "protocol": "TCP"}]}
            have = existing.pop(slice_name, None)
            if have is None:
                self.discovery.create_namespaced_endpoint_slice(ns, body, _request_timeout=10)
            elif (have.get("endpoints") or []) != eps or have.get("ports") != body["ports"] or \
                    have["metadata"].get("ownerReferences") != [owner]:
                body["metadata"]["resourceVersion"] = have["metadata"]["resourceVersion"]
                self.discovery.replace_namespaced_endpoint_slice(slice_name, ns, body, _request_timeout=10)
        for stale in existing:
            self._delete(self.discovery.delete_namespaced_endpoint_slice, stale, ns)

    def _drop_others(self, obj: dict, ns: str, name: str, uid: str, keep: str | None) -> None:
        """The Services this rollout owns under another name than `keep` (spec.service renamed or removed):
        one it created is deleted, one it adopted is given back as it was."""
        listed = self.core.list_namespaced_service(ns, label_selector=f"{ROLLOUT_LABEL}={name}", _request_timeout=10)
        for svc in listed.items:
            owners = svc.metadata.owner_references or []
            if svc.metadata.name == keep or not any(r.uid == uid and r.controller for r in owners):
                continue
            if ORIGINAL in (svc.metadata.annotations or {}):
                self._release(obj, ns, uid, self.serialize(svc))
                continue
            self._delete(self.core.delete_namespaced_service, svc.metadata.name, ns)
            self._delete_slices(ns, svc.metadata.name)
            log.info("rollout %s/%s: Service %s deleted (no longer its spec.service)", ns, name, svc.metadata.name)

    def _release(self, obj: dict, ns: str, uid: str, svc: dict) -> None:
        """Give an adopted Service back: its selector and ports restored, the rollout's label and ownership
        removed, and — once the endpoint controller lists a ready pod of its own (at most HANDBACK_WAIT) —
        the router EndpointSlices deleted, so the Service is never without endpoints. ClusterIP kept."""
        meta, spec = svc["metadata"], svc["spec"]
        original = json.loads(meta["annotations"].pop(ORIGINAL))
        spec["ports"] = original["ports"]
        if original["selector"]:
            spec["selector"] = original["selector"]
        meta["ownerReferences"] = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
        for k in (ROLLOUT_LABEL, *MANAGED_BY):
            (meta.get("labels") or {}).pop(k, None)
        self.core.replace_namespaced_service(meta["name"], ns, svc, _request_timeout=10)
        deadline = time.monotonic() + HANDBACK_WAIT
        while time.monotonic() < deadline and original["selector"]:
            slices = self.discovery.list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={meta['name']}", _request_timeout=10).items
            if any((s.metadata.labels or {}).get("endpointslice.kubernetes.io/managed-by") != SLICE_MANAGER
                   and any(e.conditions and e.conditions.ready for e in s.endpoints or []) for s in slices):
                break
            time.sleep(0.5)
        self._delete_slices(ns, meta["name"])
        self._event(obj, "Normal", "ServiceReleased", f"Service {meta['name']} given back as it was before the "
                    f"rollout took it over (selector {original['selector']}, ClusterIP {spec.get('clusterIP')})")

    def _drop_foreign(self, ns: str, service_name: str) -> None:
        """After its selector is removed, the Service's Endpoints and the EndpointSlices Kubernetes' own
        controllers made for it: they are left as they were (kubernetes/kubernetes#91072, #118376), so kube-proxy
        would go on sending part of the traffic to the model pods, and the mirroring controller would copy the
        stale Endpoints into a new slice."""
        self._delete(self.core.delete_namespaced_endpoints, service_name, ns)
        for s in self.discovery.list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={service_name}", _request_timeout=10).items:
            if (s.metadata.labels or {}).get("endpointslice.kubernetes.io/managed-by") != SLICE_MANAGER:
                self._delete(self.discovery.delete_namespaced_endpoint_slice, s.metadata.name, ns)

    def _delete_slices(self, ns: str, service_name: str) -> None:
        for s in self.discovery.list_namespaced_endpoint_slice(
                ns, label_selector=f"kubernetes.io/service-name={service_name},"
                                   f"endpointslice.kubernetes.io/managed-by={SLICE_MANAGER}", _request_timeout=10).items:
            self._delete(self.discovery.delete_namespaced_endpoint_slice, s.metadata.name, ns)

    # ---- small helpers -------------------------------------------------------------------------------

    def _read(self, read, name: str, ns: str) -> dict | None:
        try:
            return self.serialize(read(name, ns, _request_timeout=10))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @staticmethod
    def _delete(delete, name: str, ns: str) -> None:
        try:
            delete(name, ns, _request_timeout=10)
        except ApiException as e:
            if e.status != 404:
                raise

    def _event(self, obj: dict, type_: str, reason: str, message: str, once: bool = False) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if once and self._warned.get(key) == message:
            return
        self._warned[key] = message if once else ""
        log.log(logging.WARNING if type_ == "Warning" else logging.INFO, "rollout %s: %s", key, message)
        self.events.record(obj, type_, reason, message)
