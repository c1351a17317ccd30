"""The routers' internal endpoints on a real apiserver: with --internal-auth kubernetes, /summaries, /golden and
/metrics answer only ServiceAccount tokens issued for the audience modelrollout-router whose user RBAC lets `get` the
path (manifests/rbac.yaml: the controller for /v1/rollouts/* and /v1/summaries, modelrollout-metrics-reader for
/metrics); the client-facing routes stay open; the controller, running as its ServiceAccount with its router
token, drives a rollout to Promoted through such a router (its summaries over `POST /v1/summaries`)."""
from __future__ import annotations


import httpx
import pytest

from modelrollout.models.proc import start
from tests.e2e.conftest import apply, logs, rollout_doc, wait_phase
from tests.e2e.test_manifests import manifests_rbac

pytestmark = pytest.mark.usefixtures("mro_crd")
AUDIENCE = "modelrollout-router"


@pytest.fixture
def bound(kubectl, namespace, restricted_kubeconfig):
    """manifests/rbac.yaml bound in `namespace`; a ServiceAccount `prometheus` holding modelrollout-metrics-reader
    and one `intruder` holding nothing; (controller kubeconfig, router kubeconfig, token(name, audience))."""
    with manifests_rbac(kubectl, namespace) as suffix:
        for sa in ("prometheus", "intruder"):
            kubectl("create", "serviceaccount", sa, "-n", namespace)
        binding = f"metrics-reader-{namespace}"
        kubectl("create", "clusterrolebinding", binding, f"--clusterrole=modelrollout-metrics-reader{suffix}",
                f"--serviceaccount={namespace}:prometheus")

        def token(sa: str, audience: str | None = AUDIENCE) -> str:
            args = ["create", "token", sa, "-n", namespace] + (["--audience", audience] if audience else [])
            return kubectl(*args).stdout.strip()
        try:
            yield (restricted_kubeconfig(namespace, "modelrollout-controller"),
                   restricted_kubeconfig(namespace, "modelrollout-router"), token)
        finally:
            kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found")


def test_internal_endpoints_need_an_authorized_token_and_the_controller_has_one(procs, kubectl, k8s_api, namespace,
                                                                                 bound, tmp_path):
    controller_kubeconfig, router_kubeconfig, token = bound
    v1, v2 = procs.scorer("v1", seed=3), procs.scorer("v2", seed=3)
    router = procs._keep(start("router.kube_source", [
        "--kube", "--kubeconfig", router_kubeconfig, "--namespace", namespace, "--bucket", "1s",
        "--internal-auth", "kubernetes"], ready="/healthz", log_dir=tmp_path / "logs"))
    # a golden step first: the controller's golden run goes through the same guard as its /summaries
    steps = [{"golden": {"requests": [{"request": {"features": {"age": 40}}}], "maxAbsDelta": 0.01}},
             {"shadow": {"duration": "3s"}}, {"canary": {"weight": 50, "duration": "3s"}}]
    doc = rollout_doc("guarded", namespace, v1, v2, steps=steps)
    apply(kubectl, doc)
    summaries = f"{router.url}/v1/rollouts/guarded/summaries"
    golden = f"{router.url}/v1/rollouts/guarded/golden"
    metrics = f"{router.url}/metrics"

    def get(url: str, tok: str | None = None) -> httpx.Response:
        return httpx.get(url, headers={"Authorization": f"Bearer {tok}"} if tok is not None else {}, timeout=30)

    def post(url: str, tok: str | None = None) -> httpx.Response:
        return httpx.post(url, json={"revision": f"v2@{v2.url}", "requests": [{"features": {"age": 1}}]},
                          headers={"Authorization": f"Bearer {tok}"} if tok is not None else {}, timeout=30)

    def batch(tok: str | None = None) -> httpx.Response:
        return httpx.post(f"{router.url}/v1/summaries", json={"windows": [
            {"rollout": "guarded", "namespace": namespace, "revision": f"v2@{v2.url}", "start": 0, "end": 1}]},
            headers={"Authorization": f"Bearer {tok}"} if tok is not None else {}, timeout=30)

    controller_token = token("modelrollout-controller")
    refused = {
        "no token on /v1/summaries": batch(),
        "a token without RBAC on /v1/summaries": batch(token("intruder")),
        "no token on /golden": post(golden),
        "a token without RBAC on /golden": post(golden, token("intruder")),
        "no token": get(summaries),
        "not a token": get(summaries, "hello"),
        "the controller's token for the apiserver": get(summaries, token("modelrollout-controller", None)),
        "a token without RBAC": get(summaries, token("intruder")),
        "the controller on /metrics": get(metrics, controller_token),
        "no token on /metrics": get(metrics),
        "a token without RBAC on /metrics": get(metrics, token("intruder")),
    }
    codes = {what: r.status_code for what, r in refused.items()}
    assert codes == {"no token on /v1/summaries": 401, "a token without RBAC on /v1/summaries": 403,
                     "no token on /golden": 401, "a token without RBAC on /golden": 403,
                     "no token": 401, "not a token": 401, "the controller's token for the apiserver": 401,
                     "a token without RBAC": 403, "the controller on /metrics": 403, "no token on /metrics": 401,
                     "a token without RBAC on /metrics": 403}, {w: r.text for w, r in refused.items()}
    assert refused["no token"].headers["www-authenticate"] == f'Bearer realm="{AUDIENCE}"'
    assert refused["no token"].json()["error"] == "unauthenticated"
    assert f"system:serviceaccount:{namespace}:intruder may not get /v1/rollouts/guarded/summaries" in \
        refused["a token without RBAC"].json()["detail"]
    assert "windows" not in refused["a token without RBAC"].text
    assert get(summaries, controller_token).status_code == 200
    assert [w["rollout"] for w in batch(controller_token).json()["windows"]] == ["guarded"]
    scraped = get(metrics, token("prometheus"))
    assert scraped.status_code == 200 and "modelrollout_router_" in scraped.text
    # The client-facing side needs nothing.
    assert httpx.post(f"{router.url}/v1/rollouts/guarded/predict", json={"features": {"age": 40}},
                      timeout=30).status_code == 200
    assert httpx.get(f"{router.url}/readyz", timeout=30).status_code == 200

    # The controller as its ServiceAccount, with its router token, reads the summaries and promotes.
    token_file = tmp_path / "router-token"
    token_file.write_text(controller_token + "\n")
    ctl = procs.controller(controller_kubeconfig, namespace, "--router-url", router.url,
                           "--router-token-file", str(token_file))
    procs.traffic(router, "guarded", namespace, rps=60)
    obj = wait_phase(k8s_api, namespace, "guarded", {"Promoted"}, 120, forbid={"RolledBack", "Failed", "Paused"},
                     diagnose=lambda: logs(ctl, router))
    assert all(c["samples"] > 0 for c in obj["status"]["checks"]), obj["status"]["checks"]
    assert {c["name"]: c["verdict"] for c in obj["status"]["checks"]}["golden-max-abs-delta"] == "Pass"
