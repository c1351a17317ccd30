"""The controller process: list+watch → work queue → workers running the reconciler, under leader election.

Threads: one list/watch, one lease elector, `workers` reconcile workers, one metrics HTTP server, one
notification sender. A key is reconciled by one worker at a time. It is queued for a change that can
alter a decision (new object, spec change, command, a status someone else wrote: `triggers.reason`) and,
after each reconcile, for its next deadline (the next analysis window or step end); the watch events of
the controller's own status writes queue nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
from kubernetes import client

from controller.evidence import http_sources
from controller.golden import GoldenRunner
from controller.notify import Notifier

from .events import EventRecorder
from .leader import LeaseElector
from .metrics import ControllerMetrics
from .reconciler import NotLeader, Reconciler, clean_status
from .routers import RouterDiscovery
from .services import RECHECK_SECONDS, RouterEndpoints, ServiceKeeper
from .secrets import SecretReader
from .configmaps import ConfigMapReader
from .token import RouterToken
from . import triggers
from kubeio.watch import ListWatcher

log = logging.getLogger("modelrollout.controller")


def default_identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ControllerSettings:
    namespace: str | None = None
    """Namespace to watch; None watches all namespaces."""
    router_urls: tuple[str, ...] = ()
    """Router replicas to read summaries from (besides those of `router_service`)."""
    router_service: str | None = None
    """Router Service (`NAME` in the rollout's namespace, or `NAMESPACE/NAME`) whose EndpointSlices list replicas."""
    prometheus_url: str | None = None
    """Default Prometheus for PromQL checks (a check's own `address` wins)."""
    metrics_port: int | None = None
    """Port of the controller's /metrics; None = not served."""
    metrics_host: str = "0.0.0.0"
    leader_elect: bool = True
    lease_name: str = "modelrollout-controller"
    lease_namespace: str = "default"
    lease_duration: float = 15.0
    """Seconds a lease is valid after its last renewal, as observed by a standby."""
    renew_deadline: float = 10.0
    """Seconds after a renewal the leader keeps acting; must be < lease_duration."""
    retry_period: float = 2.0
    """Seconds between lease renewals."""
    resync: float = 30.0
    """Seconds between full relists; a relist reconciles what changed while the watch missed it (the timers
    of `controller.core.next_wakeup`, not relists, bring every active rollout its windows and step ends)."""
    http_timeout: float = 5.0
    """Seconds a router or Prometheus may take to answer one query (then: Inconclusive)."""
    workers: int = 16
    router_token_file: str | None = None
    """Token sent to the routers' /summaries (`controller/kube/token.py`); None: none sent."""
    identity: str = field(default_factory=default_identity)
    deletion_grace: float = 60.0
    """Seconds a deleted rollout's stable is remembered: re-created within them, it starts from that stable."""


class Controller:
    def __init__(self, api_client: client.ApiClient, settings: ControllerSettings):
        self.api_client, self.settings = api_client, settings
        self.identity = settings.identity
        self.metrics = ControllerMetrics(self.identity)
        self.events = EventRecorder(api_client, self.identity)
        self.notifier = Notifier(secrets=SecretReader(api_client))
        self.discovery = RouterDiscovery(api_client, settings.router_service, settings.router_urls)
        # One client per kind of peer for the controller's life (keep-alive across windows). Prometheus
        # certificates are not verified, as with the PromQL client this controller used before.
        self.http = httpx.Client(timeout=settings.http_timeout, auth=(
            RouterToken(settings.router_token_file) if settings.router_token_file else None))
        self.prometheus_http = httpx.Client(timeout=settings.http_timeout, verify=False)
        self.evidence = http_sources(self.http, self.discovery.urls, settings.prometheus_url, self.prometheus_http)
        self.golden = GoldenRunner(self.http, self.discovery.urls, ConfigMapReader(api_client))
        from .workqueue import WorkQueue

        self.queue = WorkQueue()
        self.elector: LeaseElector | None = None
        if settings.leader_elect:
            self.elector = LeaseElector(api_client, settings.lease_namespace, settings.lease_name, self.identity,
                                        lease_duration=settings.lease_duration,
                                        renew_deadline=settings.renew_deadline,
                                        retry_period=settings.retry_period,
                                        on_started=self._started_leading, on_stopped=self._stopped_leading)
        write_timeout = min(settings.http_timeout, self.elector.write_budget) if self.elector else settings.http_timeout
        self.reconciler = Reconciler(api_client, evidence=self.evidence, events=self.events, metrics=self.metrics,
                                     notifier=self.notifier, identity=self.identity, may_write=self.is_leader,
                                     write_timeout=write_timeout, deletion_grace=settings.deletion_grace,
                                     golden=self.golden)
        self.watcher = ListWatcher(api_client, settings.namespace, on_event=self._changed, resync=settings.resync)
        # Transparent mode: rollouts' own Services, whose EndpointSlices follow the router Service's.
        self.router_endpoints = None
        if settings.router_service:
            ns, _, name = settings.router_service.rpartition("/")
            self.router_endpoints = RouterEndpoints(api_client, ns or settings.lease_namespace, name,
                                                    on_change=self._routers_moved)
        self.services = ServiceKeeper(api_client, self.router_endpoints, self.events, self.metrics.registry,
                                      may_write=self.is_leader)
        self.stop_event = threading.Event()
        self.reconciles = 0
        self._threads: list[threading.Thread] = []
        self._metrics_server = None

    # ---- leadership ----------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def _started_leading(self) -> None:
        self.metrics.leader.labels(self.identity).set(1)
        for obj in self.watcher.objects():
            self._queue(_key(obj), triggers.LEADER)

    def _stopped_leading(self) -> None:
        self.metrics.leader.labels(self.identity).set(0)
        # Only the leader exports rollout gauges: a stale copy here would sit beside the new leader's when
        # Prometheus scrapes every replica (docs/install.md "Scraping").
        self.metrics.forget_all()

    # ---- events from the watch -----------------------------------------------------------------------

    def _routers_moved(self) -> None:
        for obj in self.watcher.objects():
            if isinstance(obj.get("spec"), dict) and obj["spec"].get("service"):
                self._queue(_key(obj), triggers.ROUTERS)

    def _changed(self, key: str, old: dict | None, obj: dict | None) -> None:
        """A watch event or relist difference: queue the key if the change can alter a decision."""
        self.metrics.watch_events.inc()
        if obj is None:
            self.services.forget(key)
            self.queue.forget(key)
            self.reconciler.forget(key)
            self.reconciler.deleted(key, old)       # its stable, for a re-apply within the deletion grace
            ns, _, name = key.partition("/")
            self.metrics.forget(ns, name)
            return
        why = triggers.reason(old, obj, self.reconciler.written(key), clean_status)
        if why is not None:
            self._queue(key, why)

    def _queue(self, key: str, why: str, delay: float = 0.0) -> None:
        self.metrics.triggers.labels(why).inc()
        self.queue.add(key, delay)

    # ---- running -------------------------------------------------------------------------------------

    def start(self) -> "Controller":
        if self.settings.metrics_port is not None:
            self._metrics_server = self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
        if self.elector is None:
            self.metrics.leader.labels(self.identity).set(1)
        self._spawn("watch", self.watcher.run, self.stop_event)
        if self.router_endpoints is not None:
            self._spawn("router-endpoints", self.router_endpoints.run, self.stop_event)
        if self.elector is not None:
            self._spawn("leader", self.elector.run, self.stop_event)
        for i in range(self.settings.workers):
            self._spawn(f"worker-{i}", self._work)
        log.info("controller %s started (namespace=%s, leader election %s)", self.identity,
                 self.settings.namespace or "all", "on" if self.elector else "off")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.queue.close()
        self.watcher.stop()
        if self.router_endpoints is not None:
            self.router_endpoints.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.notifier.close()
        self.evidence.close()
        self.http.close()
        self.prometheus_http.close()
        self.golden.close()
        if self._metrics_server is not None:
            server = self._metrics_server[0] if isinstance(self._metrics_server, tuple) else self._metrics_server
            server.shutdown()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()

    def _spawn(self, name: str, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _work(self) -> None:
        while not self.stop_event.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                self.process(key)
            finally:
                self.queue.done(key)

    def process(self, key: str) -> None:
        """Reconcile `key` once if leader, and requeue it for when it next needs attention."""
        if not self.is_leader():
            return  # the new leadership's on_started requeues everything
        obj = self.watcher.get(key)
        if obj is None:
            return
        started = time.perf_counter()
        try:
            outcome = self.reconciler.reconcile(obj)
            self.reconciles += 1
            requeue = outcome.requeue
            if isinstance(obj.get("spec"), dict) and obj["spec"].get("service"):
                # its Service is read again every RECHECK_SECONDS (someone may have changed or deleted it)
                recheck = RECHECK_SECONDS + 0.5
                requeue = recheck if requeue is None else min(requeue, recheck)
            if requeue is not None:
                self._queue(key, triggers.TIMER, requeue)
        except NotLeader as e:
            log.info("%s", e)
        except Exception as e:  # noqa: BLE001 - temporary: apiserver down, conflict storm, ...
            reason = type(e).__name__
            status = getattr(e, "status", None)
            if status:
                reason = f"http_{status}"
            self.metrics.reconcile_errors.labels(reason).inc()
            log.warning("reconcile %s failed (%s): %s; retrying", key, reason, str(e)[:300])
            self._queue(key, triggers.RETRY, 1.0)
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
        try:
            self.services.ensure(obj)
        except Exception as e:  # noqa: BLE001 - apiserver down, RBAC missing: retried on the next reconcile
            self.metrics.reconcile_errors.labels("service").inc()
            log.warning("Service of %s not ensured: %s; retrying", key, str(e)[:300])
            self._queue(key, triggers.RETRY, 5.0)


def _key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
