"""Webhook notifications reach a real local HTTP receiver in the documented shapes, survive a failing
receiver by retrying, and never block the caller; credentials come from real Secrets on the apiserver and
show up nowhere but in the request."""
from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.kube.secrets import SecretReader
from controller.notify import Notifier, payload, Message
from policies.spec import NOTIFICATION_SECRET_LABEL, SecretKeyRef, parse_rollout

ROUTING_KEY = "R0UT1NG-KEY-from-a-secret-5f2c"
SLACK_PATH = "/slack/services/T000/B000/XXXXtokenXXXX"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records JSON bodies; the first `fail_first` answers are 503."""

    def __init__(self, fail_first: int = 0, status: int = 503):
        self.bodies: list[tuple[str, dict]] = []
        self.attempts = 0
        self.fail_first, self.status = fail_first, status
        self.got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.attempts += 1
                if outer.attempts <= outer.fail_first:
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                outer.bodies.append((self.path, json.loads(body)))
                outer.got.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _spec(url: str, namespace: str = "ml"):
    doc = {
        "apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": "fraud", "namespace": namespace},
        "spec": {"baseline": {"version": "v1", "url": "http://127.0.0.1:1"},
                 "candidate": {"version": "v2", "url": "http://127.0.0.1:2"},
                 "strategy": {"steps": [{"canary": {"weight": 10}}]},
                 "notifications": [
                     {"webhook": {"url": f"{url}/generic"}, "on": ["RolledBack", "Paused"]},
                     {"slack": {"urlFrom": {"secretKeyRef": {"name": "chat", "key": "webhook"}}},
                      "on": ["RolledBack"]},
                     {"pagerduty": {"url": f"{url}/pd",
                                    "routingKeyFrom": {"secretKeyRef": {"name": "pager", "key": "routingKey"}}},
                      "on": ["RolledBack"]},
                 ]}}
    return parse_rollout(doc).spec


def _wait_for(receiver: Receiver, n: int, notifier: Notifier) -> None:
    assert notifier.flush(10.0), f"notifications still pending: {notifier.stats}"
    assert len(receiver.bodies) >= n, f"expected {n} deliveries, got {receiver.bodies}"


def _secret(k8s_api, namespace: str, name: str, data: dict[str, str], labelled: bool = True) -> None:
    from kubernetes import client

    labels = {NOTIFICATION_SECRET_LABEL: "true"} if labelled else {}
    client.CoreV1Api(k8s_api).create_namespaced_secret(namespace, {
        "metadata": {"name": name, "labels": labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


@pytest.fixture
def credentials(k8s_api, namespace, receiver):
    """The Slack URL and the PagerDuty routing key of `_spec`, as labelled Secrets in `namespace`."""
    _secret(k8s_api, namespace, "chat", {"webhook": receiver.url + SLACK_PATH})
    _secret(k8s_api, namespace, "pager", {"routingKey": ROUTING_KEY})
    return SecretReader(k8s_api)


def test_each_sink_gets_its_shape(receiver, credentials, namespace):
    """A rollback reaches the generic, Slack and PagerDuty sinks with their own payload shapes and severity;
    the Slack URL and the routing key come from the Secrets."""
    spec = _spec(receiver.url, namespace)
    n = Notifier(backoff=0.05, secrets=credentials)
    try:
        assert n.notify(spec, "RolledBack", "critical", "nan-or-5xx 0.2 > 0.01") == 3
        _wait_for(receiver, 3, n)
    finally:
        n.close()
    by_path = dict(receiver.bodies)
    generic = by_path["/generic"]
    assert generic["rollout"] == "fraud" and generic["namespace"] == namespace
    assert generic["phase"] == "RolledBack" and generic["severity"] == "critical"
    assert generic["candidate"] == "v2" and "nan-or-5xx" in generic["message"]
    slack = by_path[SLACK_PATH]
    assert "fraud" in slack["text"] and isinstance(slack["blocks"], list) and slack["blocks"]
    pd = by_path["/pd"]
    assert pd["routing_key"] == ROUTING_KEY and pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "critical" and pd["payload"]["source"] == f"modelrollout/{namespace}/fraud"


def test_only_subscribed_phases_are_sent(receiver):
    """A phase a sink did not subscribe to sends nothing to it."""
    spec = _spec(receiver.url)
    n = Notifier(backoff=0.05)
    try:
        assert n.notify(spec, "Paused", "warning", "inconclusive") == 1
        assert n.notify(spec, "Promoted", "info", "done") == 0
        _wait_for(receiver, 1, n)
    finally:
        n.close()
    assert [p for p, _ in receiver.bodies] == ["/generic"]
    assert receiver.bodies[0][1]["severity"] == "warning"


def test_failing_receiver_is_retried_until_it_accepts():
    """A receiver answering 503 twice still gets the notification, on the third attempt."""
    r = Receiver(fail_first=2)
    n = Notifier(backoff=0.05)
    try:
        n.notify(_spec(r.url), "Paused", "warning", "paused")
        _wait_for(r, 1, n)
    finally:
        n.close()
        r.close()
    assert r.attempts == 3 and n.stats.retries == 2 and n.stats.sent == 1 and n.stats.failed == 0


def test_unreachable_receiver_gives_up_without_blocking_the_caller():
    """notify() returns at once even when the sink is down; after its attempts the message counts as failed."""
    r = Receiver()
    url = r.url
    r.close()  # nothing listens there any more
    n = Notifier(attempts=3, backoff=0.01, timeout=1.0)
    try:
        n.notify(_spec(url), "RolledBack", "error", "drift")
        assert n.stats.sent == 0  # enqueued, not sent inline
        assert n.flush(10.0)
    finally:
        n.close()
    assert n.stats.failed == 3 and n.stats.sent == 0 and n.stats.retries == 6


def test_client_errors_are_not_retried():
    """A 400 from the sink means the payload is wrong: no retry storm."""
    r = Receiver(fail_first=5, status=400)
    n = Notifier(backoff=0.01)
    try:
        n.notify(_spec(r.url), "Paused", "warning", "paused")
        assert n.flush(10.0)
    finally:
        n.close()
        r.close()
    assert r.attempts == 1 and n.stats.failed == 1


def test_pagerduty_dedup_key_names_rollout_revision_and_phase():
    """PagerDuty alerts about the same rollout, revision and phase collapse into one incident."""
    m = Message("fraud", "ml", "RolledBack", "error", "psi 0.3 > 0.2", "v2@http://x", "v1", "v2", 0.0)
    a, b = payload("pagerduty", m, "k"), payload("pagerduty", m, "k")
    assert a["dedup_key"] == b["dedup_key"] and "fraud" in a["dedup_key"] and "RolledBack" in a["dedup_key"]


def test_credentials_appear_nowhere_but_in_the_request(receiver, credentials, namespace, k8s_api, caplog):
    """A Secret that is not labelled for notifications and one that is missing fail with messages naming the
    Secret; neither the routing key nor the Slack URL (which holds the token) is in any log line (httpx's
    request lines included) or the sender's stats, and the unlabelled Secret's value is never sent."""
    _secret(k8s_api, namespace, "db", {"routingKey": "hunter2-db-password"}, labelled=False)
    doc_sinks = [
        {"pagerduty": {"url": f"{receiver.url}/pd", "routingKeyFrom": {"secretKeyRef": {"name": "db", "key": "routingKey"}}}},
        {"pagerduty": {"url": f"{receiver.url}/pd", "routingKeyFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}},
        {"slack": {"urlFrom": {"secretKeyRef": {"name": "chat", "key": "webhook"}}}},
        {"pagerduty": {"url": f"{receiver.url}/pd", "routingKeyFrom": {"secretKeyRef": {"name": "pager", "key": "routingKey"}}}},
    ]
    base = _spec(receiver.url, namespace)
    spec = parse_rollout({"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
                          "metadata": {"name": "fraud", "namespace": namespace},
                          "spec": {"baseline": {"version": "v1", "url": base.baseline.url},
                                   "candidate": {"version": "v2", "url": base.candidate.url},
                                   "strategy": {"steps": [{"canary": {"weight": 10}}]},
                                   "notifications": doc_sinks}}).spec
    n = Notifier(attempts=2, backoff=0.01, secrets=credentials)
    with caplog.at_level(logging.DEBUG):
        try:
            assert n.notify(spec, "RolledBack", "error", "score-psi 0.4 > 0.2") == 4
            assert n.flush(20.0)
        finally:
            n.close()
    keys = [b["routing_key"] for p, b in receiver.bodies if p == "/pd"]
    assert keys == [ROUTING_KEY] and n.stats.sent == 2 and n.stats.failed == 2
    text = caplog.text + n.stats.last_error
    assert f"Secret {namespace}/db key 'routingKey': the Secret is not labelled {NOTIFICATION_SECRET_LABEL}=true" \
        in caplog.text
    assert f"Secret {namespace}/nope key 'k': not found" in caplog.text
    for value in (ROUTING_KEY, SLACK_PATH, "XXXXtokenXXXX", "hunter2"):
        assert value not in text
    assert "hunter2" not in json.dumps(receiver.bodies)
    assert SecretReader(k8s_api)(namespace, SecretKeyRef("pager", "routingKey")) == ROUTING_KEY
