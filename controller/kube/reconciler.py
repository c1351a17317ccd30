"""Reconcile one ModelRollout against the apiserver: parse, decide (`controller.core.step`), write status
once, then carry out the decision's Events, notifications and metrics.

The status is read into a `RolloutStatus` once per reconcile, decided on, and written once as a whole
(`RolloutStatus.to_status()`, nothing added here) when it differs from what the apiserver holds. Effects
happen only after that write succeeded, so a 409 (someone wrote first) or a lost leadership never produces
an Event or a webhook for a decision that was not recorded.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from controller import core
from controller.evidence import Evidence, EvidenceSource
from controller.notify import Notifier
from kubeio.client import replace_status
from policies.api import API_VERSION, COMMAND_ANNOTATION, GROUP, KIND, PLURAL, VERSION
from policies.errors import KubeError
from policies.machine import Command, CommandError, Emit, Notify, invalid_spec_status
from policies.spec import RolloutSpec, SpecError, VersionRef, parse_rollout
from policies.status import RolloutStatus

from .events import EventRecorder
from .metrics import ControllerMetrics

log = logging.getLogger("modelrollout.reconciler")


class NotLeader(KubeError):
    """Leadership was lost (or is about to be) before the write: nothing was written."""


@dataclass
class Outcome:
    """What one reconcile did: `requeue` seconds (None = wait for a change), `wrote` the status."""
    requeue: float | None
    wrote: bool = False
    phase: str | None = None


class Reconciler:
    def __init__(self, api_client: client.ApiClient, *, evidence: EvidenceSource, events: EventRecorder,
                 metrics: ControllerMetrics, notifier: Notifier, identity: str,
                 may_write: Callable[[], bool] = lambda: True, write_timeout: float = 5.0,
                 clock: Callable[[], float] = time.time, deletion_grace: float = 60.0, golden: Any = None):
        self.api = client.CustomObjectsApi(api_client)
        self.evidence, self.events, self.metrics, self.notifier = evidence, events, metrics, notifier
        self.identity, self.may_write, self.write_timeout, self.clock = identity, may_write, write_timeout, clock
        self._bad_commands: dict[str, str] = {}
        self._specs: dict[str, tuple[tuple, RolloutSpec | SpecError]] = {}
        self._written: dict[str, tuple[dict, str | None]] = {}
        """Per "namespace/name": the cleaned status last sent and the resourceVersion its write returned
        (None while the write is in flight), for `controller.kube.triggers` to recognise its own writes."""
        self.deletion_grace = deletion_grace
        self.golden = golden
        """Runs golden steps' sets (`controller.golden.GoldenRunner`); None: golden steps stay Inconclusive."""
        self._gone: dict[str, tuple[float, VersionRef]] = {}
        """Stables of rollouts deleted in the last `deletion_grace` seconds, by key."""

    def written(self, key: str) -> tuple[dict | None, str | None]:
        """(the status this controller last wrote or is writing for `key`, that write's resourceVersion)."""
        return self._written.get(key, (None, None))

    def forget(self, key: str) -> None:
        self._written.pop(key, None)
        self._specs.pop(key, None)
        self._bad_commands.pop(key, None)

    def deleted(self, key: str, obj: dict | None) -> None:
        """Remember a deleted rollout's stable: re-created within the grace (a delete and re-apply), the
        new object starts from it instead of from whatever its `spec.baseline` says."""
        now = self.clock()
        self._gone = {k: v for k, v in self._gone.items() if now - v[0] < self.deletion_grace}
        stable = RolloutStatus.from_status((obj or {}).get("status")).stable
        if stable is not None and self.deletion_grace > 0:
            self._gone[key] = (now, stable)

    def reconcile(self, obj: dict) -> Outcome:
        """One reconcile of `obj` (as last seen); retries a 409 by re-reading, at most 3 times."""
        memo = _MemoSource(self.evidence, self.golden)
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

    def _once(self, obj: dict, source: "_MemoSource") -> Outcome:
        now = self.clock()
        old = RolloutStatus.from_status(obj.get("status"))
        gone = self._gone.get("/".join(_ns_name(obj)))
        if gone is not None and old.revision is None and old.stable is None and now - gone[0] < self.deletion_grace:
            old = replace(old, stable=gone[1])      # re-created within the grace: same stable as before
        try:
            spec = self._spec(obj)
        except SpecError as e:
            status = replace(invalid_spec_status(old, e, now), observed_generation=_generation(obj))
            new = clean_status(status.to_status())
            wrote = self._write(obj, new)
            if wrote:
                self.events.record(obj, "Warning", "InvalidSpec", str(e))
            self.metrics.observe_status(*_ns_name(obj), new)
            return Outcome(None, wrote, status.phase.value)
        spec = spec.resolved(old.stable)     # the baseline is the stable once there is one
        decision = core.step(spec, old, now, source, self._command(obj), golden=source if self.golden else None)
        new = clean_status(decision.status.to_status())
        wrote = self._write(obj, new)
        if wrote:
            for action in decision.actions:
                if isinstance(action, Emit):
                    self.events.record(obj, action.type, action.reason, action.message)
                elif isinstance(action, Notify):
                    self.notifier.notify(spec, action.phase, action.severity, action.message, now)
        self.metrics.observe_status(spec.namespace, spec.name, new, spec)
        return Outcome(core.next_wakeup(spec, decision.status, self.clock()), wrote, decision.status.phase.value)

    def _spec(self, obj: dict) -> RolloutSpec:
        """The parsed spec, kept per (uid, generation): the apiserver bumps the generation on every spec
        change, so a rollout's spec is parsed once per change, not once per window. Raises SpecError."""
        meta = obj.get("metadata") or {}
        version = (meta.get("uid"), meta.get("generation"))
        key = "/".join(_ns_name(obj))
        cached = self._specs.get(key)
        if cached is not None and cached[0] == version and None not in version:
            if isinstance(cached[1], SpecError):
                raise cached[1].with_traceback(None)
            return cached[1]
        try:
            spec: RolloutSpec | SpecError = parse_rollout(obj).spec
        except SpecError as e:
            spec = e
        self._specs[key] = (version, spec)
        if isinstance(spec, SpecError):
            raise spec
        return spec

    def _command(self, obj: dict) -> Command | None:
        """The command annotation, decoded (`decide` skips an id it already applied); a malformed one is
        reported as one Warning Event per distinct text, never a crash."""
        meta = obj.get("metadata") or {}
        text = (meta.get("annotations") or {}).get(COMMAND_ANNOTATION)
        if not text:
            return None
        try:
            return Command.from_annotation(text)
        except CommandError as e:
            key = "/".join(_ns_name(obj))
            if self._bad_commands.get(key) != text:
                self._bad_commands[key] = text
                self.events.record(obj, "Warning", "InvalidCommand", str(e))
            return None

    def _write(self, obj: dict, status: dict) -> bool:
        """Replace the status subresource with `status` (cleaned `RolloutStatus.to_status()`) if it differs
        from the one the apiserver holds (optimistic concurrency on resourceVersion)."""
        if status == clean_status(obj.get("status") or {}):
            return False
        if not self.may_write():
            raise NotLeader(f"{self.identity} is not leader; status of {'/'.join(_ns_name(obj))} not written")
        meta = obj["metadata"]
        # The status subresource takes the status alone (the apiserver keeps spec and the rest of metadata):
        # name, namespace and resourceVersion (optimistic concurrency) are all the body needs.
        body = {"apiVersion": obj.get("apiVersion", API_VERSION), "kind": obj.get("kind", KIND),
                "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
                "status": status}
        ns, name = _ns_name(obj)
        key = f"{ns}/{name}"
        self._written[key] = (status, None)     # before the call: its watch event may come before its answer
        written = replace_status(self.api.api_client, GROUP, VERSION, ns, PLURAL, name, body,
                                 timeout=self.write_timeout)
        self._written[key] = (status, ((written or {}).get("metadata") or {}).get("resourceVersion"))
        self.metrics.status_writes.inc()
        obj["status"] = (written or {}).get("status", status)
        obj["metadata"] = (written or {}).get("metadata", obj["metadata"])
        return True


