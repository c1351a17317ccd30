"""Webhook notifications when a rollout enters a phase its spec subscribes to.

Sending never blocks a reconcile: messages go on a bounded queue and a background thread delivers them,
retrying with exponential backoff. Three payload shapes: a generic JSON object, Slack (`text` + `blocks`)
and PagerDuty Events v2 (`routing_key`, `event_action`, `payload`). Severity comes from the decision
(rollback on NaN/5xx = critical, drift rollback = error, pause = warning, the rest info).

Credentials (a Slack webhook URL, a PagerDuty routing key, any `urlFrom`) live in Secrets of the rollout's
namespace, named by `secretKeyRef`s in the spec. The sender reads them (`secrets(namespace, ref)`, the
controller's `controller.kube.secrets.SecretReader`) just before each attempt, so a rotated Secret is used
at once and no credential waits in the queue; they go into the request and nowhere else: the sender's logs
and `stats` name the Secret, never its value, and an error text that quotes a value has it replaced by
`[secret]`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from policies.errors import KubeError
from policies.spec import Notification, RolloutSpec, SecretKeyRef

log = logging.getLogger("modelrollout.notify")
THREAD_NAME = "modelrollout-notifier"


class _NoRequestLines(logging.Filter):
    """httpx logs each request's URL at INFO; a notification's URL may be a credential (a Slack webhook), so
    the sender thread's request lines are not logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != THREAD_NAME


logging.getLogger("httpx").addFilter(_NoRequestLines())

SEVERITIES = ("critical", "error", "warning", "info")


@dataclass(frozen=True)
class Message:
    """One notification about one rollout entering one phase."""
    rollout: str
    namespace: str
    phase: str
    severity: str
    text: str
    revision: str
    baseline: str
    candidate: str
    time: float

    def summary(self) -> str:
        return f"{self.namespace}/{self.rollout} {self.phase}: {self.text}"


def payload(kind: str, msg: Message, routing_key: str | None = None) -> dict[str, Any]:
    """The JSON body for sink `kind` (webhook | slack | pagerduty)."""
    if kind == "slack":
        icon = {"critical": ":rotating_light:", "error": ":x:", "warning": ":warning:"}.get(msg.severity,
                                                                                           ":information_source:")
        return {
            "text": f"{icon} {msg.summary()}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": f"{msg.rollout} {msg.phase}"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": msg.text}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text":
                    f"namespace `{msg.namespace}` · baseline `{msg.baseline}` · candidate `{msg.candidate}` "
                    f"· severity *{msg.severity}*"}]},
            ],
        }
    if kind == "pagerduty":
        return {
            "routing_key": routing_key or "",
            "event_action": "trigger",
            "dedup_key": f"modelrollout/{msg.namespace}/{msg.rollout}/{msg.revision}/{msg.phase}",
            "payload": {
                "summary": msg.summary()[:1024],
                "source": f"modelrollout/{msg.namespace}/{msg.rollout}",
                "severity": msg.severity,
                "component": msg.rollout,
                "group": msg.namespace,
                "class": msg.phase,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(msg.time)),
                "custom_details": {"baseline": msg.baseline, "candidate": msg.candidate,
                                   "revision": msg.revision, "message": msg.text},
            },
        }
    return {"rollout": msg.rollout, "namespace": msg.namespace, "phase": msg.phase, "severity": msg.severity,
            "message": msg.text, "revision": msg.revision, "baseline": msg.baseline, "candidate": msg.candidate,
            "time": msg.time}


class SecretUnavailable(KubeError):
    """A credential a notification needs could not be read (missing, not labelled for notifications,
    forbidden, no Secret store); the message names the Secret, never a value."""


SecretSource = Callable[[str, SecretKeyRef], str]
"""`secrets(namespace, ref) -> value`; raises SecretUnavailable."""


def describe(sink: Notification, namespace: str) -> str:
    """How logs and stats name a sink: its URL when that is no secret, else the Secret it comes from."""
    if sink.url_from is not None:
        return f"{sink.kind} (URL from {sink.url_from.describe(namespace)})"
    return f"{sink.kind} {sink.url}"


def scrub(text: str, hidden: list[str]) -> str:
    for value in hidden:
        if value:
            text = text.replace(value, "[secret]")
    return text


@dataclass
class _Delivery:
    sink: Notification
    msg: Message
    attempt: int = 0
    due: float = 0.0


@dataclass
class NotifierStats:
    sent: int = 0
    failed: int = 0          # gave up after every retry
    dropped: int = 0         # queue full
    retries: int = 0
    last_error: str = ""
    by_kind: dict = field(default_factory=dict)


