"""The plugin's view of the cluster: connect the way kubectl does, and read or annotate ModelRollouts.

Connection follows kubectl: `--kubeconfig`, else `KUBECONFIG`, else ~/.kube/config, else the in-cluster
service account; `--context` picks a context; the namespace is `-n`, else the context's, else "default".
Every API failure becomes a `PluginError` whose message a person can act on (not found, forbidden,
CRD missing, cluster unreachable).
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from policies.api import COMMAND_ANNOTATION, CRD_NAME, GROUP, KIND, PLURAL, VERSION
from policies.errors import ToolError


class PluginError(ToolError):
    """A failure to report to the user as `error: <message>` with exit code 1."""


@dataclass(frozen=True)
class Connection:
    api: Any            # kubernetes.client.ApiClient
    namespace: str      # the namespace commands act in


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Connection:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    paths = [p for p in path.split(os.pathsep) if p]
    if kubeconfig and not os.path.exists(kubeconfig):
        raise PluginError(f"--kubeconfig {kubeconfig}: no such file")
    default_ns = "default"
    try:
        if any(os.path.exists(p) for p in paths):
            api = config.new_client_from_config(config_file=path, context=context)
            _, active = config.list_kube_config_contexts(config_file=path)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=path)
                active = next((c for c in contexts if c.get("name") == context), active)
            default_ns = ((active or {}).get("context") or {}).get("namespace") or "default"
        elif context:
            raise PluginError(f"--context {context}: no kubeconfig found at {path}")
        elif not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise PluginError(f"no kubeconfig found at {path} and not running inside a cluster "
                              f"(use --kubeconfig FILE or set KUBECONFIG)")
        else:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api = client.ApiClient(cfg)
            ns_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
            if os.path.exists(ns_file):
                with open(ns_file) as f:
                    default_ns = f.read().strip() or "default"
    except ConfigException as e:
        raise PluginError(f"cannot load cluster configuration: {e} "
                          f"(use --kubeconfig FILE or set KUBECONFIG)") from e
    return Connection(api=api, namespace=namespace or default_ns)


def _describe_api_error(e: Exception, what: str, namespace: str | None) -> PluginError:
    from kubernetes.client.rest import ApiException

    if isinstance(e, ApiException):
        reason = ""
        try:
            body = json.loads(e.body or "{}")
            reason = body.get("message", "")
            details = body.get("details") or {}
        except ValueError:
            details = {}
        if e.status == 404:
            if details.get("name"):
                where = f" in namespace {namespace!r}" if namespace else ""
                return PluginError(f"{what} not found{where}")
            return PluginError(f"the ModelRollout resource is not served by this cluster: install the CRD "
                               f"{CRD_NAME} (kubectl apply -f manifests/crd.yaml)")
        if e.status == 403:
            return PluginError(f"forbidden: {reason or e.reason}")
        if e.status == 401:
            return PluginError(f"unauthorized: the credentials in the kubeconfig were rejected ({e.reason})")
        return PluginError(f"the API server answered {e.status} {e.reason}: {reason}".rstrip(": "))
    return PluginError(f"cannot reach the Kubernetes API server: {e}")


def _call(fn, what: str, namespace: str | None, *args, **kwargs):
    import urllib3

    from kubernetes.client.rest import ApiException

    try:
        return fn(*args, **kwargs)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
        raise _describe_api_error(e, what, namespace) from e


def _custom(conn: Connection):
    from kubernetes import client

    return client.CustomObjectsApi(conn.api)


def get_rollout(conn: Connection, name: str) -> dict:
    api = _custom(conn)
    return _call(api.get_namespaced_custom_object, f"modelrollout {name!r}", conn.namespace,
                 GROUP, VERSION, conn.namespace, PLURAL, name)


def list_rollouts(conn: Connection, all_namespaces: bool = False) -> dict:
    api = _custom(conn)
    if all_namespaces:
        return _call(api.list_cluster_custom_object, "modelrollouts", None, GROUP, VERSION, PLURAL)
    return _call(api.list_namespaced_custom_object, "modelrollouts", conn.namespace,
                 GROUP, VERSION, conn.namespace, PLURAL)


def list_events(conn: Connection, name: str, namespace: str | None = None) -> list[dict]:
    """The core/v1 Events about ModelRollout `name`, in their JSON form (oldest first as the server lists)."""
    from kubernetes import client

    ns = namespace or conn.namespace
    res = _call(client.CoreV1Api(conn.api).list_namespaced_event, f"Events of modelrollout {name!r}", ns, ns,
                field_selector=f"involvedObject.kind={KIND},involvedObject.name={name}")
    return [conn.api.sanitize_for_serialization(e) for e in res.items]


def command_annotation(verb: str, full: bool = False, command_id: str | None = None) -> tuple[str, str]:
    """The (id, JSON text) of one manual command; the controller applies each id once."""
    cid = command_id or str(uuid.uuid4())
    return cid, json.dumps({"verb": verb, "full": bool(full), "id": cid}, separators=(",", ":"))


def send_command(conn: Connection, name: str, verb: str, full: bool = False) -> tuple[dict, str]:
    """Set the command annotation on rollout `name`; returns (the patched object, the command id)."""
    cid, text = command_annotation(verb, full)
    patch = {"metadata": {"annotations": {COMMAND_ANNOTATION: text}}}
    api = _custom(conn)
    obj = _call(api.patch_namespaced_custom_object, f"modelrollout {name!r}", conn.namespace,
                GROUP, VERSION, conn.namespace, PLURAL, name, patch)
    return obj, cid


def watch_rollout(conn: Connection, name: str, timeout: float | None = None) -> Iterator[dict]:
    """The rollout now, then each new version of it until it is deleted or `timeout` seconds pass.

    A watch the server ends (they are closed every few minutes) is resumed from the last resourceVersion;
    one whose resourceVersion expired (410) starts again from a fresh GET."""
    import time

    from kubernetes import watch

    deadline = None if timeout is None else time.monotonic() + timeout
    obj = get_rollout(conn, name)
    yield obj
    api = _custom(conn)
    rv = obj["metadata"].get("resourceVersion")
    while deadline is None or time.monotonic() < deadline:
        left = 300 if deadline is None else max(1, int(deadline - time.monotonic()))
        w = watch.Watch()
        stream = w.stream(api.list_namespaced_custom_object, GROUP, VERSION, conn.namespace, PLURAL,
                          field_selector=f"metadata.name={name}", resource_version=rv, timeout_seconds=left)
        try:
            for event in _events(stream, name, conn.namespace):
                if event["type"] == "EXPIRED":
                    obj = get_rollout(conn, name)
                    yield obj
                elif event["type"] == "DELETED":
                    raise PluginError(f"modelrollout {name!r} was deleted")
                elif event["type"] in ("ADDED", "MODIFIED"):
                    obj = event["object"]
                    yield obj
                rv = obj["metadata"].get("resourceVersion", rv)
        finally:
            w.stop()


def _events(stream, name: str, namespace: str) -> Iterator[dict]:
    """Watch events, with 410 Gone turned into one synthetic EXPIRED event and other failures explained."""
    from kubernetes.client.rest import ApiException

    while True:
        try:
            event = next(stream, None)
        except ApiException as e:
            if e.status == 410:
                yield {"type": "EXPIRED"}
                return
            raise _describe_api_error(e, f"modelrollout {name!r}", namespace) from e
        except Exception as e:  # noqa: BLE001 - connection failures of any transport layer
            raise PluginError(f"watch of modelrollout {name!r} failed: {e}") from e
        if event is None:
            return
        if event["type"] == "ERROR":
            raw = event.get("raw_object") or {}
            if raw.get("code") == 410:
                yield {"type": "EXPIRED"}
                return
            raise PluginError(f"watch of modelrollout {name!r} failed: {raw.get('message', event['object'])}")
        yield event
