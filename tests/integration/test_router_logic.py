"""The router's pure pieces: sticky hashing, routing from status, the issued-id table, output extraction,
and the prediction log's rotation (on a real temporary directory)."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from policies.spec import SpecError
from router.extract import get_path, output_value, redact, split_path
from router.feedback import FeedbackRefused, Issued, IssuedIds
from router.predlog import PredictionLog
from router.routing import BASELINE, CANDIDATE, Routing, choose, sticky_bucket


@settings(max_examples=200, deadline=None)
@given(key=st.text(min_size=1, max_size=40), w1=st.integers(0, 100), w2=st.integers(0, 100))
def test_raising_the_weight_never_moves_a_key_back_to_baseline(key, w1, w2):
    """For any key, a key on the candidate at weight w stays on the candidate at every weight >= w."""
    lo, hi = sorted((w1, w2))
    bucket = sticky_bucket(key, "ml/fraud")
    assert 0 <= bucket < 10_000
    if choose(Routing(lo), bucket) == CANDIDATE:
        assert choose(Routing(hi), bucket) == CANDIDATE
    assert choose(Routing(0), bucket) == BASELINE and choose(Routing(100), bucket) == CANDIDATE


def test_sticky_buckets_are_uniform_and_salted_per_rollout():
    """Buckets of distinct keys spread evenly, and two rollouts split the same users independently."""
    keys = [f"user-{i}" for i in range(20_000)]
    share = sum(choose(Routing(30), sticky_bucket(k, "ml/a")) == CANDIDATE for k in keys) / len(keys)
    assert share == pytest.approx(0.30, abs=0.015)
    same = sum(sticky_bucket(k, "ml/a") == sticky_bucket(k, "ml/b") for k in keys)
    assert same < 20


def test_routing_from_status_rejects_bad_values_with_the_field_path():
    """Routing comes from status.routing; Promoted means all candidate; bad values name their field."""
    assert Routing.from_status({}) == Routing(0.0, False, False)
    assert Routing.from_status({"routing": {"candidateWeight": 25, "shadow": True}}) == Routing(25.0, True, False)
    assert Routing.from_status({"phase": "Promoted", "routing": {"candidateWeight": 10}}).candidate_weight == 100
    for status, path in (({"routing": {"candidateWeight": 101}}, "candidateWeight"),
                         ({"routing": {"candidateWeight": "half"}}, "candidateWeight"),
                         ({"routing": {"shadow": "yes"}}, "shadow"), ({"routing": [1]}, "status.routing")):
        with pytest.raises(SpecError, match=path):
            Routing.from_status(status)


def _entry(t: float, key: str = "ml/fraud") -> Issued:
    return Issued(key, "v2@http://x", "baseline", "v1", 0.4, {"gender": "f"}, None, t)


def test_issued_ids_are_bounded_and_expire():
    """The tables (accepted ids; issued ids by request id) never hold much more than max_ids, forget the oldest
    first, and honour the TTL; a feedback id itself is accepted until it expires, whatever was forgotten."""
    ids = IssuedIds(ttl_seconds=100.0, max_ids=1000)
    tokens = [ids.issue(f"r{i}", _entry(float(i) / 100)) for i in range(5000)]
    with pytest.raises(FeedbackRefused) as e:
        ids.by_request_id("r0", "ml/fraud")              # the oldest request ids are forgotten
    assert e.value.status == 404
    assert ids.claim(ids.by_request_id("r4999", "ml/fraud"), "ml/fraud", 50.0).version == "v1"
    with pytest.raises(FeedbackRefused) as e:
        ids.claim(tokens[4999], "ml/fraud", 50.0)
    assert e.value.status == 409
    assert ids.claim(tokens[0], "ml/fraud", 50.0).request_id == "r0"
    with pytest.raises(FeedbackRefused) as e:
        ids.claim(tokens[4998], "ml/fraud", 49.98 + 100.5)
    assert e.value.status == 404 and "older" in e.value.detail
    for t in tokens[1:4999]:
        ids.claim(t, "ml/fraud", 50.0)
        assert len(ids) <= 1000 + 1000 // 16             # 16 segments of max_ids / 16, plus the one filling
    ids.expire(1000.0)
    assert len(ids) == 0


def test_interleaving_teams_survive_the_table_with_integer_item_ids():
    """Teams of an interleaved answer come back from its feedback id keyed exactly as the items were (ints stay
    ints)."""
    ids = IssuedIds(ttl_seconds=100.0, max_ids=10)
    teams = {7: "a", "x": "b", 3: "b"}
    token = ids.issue("r1", Issued("ml/rank", "r2@http://x", "interleave", "r1+r2", [7, "x", 3], None, teams, 1.0))
    assert ids.claim(token, "ml/rank", 2.0).teams == teams


def test_outputs_are_validated_by_kind():
    """Scores must be finite numbers, classes scalars, rankings lists of ids, embeddings finite vectors."""
    assert output_value("score", 0.5) == (0.5, True)
    for bad in (float("nan"), float("inf"), True, "0.5", None, [0.5]):
        assert output_value("score", bad)[1] is False
    assert output_value("class", "fraud") == ("fraud", True) and output_value("class", 2) == ("2", True)
    assert output_value("ranking", ["a", 3]) == (["a", 3], True) and not output_value("ranking", [{"a": 1}])[1]
    assert output_value("embedding", [1, 2.5]) == ([1.0, 2.5], True) and not output_value("embedding", [])[1]
    doc = {"result": {"scores": [0.1, 0.9]}, "features": {"age": 3, "ssn": "123"}}
    assert get_path(doc, split_path("result.scores.1")) == 0.9
    assert redact(doc, (split_path("features.ssn"),))["features"] == {"age": 3, "ssn": "[redacted]"}
    assert doc["features"]["ssn"] == "123"


def test_prediction_log_rotates_by_size_and_keeps_every_record(tmp_path):
    """Records written in batches across size rotations all read back, in order, after close()."""
    async def run():
        log = PredictionLog(tmp_path, "replica/1", max_bytes=2000)
        for i in range(500):
            log.write({"i": i, "role": "primary", "output": i / 7})
            if i % 97 == 0:
                await log.flush()
        await log.close()
        log.write({"i": "late"})
        return log
    log = asyncio.run(run())
    files = sorted(tmp_path.glob("predictions-replica_1-*.jsonl"))
    assert len(files) > 5 and all(f.stat().st_size <= 2000 for f in files)
    assert _logged_i(tmp_path) == list(range(500))
    assert log.written == 500 and log.dropped == 1


def _logged_i(directory) -> list:
    """The "i" of every line of a log directory's files in name order (these tests log plain dicts)."""
    import orjson
    from pathlib import Path

    return [orjson.loads(line)["i"] for f in sorted(Path(directory).glob("predictions-*.jsonl"))
            for line in f.read_bytes().splitlines() if line.strip()]
