"""The Grafana dashboard for rollouts, generated from code so panels and metric names stay in one place.

`python -m modelrollout.grafana > manifests/grafana-dashboard.json` writes it; a test keeps the committed
file equal to this output and every queried metric equal to one the router or controller exports.
Variables: datasource, namespace, rollout. Panels: checks over time against their thresholds, the
candidate's weight and phase, per-version request rate, error ratio, latency and mean prediction,
dropped mirrors, each check's verdict over time and the failing checks by target (prediction, feature,
attribution, operational).
"""
from __future__ import annotations

import json
import sys
from typing import Any

UID = "modelrollout-rollouts"
SEL = 'rollout_namespace=~"$namespace", rollout=~"$rollout"'

# Metric families the dashboard reads, by the process that exports them.
ROUTER_METRICS = ("modelrollout_router_requests_total", "modelrollout_router_errors_total",
                  "modelrollout_router_request_duration_seconds_bucket", "modelrollout_router_shadow_dropped_total",
                  "modelrollout_router_prediction_sum", "modelrollout_router_prediction_count")
CONTROLLER_METRICS = ("modelrollout_rollout_phase", "modelrollout_rollout_weight", "modelrollout_check_value",
                      "modelrollout_check_threshold", "modelrollout_check_verdict", "modelrollout_check_failing")
# Verdict as one number for the state timeline: Pass 0, Inconclusive 1, Fail 2.
VERDICT_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "Pass", "color": "green", "index": 0},
    "1": {"text": "Inconclusive", "color": "yellow", "index": 1},
    "2": {"text": "Fail", "color": "red", "index": 2}}}]


def _target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr,
            "legendFormat": legend, "refId": ref}


def _panel(pid: int, title: str, targets: list[dict], grid: tuple[int, int, int, int], *, unit: str = "short",
           kind: str = "timeseries", description: str = "", overrides: list | None = None,
           options: dict | None = None, custom: dict | None = None, mappings: list | None = None) -> dict:
    x, y, w, h = grid
    panel: dict[str, Any] = {
        "id": pid, "type": kind, "title": title, "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom or {}, **({"mappings": mappings} if mappings else {})},
                        "overrides": overrides or []},
        "options": options or {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True},
                               "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": targets,
    }
    return panel


def _dashed(regex: str) -> dict:
    """Series whose name matches `regex` drawn as dashed red lines (thresholds)."""
    return {"matcher": {"id": "byRegexp", "options": regex},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}


