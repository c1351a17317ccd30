"""`kubectl apply -k manifests/` on a vanilla cluster (no Prometheus Operator): it succeeds, and what it
installs comes up."""
from __future__ import annotations

import pytest

from tests.node.conftest import SYSTEM_NS

pytestmark = pytest.mark.timeout(3000)


def test_install_succeeds_on_a_cluster_without_the_prometheus_operator(installed):
    """The default install needs no CRD but its own; the controller Deployment becomes available (2/2)."""
    c = installed
    crds = {i["metadata"]["name"] for i in c.get("crd")["items"]}
    assert crds == {"modelrollouts.modelrollout.io"}, crds
    deploy = c.get("deployment", "modelrollout-controller", "-n", SYSTEM_NS)
    assert deploy["status"].get("availableReplicas") == 2, deploy["status"]


def test_router_is_ready_before_the_first_rollout(installed):
    """Right after the install, before any ModelRollout exists, both router replicas turn Ready."""
    c = installed
    proc = c.kubectl("rollout", "status", "deployment/modelrollout-router", "-n", SYSTEM_NS, "--timeout=45s",
                     check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
