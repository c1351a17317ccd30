"""Notification credentials from Secrets, end to end on a real apiserver: the controller process runs as its
own ServiceAccount with manifests/rbac.yaml and one RoleBinding of modelrollout-notification-secrets, reads a
PagerDuty routing key and a Slack webhook URL from labelled Secrets, delivers them to a real local receiver
with the severities the README gives (drift rollback error, NaN/5xx rollback critical, pause by a check
warning), and neither value appears in the rollouts' status, the Events or the controller's log."""
from __future__ import annotations

import base64
import json
import secrets

import pytest
from kubernetes import client

from policies.spec import NOTIFICATION_SECRET_LABEL
from tests.e2e.conftest import apply, logs, rollout_doc, wait_for, wait_phase
from tests.e2e.test_controller_notify import Receiver
from tests.e2e.test_manifests import manifests_rbac

pytestmark = pytest.mark.usefixtures("mro_crd")

ROUTING_KEY = "pd-routing-" + secrets.token_hex(8)
SLACK_TOKEN = "XXslackTOKEN" + secrets.token_hex(6)
DB_PASSWORD = "hunter2-" + secrets.token_hex(4)


def _secret(k8s_api, namespace: str, name: str, data: dict[str, str], labelled: bool = True) -> None:
    client.CoreV1Api(k8s_api).create_namespaced_secret(namespace, {
        "metadata": {"name": name, "labels": {NOTIFICATION_SECRET_LABEL: "true"} if labelled else {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def _sinks(receiver: Receiver, on: list[str]) -> list[dict]:
    return [{"pagerduty": {"url": f"{receiver.url}/pd",
                           "routingKeyFrom": {"secretKeyRef": {"name": "pager", "key": "routingKey"}}}, "on": on},
            {"slack": {"urlFrom": {"secretKeyRef": {"name": "chat", "key": "webhook"}}}, "on": on},
            {"pagerduty": {"url": f"{receiver.url}/pd-db",
                           "routingKeyFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}, "on": on}]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def controller_identity(kubectl, namespace, restricted_kubeconfig):
    """manifests/rbac.yaml bound in `namespace`, plus the notification-secrets ClusterRole bound there by a
    RoleBinding, as manifests/README.md says; the controller ServiceAccount's kubeconfig."""
    with manifests_rbac(kubectl, namespace) as suffix:
        kubectl("create", "rolebinding", "modelrollout-notification-secrets", "-n", namespace,
                f"--clusterrole=modelrollout-notification-secrets{suffix}",
                f"--serviceaccount={namespace}:modelrollout-controller")
        yield restricted_kubeconfig(namespace, "modelrollout-controller")


def test_secret_backed_credentials_are_delivered_with_the_readme_severities_and_appear_nowhere_else(
        procs, kubeconfig, kubectl, k8s_api, namespace, receiver, controller_identity):
    slack_path = f"/services/T000/B000/{SLACK_TOKEN}"
    _secret(k8s_api, namespace, "pager", {"routingKey": ROUTING_KEY})
    _secret(k8s_api, namespace, "chat", {"webhook": receiver.url + slack_path})
    _secret(k8s_api, namespace, "db", {"password": DB_PASSWORD}, labelled=False)

    v1 = procs.scorer("v1", seed=7)
    drifting = procs.scorer("v2", seed=7, shift=0.35)
    failing = procs.scorer("v3", seed=7, error_rate=1)
    router = procs.router(kubeconfig, namespace)
    ctl = procs.controller(controller_identity, namespace, "--router-url", router.url)
    slow_steps = [{"shadow": {"duration": "30s"}}, {"canary": {"weight": 50, "duration": "30s"}}]
    drift = rollout_doc("drift", namespace, v1, drifting, steps=slow_steps,
                        notifications=_sinks(receiver, ["RolledBack"]))
    broken = rollout_doc("broken", namespace, v1, failing, steps=slow_steps, candidate_version="v3",
                         notifications=_sinks(receiver, ["RolledBack"]))
    paused = rollout_doc("held", namespace, v1, drifting, steps=slow_steps, notifications=_sinks(receiver, ["Paused"]),
                         checks=[{"name": "score-psi", "metric": "psi", "max": 0.5, "action": "pause"}])
    for doc in (drift, broken, paused):
        apply(kubectl, doc)
        procs.traffic(router, doc["metadata"]["name"], namespace, rps=40)
    diag = lambda: logs(ctl, router)  # noqa: E731
    wait_phase(k8s_api, namespace, "drift", {"RolledBack"}, 90, forbid={"Promoted"}, diagnose=diag)
    wait_phase(k8s_api, namespace, "broken", {"RolledBack"}, 90, forbid={"Promoted"}, diagnose=diag)
    wait_phase(k8s_api, namespace, "held", {"Paused"}, 90, forbid={"Promoted", "RolledBack"}, diagnose=diag)

    def delivered():
        pd = {b["payload"]["component"]: b for p, b in receiver.bodies if p == "/pd"}
        slack = [b for p, b in receiver.bodies if p == slack_path]
        return (pd, slack) if len(pd) == 3 and len(slack) == 3 else None
    pd, slack = wait_for(delivered, 30, "3 PagerDuty and 3 Slack deliveries",
                         diagnose=lambda: f"{receiver.bodies}\n{diag()}")
    assert {name: b["payload"]["severity"] for name, b in pd.items()} == \
        {"drift": "error", "broken": "critical", "held": "warning"}
    assert {b["routing_key"] for b in pd.values()} == {ROUTING_KEY}
    assert {b["blocks"][0]["text"]["text"] for b in slack} == {"drift RolledBack", "broken RolledBack", "held Paused"}
    severities = {b["blocks"][2]["elements"][0]["text"].rsplit("*", 2)[-2] for b in slack}
    assert severities == {"error", "critical", "warning"}
    assert not [p for p, _ in receiver.bodies if p == "/pd-db"], "an unlabelled Secret's value was sent"

    wait_for(lambda: f"Secret {namespace}/db key 'password': the Secret is not labelled" in
             ctl.log_path.read_text(errors="replace"), 30, "the unlabelled Secret refused in the controller's log")
    # Nowhere else: the rollouts (spec and status), their Events, the controller's and the router's logs.
    objects = kubectl("get", "mro", "-n", namespace, "-o", "json").stdout
    event_list = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    controller_log = ctl.log_path.read_text(errors="replace")
    router_log = router.log_path.read_text(errors="replace")
    for where, text in (("rollouts", objects), ("events", event_list), ("controller log", controller_log),
                        ("router log", router_log)):
        for value in (ROUTING_KEY, SLACK_TOKEN, DB_PASSWORD):
            assert value not in text, f"{value[:6]}… in the {where}"
    assert json.loads(objects)["items"] and "RolledBack" in event_list
