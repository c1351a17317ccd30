"""The Grafana dashboard: generated from code, committed, and querying only metrics the project exports."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from modelrollout import grafana as dashboard

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "manifests" / "grafana-dashboard.json"


def exported_metric_names() -> set[str]:
    """Sample names in the real /metrics text of a router and a controller that saw one rollout."""
    from controller.kube.metrics import ControllerMetrics
    from prometheus_client import generate_latest
    from pathlib import Path

    from router.core import Router
    from router.settings import RouterSettings

    # A router with a prediction log and its worker (not started: the gauges read its counters only).
    router = Router(RouterSettings(log_dir=Path("unused-log-dir"), worker=True)).metrics
    router.observe("fraud", "ml", "v2", "primary", 500, "http_5xx", 0.1, 0.3)
    router.shadow_dropped[("fraud", "ml")] += 1
    router.fallback[("fraud", "ml", "v2", "http_5xx", "served")] += 1
    ctl = ControllerMetrics("test")
    ctl.observe_status("ml", "fraud", {"phase": "Progressing", "routing": {"candidateWeight": 5},
                                       "checks": [{"name": "psi", "value": 0.1, "threshold": 0.2},
                                                  {"name": "input-expectations", "metric": "input-expectations",
                                                   "verdict": "Fail", "evidence": {"inputs": {"failing": [
                                                       {"feature": "amount", "expectation": "notNull",
                                                        "fraction": 0.2}]}}}],
                                       "postPromotion": {"state": "Judging", "promoted": {"version": "v2"}}})
    text = router.render().decode() + generate_latest(ctl.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def queried_metric_names(exprs: list[str]) -> set[str]:
    return set(re.findall(r"\b(modelrollout_[a-z_]+)\b", " ".join(exprs)))


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard.dashboard()["panels"] for t in p["targets"]]


def test_committed_dashboard_is_the_generated_one():
    """manifests/grafana-dashboard.json equals `python -m modelrollout.grafana` (regenerate it after edits)."""
    assert COMMITTED.read_text() == dashboard.render()


def test_dashboard_queries_only_exported_metrics():
    """Every metric a panel queries is one the router or the controller really exports."""
    used = queried_metric_names(dashboard_exprs())
    assert used == set(dashboard.ROUTER_METRICS) | set(dashboard.CONTROLLER_METRICS)
    missing = used - exported_metric_names()
    assert not missing, f"queried but not exported: {sorted(missing)}"


def test_dashboard_has_the_promised_panels():
    """Checks with thresholds, weights, per-version errors and latency, and shadow drops each have a panel."""
    board = json.loads(COMMITTED.read_text())
    text = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in board["panels"]}
    assert "modelrollout_check_threshold" in text["Checks against thresholds"]
    assert "modelrollout_rollout_weight" in text["Candidate weight"]
    assert "modelrollout_router_errors_total" in text["Error ratio by version"]
    assert "histogram_quantile(0.99" in text["p99 latency by version"]
    assert "modelrollout_router_shadow_dropped_total" in text["Shadow calls dropped"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace", "rollout"}


def test_dashboard_queries_are_valid_promql(tmp_path, promtool):
    """Every panel query parses as PromQL (checked by promtool with Grafana's variables substituted)."""
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        concrete = (expr.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$rollout", ".*"))
        rules.append({"record": f"modelrollout:dashboard_{i}", "expr": concrete})
    f = tmp_path / "rules.json"
    f.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
