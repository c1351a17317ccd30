"""What manifests/ promises about secrets and who may reach what, checked from the files themselves."""
from __future__ import annotations

from pathlib import Path

import yaml

from router.kube_source import parser

ROOT = Path(__file__).resolve().parents[2]


def _router_pod() -> dict:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "router.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def test_router_reads_its_hash_key_from_an_optional_secret_only_it_can_read():
    pod = _router_pod()
    container = pod["containers"][0]
    args = parser().parse_args(container["args"][1:])
    mount = next(m for m in container["volumeMounts"] if args.hash_key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = volume["secret"]
    assert secret["secretName"] == "modelrollout-log-key" and secret["optional"] is True
    assert secret["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_secret_access_is_get_only_and_bound_nowhere_by_default():
    """Only modelrollout-notification-secrets grants anything on Secrets: `get` alone (no list or watch, so
    the controller reads only the Secrets rollouts name), and no binding in manifests/ grants it; a
    namespace opts in with a RoleBinding."""
    docs = [d for f in ("rbac.yaml", "controller.yaml", "router.yaml")
            for d in yaml.safe_load_all((ROOT / "manifests" / f).read_text()) if d]
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Role", "ClusterRole")}
    secret_rules = {(name, tuple(rule["verbs"])) for name, r in roles.items() for rule in r["rules"]
                    if "secrets" in rule.get("resources", ())}
    assert secret_rules == {("modelrollout-notification-secrets", ("get",))}
    bound = {d["roleRef"]["name"] for d in docs if d["kind"].endswith("Binding")}
    assert "modelrollout-notification-secrets" not in bound


def test_internal_endpoints_are_closed_and_the_controller_can_open_them():
    """The router checks tokens (--internal-auth kubernetes) for the audience the controller's projected token
    is issued for; RBAC lets the controller get the summaries' paths and the router review tokens."""
    from controller.kube import parse_args

    docs = {(d["kind"], d["metadata"]["name"]): d for f in ("rbac.yaml", "controller.yaml", "router.yaml")
            for d in yaml.safe_load_all((ROOT / "manifests" / f).read_text()) if d}
    router = parser().parse_args(_router_pod()["containers"][0]["args"][1:])
    assert router.internal_auth == "kubernetes" and router.internal_auth_audience is None   # the default audience
    pod = docs[("Deployment", "modelrollout-controller")]["spec"]["template"]["spec"]
    args, settings = parse_args(pod["containers"][0]["args"][1:])
    mount = next(m for m in pod["containers"][0]["volumeMounts"]
                 if settings.router_token_file.startswith(m["mountPath"] + "/"))
    source = next(v for v in pod["volumes"] if v["name"] == mount["name"])["projected"]["sources"][0]
    assert source["serviceAccountToken"]["audience"] == "modelrollout-router"
    assert settings.router_token_file.endswith("/" + source["serviceAccountToken"]["path"])
    rules = docs[("ClusterRole", "modelrollout-controller")]["rules"]
    assert {"nonResourceURLs": ["/v1/rollouts/*", "/v1/summaries"], "verbs": ["get"]} in rules
    delegator = docs[("ClusterRoleBinding", "modelrollout-router-auth-delegator")]
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"][0]["name"] == "modelrollout-router"
    assert docs[("ClusterRole", "modelrollout-metrics-reader")]["rules"] == [{"nonResourceURLs": ["/metrics"],
                                                                             "verbs": ["get"]}]


def test_every_router_replica_reads_the_same_feedback_keys_from_a_secret():
    """The signed feedback ids' keys come from one Secret mounted read-only into every router pod (so any
    replica accepts any feedback), readable by the router's group only."""
    pod = _router_pod()
    container = pod["containers"][0]
    args = parser().parse_args(container["args"][1:])
    assert args.feedback_key_file
    mount = next(m for m in container["volumeMounts"] if args.feedback_key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    secret = next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]
    assert secret["secretName"] == "modelrollout-feedback-key" and secret["defaultMode"] == 0o440
    assert args.feedback_key_file.endswith("/keys")        # the Secret's key named in the manifest's comment
