"""Fail-static reading of ModelRollouts (`router.source.LastValid`): invalid edits keep the last valid
version, deleted rollouts are served to their stable for the grace, re-created ones keep that until the
controller has written their status. Pure: documents in, rollouts out, on a hand-driven clock."""
from __future__ import annotations

import copy

from router.routing import served
from router.source import LastValid


def doc(name="fraud", rv="1", candidate="v2", weight=30, status=True, **spec):
    d = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
         "metadata": {"name": name, "namespace": "ml", "resourceVersion": rv},
         "spec": {"baseline": {"version": "v1", "url": "http://v1:1"},
                  "candidate": {"version": candidate, "url": f"http://{candidate}:1"},
                  "strategy": {"steps": [{"canary": {"weight": 30}}]}, **spec}}
    if status:
        d["status"] = {"phase": "Progressing", "revision": f"{candidate}@http://{candidate}:1",
                       "routing": {"candidateWeight": weight}}
    return d


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def routing(rollouts, key="ml/fraud"):
    r = next(r for r in rollouts if r.spec.key == key)
    spec, route = served(r)
    return spec.baseline.version, spec.candidate.version, route.candidate_weight


def test_an_invalid_edit_keeps_the_last_valid_version():
    """A spec the parser rejects keeps serving the previous version, same split; the error is reported."""
    lv = LastValid()
    assert routing(lv.update([doc()])) == ("v1", "v2", 30)
    bad = doc(rv="2")
    bad["spec"]["analysis"] = {"checks": [{"name": "x", "metric": "chi2", "max": 1}]}   # chi2 on a score
    out = lv.update([bad])
    assert routing(out) == ("v1", "v2", 30)
    assert "spec.analysis.checks[0].metric" in lv.health()["invalid"]["ml/fraud"]
    # a bad status written under it (a malformed routing) is an invalid document too
    worse = doc(rv="3")
    worse["status"]["routing"]["candidateWeight"] = "lots"
    assert routing(lv.update([worse])) == ("v1", "v2", 30)
    # fixed: served as written, no longer reported
    assert routing(lv.update([doc(rv="4", weight=60)])) == ("v1", "v2", 60)
    assert lv.health()["invalid"] == {}


def test_a_rollout_that_never_parsed_is_not_served():
    lv = LastValid()
    bad = doc()
    del bad["spec"]["baseline"]
    assert lv.update([bad, doc(name="other")]) and [r.spec.name for r in lv.update([bad, doc(name="other")])] == ["other"]
    assert "ml/fraud" in lv.health()["invalid"]


def test_a_deleted_rollout_serves_its_stable_for_the_grace():
    """Deleted mid-canary: 100% to the stable (here the baseline) for the grace, then gone."""
    clock = Clock()
    lv = LastValid(grace=60, clock=clock)
    lv.update([doc()])
    clock.t += 1
    out = lv.update([])
    assert routing(out) == ("v1", "v2", 0) and lv.health()["deleted"] == ["ml/fraud"]
    assert lv.next_expiry() == 60
    clock.t += 59.5
    assert routing(lv.update([])) == ("v1", "v2", 0)
    clock.t += 1
    assert lv.update([]) == [] and lv.health()["deleted"] == [] and lv.next_expiry() is None


def promoted_doc() -> dict:
    """The rollout after v2 was promoted: its status names v2 the stable."""
    promoted = doc()
    promoted["status"] = {"phase": "Promoted", "revision": "v2@http://v2:1", "routing": {"candidateWeight": 100},
                          "stable": {"version": "v2", "url": "http://v2:1"}}
    return promoted


def test_a_deleted_promoted_rollout_keeps_serving_the_promoted_version():
    clock = Clock()
    lv = LastValid(grace=60, clock=clock)
    promoted = promoted_doc()
    lv.update([promoted])
    spec, route = served(lv.update([])[0])
    assert spec.baseline.version == "v2" and route.candidate_weight == 0 and not route.shadow


def test_recreated_within_the_grace_keeps_the_stable_until_the_controller_writes_status():
    """Delete and re-apply (no status yet): still the old stable; once the status has a revision, the new
    object as written."""
    clock = Clock()
    lv = LastValid(grace=60, clock=clock)
    promoted = promoted_doc()
    lv.update([promoted])
    lv.update([])
    fresh = doc(rv="9", status=False)          # the same YAML applied again: spec.baseline still says v1
    spec, route = served(lv.update([fresh])[0])
    assert spec.baseline.version == "v2" and route.candidate_weight == 0
    # the controller carried the stable over: v2 is the stable, the candidate v2 is it (steady state)
    written = copy.deepcopy(fresh)
    written["metadata"]["resourceVersion"] = "10"
    written["status"] = {"phase": "Stable", "revision": "v2@http://v2:1", "routing": {"candidateWeight": 0},
                         "stable": {"version": "v2", "url": "http://v2:1"}}
    r = lv.update([written])[0]
    spec, route = served(r)
    assert r.status == written["status"] and spec.baseline.version == "v2" and route.candidate_weight == 0
    assert lv.health()["deleted"] == []
    # and the next candidate's rollout is served as the controller writes it
    v3 = doc(rv="11", candidate="v3")
    v3["status"] = {"phase": "Shadowing", "revision": "v3@http://v3:1", "routing": {"shadow": True},
                    "stable": {"version": "v2", "url": "http://v2:1"}}
    assert routing(lv.update([v3]))[:2] == ("v2", "v3") and served(lv.update([v3])[0])[1].shadow


def test_unchanged_documents_give_the_same_objects():
    """A resync of unchanged objects (same resourceVersion) parses to the very same Rollout objects, so the
    source can tell nothing changed."""
    lv = LastValid()
    a = lv.update([doc(), doc(name="b")])
    b = lv.update([copy.deepcopy(doc()), copy.deepcopy(doc(name="b"))])
    assert [id(x) for x in a] == [id(x) for x in b]


def test_served_routes_everything_to_the_stable_in_a_steady_state_or_before_the_controller_spoke():
    """The router's side of the stable version: steady state (no candidate) → 100% stable whatever the
    status says; a status about another revision than the spec's → 100% stable."""
    lv = LastValid()
    steady = doc(weight=50)
    del steady["spec"]["candidate"]
    steady["status"]["stable"] = {"version": "v2", "url": "http://v2:1"}
    assert routing(lv.update([steady])) == ("v2", "v2", 0)
    moved = doc(rv="2", candidate="v3", weight=50)
    moved["status"]["revision"] = "v2@http://v2:1"      # the controller has not seen v3 yet
    assert routing(lv.update([moved])) == ("v1", "v3", 0)
