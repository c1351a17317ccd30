"""Debian's Prometheus scrapes a real router and a real controller (mid-rollout, on the real apiserver) the way
the Prometheus Operator scrapes them through the chart's PodMonitor and ServiceMonitor: the scrape configs
below are what the operator generates from those two objects (kubernetes_sd meta labels of a pod target,
then its relabelling), with the meta labels a pod in modelrollout-system would have given as static labels,
since the processes run on 127.0.0.1 rather than in pods.

The stored series carry the target labels (namespace, pod, job, instance, container, endpoint, service)
beside the metrics' own, with no collision (no `exported_` label); the alert expressions and the dashboard's
queries run on them and answer per rollout; and tests/unit/test_lint_alerts.py's synthetic series, on which
`promtool test rules` runs, have exactly these label names."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from modelrollout import grafana
from tests.e2e.conftest import apply, logs, rollout_doc, wait_for, wait_phase
from tests.e2e.test_chart import CHART, by_kind
from tests.unit import test_lint_alerts

pytestmark = pytest.mark.usefixtures("mro_crd")

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "modelrollout-system"
ROUTER_POD, CONTROLLER_POD = "modelrollout-router-6f7c9d-a1b2c", "modelrollout-controller-5d8b7c-x9y8z"


def _keep_labels(prefix: str, match: dict[str, str]) -> list[dict]:
    """The operator's keep rules for a label selector's matchLabels, on pod or service meta labels."""
    out = []
    for k, v in match.items():
        name = "".join(c if c.isalnum() else "_" for c in k)
        out.append({"action": "keep", "source_labels": [f"{prefix}_label_{name}", f"{prefix}_labelpresent_{name}"],
                    "regex": f"({v});true"})
    return out


def pod_monitor_config(pm: dict, address: str, pod: dict) -> dict:
    """The scrape config the Prometheus Operator generates for PodMonitor `pm` (its first endpoint), with the
    pod target kubernetes_sd would list given as a static target with the same meta labels."""
    ns, name = pm["metadata"]["namespace"], pm["metadata"]["name"]
    ep = pm["spec"]["podMetricsEndpoints"][0]
    meta = {"__meta_kubernetes_namespace": ns, "__meta_kubernetes_pod_name": pod["name"],
            "__meta_kubernetes_pod_container_name": pod["container"], "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_container_port_name": pod["port"]}
    for k, v in pod["labels"].items():
        n = "".join(c if c.isalnum() else "_" for c in k)
        meta |= {f"__meta_kubernetes_pod_label_{n}": v, f"__meta_kubernetes_pod_labelpresent_{n}": "true"}
    return {
        "job_name": f"podMonitor/{ns}/{name}/0", "honor_labels": False, "metrics_path": ep["path"],
        "scrape_interval": "1s", "static_configs": [{"targets": [address], "labels": meta}],
        "relabel_configs": [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            *_keep_labels("__meta_kubernetes_pod", pm["spec"]["selector"]["matchLabels"]),
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": ep["port"]},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{ns}/{name}"},
            {"target_label": "endpoint", "replacement": ep["port"]},
        ],
    }


def service_monitor_config(sm: dict, address: str, service: dict, pod: dict) -> dict:
    """The scrape config the Prometheus Operator generates for ServiceMonitor `sm` (role endpoints), with the
    endpoint target given as a static target with the meta labels kubernetes_sd would attach."""
    ns, name = sm["metadata"]["namespace"], sm["metadata"]["name"]
    ep = sm["spec"]["endpoints"][0]
    meta = {"__meta_kubernetes_namespace": ns, "__meta_kubernetes_service_name": service["name"],
            "__meta_kubernetes_endpoint_port_name": ep["port"], "__meta_kubernetes_endpoint_address_target_kind": "Pod",
            "__meta_kubernetes_endpoint_address_target_name": pod["name"], "__meta_kubernetes_pod_name": pod["name"],
            "__meta_kubernetes_pod_container_name": pod["container"], "__meta_kubernetes_pod_phase": "Running"}
    for k, v in service["labels"].items():
        n = "".join(c if c.isalnum() else "_" for c in k)
        meta |= {f"__meta_kubernetes_service_label_{n}": v, f"__meta_kubernetes_service_labelpresent_{n}": "true"}
    return {
        "job_name": f"serviceMonitor/{ns}/{name}/0", "honor_labels": False, "metrics_path": ep["path"],
        "scrape_interval": "1s", "static_configs": [{"targets": [address], "labels": meta}],
        "relabel_configs": [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            *_keep_labels("__meta_kubernetes_service", sm["spec"]["selector"]["matchLabels"]),
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": ep["port"]},
            {"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                               "__meta_kubernetes_endpoint_address_target_name"],
             "separator": ";", "regex": "Node;(.*)", "replacement": "${1}", "target_label": "node"},
            {"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                               "__meta_kubernetes_endpoint_address_target_name"],
             "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}", "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
            {"target_label": "endpoint", "replacement": ep["port"]},
        ],
    }


def query(prom_url: str, expr: str) -> list[dict]:
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def test_operator_scraping_labels_every_series_without_collisions(procs, kubeconfig, kubectl, k8s_api, namespace,
                                                                  helm):
    """A router and a controller mid-rollout, scraped through the chart's PodMonitor and ServiceMonitor as
    the operator configures Prometheus: labelled, not collided, and alerts and dashboard answer per rollout."""
    v1, v2 = procs.scorer("v1", seed=3), procs.scorer("v2", seed=3)
    router = procs.router(kubeconfig, namespace)
    doc = rollout_doc("scraped", namespace, v1, v2, steps=[{"shadow": {"duration": "2s"}},
                                                           {"canary": {"weight": 20, "duration": "10m"}}])
    apply(kubectl, doc)
    procs.traffic(router, "scraped", namespace, rps=40)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    wait_phase(k8s_api, namespace, "scraped", {"Progressing"}, 60, forbid={"RolledBack", "Failed"},
               diagnose=lambda: logs(ctl, router))

    # the chart's own PodMonitor and ServiceMonitor, as a platform team would enable them
    rendered = helm("template", "modelrollout", str(CHART), "--namespace", SYSTEM,
                    "--set", "monitoring.serviceMonitor.enabled=true",
                    "--set", "monitoring.podMonitor.enabled=true").stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    pm, sm = by_kind(docs, "PodMonitor")["modelrollout-router"], by_kind(docs, "ServiceMonitor")["modelrollout-controller"]
    router_pod_labels = by_kind(docs, "Deployment")["modelrollout-router"]["spec"]["template"]["metadata"]["labels"]
    metrics_svc = by_kind(docs, "Service")["modelrollout-controller-metrics"]
    prom = procs.prometheus([], scrape_configs=[
        pod_monitor_config(pm, router.url.removeprefix("http://"),
                           {"name": ROUTER_POD, "container": "router", "port": "http", "labels": router_pod_labels}),
        service_monitor_config(sm, ctl.url.removeprefix("http://"),
                               {"name": metrics_svc["metadata"]["name"], "labels": metrics_svc["metadata"]["labels"]},
                               {"name": CONTROLLER_POD, "container": "controller"}),
    ])
    wait_for(lambda: query(prom.url, 'modelrollout_rollout_weight{rollout="scraped"} > 0')
             and query(prom.url, 'modelrollout_router_requests_total{rollout="scraped"}'), 60,
             "both targets scraped", diagnose=lambda: logs(prom, ctl, router))

    # every series of ours carries the target labels and its own, and none was renamed exported_*
    series = query(prom.url, '{__name__=~"modelrollout_.+"}')
    exported = sorted({k for s in series for k in s["metric"] if k.startswith("exported_")})
    assert not exported, exported
    by_job = {}
    for s in series:
        by_job.setdefault(s["metric"]["job"], []).append(s["metric"])
    assert set(by_job) == {f"{SYSTEM}/modelrollout-router", "modelrollout-controller-metrics"}
    target_names = {}
    for job, metrics in by_job.items():
        pod = ROUTER_POD if "router" in job else CONTROLLER_POD
        for m in metrics:
            assert m["namespace"] == SYSTEM and m["pod"] == pod, m
        target_names[pod] = {"namespace", "pod", "job", "instance", "container", "endpoint"} | (
            {"service"} if pod == CONTROLLER_POD else set())
        # the synthetic series of the promtool test carry exactly these target labels
        synthetic = test_lint_alerts.ROUTER_A if pod == ROUTER_POD else test_lint_alerts.CONTROLLER
        assert {"namespace", "pod", *test_lint_alerts.TARGETS[synthetic]} == target_names[pod]
        for m in metrics:
            assert target_names[pod] <= set(m), m
    per_rollout = [m for ms in by_job.values() for m in ms if "rollout" in m]
    assert per_rollout and all(m["rollout_namespace"] == namespace for m in per_rollout)

    # the alert expressions run on these series; those of a rollout answer by rollout_namespace, not namespace
    rules = yaml.safe_load((ROOT / "manifests" / "alerts.yaml").read_text())["spec"]["groups"]
    for rule in (r for g in rules for r in g["rules"]):
        query(prom.url, rule["expr"])
    rate = ('sum by (rollout_namespace, rollout, version) '
            '(rate(modelrollout_router_requests_total{role!="feedback"}[30s]))')
    errors = wait_for(lambda: query(prom.url, rate), 30, "a rate over two scrapes", diagnose=lambda: logs(prom))
    assert {(r["metric"]["rollout_namespace"], r["metric"]["rollout"]) for r in errors} == {(namespace, "scraped")}
    progressing = query(prom.url, 'max by (rollout_namespace, rollout) '
                                  '(modelrollout_rollout_phase{phase=~"Shadowing|Progressing|Interleaving|Paused"}) == 1')
    assert [r["metric"] for r in progressing] == [{"rollout_namespace": namespace, "rollout": "scraped"}]

    # the dashboard's queries, with its variables set to this rollout, answer for it
    answered = {}
    for panel in grafana.dashboard()["panels"]:
        for t in panel["targets"]:
            expr = (t["expr"].replace("$__rate_interval", "30s").replace("$namespace", namespace)
                    .replace("$rollout", "scraped"))
            answered[panel["title"]] = answered.get(panel["title"], []) + query(prom.url, expr)
    for title in ("Phase", "Candidate weight", "Checks against thresholds"):
        assert answered[title], (title, answered)
        assert all(r["metric"].get("rollout") == "scraped" for r in answered[title]), answered[title]
    variable = next(v for v in grafana.dashboard()["templating"]["list"] if v["name"] == "namespace")["query"]
    label = variable.removesuffix(")").rsplit(", ", 1)[1]
    assert {r["metric"][label] for r in query(prom.url, "modelrollout_rollout_weight")} == {namespace}
