"""Leader election on a coordination.k8s.io/v1 Lease, with an explicit "leading until" deadline.

Only the leader reconciles. A leader counts itself leader until `renew_deadline` after the start of its
last successful renewal, which is strictly before any other candidate may take the lease over (they wait
`lease_duration` after they *observed* that renewal). So an old leader that cannot renew stops writing
before its lease expires (argo-rollouts#2117), and every status write checks `is_leader()` first.

Written here rather than with `kubernetes.leaderelection`: that one uses the global client configuration,
calls sys.exit on bad settings and exposes no deadline a writer could check.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("modelrollout.leader")


def _micro_time(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Campaigns for Lease `namespace/name` as `identity` until stopped.

    `lease_duration` > `renew_deadline` > `retry_period` (seconds); the gap between the first two is how
    long a status write may take and still land while this process is leader.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str, name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_started: Callable[[], None] | None = None, on_stopped: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(f"leader election: expected lease_duration ({lease_duration}) > renew_deadline "
                             f"({renew_deadline}) > retry_period ({retry_period}) > 0")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_started = on_started or (lambda: None)
        self.on_stopped = on_stopped or (lambda: None)
        self._clock = clock
        self._leading_until = 0.0
        self._was_leader = False
        self._observed: tuple | None = None      # (holder, renewTime, resourceVersion) last seen
        self._observed_at = 0.0
        self.transitions = 0

    def is_leader(self, margin: float = 0.0) -> bool:
        """True while this process may act: its last renewal is younger than renew_deadline (minus margin)."""
        return self._clock() + margin < self._leading_until

    @property
    def write_budget(self) -> float:
        """Seconds a write may take and still land before any other candidate can become leader."""
        return self.lease_duration - self.renew_deadline

    def run(self, stop: threading.Event) -> None:
        """Acquire, then renew every retry_period; on stop, release the lease if held (fast hand-over)."""
        try:
            while not stop.is_set():
                self._tick()
                stop.wait(self.retry_period)
        finally:
            held = self.is_leader()
            self._leading_until = 0.0   # stop acting before giving the lease away
            self._notice()
            if held:
                self._release()

    def _tick(self) -> None:
        started = self._clock()
        try:
            ok = self._try_acquire_or_renew()
        except Exception as e:  # noqa: BLE001 - apiserver unreachable: we simply fail to renew
            log.warning("lease %s/%s: renew failed: %s", self.namespace, self.name, e)
            ok = False
        if ok:
            self._leading_until = started + self.renew_deadline
        self._notice()

    def _notice(self) -> None:
        leading = self.is_leader()
        if leading and not self._was_leader:
            self._was_leader = True
            self.transitions += 1
            log.info("%s became leader of lease %s/%s", self.identity, self.namespace, self.name)
            self.on_started()
        elif not leading and self._was_leader:
            self._was_leader = False
            log.warning("%s stopped leading lease %s/%s", self.identity, self.namespace, self.name)
            self.on_stopped()

    def _try_acquire_or_renew(self) -> bool:
        now = _micro_time()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.retry_period)
        except ApiException as e:
            if e.status != 404:
                raise
            body = {"metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
            return self._write(lambda: self.api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self.retry_period))
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        seen = (holder, spec.renew_time, lease.metadata.resource_version)
        if seen != self._observed:
            self._observed, self._observed_at = seen, self._clock()
        if holder and holder != self.identity:
            duration = spec.lease_duration_seconds or self.lease_duration
            if self._observed_at + duration > self._clock():
                return False  # someone else holds a lease that has not expired as far as we have observed
        body = {"metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": lease.metadata.resource_version},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                         "renewTime": now,
                         "acquireTime": (_micro_time(spec.acquire_time) if holder == self.identity
                                         and spec.acquire_time else now),
                         "leaseTransitions": (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)}}
        return self._write(lambda: self.api.replace_namespaced_lease(
            self.name, self.namespace, body, _request_timeout=self.retry_period))

    def _write(self, call) -> bool:
        try:
            call()
            return True
        except ApiException as e:
            if e.status in (409, 422):
                return False  # another candidate won the race
            raise

    def _release(self) -> None:
        """Give the lease up on a clean shutdown so a standby takes over without waiting for expiry."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=2)
            if (lease.spec and lease.spec.holder_identity == self.identity):
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=2)
        except Exception as e:  # noqa: BLE001 - best effort; the lease then simply expires
            log.info("lease release failed: %s", e)
