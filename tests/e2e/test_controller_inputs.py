"""Input expectations and outlier-rate on a real kube-apiserver: the controller process, the router reading the
apiserver, real model servers and traffic. 20% of the requests losing a feature pause the rollout with that
expectation named in status, a Warning Event and the controller's modelrollout_input_failing_fraction; a
candidate whose embeddings move into a new cluster is rolled back by outlier-rate while PSI on its score
passes. `kubectl explain` documents the new fields."""
from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import apply, logs, rollout_doc, wait_event, wait_phase

pytestmark = pytest.mark.usefixtures("mro_crd")

STEPS = [{"shadow": {"duration": "6s"}}, {"canary": {"weight": 50, "duration": "6s"}}]
EXPECTATIONS = {"rows": {"min": 10},
                "features": [{"name": "amount", "type": "number", "maxNullRate": 0.05, "min": 0},
                             {"name": "gender", "type": "string", "in": ["f", "m"]}]}


def test_broken_inputs_pause_the_rollout_with_the_expectation_named(procs, kubeconfig, kubectl, k8s_api, namespace):
    v1, v2 = procs.scorer("v1", seed=0), procs.scorer("v2", seed=1)
    router = procs.router(kubeconfig, namespace)
    doc = rollout_doc("inputs", namespace, v1, v2, steps=STEPS, min_samples=30, inconclusive_limit=30,
                      expectations=EXPECTATIONS)
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    apply(kubectl, doc)
    procs.traffic(router, "inputs", namespace, rps=60, null="amount=0.2")
    obj = wait_phase(k8s_api, namespace, "inputs", {"Paused"}, 120, forbid={"Promoted", "RolledBack", "Failed"},
                     diagnose=lambda: logs(ctl, router))
    st = obj["status"]
    assert st["pauseReason"] == "inputs" and "amount notNull" in st["message"], st["message"]
    entry = next(c for c in st["checks"] if c["name"] == "input-expectations")
    assert entry["verdict"] == "Fail" and entry["metric"] == "input-expectations"
    [broken] = entry["evidence"]["inputs"]["failing"]
    assert broken["feature"] == "amount" and broken["expectation"] == "notNull" and 0.1 < broken["fraction"] < 0.3
    psi = next(c for c in st["checks"] if c["name"] == "score-psi")
    assert psi["failures"] == 0 and "inputs are broken" in psi["reason"]
    event = wait_event(k8s_api, namespace, "inputs", "Paused")
    assert event.type == "Warning" and "amount notNull" in event.message
    metrics = httpx.get(f"{ctl.url}/metrics", timeout=5).text
    series = [line for line in metrics.splitlines() if line.startswith("modelrollout_input_failing_fraction{")]
    assert any('feature="amount"' in s and 'expectation="notNull"' in s and 'rollout="inputs"' in s
               for s in series), series


def test_a_new_embedding_cluster_fails_outlier_rate_while_psi_passes(procs, kubeconfig, kubectl, k8s_api,
                                                                     namespace):
    common = {"embedding_field": "embedding", "dims": 16, "shift_dims": 6}
    v1 = procs.scorer("v1", seed=0, **common)
    v2 = procs.scorer("v2", seed=1, cluster="0.3:4", **common)
    router = procs.router(kubeconfig, namespace)
    checks = [{"name": "emb-outliers", "metric": "outlier-rate", "on": "embedding", "max": 0.05},
              # 5 bins: ~10 answers a bin even in a step's first, partial window (10 bins would fail by chance)
              {"name": "score-psi", "metric": "psi", "on": "prediction", "max": 0.3, "bins": 5}]
    doc = rollout_doc("outliers", namespace, v1, v2, steps=STEPS, checks=checks, min_samples=30,
                      inconclusive_limit=30, output={"kind": "score", "path": "prediction", "embedding": "embedding"})
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    apply(kubectl, doc)
    procs.traffic(router, "outliers", namespace, rps=60)
    obj = wait_phase(k8s_api, namespace, "outliers", {"RolledBack"}, 120, forbid={"Promoted", "Failed"},
                     diagnose=lambda: logs(ctl, router))
    st = obj["status"]
    assert "emb-outliers" in st["message"], st["message"]
    psi = next(c for c in st["checks"] if c["name"] == "score-psi")
    assert psi["failures"] == 0 and all(w["verdict"] != "Fail" for w in psi["recent"]), psi


def test_kubectl_explain_documents_the_new_fields(kubectl):
    def explain(field: str) -> str:
        return " ".join(kubectl("explain", field).stdout.split())      # kubectl wraps descriptions

    out = explain("modelrollout.spec.expectations.features")
    assert "maxNullRate" in out and "mostly" in out and "Largest share of rows" in out
    assert "Per watched feature, what its live values must look like" in out
    assert "beside its prediction" in explain("modelrollout.spec.output.embedding")
    assert "a model is never judged on broken inputs" in explain("modelrollout.spec.expectations")
