"""The golden sets of golden steps: a key of a ConfigMap in the rollout's namespace, read for each run.

`ConfigMapReader(api_client)(namespace, name, key)` gets the ConfigMap (RBAC: `get` on `configmaps`, in the
controller's ClusterRole; manifests/rbac.yaml and the chart) and returns the key's text (`data`, else
`binaryData` decoded as UTF-8), only when it is labelled `modelrollout.io/golden-set=true`: a rollout's
author could otherwise have any ConfigMap of the namespace sent to URLs of their choosing. Errors name the ConfigMap and why (`GoldenUnavailable`): the golden step's
checks are then Inconclusive, retried every analysis interval.
"""
from __future__ import annotations

import base64
import binascii

from kubernetes import client
from kubernetes.client.rest import ApiException

from controller.golden import GoldenUnavailable
from policies.golden_spec import GOLDEN_SET_LABEL


class ConfigMapReader:
    def __init__(self, api_client: client.ApiClient, timeout: float = 5.0):
        self.core = client.CoreV1Api(api_client)
        self.timeout = timeout

    def __call__(self, namespace: str, name: str, key: str) -> str:
        what = f"ConfigMap {namespace}/{name} key {key}"
        try:
            cm = self.core.read_namespaced_config_map(name, namespace, _request_timeout=self.timeout)
        except ApiException as e:
            why = {404: "not found", 403: "forbidden (the controller's ClusterRole needs get on configmaps)"}.get(
                e.status, f"HTTP {e.status}")
            raise GoldenUnavailable(f"{what}: {why}") from None
        except Exception as e:  # noqa: BLE001 - apiserver unreachable, timeouts
            raise GoldenUnavailable(f"{what}: {type(e).__name__}: {e}") from None
        labels = (cm.metadata.labels or {}) if cm.metadata else {}
        if labels.get(GOLDEN_SET_LABEL) != "true":
            raise GoldenUnavailable(f"{what}: the ConfigMap is not labelled {GOLDEN_SET_LABEL}=true, so golden "
                                    "steps may not use it")
        data, binary = cm.data or {}, cm.binary_data or {}
        if key in data:
            return data[key]
        if key in binary:
            try:
                return base64.b64decode(binary[key], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise GoldenUnavailable(f"{what}: binaryData is not UTF-8 text") from None
        keys = sorted(set(data) | set(binary))
        raise GoldenUnavailable(f"{what}: no such key (keys: {', '.join(keys) or 'none'})")
