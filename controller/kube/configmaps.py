"""The golden sets of golden steps: a key of a ConfigMap in the rollout's namespace, read for each run.

`ConfigMapReader(api_client)(namespace, name, key)` gets the ConfigMap (RBAC: `get` on `configmaps`, in the
controller's ClusterRole; manifests/rbac.yaml and the chart) and returns the key's text (`data`, else
`binaryData` decoded as UTF-8), only when it is labelled `modelrollout.io/golden-set=true`: a rollout's
author could otherwise have any ConfigMap of the namespace sent to URLs of their choosing (`read_labelled`).
Errors name the ConfigMap and why (`GoldenUnavailable`): the golden step's checks are then Inconclusive,
retried every analysis interval.
"""
from __future__ import annotations

import base64
import binascii

from kubernetes import client

from controller.golden import GoldenUnavailable
from policies.golden_spec import GOLDEN_SET_LABEL

from .labelled import read_labelled


class ConfigMapReader:
    def __init__(self, api_client: client.ApiClient, timeout: float = 5.0):
        self.core = client.CoreV1Api(api_client)
        self.timeout = timeout

    def __call__(self, namespace: str, name: str, key: str) -> str:
        what = f"ConfigMap {namespace}/{name} key {key}"
        cm = read_labelled(lambda: self.core.read_namespaced_config_map(name, namespace, _request_timeout=self.timeout),
                           what, "ConfigMap", GOLDEN_SET_LABEL, "golden steps",
                           "the controller's ClusterRole needs get on configmaps", GoldenUnavailable)
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
