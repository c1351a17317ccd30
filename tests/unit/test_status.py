"""The status model: every field the controller writes, `drift` included, and its JSON round trip."""
from __future__ import annotations

import json
import math

import yaml

from policies.api import Condition as ConditionType, Phase, Verdict
from policies.status import CheckState, RolloutStatus, worst_check

T0 = 1_800_000_000.0


def check(name, verdict, value, threshold):
    return CheckState(name, "psi", value, threshold, Verdict(verdict) if verdict else None)


def test_drift_names_the_worst_check_fail_before_inconclusive_before_pass():
    checks = (check("a", "Pass", 0.19, 0.2), check("b", "Fail", 0.25, 0.2), check("c", "Inconclusive", 9.0, 1.0))
    assert worst_check(checks) == "b 0.25/0.2"
    assert worst_check(checks[:1] + checks[2:]) == "c 9/1"


def test_drift_among_equals_is_the_check_closest_to_its_bound_and_none_before_a_verdict():
    assert worst_check((check("a", "Pass", 0.02, 0.2), check("b", "Pass", 0.15, 0.2))) == "b 0.15/0.2"
    assert worst_check((check("a", None, None, None),)) is None
    assert worst_check((check("n", "Inconclusive", math.nan, None),)) == "n -/-"


def test_drift_is_a_status_field_that_round_trips():
    s = RolloutStatus(phase=Phase.PROGRESSING, checks=(check("b", "Fail", 0.25, 0.2),), drift="b 0.25/0.2")
    raw = json.loads(json.dumps(s.to_status()))
    assert raw["drift"] == "b 0.25/0.2" and RolloutStatus.from_status(raw) == s
    assert RolloutStatus.from_status({**raw, "drift": 7}).drift is None


def test_conditions_set_by_enum_are_written_as_plain_strings():
    """Condition types from `policies.api.Condition` land in the status as the API's strings (YAML-safe)."""
    s = RolloutStatus().with_condition(ConditionType.PAUSED, "True", "PausedByUser", "", T0)
    s = s.with_condition(ConditionType.PROGRESSING, "True", Phase.PAUSED.value, "", T0)
    out = s.to_status()
    assert [c["type"] for c in out["conditions"]] == ["Progressing", "Paused"]
    assert all(type(c["type"]) is str for c in out["conditions"])
    assert s.condition(ConditionType.PAUSED) is s.condition("Paused") is not None
    yaml.safe_dump(out)
