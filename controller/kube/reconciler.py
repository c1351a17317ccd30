"""Reconcile one ModelRollout against the apiserver: parse, decide (controller.core), write status once,
then carry out the decision's Events, notifications and metrics.

Effects happen only after the status write succeeded, so a 409 (someone wrote first) or a lost
leadership never produces an Event or a webhook for a decision that was not recorded.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from controller import core
from controller.notify import Notifier
from policies.machine import Command, Emit, Notify, invalid_spec_status
from policies.spec import SpecError, parse_rollout
from policies.status import RolloutStatus, Verdict

from .events import EventRecorder
from .metrics import ControllerMetrics
from policies.api import GROUP, PLURAL, VERSION

log = logging.getLogger("modelrollout.reconciler")

COMMAND_ANNOTATION = "modelrollout.io/command"


class NotLeader(Exception):
    """Leadership was lost (or is about to be) before the write: nothing was written."""


@dataclass
class Outcome:
    """What one reconcile did: `requeue` seconds (None = wait for a change), `wrote` the status."""
    requeue: float | None
    wrote: bool = False
    phase: str | None = None


class Reconciler:
    def __init__(self, api_client: client.ApiClient, *, gatherer: core.Gatherer, events: EventRecorder,
                 metrics: ControllerMetrics, notifier: Notifier, identity: str,
                 may_write: Callable[[], bool] = lambda: True, write_timeout: float = 5.0,
                 clock: Callable[[], float] = time.time):
        self.api = client.CustomObjectsApi(api_client)
        self.gatherer, self.events, self.metrics, self.notifier = gatherer, events, metrics, notifier
        self.identity, self.may_write, self.write_timeout, self.clock = identity, may_write, write_timeout, clock
        self._bad_commands: dict[str, str] = {}

    def reconcile(self, obj: dict) -> Outcome:
        """One reconcile of `obj` (as last seen); retries a 409 by re-reading, at most 3 times."""
        memo = _MemoGatherer(self.gatherer)
        for attempt in range(3):
            try:
                return self._once(obj, memo)
            except ApiException as e:
                if e.status != 409 or attempt == 2:
                    raise
                self.metrics.write_conflicts.inc()
                meta = obj["metadata"]
                obj = self.api.get_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL,
                                                            meta["name"], _request_timeout=self.write_timeout)
        raise AssertionError("unreachable")

    def _once(self, obj: dict, gatherer: "_MemoGatherer") -> Outcome:
        now = self.clock()
        old = obj.get("status") or {}
        try:
            rollout = parse_rollout(obj)
        except SpecError as e:
            status = invalid_spec_status(old, e, now)
            status["drift"] = None
            wrote = self._write(obj, status)
            if wrote:
                self.events.record(obj, "Warning", "InvalidSpec", str(e))
            self.metrics.observe_status(*_ns_name(obj), _clean(status))
            return Outcome(None, wrote, status.get("phase"))
        cmd = self._command(obj)
        decision = core.reconcile_step(rollout, now, gatherer, cmd)
        status = decision.status.to_status()
        if cmd is not None and cmd.id:
            status["lastCommandId"] = cmd.id
        status["drift"] = worst_check(status)
        wrote = self._write(obj, status)
        if wrote:
            for action in decision.actions:
                if isinstance(action, Emit):
                    self.events.record(obj, action.type, action.reason, action.message)
                elif isinstance(action, Notify):
                    self.notifier.notify(rollout.spec, action.phase, action.severity, action.message, now)
        self.metrics.observe_status(rollout.spec.namespace, rollout.spec.name, _clean(status), rollout.spec)
        return Outcome(core.next_wakeup(rollout.spec, decision.status, self.clock()), wrote,
                       status.get("phase"))

    def _command(self, obj: dict) -> Command | None:
        meta = obj.get("metadata") or {}
        text = (meta.get("annotations") or {}).get(COMMAND_ANNOTATION)
        cmd, error = core.command_from(meta, obj.get("status") or {})
        key = "/".join(_ns_name(obj))
        if error:
            if self._bad_commands.get(key) != text:   # one Event per distinct bad annotation
                self._bad_commands[key] = text
                self.events.record(obj, "Warning", "InvalidCommand", error)
            return None
        if cmd is not None and not cmd.id:
            # without an id the verb would run on every reconcile; the text's hash makes it run once
            cmd = Command(cmd.verb, cmd.full, "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16])
            if cmd.id == (obj.get("status") or {}).get("lastCommandId"):
                return None
        return cmd

    def _write(self, obj: dict, status: dict) -> bool:
        """Replace the status subresource (optimistic concurrency on resourceVersion) if it changed."""
        status = _clean(status)
        if status == _clean(obj.get("status") or {}):
            return False
        if not self.may_write():
            raise NotLeader(f"{self.identity} is not leader; status of {'/'.join(_ns_name(obj))} not written")
        body = {"apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"), "kind": obj.get("kind", "ModelRollout"),
                "metadata": obj["metadata"], "spec": obj.get("spec"), "status": status}
        ns, name = _ns_name(obj)
        written = self.api.replace_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, body, _request_timeout=self.write_timeout)
        self.metrics.status_writes.inc()
        obj["status"] = (written or {}).get("status", status)
        obj["metadata"] = (written or {}).get("metadata", obj["metadata"])
        return True


class _MemoGatherer:
    """Same observations for every retry of one reconcile (a 409 re-decides, it does not re-measure)."""

    def __init__(self, inner: core.Gatherer):
        self.inner, self.memo = inner, {}

    def __call__(self, spec, start, end):
        key = (spec.key, spec.revision)
        if key not in self.memo:
            self.memo[key] = self.inner(spec, start, end)
        return self.memo[key]


def worst_check(status: dict) -> str | None:
    """`NAME VALUE/THRESHOLD` of the worst check (Fail > Inconclusive > Pass, then closest to its bound)."""
    best, best_key = None, None
    for c in status.get("checks") or []:
        verdict = c.get("verdict")
        if verdict is None:
            continue
        sev = Verdict(verdict).severity if verdict in ("Pass", "Fail", "Inconclusive") else 1
        value, threshold = c.get("value"), c.get("threshold")
        ratio = abs(value / threshold) if isinstance(value, (int, float)) and isinstance(
            threshold, (int, float)) and threshold else 0.0
        key = (sev, ratio)
        if best_key is None or key > best_key:
            best_key, best = key, c
    if best is None:
        return None
    fmt = lambda v: "-" if not isinstance(v, (int, float)) else f"{v:.3g}"  # noqa: E731
    return f"{best.get('name')} {fmt(best.get('value'))}/{fmt(best.get('threshold'))}"


def _ns_name(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", "default"), meta.get("name", "")


def _clean(v: Any) -> Any:
    """Drop None values recursively: the apiserver prunes nulls of non-nullable fields, and comparing
    with them left in would make every reconcile look like a change."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v
