"""The controller's own Prometheus metrics (one registry per controller, so replicas in one process and
tests never share counters).

`modelrollout_check_failing` (0/1) and the one-hot `modelrollout_check_verdict` let alerts fire on any
check, whatever the direction of its bound (`value > threshold` is wrong for min and minPValue checks);
their `severity` and `target` labels come from `policies.checks.check_severity` / `check_target`. A
rollout's namespace is the label `rollout_namespace`, as in the router's metrics: `namespace`, `pod`, `job`
and `instance` are the labels Prometheus adds to every scraped series on Kubernetes.
"""
from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from policies.api import Phase, Verdict
from policies.checks import CheckSpec, check_severity, check_target
from policies.expectations import INPUT_CHECK
from policies.spec import ATTRIBUTION_METRICS, OPERATIONAL_METRICS, RolloutSpec

VERDICTS = tuple(v.value for v in Verdict)
PHASES = tuple(p.value for p in Phase)


class ControllerMetrics:
    def __init__(self, identity: str):
        self.registry = CollectorRegistry()
        r = self.registry
        self.phase = Gauge("modelrollout_rollout_phase", "1 for the rollout's current phase, 0 for the others",
                           ["rollout_namespace", "rollout", "phase"], registry=r)
        self.invalid_spec = Gauge("modelrollout_rollout_invalid_spec",
                                  "1 while the rollout's spec is invalid (condition InvalidSpec): the routers keep "
                                  "its last valid routing and it neither advances nor is analysed",
                                  ["rollout_namespace", "rollout"], registry=r)
        self.regretted = Gauge("modelrollout_rollout_promotion_regretted",
                               "1 when a postPromotion check found the promoted version worse than the previous "
                               "stable on delayed labels (status.postPromotion.state Regretted), else 0",
                               ["rollout_namespace", "rollout", "version"], registry=r)
        self.weight = Gauge("modelrollout_rollout_weight", "Percent of live traffic routed to the candidate",
                            ["rollout_namespace", "rollout"], registry=r)
        self.check_value = Gauge("modelrollout_check_value", "Last window's value of a check",
                                 ["rollout_namespace", "rollout", "check"], registry=r)
        self.check_threshold = Gauge("modelrollout_check_threshold", "Threshold the check's value is held to",
                                     ["rollout_namespace", "rollout", "check"], registry=r)
        self.check_failing = Gauge("modelrollout_check_failing",
                                   "1 while the check's last window verdict is Fail, else 0",
                                   ["rollout_namespace", "rollout", "check", "severity", "target"], registry=r)
        self.check_verdict = Gauge("modelrollout_check_verdict",
                                   "1 for the check's last window verdict (Pass, Fail, Inconclusive), 0 for the others",
                                   ["rollout_namespace", "rollout", "check", "severity", "target", "verdict"], registry=r)
        self.input_failing = Gauge("modelrollout_input_failing_fraction",
                                   "Share of the last window's live inputs breaking an expectation of spec.expectations "
                                   "(rows: the row count), one series per broken expectation while it is broken",
                                   ["rollout_namespace", "rollout", "feature", "expectation"], registry=r)
        self.reconcile_seconds = Histogram("modelrollout_reconcile_duration_seconds",
                                           "Time of one reconcile of one rollout",
                                           buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=r)
        self.reconcile_errors = Counter("modelrollout_reconcile_errors_total",
                                        "Reconciles that failed and were retried", ["reason"], registry=r)
        self.status_writes = Counter("modelrollout_status_writes_total",
                                     "Status subresource writes that the apiserver accepted", registry=r)
        self.write_conflicts = Counter("modelrollout_status_conflicts_total",
                                       "Status writes refused with 409 Conflict (then re-read)", registry=r)
        self.watch_events = Counter("modelrollout_watch_events_total",
                                    "ModelRollout changes the watch (or a relist) reported, own status writes included",
                                    registry=r)
        self.triggers = Counter("modelrollout_reconcile_triggers_total",
                                "Requests to reconcile a rollout, by cause (new, spec, command, status, leader, "
                                "timer, retry, routers); a key already queued runs once", ["trigger"], registry=r)
        self.leader = Gauge("modelrollout_controller_leader", "1 while this replica leads",
                            ["identity"], registry=r)
        self.identity = identity
        self.leader.labels(identity).set(0)
        self._series: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}
        """Per (rollout_namespace, rollout): the (gauge, label values) series set for it."""

    def serve(self, port: int, addr: str = "127.0.0.1"):
        return start_http_server(port, addr=addr, registry=self.registry)

    def observe_status(self, ns: str, name: str, status: dict, spec: RolloutSpec | None = None) -> None:
        """Set the rollout's gauges from its status; `spec` (when it parsed) gives each check's severity and
        target, else they are inferred from the metric and action the status records."""
        current = status.get("phase")
        for p in PHASES:
            self._set(self.phase, (ns, name, p), 1 if p == current else 0)
        self._set(self.weight, (ns, name), (status.get("routing") or {}).get("candidateWeight") or 0)
        invalid = any(isinstance(c, dict) and c.get("type") == "InvalidSpec" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
        self._set(self.invalid_spec, (ns, name), 1 if invalid else 0)
        pp = status.get("postPromotion") if isinstance(status.get("postPromotion"), dict) else {}
        promoted = str((pp.get("promoted") or {}).get("version") or "") if isinstance(pp.get("promoted"), dict) else ""
        self._drop(ns, name, lambda labels: labels[2] != promoted, (self.regretted,))
        if promoted:
            self._set(self.regretted, (ns, name, promoted), 1 if pp.get("state") == "Regretted" else 0)
        specs = {c.name: c for c in spec.analysis.checks + spec.golden_checks} if spec is not None else {}
        checks = [c for c in status.get("checks") or [] if isinstance(c, dict)]
        names = {str(c.get("name", "")) for c in checks}
        self._drop(ns, name, lambda labels: labels[2] not in names)    # checks removed from the spec
        for c in checks:
            check = str(c.get("name", ""))
            for gauge, field in ((self.check_value, "value"), (self.check_threshold, "threshold")):
                v = c.get(field)
                self._set(gauge, (ns, name, check), float(v) if isinstance(v, (int, float)) else math.nan)
            severity, target = _labels_of(specs.get(check), c)
            # a check whose action or target changed keeps one series, under its current labels
            self._drop(ns, name, lambda labels: labels[2] == check and labels[3:5] != (severity, target),
                       (self.check_failing, self.check_verdict))
            verdict = c.get("verdict")
            self._set(self.check_failing, (ns, name, check, severity, target), 1 if verdict == Verdict.FAIL else 0)
            for v in VERDICTS:
                self._set(self.check_verdict, (ns, name, check, severity, target, v), 1 if v == verdict else 0)
        self._observe_inputs(ns, name, next((c for c in checks if c.get("name") == INPUT_CHECK), None))

    def _observe_inputs(self, ns: str, name: str, entry: dict | None) -> None:
        """One series per broken input expectation of the last window (none once they hold again)."""
        broken = []
        if entry is not None and entry.get("verdict") == Verdict.FAIL:
            evidence = entry.get("evidence") if isinstance(entry.get("evidence"), dict) else {}
            for b in (evidence.get("inputs") or {}).get("failing") or []:
                if isinstance(b, dict):
                    v = b.get("fraction", b.get("value"))
                    broken.append(((ns, name, str(b.get("feature") or ""), str(b.get("expectation"))),
                                   float(v) if isinstance(v, (int, float)) else math.nan))
        keep = {labels for labels, _ in broken}
        self._drop(ns, name, lambda labels: labels not in keep, (self.input_failing,))
        for labels, v in broken:
            self._set(self.input_failing, labels, v)

    def _gauges(self) -> tuple[Gauge, ...]:
        return (self.phase, self.weight, self.invalid_spec, self.regretted, self.check_value, self.check_threshold,
                self.check_failing, self.check_verdict, self.input_failing)

    def _drop(self, ns: str, name: str, match: Any, gauges: tuple[Gauge, ...] | None = None) -> None:
        """Remove the rollout's series whose label values satisfy `match` (check gauges only by default).

        Looks only at the rollout's own series (`_series`), so a reconcile costs the same with 10 or 10,000
        rollouts."""
        gauges = gauges or (self.check_value, self.check_threshold, self.check_failing, self.check_verdict)
        mine = self._series.get((ns, name))
        if not mine:
            return
        for gauge, labels in list(mine):
            if gauge in gauges and match(labels):
                gauge.remove(*labels)
                mine.discard((gauge, labels))

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        gauge.labels(*labels).set(value)
        self._series.setdefault((labels[0], labels[1]), set()).add((gauge, labels))

    def forget(self, ns: str, name: str) -> None:
        """Drop a deleted rollout's series."""
        self._drop(ns, name, lambda labels: True, self._gauges())
        self._series.pop((ns, name), None)

    def forget_all(self) -> None:
        """Drop every rollout's series (this replica stopped leading; the leader exports them)."""
        for gauge in self._gauges():
            gauge.clear()
        self._series.clear()


def _labels_of(check: CheckSpec | None, recorded: dict) -> tuple[str, str]:
    """(severity, target) of a check: from its spec, or inferred from the status entry when the spec is gone."""
    if check is not None:
        return check_severity(check), check_target(check)
    metric, action = recorded.get("metric"), recorded.get("action")
    if metric == INPUT_CHECK:
        return "warning", "inputs"
    if metric is None or metric in OPERATIONAL_METRICS:
        target = "operational"
    else:
        target = "attribution" if metric in ATTRIBUTION_METRICS else "prediction"
    severity = "critical" if metric == "error-rate" else "info" if action == "warn" else "warning"
    return severity, target
