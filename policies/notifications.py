"""`spec.notifications`: where a rollout's phase changes are sent, and the Secrets holding their credentials.

A credential (a Slack webhook URL, a PagerDuty routing key) is never a field of the resource: `urlFrom` and
`routingKeyFrom` name a key of a Secret in the rollout's namespace (`SecretKeyRef`), which the controller
reads when it sends (`controller/notify.py`, `controller/kube/secrets.py`) and uses only when the Secret is
labelled `NOTIFICATION_SECRET_LABEL=true`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from policies.api import Phase
from policies.specreader import Reader, SpecError, url_field

NOTIFY_PHASES = tuple(p.value for p in Phase if p is not Phase.PENDING)
NOTIFY_ON_DEFAULT = (Phase.ROLLED_BACK.value, Phase.PAUSED.value, Phase.FAILED.value)


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the rollout's namespace (`{secretKeyRef: {name, key}}`), read by the controller."""
    name: str
    key: str

    def describe(self, namespace: str) -> str:
        return f"Secret {namespace}/{self.name} key {self.key!r}"


PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
NOTIFICATION_SECRET_LABEL = "modelrollout.io/notifications"
"""A Secret a notification reads must carry this label with the value "true" (see `controller/notify.py`)."""


@dataclass(frozen=True)
class Notification:
    kind: str                      # webhook | slack | pagerduty
    url: str | None = None
    """The endpoint, when not a credential (webhook, pagerduty); else `url_from`."""
    on: tuple[str, ...] = NOTIFY_ON_DEFAULT
    url_from: SecretKeyRef | None = None
    """The endpoint read from a Secret (a Slack webhook URL always: it is a credential)."""
    routing_key_from: SecretKeyRef | None = None
    """PagerDuty's routing key, read from a Secret (required for pagerduty)."""


_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_CREDENTIAL = ("is a credential, and anyone who can read rollouts could read it; put it in a Secret labelled "
               f"{NOTIFICATION_SECRET_LABEL}=true and use")


def _secret_ref(r: "Reader | None") -> SecretKeyRef | None:
    if r is None:
        return None
    unknown = [k for k in r.data if k != "secretKeyRef"]
    if unknown:
        raise SpecError(r.at(str(unknown[0])), "unknown field; expected secretKeyRef: {name, key}")
    ref = r.sub("secretKeyRef", required=True)
    for k in ref.data:
        if k not in ("name", "key"):
            raise SpecError(ref.at(str(k)), "unknown field; expected name and key")
    return SecretKeyRef(name=ref.str("name", required=True, pattern=_SECRET_NAME, what="a Secret name"),
                        key=ref.str("key", required=True, pattern=_SECRET_KEY, what="a Secret data key"))


def parse_notification(raw: Any, path: str) -> Notification:
    r = Reader(raw, path)
    kinds = [k for k in ("webhook", "slack", "pagerduty") if k in r.data]
    unknown = [k for k in r.data if k not in ("webhook", "slack", "pagerduty", "on", True, "true")]
    if len(kinds) != 1 or unknown:
        raise SpecError(path, "expected exactly one of webhook, slack, pagerduty")
    kind = kinds[0]
    body = r.sub(kind, required=True)
    for k in body.data:
        if k not in ("url", "urlFrom", "routingKey", "routingKeyFrom"):
            raise SpecError(body.at(str(k)), "unknown field; expected url or urlFrom"
                            + (", routingKeyFrom" if kind == "pagerduty" else ""))
    if kind == "slack" and "url" in body.data:
        raise SpecError(body.at("url"), f"a Slack webhook URL {_CREDENTIAL} urlFrom: {{secretKeyRef: {{name, key}}}}")
    if "routingKey" in body.data:
        raise SpecError(body.at("routingKey"), f"a PagerDuty routing key {_CREDENTIAL} "
                                               "routingKeyFrom: {secretKeyRef: {name, key}}")
    url = url_field(body, "url") if body.data.get("url") is not None else None
    url_from = _secret_ref(body.sub("urlFrom"))
    if url is not None and url_from is not None:
        raise SpecError(body.path, "expected one of url, urlFrom, not both")
    if url is None and url_from is None:
        if kind != "pagerduty":
            raise SpecError(body.at("urlFrom" if kind == "slack" else "url"), "required field is missing")
        url = PAGERDUTY_URL
    routing_key_from = _secret_ref(body.sub("routingKeyFrom", required=kind == "pagerduty"))
    if routing_key_from is not None and kind != "pagerduty":
        raise SpecError(body.at("routingKeyFrom"), f"applies to pagerduty only, not {kind}")
    on = r.list("on") or list(NOTIFY_ON_DEFAULT)
    for i, phase in enumerate(on):
        if phase not in NOTIFY_PHASES:
            raise SpecError(f"{r.at('on')}[{i}]", f"expected one of {', '.join(NOTIFY_PHASES)}, got {phase!r}")
    return Notification(kind=kind, url=url, on=tuple(on), url_from=url_from, routing_key_from=routing_key_from)
