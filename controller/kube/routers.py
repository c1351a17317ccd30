"""Where the router replicas are: fixed `--router-url`s, or the ready endpoints of the router Service's
EndpointSlices (discovery.k8s.io/v1), refreshed every few seconds."""
from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

from kubernetes import client

from policies.spec import RolloutSpec

log = logging.getLogger("modelrollout.routers")


class RouterDiscovery:
    """`urls(spec)`: base URLs of every ready router replica serving `spec`'s namespace.

    `service` is `NAME` (looked up in the rollout's namespace) or `NAMESPACE/NAME`. Static URLs, if given,
    are always included. A failed lookup keeps the last known set for `stale_after` seconds, then yields
    none (the analysis goes Inconclusive rather than judging on a subset).
    """

    def __init__(self, api_client: client.ApiClient | None, service: str | None = None,
                 static_urls: Sequence[str] = (), *, port_name: str = "http", refresh: float = 3.0,
                 stale_after: float = 30.0):
        self.discovery = client.DiscoveryV1Api(api_client) if (api_client is not None and service) else None
        self.service, self.static = service, [u.rstrip("/") for u in static_urls]
        self.port_name, self.refresh, self.stale_after = port_name, refresh, stale_after
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._ok_at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def urls(self, spec: RolloutSpec) -> list[str]:
        if self.discovery is None:
            return list(self.static)
        ns, _, name = self.service.rpartition("/")
        key = (ns or spec.namespace, name)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or now - cached[0] > self.refresh:
            try:
                found = self._lookup(*key)
                with self._lock:
                    self._cache[key] = (now, found)
                    self._ok_at[key] = now
                cached = (now, found)
            except Exception as e:  # noqa: BLE001
                log.warning("router endpoints of service %s/%s: %s", key[0], key[1], e)
                if cached is None or now - self._ok_at.get(key, 0) > self.stale_after:
                    cached = (now, [])
        return sorted(set(self.static) | set(cached[1]))

    def _lookup(self, namespace: str, service: str) -> list[str]:
        slices = self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}", _request_timeout=5)
        out = []
        for s in slices.items:
            ports = s.ports or []
            port = next((p.port for p in ports if p.name == self.port_name), None)
            if port is None and ports:
                port = ports[0].port
            if port is None:
                continue
            for ep in s.endpoints or []:
                if ep.conditions is not None and ep.conditions.ready is False:
                    continue
                for addr in ep.addresses or []:
                    host = f"[{addr}]" if ":" in addr else addr
                    out.append(f"http://{host}:{port}")
        return out
