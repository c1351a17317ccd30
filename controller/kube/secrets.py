"""The credentials of notifications: keys of Secrets in a rollout's namespace, read for each delivery.

`SecretReader(api_client)(namespace, ref)` gets the Secret (RBAC: `get` on `secrets` in that namespace, which
the ClusterRole `modelrollout-notification-secrets` grants where a RoleBinding binds it; see
manifests/README.md) and returns the key's value. Only a Secret labelled `modelrollout.io/notifications=true`
is used: a rollout's author could otherwise name any Secret the controller may read and have its value sent
to a URL of their choosing. Errors name the Secret and why, never a value (`SecretUnavailable`).
"""
from __future__ import annotations

import base64
import binascii

from kubernetes import client

from controller.notify import SecretUnavailable
from policies.spec import NOTIFICATION_SECRET_LABEL, SecretKeyRef

from .labelled import read_labelled


class SecretReader:
    def __init__(self, api_client: client.ApiClient, timeout: float = 5.0):
        self.core = client.CoreV1Api(api_client)
        self.timeout = timeout

    def __call__(self, namespace: str, ref: SecretKeyRef) -> str:
        what = ref.describe(namespace)
        secret = read_labelled(lambda: self.core.read_namespaced_secret(ref.name, namespace,
                                                                        _request_timeout=self.timeout),
                               what, "Secret", NOTIFICATION_SECRET_LABEL, "notifications",
                               "bind the ClusterRole modelrollout-notification-secrets to the controller in this "
                               "namespace", SecretUnavailable, detail=False)
        data = secret.data or {}
        if ref.key not in data:
            raise SecretUnavailable(f"{what}: no such key (keys: {', '.join(sorted(data)) or 'none'})")
        try:
            value = base64.b64decode(data[ref.key], validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            raise SecretUnavailable(f"{what}: the value is not UTF-8 text") from None
        if not value:
            raise SecretUnavailable(f"{what}: empty")
        return value
