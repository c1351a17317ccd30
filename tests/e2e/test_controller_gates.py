"""The gates that judge the model on a real kube-apiserver: the controller process, the router reading the
apiserver, real model servers (one with a listen backlog of 5) and traffic — embeddings under MMD at
minPValue 0.001, latency p99 against the baseline, and the four-fifths rule."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import apply, logs, rollout_doc, wait_phase

pytestmark = pytest.mark.usefixtures("mro_crd")

STEPS = [{"shadow": {"duration": "6s"}}, {"canary": {"weight": 30, "duration": "6s"}},
         {"canary": {"weight": 60, "duration": "6s"}}]
FAIR_STEPS = [{"shadow": {"duration": "8s"}}, {"canary": {"weight": 50, "duration": "8s"}},
              {"canary": {"weight": 80, "duration": "8s"}}]
MMD = {"name": "emb-mmd", "metric": "mmd", "on": "prediction", "minPValue": 0.001, "action": "rollback"}
FAIR = {"name": "fair", "metric": "disparate-impact", "segment": "gender", "min": 0.8, "action": "rollback"}
LATENCY = {"name": "slow", "metric": "latency-p99", "maxRatioToBaseline": 3, "action": "rollback"}

CASES = {
    # name: (baseline knobs, candidate knobs, output kind, check, steps, interval, expected phase)
    "emb-same": ({"kind": "embedding", "seed": 0}, {"kind": "embedding", "seed": 0}, "embedding", MMD, STEPS,
                 "2s", "Promoted"),
    "emb-shifted": ({"kind": "embedding", "seed": 0}, {"kind": "embedding", "seed": 0, "shift": 0.5}, "embedding",
                    MMD, STEPS, "2s", "RolledBack"),
    "lat-backlog": ({"seed": 0}, {"seed": 0, "backlog": 5}, "score", LATENCY, STEPS, "2s", "Promoted"),
    "fair-favours": ({"seed": 0, "mean": 0.38}, {"seed": 0, "mean": 0.38, "favour": "gender=f:0.3"}, "score", FAIR,
                     FAIR_STEPS, "4s", "RolledBack"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gate_on_the_apiserver(name, procs, kubeconfig, kubectl, k8s_api, namespace):
    base_knobs, cand_knobs, kind, check, steps, interval, expected = CASES[name]
    v1 = procs.scorer("v1", **base_knobs)
    v2 = procs.scorer("v2", **cand_knobs)
    router = procs.router(kubeconfig, namespace)
    doc = rollout_doc(name, namespace, v1, v2, steps=steps, checks=[check], interval=interval, min_samples=30,
                      inconclusive_limit=30, output={"kind": kind, "path": "prediction"})
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    apply(kubectl, doc)
    procs.traffic(router, name, namespace, rps=70)
    other = {"Promoted", "RolledBack", "Failed", "Paused"} - {expected}
    obj = wait_phase(k8s_api, namespace, name, {expected}, 120, forbid=other, diagnose=lambda: logs(ctl, router))
    st = obj["status"]
    (c,) = st["checks"]
    assert c["name"] == check["name"] and c["samples"] > 0, st
    if expected == "RolledBack":
        assert check["name"] in st["message"], st["message"]
