"""Reading an object a rollout's author names (a Secret for notifications, a ConfigMap for a golden set): the
controller uses it only when it carries an opt-in label, since its content is sent to URLs the author picks.
Errors name the object and why, never its content."""
from __future__ import annotations

from typing import Any, Callable

from kubernetes.client.rest import ApiException


def read_labelled(read: Callable[[], Any], what: str, kind: str, label: str, use: str, forbidden: str,
                  error: Callable[[str], Exception], detail: bool = True) -> Any:
    """`read()` (a Kubernetes API read), checked to carry `label`=true. Raises `error(...)` naming `what` on a
    404, a 403 (`forbidden`: what RBAC the controller needs), any other failure (with the exception's text when
    `detail`: never for Secrets), and a missing label (`use`: what may not use it)."""
    try:
        obj = read()
    except ApiException as e:               # e.body is the apiserver's Status: no object data in it
        why = {404: "not found", 403: f"forbidden ({forbidden})"}.get(e.status, f"HTTP {e.status}")
        raise error(f"{what}: {why}") from None
    except Exception as e:  # noqa: BLE001 - apiserver unreachable, timeouts
        raise error(f"{what}: {type(e).__name__}" + (f": {e}" if detail else "")) from None
    labels = (obj.metadata.labels or {}) if obj.metadata else {}
    if labels.get(label) != "true":
        raise error(f"{what}: the {kind} is not labelled {label}=true, so {use} may not use it")
    return obj
