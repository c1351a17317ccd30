"""The controller's own Prometheus metrics (one registry per controller, so replicas in one process and
tests never share counters)."""
from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PHASES = ("Pending", "Shadowing", "Progressing", "Interleaving", "Paused", "Promoted", "RolledBack", "Failed")


class ControllerMetrics:
    def __init__(self, identity: str):
        self.registry = CollectorRegistry()
        r = self.registry
        self.phase = Gauge("modelrollout_rollout_phase", "1 for the rollout's current phase, 0 for the others",
                           ["namespace", "rollout", "phase"], registry=r)
        self.weight = Gauge("modelrollout_rollout_weight", "Percent of live traffic routed to the candidate",
                            ["namespace", "rollout"], registry=r)
        self.check_value = Gauge("modelrollout_check_value", "Last window's value of a check",
                                 ["namespace", "rollout", "check"], registry=r)
        self.check_threshold = Gauge("modelrollout_check_threshold", "Threshold the check's value is held to",
                                     ["namespace", "rollout", "check"], registry=r)
        self.reconcile_seconds = Histogram("modelrollout_reconcile_duration_seconds",
                                           "Time of one reconcile of one rollout",
                                           buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=r)
        self.reconcile_errors = Counter("modelrollout_reconcile_errors_total",
                                        "Reconciles that failed and were retried", ["reason"], registry=r)
        self.status_writes = Counter("modelrollout_status_writes_total",
                                     "Status subresource writes that the apiserver accepted", registry=r)
        self.write_conflicts = Counter("modelrollout_status_conflicts_total",
                                       "Status writes refused with 409 Conflict (then re-read)", registry=r)
        self.leader = Gauge("modelrollout_controller_leader", "1 while this replica leads",
                            ["identity"], registry=r)
        self.identity = identity
        self.leader.labels(identity).set(0)

    def serve(self, port: int, addr: str = "127.0.0.1"):
        return start_http_server(port, addr=addr, registry=self.registry)

    def observe_status(self, ns: str, name: str, status: dict) -> None:
        current = status.get("phase")
        for p in PHASES:
            self.phase.labels(ns, name, p).set(1 if p == current else 0)
        self.weight.labels(ns, name).set((status.get("routing") or {}).get("candidateWeight") or 0)
        for c in status.get("checks") or []:
            for gauge, field in ((self.check_value, "value"), (self.check_threshold, "threshold")):
                v = c.get(field)
                gauge.labels(ns, name, c.get("name", "")).set(float(v) if isinstance(v, (int, float)) else math.nan)

    def forget(self, ns: str, name: str) -> None:
        """Drop a deleted rollout's series."""
        for gauge in (self.phase, self.weight, self.check_value, self.check_threshold):
            for labels in list(gauge._metrics):  # noqa: SLF001 - prometheus_client has no label query API
                if labels[:2] == (ns, name):
                    gauge.remove(*labels)