class Notifier:
    """Delivers notifications in a background thread; `notify()` only enqueues and never raises.

    `attempts` tries per message, waiting `backoff`, 2·`backoff`, 4·`backoff`… (capped at `max_backoff`)
    between them; each try times out after `timeout` seconds.
    """

    def __init__(self, *, attempts: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 timeout: float = 5.0, capacity: int = 1000, clock: Callable[[], float] = time.time,
                 secrets: SecretSource | None = None):
        self.attempts, self.backoff, self.max_backoff, self.timeout = attempts, backoff, max_backoff, timeout
        self.secrets = secrets
        self.stats = NotifierStats()
        self._queue: queue.Queue[_Delivery] = queue.Queue(maxsize=capacity)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def start(self) -> "Notifier":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()
        return self

    def close(self, drain: float = 2.0) -> None:
        """Stop the sender, first giving queued messages up to `drain` seconds."""
        self.flush(drain)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is queued or being retried; True if that happened within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return self._queue.unfinished_tasks == 0

    def notify(self, spec: RolloutSpec, phase: str, severity: str, text: str, now: float | None = None) -> int:
        """Queue a message to every sink of `spec` subscribed to `phase`; returns how many were queued."""
        msg = Message(rollout=spec.name, namespace=spec.namespace, phase=phase,
                      severity=severity if severity in SEVERITIES else "info", text=text,
                      revision=spec.revision, baseline=spec.baseline.version, candidate=spec.candidate.version,
                      time=self._clock() if now is None else now)
        queued = 0
        for sink in spec.notifications:
            if phase not in sink.on:
                continue
            try:
                self._queue.put_nowait(_Delivery(sink, msg))
                queued += 1
            except queue.Full:
                self.stats.dropped += 1
                log.error("notification queue full; dropped %s notification for %s", sink.kind, msg.summary())
        if queued:
            self.start()
        return queued

    def _run(self) -> None:
        waiting: list[_Delivery] = []
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stop.is_set():
                now = self._clock()
                ready = [d for d in waiting if d.due <= now]
                waiting = [d for d in waiting if d.due > now]
                for d in ready:
                    self._attempt(http, d, waiting)
                wait = min((d.due for d in waiting), default=now + 0.2) - self._clock()
                try:
                    d = self._queue.get(timeout=max(0.01, min(wait, 0.2)))
                except queue.Empty:
                    continue
                self._attempt(http, d, waiting)

    def _secret(self, namespace: str, ref: SecretKeyRef) -> str:
        if self.secrets is None:
            raise SecretUnavailable(f"{ref.describe(namespace)}: this notifier reads no Secrets")
        return self.secrets(namespace, ref)

    def _request(self, d: _Delivery, hidden: list[str]) -> tuple[str, dict[str, Any]]:
        """(URL, JSON body) of one attempt, credentials read now; each credential is added to `hidden`."""
        sink, ns = d.sink, d.msg.namespace
        url = sink.url
        if sink.url_from is not None:
            url = self._secret(ns, sink.url_from)
            hidden.append(url)
        key = None
        if sink.routing_key_from is not None:
            key = self._secret(ns, sink.routing_key_from)
            hidden.append(key)
        return url or "", payload(sink.kind, d.msg, key)

    def _attempt(self, http: httpx.Client, d: _Delivery, waiting: list[_Delivery]) -> None:
        d.attempt += 1
        hidden: list[str] = []
        where = describe(d.sink, d.msg.namespace)
        try:
            url, body = self._request(d, hidden)
            r = http.post(url, json=body)
            if r.status_code < 300:
                self.stats.sent += 1
                self.stats.by_kind[d.sink.kind] = self.stats.by_kind.get(d.sink.kind, 0) + 1
                self._queue.task_done()
                return
            error = f"HTTP {r.status_code}: {r.text[:200]}"
            retryable = r.status_code == 429 or r.status_code >= 500
        except SecretUnavailable as e:          # may be created or labelled meanwhile: retried like a 5xx
            error, retryable = str(e), True
        except Exception as e:  # noqa: BLE001 - httpx errors, and a URL from a Secret httpx cannot even parse
            error, retryable = f"{type(e).__name__}: {e}", isinstance(e, httpx.TransportError)
        error = scrub(error, hidden)
        self.stats.last_error = f"{where}: {error}"
        if retryable and d.attempt < self.attempts:
            self.stats.retries += 1
            delay = min(self.max_backoff, self.backoff * 2 ** (d.attempt - 1))
            d.due = self._clock() + delay
            waiting.append(d)
            log.warning("notification of %s to %s failed (attempt %d of %d), retrying in %gs: %s", d.msg.summary(),
                        where, d.attempt, self.attempts, delay, error)
            return
        self.stats.failed += 1
        log.error("notification of %s to %s failed after %d attempt(s): %s", d.msg.summary(), where, d.attempt,
                  error)
        self._queue.task_done()
