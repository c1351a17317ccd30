"""spec.notifications: credentials only through secretKeyRef, every rejection with its field path, and lint
(CRD schema and parser) agreeing."""
from __future__ import annotations

import copy

import pytest
import yaml

from modelrollout.plugin.lint import lint_text
from policies.spec import PAGERDUTY_URL, SecretKeyRef, SpecError, parse_rollout

BASE = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout", "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": {"baseline": {"version": "v1", "url": "http://a"}, "candidate": {"version": "v2", "url": "http://b"},
                 "strategy": {"steps": [{"canary": {"weight": 10}}]}}}
REF = {"secretKeyRef": {"name": "pager", "key": "routingKey"}}


def doc_with(*sinks) -> dict:
    d = copy.deepcopy(BASE)
    d["spec"]["notifications"] = list(sinks)
    return d


def test_secret_refs_parse_and_pagerduty_has_a_default_url():
    spec = parse_rollout(doc_with({"pagerduty": {"routingKeyFrom": REF}, "on": ["RolledBack"]},
                                  {"slack": {"urlFrom": {"secretKeyRef": {"name": "chat.hooks", "key": "url"}}}},
                                  {"webhook": {"url": "http://alerts.example/hook"}},
                                  {"webhook": {"urlFrom": {"secretKeyRef": {"name": "hook", "key": "u"}}}})).spec
    pd, slack, plain, hidden = spec.notifications
    assert pd.url == PAGERDUTY_URL and pd.routing_key_from == SecretKeyRef("pager", "routingKey")
    assert slack.url is None and slack.url_from == SecretKeyRef("chat.hooks", "url")
    assert plain.url == "http://alerts.example/hook" and plain.url_from is None
    assert hidden.url_from.describe("ml") == "Secret ml/hook key 'u'"


@pytest.mark.parametrize("sink, path, words", [
    ({"pagerduty": {"url": "http://pd", "routingKey": "R0UT1NG"}}, "spec.notifications[0].pagerduty.routingKey",
     "credential"),
    ({"slack": {"url": "https://hooks.slack.com/services/T/B/x"}}, "spec.notifications[0].slack.url", "credential"),
    ({"slack": {}}, "spec.notifications[0].slack.urlFrom", "required"),
    ({"pagerduty": {"url": "http://pd"}}, "spec.notifications[0].pagerduty.routingKeyFrom", "required"),
    ({"webhook": {}}, "spec.notifications[0].webhook.url", "required"),
    ({"webhook": {"url": "http://x", "urlFrom": REF}}, "spec.notifications[0].webhook", "not both"),
    ({"webhook": {"url": "http://x", "routingKeyFrom": REF}}, "spec.notifications[0].webhook.routingKeyFrom",
     "pagerduty only"),
    ({"webhook": {"urlFrom": {"name": "x"}}}, "spec.notifications[0].webhook.urlFrom.name", "secretKeyRef"),
    ({"webhook": {"urlFrom": {"secretKeyRef": {"name": "x"}}}},
     "spec.notifications[0].webhook.urlFrom.secretKeyRef.key", "required"),
    ({"webhook": {"urlFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}},
     "spec.notifications[0].webhook.urlFrom.secretKeyRef.name", "a Secret name"),
    ({"webhook": {"url": "http://x", "token": "t"}}, "spec.notifications[0].webhook.token", "unknown field"),
])
def test_bad_sinks_name_their_field(sink, path, words):
    with pytest.raises(SpecError) as e:
        parse_rollout(doc_with(sink))
    assert e.value.path == path and words in e.value.message, str(e.value)


def test_lint_flags_plain_credentials():
    """The schema refuses what it can (a missing routingKeyFrom, a Slack url beside urlFrom: its CEL rule), the
    parser names the plain credential; no message repeats the credential."""
    problems = lint_text(yaml.safe_dump(doc_with({"pagerduty": {"routingKey": "R0UT1NG"}}))).problems
    assert {(p.path, p.layer) for p in problems} == {("spec.notifications[0].pagerduty.routingKeyFrom", "schema"),
                                                     ("spec.notifications[0].pagerduty.routingKey", "spec")}
    both = doc_with({"slack": {"url": "https://hooks.slack.com/x", "urlFrom": REF}})
    problems = lint_text(yaml.safe_dump(both)).problems
    assert [(p.path, p.layer) for p in problems] == [("spec.notifications[0].slack.url", "schema")]
    assert "credential" in problems[0].message
    assert all("R0UT1NG" not in p.message and "hooks.slack" not in p.message for p in problems)
    assert lint_text(yaml.safe_dump(doc_with({"pagerduty": {"routingKeyFrom": REF}}))).problems == []
