"""charts/modelrollout: `helm lint` is clean; with default values `helm template` renders exactly the objects of
`kubectl kustomize manifests/` (plus Helm's labels, minus the Namespace); every value does what the README says;
the rendered objects pass a server-side dry run on the real apiserver, on a cluster without the Prometheus
Operator by default and with every option on once its kinds exist."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_manifests import PROMETHEUS_RULE_CRD

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelrollout"
NS = "modelrollout-system"

# What Helm adds and the kustomization has not: the chart's labels on every object and the CRD's keep policy.
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
               "app.kubernetes.io/version"}
HELM_ANNOTATIONS = {"helm.sh/resource-policy"}
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}

# Every option on: the values a platform team would set.
ALL_ON = [
    "--set", "image.repository=registry.example/ml/modelrollout", "--set", "image.tag=0.1.0-rc1",
    "--set", "image.pullPolicy=Always", "--set", "imagePullSecrets[0].name=regcred",
    "--set", "controller.replicas=3", "--set", "router.replicas=4",
    "--set", "controller.prometheusUrl=http://prometheus-operated.monitoring.svc:9090",
    "--set", "controller.extraArgs={--workers=8}", "--set", "controller.watchNamespace=ml",
    "--set", "router.watchNamespace=ml",
    "--set", "router.predictionLog.maxBytes=256MiB", "--set", "router.predictionLog.sizeLimit=8Gi",
    "--set", "router.summaryRetention=30m", "--set", "router.extraArgs={--shadow-max-inflight=512}",
    "--set", "router.predictionLog.maxTotal=6GiB", "--set", "router.predictionLog.maxAge=24h",
    "--set", "router.service.type=LoadBalancer", "--set", "router.service.port=8080",
    "--set", "router.service.annotations.example\\.com/lb=internal",
    "--set", "router.resources.requests.cpu=1", "--set", "controller.resources.limits.memory=2Gi",
    "--set", "router.nodeSelector.pool=serving", "--set", "controller.tolerations[0].key=dedicated",
    "--set", "controller.tolerations[0].operator=Exists",
    "--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.serviceMonitor.labels.release=kps",
    "--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.podMonitor.interval=15s",
    "--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.prometheusRule.labels.release=kps",
    "--set", "monitoring.grafanaDashboard.enabled=true",
    "--set", "monitoring.grafanaDashboard.annotations.grafana_folder=ML",
    "--set", "networkPolicy.enabled=true",
    "--set", "networkPolicy.allowedFrom[0].namespaceSelector.matchLabels.team=shop",
    "--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
]


def render(helm, *args: str, namespace: str = NS) -> list[dict]:
    out = helm("template", "modelrollout", str(CHART), "--namespace", namespace, *args)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def key(doc: dict) -> tuple[str, str | None, str]:
    return doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]


def without_helm_metadata(doc: dict) -> dict:
    """`doc` without the labels and annotations listed above (and the empty maps that leaves)."""
    doc = copy.deepcopy(doc)
    meta = doc["metadata"]
    for field, drop in (("labels", HELM_LABELS), ("annotations", HELM_ANNOTATIONS)):
        if field in meta:
            meta[field] = {k: v for k, v in meta[field].items() if k not in drop}
            if not meta[field]:
                del meta[field]
    return doc


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(docs: list[dict], name: str) -> dict:
    return by_kind(docs, "Deployment")[f"modelrollout-{name}"]["spec"]["template"]["spec"]["containers"][0]


def test_helm_lint_is_clean(helm):
    """`helm lint --strict` passes with default values and with every option on, with nothing to report."""
    for args in ([], ALL_ON):
        out = helm("lint", "--strict", str(CHART), *args)
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout, out.stdout
        assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_default_values_render_the_kustomization(helm, kubectl):
    """With default values the chart and `kubectl kustomize manifests/` make the same objects, field for field,
    except Helm's own labels (on every object) and the Namespace (the kustomization creates it; a Helm release
    installs into an existing one)."""
    kustomized = {key(d): d for d in yaml.safe_load_all(kubectl("kustomize", str(ROOT / "manifests")).stdout) if d}
    rendered = render(helm)
    assert all(HELM_LABELS <= set(d["metadata"]["labels"]) for d in rendered), "every object carries Helm's labels"
    charted = {key(d): without_helm_metadata(d) for d in rendered}
    assert len(charted) == len(rendered), "the chart renders an object twice"
    assert set(kustomized) - set(charted) == {("Namespace", None, NS)}
    assert set(charted) - set(kustomized) == set()
    different = [k for k in charted if charted[k] != kustomized[k]]
    assert not different, "\n\n".join(
        f"{k}:\nchart: {json.dumps(charted[k], sort_keys=True)}\nkustomize: {json.dumps(kustomized[k], sort_keys=True)}"
        for k in different)
    assert not {d["kind"] for d in rendered} & MONITORING_KINDS    # installs where the operator is absent


def test_every_value_changes_what_its_description_says(helm):
    """Each value of the README's table ends up where it says, and the arguments the chart builds are accepted
    by the real command-line parsers of the controller and the router."""
    docs = render(helm, *ALL_ON)
    deployments = by_kind(docs, "Deployment")
    ctl, rtr = container(docs, "controller"), container(docs, "router")
    for c in (ctl, rtr):
        assert c["image"] == "registry.example/ml/modelrollout:0.1.0-rc1" and c["imagePullPolicy"] == "Always"
    assert deployments["modelrollout-controller"]["spec"]["replicas"] == 3
    assert deployments["modelrollout-router"]["spec"]["replicas"] == 4
    ctl_pod, rtr_pod = (deployments[f"modelrollout-{n}"]["spec"]["template"]["spec"] for n in ("controller", "router"))
    assert ctl_pod["imagePullSecrets"] == [{"name": "regcred"}] == rtr_pod["imagePullSecrets"]
    assert rtr_pod["nodeSelector"] == {"pool": "serving"}
    assert ctl_pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert rtr["resources"]["requests"]["cpu"] == 1 and ctl["resources"]["limits"]["memory"] == "2Gi"
    assert {"name": "predictions", "emptyDir": {"sizeLimit": "8Gi"}} in rtr_pod["volumes"]
    assert "--prometheus-url=http://prometheus-operated.monitoring.svc:9090" in ctl["args"]
    assert {"--log-max-bytes=256MiB", "--log-max-total=6GiB", "--log-max-age=24h", "--retention=30m",
            "--shadow-max-inflight=512", "--namespace=ml"} <= set(rtr["args"])
    assert {"--workers=8", "--namespace=ml"} <= set(ctl["args"])

    # the real parsers take these arguments (as the container would run them, with the env substituted)
    from controller.kube import parse_args
    from router.kube_source import parser
    from router.server import settings_from

    env = lambda args: [a.replace("$(POD_NAMESPACE)", NS) for a in args[1:]]  # noqa: E731
    args, settings = parse_args(env(ctl["args"]))
    assert args.prometheus_url.endswith(":9090") and args.workers == 8 and settings.namespace == "ml"
    rargs = parser().parse_args(env(rtr["args"]))
    assert rargs.log_max_bytes == 256 * 1024 ** 2 and rargs.retention == 1800 and rargs.namespace == "ml"
    assert rargs.log_max_total == 6 * 1024 ** 3 and rargs.log_max_age == 24 * 3600 and rargs.shadow_max_inflight == 512
    settings_from(rargs)

    svc = by_kind(docs, "Service")["modelrollout-router"]
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 8080
    assert svc["metadata"]["annotations"] == {"example.com/lb": "internal"}

    sm = by_kind(docs, "ServiceMonitor")["modelrollout-controller"]
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    metrics_svc = by_kind(docs, "Service")["modelrollout-controller-metrics"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= metrics_svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    pm = by_kind(docs, "PodMonitor")["modelrollout-router"]
    assert pm["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert pm["spec"]["selector"]["matchLabels"] == deployments["modelrollout-router"]["spec"]["selector"]["matchLabels"]

    rule = by_kind(docs, "PrometheusRule")["modelrollout"]
    alerts = yaml.safe_load((ROOT / "manifests" / "alerts.yaml").read_text())
    assert rule["spec"] == alerts["spec"] and rule["metadata"]["labels"]["release"] == "kps"
    dash = by_kind(docs, "ConfigMap")["modelrollout-grafana-dashboard"]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash["metadata"]["annotations"] == {"grafana_folder": "ML"}
    assert json.loads(dash["data"]["modelrollout.json"]) == \
        json.loads((ROOT / "manifests" / "grafana-dashboard.json").read_text())

    policies = by_kind(docs, "NetworkPolicy")
    router_from = policies["modelrollout-router"]["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "modelrollout",
                                            "app.kubernetes.io/component": "controller"}}} in router_from
    assert {"namespaceSelector": {"matchLabels": {"team": "shop"}}} in router_from
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert monitoring in router_from and policies["modelrollout-controller"]["spec"]["ingress"][0]["from"] == [monitoring]


def test_switches_turn_objects_off(helm):
    """crds.install=false leaves the CRD out, crds.keep=false drops the keep policy, disabled PDBs are absent,
    and a NetworkPolicy without both peer lists leaves the router's port open."""
    assert "CustomResourceDefinition" not in {d["kind"] for d in render(helm, "--set", "crds.install=false")}
    crd = by_kind(render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition")["modelrollouts.modelrollout.io"]
    assert "annotations" not in crd["metadata"]
    assert by_kind(render(helm), "CustomResourceDefinition")["modelrollouts.modelrollout.io"]["metadata"][
        "annotations"] == {"helm.sh/resource-policy": "keep"}
    docs = render(helm, "--set", "controller.podDisruptionBudget.enabled=false",
                  "--set", "router.podDisruptionBudget.enabled=false")
    assert "PodDisruptionBudget" not in {d["kind"] for d in docs}
    open_router = by_kind(render(helm, "--set", "networkPolicy.enabled=true"), "NetworkPolicy")["modelrollout-router"]
    assert "from" not in open_router["spec"]["ingress"][0]


@pytest.mark.parametrize("values", ["defaults", "all-on"])
def test_rendered_chart_passes_a_server_side_dry_run(helm, kubectl, namespace, values):
    """The apiserver accepts every rendered object (schema, RBAC, CRD) with `kubectl apply --dry-run=server`: the
    default render on a cluster without the Prometheus Operator, all options on once its kinds are known
    (schema-less stand-ins of its CRDs; its own schemas are not part of this project)."""
    if values == "defaults":
        rendered = helm("template", "modelrollout", str(CHART), "--namespace", namespace).stdout
        assert "monitoring.coreos.com" not in rendered
    else:
        for kind, plural in (("PrometheusRule", "prometheusrules"), ("ServiceMonitor", "servicemonitors"),
                             ("PodMonitor", "podmonitors")):
            crd = copy.deepcopy(PROMETHEUS_RULE_CRD)
            crd["metadata"]["name"] = f"{plural}.monitoring.coreos.com"
            crd["spec"]["names"] = {"kind": kind, "plural": plural, "singular": kind.lower()}
            kubectl("apply", "-f", "-", input=json.dumps(crd))
            kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.monitoring.coreos.com")
        rendered = helm("template", "modelrollout", str(CHART), "--namespace", namespace, *ALL_ON).stdout
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=rendered).stdout
    expected = {"customresourcedefinition.apiextensions.k8s.io/modelrollouts.modelrollout.io",
                "deployment.apps/modelrollout-controller", "deployment.apps/modelrollout-router",
                "service/modelrollout-router", "poddisruptionbudget.policy/modelrollout-controller",
                "clusterrole.rbac.authorization.k8s.io/modelrollout-controller",
                "rolebinding.rbac.authorization.k8s.io/modelrollout-controller-leader-election"}
    if values == "all-on":
        expected |= {"servicemonitor.monitoring.coreos.com/modelrollout-controller",
                     "podmonitor.monitoring.coreos.com/modelrollout-router",
                     "prometheusrule.monitoring.coreos.com/modelrollout",
                     "configmap/modelrollout-grafana-dashboard",
                     "networkpolicy.networking.k8s.io/modelrollout-router",
                     "networkpolicy.networking.k8s.io/modelrollout-controller"}
    applied = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert expected <= applied, sorted(expected - applied)
    assert len(applied) == len([d for d in yaml.safe_load_all(rendered) if d])