def panels() -> list[dict]:
    rate = "[$__rate_interval]"
    by_version = "sum by (rollout_namespace, rollout, version)"
    by_version_le = "sum by (rollout_namespace, rollout, version, le)"
    return [
        _panel(1, "Phase", [_target(f"max by (rollout_namespace, rollout, phase) (modelrollout_rollout_phase{{{SEL}}}) == 1",
                                    "{{rollout}}: {{phase}}", "A")],
               (0, 0, 8, 6), kind="state-timeline", description="The rollout's phase over time.",
               options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                        "legend": {"showLegend": False}}),
        _panel(2, "Candidate weight", [_target(f"modelrollout_rollout_weight{{{SEL}}}", "{{rollout}}", "A")],
               (8, 0, 16, 6), unit="percent", description="Percent of live traffic the candidate serves.",
               custom={"lineInterpolation": "stepAfter", "fillOpacity": 10}),
        _panel(3, "Checks against thresholds", [
            _target(f"modelrollout_check_value{{{SEL}}}", "{{rollout}} {{check}}", "A"),
            _target(f"modelrollout_check_threshold{{{SEL}}}", "{{rollout}} {{check}} threshold", "B"),
        ], (0, 6, 24, 9), description="Each check's value per analysis window; dashed lines are the thresholds.",
            overrides=[_dashed(".* threshold$")], custom={"lineInterpolation": "stepAfter"}),
        _panel(4, "Requests by version", [
            _target(f"{by_version} (rate(modelrollout_router_requests_total{{{SEL}}}{rate}))",
                    "{{rollout}} {{version}}", "A"),
        ], (0, 15, 8, 8), unit="reqps", description="Model calls per second, all roles (primary, shadow, interleave)."),
        _panel(5, "Error ratio by version", [
            _target(f"{by_version} (rate(modelrollout_router_errors_total{{{SEL}}}{rate})) / "
                    f"{by_version} (rate(modelrollout_router_requests_total{{{SEL}}}{rate}))",
                    "{{rollout}} {{version}}", "A"),
        ], (8, 15, 8, 8), unit="percentunit",
            description="5xx, timeouts, unreachable and invalid (NaN) outputs over all calls."),
        _panel(6, "p99 latency by version", [
            _target(f"histogram_quantile(0.99, {by_version_le} "
                    f"(rate(modelrollout_router_request_duration_seconds_bucket{{{SEL}}}{rate})))",
                    "{{rollout}} {{version}} p99", "A"),
            _target(f"histogram_quantile(0.5, {by_version_le} "
                    f"(rate(modelrollout_router_request_duration_seconds_bucket{{{SEL}}}{rate})))",
                    "{{rollout}} {{version}} p50", "B"),
        ], (16, 15, 8, 8), unit="s", description="Model call latency seen by the router."),
        _panel(7, "Mean prediction by version", [
            _target(f"{by_version} (rate(modelrollout_router_prediction_sum{{{SEL}}}{rate})) / "
                    f"{by_version} (rate(modelrollout_router_prediction_count{{{SEL}}}{rate}))",
                    "{{rollout}} {{version}}", "A"),
        ], (0, 23, 12, 6), description="Average numeric prediction (score) per version: a first look at drift."),
        _panel(8, "Shadow calls dropped", [
            _target(f"sum by (rollout_namespace, rollout) (rate(modelrollout_router_shadow_dropped_total{{{SEL}}}{rate}))",
                    "{{rollout}}", "A"),
        ], (12, 23, 12, 6), unit="reqps",
            description="Mirrored calls dropped because too many were in flight: evidence the shadow step lost."),
        _panel(9, "Check verdicts", [
            _target(f"2 * max by (rollout_namespace, rollout, check) (modelrollout_check_verdict{{{SEL}, verdict=\"Fail\"}}) + "
                    f"max by (rollout_namespace, rollout, check) (modelrollout_check_verdict{{{SEL}, verdict=\"Inconclusive\"}})",
                    "{{rollout}} {{check}}", "A"),
        ], (0, 29, 16, 8), kind="state-timeline", mappings=VERDICT_MAPPINGS,
            description="Each check's verdict per analysis window: Pass, Inconclusive (too few samples, no data) "
                        "or Fail. Works for every bound (max, min, minPValue), unlike value against threshold.",
            options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.8, "legend": {"showLegend": False}}),
        _panel(10, "Failing checks by target", [
            _target(f"sum by (target, severity) (modelrollout_check_failing{{{SEL}}})", "{{target}} ({{severity}})",
                    "A"),
        ], (16, 29, 8, 8), description="Checks whose last window failed, by what they watch: prediction, "
                                       "feature, attribution (the model's reasons) or operational (errors, latency).",
            custom={"lineInterpolation": "stepAfter", "fillOpacity": 20, "stacking": {"mode": "normal"}}),
    ]


def dashboard() -> dict:
    var_query = "label_values(modelrollout_rollout_weight{rollout_namespace=~\"$namespace\"}, rollout)"
    return {
        "uid": UID,
        "title": "ModelRollout",
        "description": "Model rollouts: phases, weights, checks against thresholds, per-version errors and latency.",
        "tags": ["modelrollout", "ml"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
            {"name": "namespace", "label": "Namespace", "type": "query", "includeAll": True, "multi": True,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": "label_values(modelrollout_rollout_weight, rollout_namespace)", "refresh": 2},
            {"name": "rollout", "label": "Rollout", "type": "query", "includeAll": True, "multi": True,
             "datasource": {"type": "prometheus", "uid": "${datasource}"}, "query": var_query, "refresh": 2},
        ]},
        "panels": panels(),
        "annotations": {"list": []},
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