class _MemoSource:
    """Same evidence (and golden run) for every retry of one reconcile (a 409 re-decides, it does not
    re-measure)."""

    def __init__(self, inner: EvidenceSource, golden: Any = None):
        self.inner, self.memo, self.golden = inner, {}, golden
        self.runs: dict = {}

    def run(self, spec: RolloutSpec):
        """The golden runner's `run`, once per reconcile (a failure is raised again on a retry)."""
        key = (spec.key, spec.revision)
        if key not in self.runs:
            try:
                self.runs[key] = (self.golden.run(spec), None)
            except Exception as e:  # noqa: BLE001 - kept for the retry, raised to controller.core
                self.runs[key] = (None, e)
        run, error = self.runs[key]
        if error is not None:
            raise error
        return run

    def gather(self, spec: RolloutSpec, start: float, end: float) -> Evidence:
        key = (spec.key, spec.revision)
        if key not in self.memo:
            self.memo[key] = self.inner.gather(spec, start, end)
        return self.memo[key]


def _generation(obj: dict) -> int:
    g = (obj.get("metadata") or {}).get("generation")
    return g if isinstance(g, int) and not isinstance(g, bool) and g >= 0 else 0


def _ns_name(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", "default"), meta.get("name", "")


def clean_status(v: Any) -> Any:
    """Drop None values recursively: the apiserver prunes nulls of non-nullable fields, and comparing
    with them left in would make every reconcile look like a change."""
    if isinstance(v, dict):
        return {k: clean_status(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [clean_status(x) for x in v]
    return v
