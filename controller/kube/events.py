"""core/v1 Events on a ModelRollout, stamped with the writing controller's identity.

`source.host` and `reportingInstance` carry the identity, so `kubectl describe mro` (and the tests) can
tell which controller replica acted. Event failures are logged, never fatal: status is the record.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets

from kubernetes import client

from policies.api import API_VERSION, KIND

log = logging.getLogger("modelrollout.events")

COMPONENT = "modelrollout-controller"


class EventRecorder:
    def __init__(self, api_client: client.ApiClient, identity: str, component: str = COMPONENT):
        self.core = client.CoreV1Api(api_client)
        self.identity, self.component = identity, component
        self.sent = 0
        self.failed = 0

    def record(self, obj: dict, type_: str, reason: str, message: str) -> bool:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace", "default"), meta.get("name", "")
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": ns},
            "involvedObject": {"apiVersion": obj.get("apiVersion", API_VERSION), "kind": obj.get("kind", KIND),
                               "name": name, "namespace": ns, "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": type_ if type_ in ("Normal", "Warning") else "Normal",
            "reason": reason[:128],
            "message": message[:1024],
            "source": {"component": self.component, "host": self.identity},
            "reportingComponent": self.component,
            "reportingInstance": self.identity[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(ns, body, _request_timeout=5)
            self.sent += 1
            return True
        except Exception as e:  # noqa: BLE001
            self.failed += 1
            log.warning("event %s on %s/%s not recorded: %s", reason, ns, name, e)
            return False
