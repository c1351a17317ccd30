"""What a check is about and how loudly it alerts, and its PromQL: the names the controller's metrics, alerts
and evidence read from a `CheckSpec` (re-exported by `policies.checks`)."""
from __future__ import annotations

import re

from .spec import ATTRIBUTION_METRICS, OPERATIONAL_METRICS, CheckSpec, RolloutSpec

TARGETS = ("prediction", "feature", "attribution", "operational", "inputs")
"""`inputs`: the verdict of spec.expectations (`input-expectations`), which is no check of the spec."""
SEVERITIES = ("critical", "warning", "info")


def render_query(check: CheckSpec, spec: RolloutSpec) -> str:
    """The check's PromQL with {{candidate}} {{baseline}} {{name}} {{namespace}} substituted."""
    if check.prometheus is None:
        raise ValueError(f"check {check.name!r} has no prometheus query")
    values = {"candidate": spec.candidate.version, "baseline": spec.baseline.version, "name": spec.name,
              "namespace": spec.namespace}

    def sub(m: re.Match) -> str:
        return values.get(m.group(1), m.group(0))

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", sub, check.prometheus.query)


def check_target(check: CheckSpec) -> str:
    """What a failing check says is wrong: the `prediction` distribution, a watched `feature`, the
    model's reasons (`attribution`), or how it serves (`operational`: errors, latency, Prometheus)."""
    if check.prometheus is not None or check.metric in OPERATIONAL_METRICS:
        return "operational"
    if check.metric in ATTRIBUTION_METRICS:
        return "attribution"
    return "feature" if check.feature is not None else "prediction"


def check_severity(check: CheckSpec) -> str:
    """How loudly a failing check should alert: `critical` for error-rate and immediate checks (NaN
    outputs, 5xx: act now), `info` for checks whose action is only `warn`, `warning` for the rest."""
    if check.immediate or check.metric == "error-rate":
        return "critical"
    return "info" if check.action == "warn" else "warning"
