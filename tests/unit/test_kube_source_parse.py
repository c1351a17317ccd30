"""The router's Kubernetes source re-parses only what it serves from (spec and `status.routing`): the
controller's window writes change neither, so a router with many rollouts does nothing for them. Pure:
`router.kube_source.parse_objects` on documents as the apiserver lists them."""
from __future__ import annotations

import copy

from router.kube_source import ServedChanges, parse_objects, served


def doc(name: str, generation: int = 1, weight: int = 10, checks_value: float = 0.01) -> dict:
    return {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}", "generation": generation,
                         "resourceVersion": "1"},
            "spec": {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
                     "strategy": {"steps": [{"canary": {"weight": 10, "duration": "1h"}}]}},
            "status": {"routing": {"candidateWeight": weight, "shadow": False, "interleave": False},
                       "checks": [{"name": "errors", "value": checks_value}], "lastAnalysisAt": "2026-01-01T00:00:00Z"}}


def test_a_window_write_yields_the_same_rollouts_and_a_routing_change_reparses_one():
    cache: dict = {}
    a, b = doc("a"), doc("b")
    first = parse_objects([a, b], cache)
    window = [copy.deepcopy(a), copy.deepcopy(b)]
    window[0]["status"]["checks"][0]["value"] = 0.02          # a window judged: verdicts, lastAnalysisAt
    window[0]["status"]["lastAnalysisAt"] = "2026-01-01T00:00:10Z"
    window[0]["metadata"]["resourceVersion"] = "2"
    assert served(window[0]) == served(a)
    again = parse_objects(window, cache)
    assert [x is y for x, y in zip(first, again)] == [True, True]
    moved = [doc("a", weight=50), copy.deepcopy(b)]
    third = parse_objects(moved, cache)
    assert third[0] is not first[0] and third[1] is first[1]
    assert third[0].status["routing"]["candidateWeight"] == 50


def test_a_spec_change_or_a_deleted_rollout_is_seen():
    cache: dict = {}
    first = parse_objects([doc("a"), doc("b")], cache)
    changed = doc("a", generation=2)
    changed["spec"]["strategy"]["steps"][0]["canary"]["weight"] = 20
    after = parse_objects([changed], cache)
    assert len(after) == 1 and after[0] is not first[0] and after[0].spec.steps[0].weight == 20
    assert set(cache) == {"ml/a"}


def test_an_invalid_rollout_is_skipped_once_and_stays_skipped():
    cache: dict = {}
    bad = doc("bad")
    bad["spec"]["strategy"]["steps"][0]["canary"]["weight"] = 150
    assert [r.spec.name for r in parse_objects([bad, doc("ok")], cache)] == ["ok"]
    assert [r.spec.name for r in parse_objects([copy.deepcopy(bad), doc("ok")], cache)] == ["ok"]


def test_only_watch_events_that_move_what_is_served_wake_the_router():
    changes = ServedChanges()
    a = doc("a")
    assert changes.changed("ml/a", a)                          # first sight
    window = copy.deepcopy(a)                                  # a window judged: verdicts, lastAnalysisAt
    window["status"]["checks"][0]["value"] = 0.02
    window["status"]["lastAnalysisAt"] = "2026-01-01T00:00:10Z"
    window["metadata"]["resourceVersion"] = "2"
    assert not changes.changed("ml/a", window)
    assert changes.changed("ml/a", doc("a", weight=50))        # routing moved
    assert not changes.changed("ml/a", doc("a", weight=50))
    assert changes.changed("ml/a", doc("a", generation=2, weight=50))   # spec changed
    assert changes.changed("ml/b", doc("b"))                   # another rollout
    assert changes.changed("ml/a", None)                       # deleted
    assert changes.changed("ml/a", doc("a", generation=2, weight=50))   # re-created as it was: seen again

