"""manifests/alerts.yaml: valid Prometheus rules whose alerts fire (and stay silent) on synthetic series."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("promtool")   # installed by .ci/run; missing → the tests fail

# Series as Prometheus stores them when it scrapes in a cluster through the chart's PodMonitor (every router
# pod) and ServiceMonitor (the controller's Service): the metric's own labels (a rollout's namespace is
# `rollout_namespace`) plus the target labels namespace, pod, job and instance of the pod it was scraped from.
# tests/e2e/test_prometheus_scrape.py checks that a real Prometheus labels them this way.
SYSTEM = "modelrollout-system"
ROUTER_A, ROUTER_B = "modelrollout-router-6f7c9d-a1b2c", "modelrollout-router-6f7c9d-d3e4f"
CONTROLLER = "modelrollout-controller-5d8b7c-x9y8z"
TARGETS = {
    ROUTER_A: {"job": f"{SYSTEM}/modelrollout-router", "instance": "10.244.0.7:8080", "container": "router",
               "endpoint": "http"},
    ROUTER_B: {"job": f"{SYSTEM}/modelrollout-router", "instance": "10.244.0.8:8080", "container": "router",
               "endpoint": "http"},
    CONTROLLER: {"job": "modelrollout-controller-metrics", "instance": "10.244.0.9:9090", "container": "controller",
                 "endpoint": "metrics", "service": "modelrollout-controller-metrics"},
}


def scraped(series: str, pod: str) -> str:
    """`series` with the target labels Prometheus adds when it scrapes `pod`."""
    name, _, labels = series.partition("{")
    target = {"namespace": SYSTEM, "pod": pod, **TARGETS[pod]}
    extra = ",".join(f'{k}="{v}"' for k, v in target.items())
    return f"{name}{{{extra}{',' if labels != '}' else ''}{labels}" if labels else f"{name}{{{extra}}}"


def ml(**labels) -> str:
    return ",".join(f'{k}="{v}"' for k, v in {"rollout_namespace": "ml", **labels}.items())


# Two rollouts over 30 minutes: "fraud" v2 fails 4% of calls (all on router A, while both routers serve it),
# returns NaN, is slower and scores higher than v1; "churn" was rolled back and its versions score alike.
# `promtool test rules` evaluates the alerts.
ROUTER_SERIES = [
    (ROUTER_A, f'modelrollout_router_requests_total{{{ml(rollout="fraud", version="v2", role="primary", code="200")}}}',
     "0+50x30"),
    (ROUTER_B, f'modelrollout_router_requests_total{{{ml(rollout="fraud", version="v2", role="primary", code="200")}}}',
     "0+50x30"),
    (ROUTER_A, f'modelrollout_router_errors_total{{{ml(rollout="fraud", version="v2", role="primary", kind="http_5xx")}}}',
     "0+4x30"),
    (ROUTER_B, f'modelrollout_router_errors_total{{{ml(rollout="fraud", version="v2", role="primary", kind="invalid_output")}}}',
     "0+1x30"),
    (ROUTER_A, f'modelrollout_router_requests_total{{{ml(rollout="fraud", version="v1", role="primary", code="200")}}}',
     "0+500x30"),
    (ROUTER_B, f'modelrollout_router_requests_total{{{ml(rollout="fraud", version="v1", role="primary", code="200")}}}',
     "0+500x30"),
    (ROUTER_A, f'modelrollout_router_errors_total{{{ml(rollout="fraud", version="v1", role="primary", kind="timeout")}}}',
     "0+1x30"),
    (ROUTER_A, "modelrollout_router_log_dropped_total{}", "0+5x30"),
    # fraud's v2 failed and the fallback answered 10 of its calls a minute (about 1% of fraud's primary calls:
    # 2 x 550); churn's fallback failed from 20m on (after the 15m evaluation), so only its late check fires
    (ROUTER_A, f'modelrollout_router_fallback_total{{{ml(rollout="fraud", version="v2", reason="http_5xx", result="served")}}}',
     "0+30x30"),
    (ROUTER_B, f'modelrollout_router_fallback_total{{{ml(rollout="churn", version="v3", reason="timeout", result="failed")}}}',
     "0x19 0+2x10"),
    (ROUTER_B, f'modelrollout_router_requests_total{{{ml(rollout="churn", version="v3", role="primary", code="0")}}}',
     "0+40x30"),
    # router A lost the apiserver from 5m on (it serves its last routing), router B only for 2 minutes
    (ROUTER_A, "modelrollout_router_source_connected{}", "1x4 0x26"),
    (ROUTER_B, "modelrollout_router_source_connected{}", "1x9 0x2 1x19"),
    (ROUTER_A, "modelrollout_router_worker_lost_total{}", "0x30"),
    (ROUTER_B, "modelrollout_router_log_dropped_total{}", "0x30"),
    (ROUTER_B, "modelrollout_router_worker_lost_total{}", "0x30"),
    *[(pod, f'modelrollout_router_request_duration_seconds_bucket{{{ml(rollout="fraud", version=v, role="primary", le=le)}}}',
       f"0+{n // 2}x30")
      for pod in (ROUTER_A, ROUTER_B)
      for v, counts in (("v1", {"0.1": 1000, "1": 1000, "+Inf": 1000}), ("v2", {"0.1": 0, "1": 100, "+Inf": 100}))
      for le, n in counts.items()],
    # mean prediction: fraud v1 0.30, v2 0.45 (shifted); churn v3 0.50, v4 0.52 (not shifted)
    *[(pod, f'modelrollout_router_prediction_{part}{{{ml(rollout=r, version=v)}}}', f"0+{n // 2}x30")
      for pod in (ROUTER_A, ROUTER_B)
      for r, v, count, total in (("fraud", "v1", 100, 30), ("fraud", "v2", 100, 46),
                                 ("churn", "v3", 100, 50), ("churn", "v4", 100, 52))
      for part, n in (("count", count), ("sum", total))],
]
# Check gauges (the leading controller's). "fraud" is progressing: its prediction drift check fails, its ks
# check (minPValue, value far above the threshold) passes, its attribution check fails. "churn" was rolled
# back long ago and keeps its last failing verdicts. "loans" was rolled back at 10m by its immediate error check.
CONTROLLER_SERIES = [
    (f'modelrollout_rollout_phase{{{ml(rollout="churn", phase="RolledBack")}}}', "1x30"),
    (f'modelrollout_rollout_phase{{{ml(rollout="fraud", phase="RolledBack")}}}', "0x30"),
    (f'modelrollout_rollout_phase{{{ml(rollout="fraud", phase="Progressing")}}}', "1x30"),
    *[(f'modelrollout_check_failing{{{ml(rollout=r, check=c, severity=sev, target=t)}}}', v)
      for r, c, sev, t, v in (("fraud", "score-psi", "warning", "prediction", "1x30"),
                              ("fraud", "score-ks", "warning", "prediction", "0x30"),
                              ("fraud", "why-changed", "info", "attribution", "1x30"),
                              ("fraud", "nan-or-5xx", "critical", "operational", "0x30"),
                              ("churn", "score-psi", "warning", "prediction", "1x30"),
                              ("churn", "why-changed", "info", "attribution", "1x30"),
                              ("churn", "nan-or-5xx", "critical", "operational", "1x30"),
                              ("loans", "nan-or-5xx", "critical", "operational", "0x9 1x21"))],
    (f'modelrollout_rollout_phase{{{ml(rollout="loans", phase="Progressing")}}}', "1x9 0x21"),
    (f'modelrollout_rollout_phase{{{ml(rollout="loans", phase="RolledBack")}}}', "0x9 1x21"),
    # "fraud" got an invalid edit at 10m (fixed at 20m); "churn" never did.
    (f'modelrollout_rollout_invalid_spec{{{ml(rollout="fraud")}}}', "0x9 1x10 0x11"),
    (f'modelrollout_rollout_invalid_spec{{{ml(rollout="churn")}}}', "0x30"),
    # "fraud"'s inputs had 20% null amounts from 10m on; "churn" (rolled back) keeps a stale broken one
    (f'modelrollout_input_failing_fraction{{{ml(rollout="fraud", feature="amount", expectation="notNull")}}}',
     "_x9 0.2x21"),
    (f'modelrollout_input_failing_fraction{{{ml(rollout="churn", feature="amount", expectation="rows")}}}', "3x30"),
    # the promotion of "loans" v5 was regretted at 12m (delayed labels); "churn" v4's never was
    (f'modelrollout_rollout_promotion_regretted{{{ml(rollout="loans", version="v5")}}}', "0x11 1x19"),
    (f'modelrollout_rollout_promotion_regretted{{{ml(rollout="churn", version="v4")}}}', "0x30"),
]
SERIES = [(scraped(s, pod), v) for pod, s, v in ROUTER_SERIES] + [(scraped(s, CONTROLLER), v)
                                                                  for s, v in CONTROLLER_SERIES]


def alert(severity, labels=None):
    return {"exp_labels": {"severity": severity, **(labels or {})}}


def test_alert_rules_fire_on_the_right_series(tmp_path):
    """Critical fires for the failing version and the recently rolled-back critical check only, warning for the
    shifted rollout, the failing drift check of a running rollout and the rollbacks, info for the version whose
    p99 is over twice the other's and the running rollout's attribution shift; finished rollouts' stale
    verdicts stay silent; an invalid spec warns while it lasts, a router that cannot reach the apiserver for
    5 minutes warns."""
    doc = yaml.safe_load((ROOT / "manifests" / "alerts.yaml").read_text())
    assert doc["kind"] == "PrometheusRule"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # Annotations are checked by `check rules` above; the firing test compares labels only.
    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in doc["spec"]["groups"]]
    rules.write_text(yaml.safe_dump({"groups": bare}))
    fraud_v2 = {"rollout_namespace": "ml", "rollout": "fraud", "version": "v2"}
    churn = {"rollout_namespace": "ml", "rollout": "churn"}
    cases = {
        "ModelRolloutVersionErrors": [alert("critical", fraud_v2)],
        "ModelRolloutInvalidOutputs": [alert("critical", fraud_v2)],
        "ModelRolloutPredictionShift": [alert("warning", {"rollout_namespace": "ml", "rollout": "fraud"})],
        "ModelRolloutRolledBack": [alert("warning", churn),
                                   alert("warning", {"rollout_namespace": "ml", "rollout": "loans"})],
        "ModelRolloutCriticalCheckFailing": [alert("critical", {"rollout_namespace": "ml", "rollout": "loans",
                                                                "check": "nan-or-5xx", "target": "operational"})],
        "ModelRolloutDriftCheckFailing": [alert("warning", {"rollout_namespace": "ml", "rollout": "fraud",
                                                            "check": "score-psi", "target": "prediction"})],
        "ModelRolloutAttributionShift": [alert("info", {"rollout_namespace": "ml", "rollout": "fraud",
                                                        "check": "why-changed"})],
        "ModelRolloutPausedTooLong": [],
        "ModelRolloutInputQuality": [alert("warning", {"rollout_namespace": "ml", "rollout": "fraud",
                                                       "feature": "amount", "expectation": "notNull"})],
        "ModelRolloutInvalidSpec": [alert("warning", {"rollout_namespace": "ml", "rollout": "fraud"})],
        "ModelRolloutRouterDisconnected": [alert("warning", {"namespace": SYSTEM, "pod": ROUTER_A})],
        "ModelRolloutShadowDropped": [],
        "ModelRolloutFallbackServed": [alert("warning", {"rollout_namespace": "ml", "rollout": "fraud"})],
        "ModelRolloutFallbackFailing": [],
        "ModelRolloutPromotionRegretted": [alert("warning", {"rollout_namespace": "ml", "rollout": "loans",
                                                             "version": "v5"})],
        # the router pod, named by the labels Prometheus gave its series
        "ModelRolloutRouterLosingRecords": [alert("warning", {"namespace": SYSTEM, "pod": ROUTER_A})],
    }
    slower = [{"eval_time": "25m", "alertname": "ModelRolloutCandidateSlower",
               "exp_alerts": [alert("info", fraud_v2)]},
              # 15 minutes after the rollback the page has resolved
              {"eval_time": "25m", "alertname": "ModelRolloutCriticalCheckFailing", "exp_alerts": []},
              # the spec was fixed at 20m
              {"eval_time": "25m", "alertname": "ModelRolloutInvalidSpec", "exp_alerts": []},
              {"eval_time": "25m", "alertname": "ModelRolloutFallbackFailing",
               "exp_alerts": [alert("critical", {"rollout_namespace": "ml", "rollout": "churn"})]}]
    tests = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in SERIES],
        "alert_rule_test": [{"eval_time": "15m", "alertname": name, "exp_alerts": exp} for name, exp in cases.items()] + slower,
    }]}
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    out = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_known_severity_and_summary():
    """Each alert carries severity critical, warning or info, and a summary a person can act on."""
    doc = yaml.safe_load((ROOT / "manifests" / "alerts.yaml").read_text())
    alerts = [r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {r["labels"]["severity"] for r in alerts} == {"critical", "warning", "info"}
    assert all(r["annotations"]["summary"] and r["annotations"]["description"] for r in alerts)


def test_alerts_query_only_exported_metrics():
    """Every metric an alert reads is one the router or the controller really exports."""
    import re

    from tests.unit.test_dashboard import exported_metric_names

    doc = yaml.safe_load((ROOT / "manifests" / "alerts.yaml").read_text())
    exprs = " ".join(r["expr"] for g in doc["spec"]["groups"] for r in g["rules"])
    used = set(re.findall(r"\b(modelrollout_[a-z_]+)\b", exprs))
    assert used and not used - exported_metric_names(), sorted(used - exported_metric_names())
