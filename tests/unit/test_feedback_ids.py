"""Signed, self-contained feedback ids (`router.feedback`): what a replica that never saw the prediction
needs is in the id, it cannot be forged or altered, it expires, it counts once per replica, keys rotate."""
from __future__ import annotations

import pytest

from router.feedback import FeedbackKeys, FeedbackRefused, Issued, IssuedIds, UnsignedIds, key_id

T = 1_800_000_000.0


def keyfile(tmp_path, *keys: str):
    path = tmp_path / "keys"
    path.write_text("".join(k + "\n" for k in keys))
    return FeedbackKeys(path)


def entry(**kw) -> Issued:
    base = dict(rollout_key="ml/fraud", revision="v2@http://v2:1", arm="candidate", version="v2", output=0.83,
                segments={"gender": "f"}, teams=None, issued_at=T)
    base.update(kw)
    return Issued(**base)


def refusal(ids: IssuedIds, token, key="ml/fraud", now=T + 1) -> FeedbackRefused:
    with pytest.raises(FeedbackRefused) as e:
        ids.claim(token, key, now)
    return e.value


def test_another_replica_with_the_same_key_gets_everything_crediting_needs(tmp_path):
    keys = keyfile(tmp_path, "k" * 32)
    a, b = IssuedIds(3600, 1000, keys), IssuedIds(3600, 1000, FeedbackKeys(tmp_path / "keys"))
    token = a.issue("req-7", entry(propensity=0.25))
    got = b.claim(token, "ml/fraud", T + 5)
    assert (got.rollout_key, got.revision, got.arm, got.version, got.output, got.segments, got.teams,
            got.issued_at, got.request_id, got.propensity) == ("ml/fraud", "v2@http://v2:1", "candidate", "v2", 0.83,
                                                               {"gender": "f"}, None, T, "req-7", 0.25)
    assert token.startswith(f"mrf1.{key_id(b'k' * 32)}.")


def test_interleaving_teams_survive_with_integer_items(tmp_path):
    ids = IssuedIds(3600, 1000, keyfile(tmp_path, "k" * 32))
    teams = {"i3": "a", 17: "b", "i9": "b"}
    got = ids.claim(ids.issue("r", entry(arm="interleave", version="v1+v2", output=list(teams), teams=teams)),
                    "ml/fraud", T)
    assert got.teams == teams and got.output == ["i3", 17, "i9"]


def test_each_id_counts_once_per_replica(tmp_path):
    keys = keyfile(tmp_path, "k" * 32)
    ids = IssuedIds(3600, 1000, keys)
    token = ids.issue("r1", entry())
    ids.claim(token, "ml/fraud", T + 1)
    e = refusal(ids, token, now=T + 2)
    assert (e.status, e.error) == (409, "duplicate feedback") and "r1" in e.detail
    assert len(ids) == 1
    other = ids.issue("r1", entry(issued_at=T + 1))        # the same request id again: another prediction
    assert ids.claim(other, "ml/fraud", T + 2).request_id == "r1"


def test_forged_altered_foreign_and_expired_ids_are_refused(tmp_path):
    ids = IssuedIds(60, 1000, keyfile(tmp_path, "k" * 32))
    token = ids.issue("r", entry())
    head, kid, payload, mac = token.split(".")
    assert refusal(ids, "f" * 32).error == "unknown feedback_id"
    assert "bad signature" in refusal(ids, f"{head}.{kid}.{payload[:-1]}A.{mac}").detail
    assert "bad signature" in refusal(ids, f"{head}.{kid}.{payload}.{mac[:-2]}AA").detail
    assert "issued for rollout ml/fraud" in refusal(ids, token, key="ml/other").detail
    assert "unknown key" in refusal(IssuedIds(60, 1000, keyfile(tmp_path, "x" * 32)), token).detail
    assert refusal(ids, token, now=T + 61).error == "expired feedback_id"
    assert refusal(ids, 12345).error == "unknown feedback_id"
    assert refusal(ids, "mrf1." + "a" * 20000).error == "unknown feedback_id"


def test_a_large_prediction_is_left_out_of_its_id(tmp_path):
    ids = IssuedIds(60, 1000, keyfile(tmp_path, "k" * 32))
    token = ids.issue("r", entry(output=[0.123456789] * 1000))
    assert len(token) < 1000 and ids.claim(token, "ml/fraud", T).output is None


def test_rotation_new_key_signs_old_key_still_verifies(tmp_path):
    path = tmp_path / "keys"
    path.write_text("old-key-0123456789abcdef\n")
    ids = IssuedIds(3600, 1000, FeedbackKeys(path))
    before = ids.issue("r", entry())
    path.write_text("new-key-0123456789abcdef\nold-key-0123456789abcdef\n")
    ids.expire(T + 10)                                     # housekeeping re-reads the changed file
    after = ids.issue("r2", entry())
    assert after.split(".")[1] == key_id(b"new-key-0123456789abcdef") != before.split(".")[1]
    assert ids.claim(before, "ml/fraud", T + 11).request_id == "r"
    path.write_text("new-key-0123456789abcdef\n")          # the old key retired after the TTL
    ids.expire(T + 20)
    assert "unknown key" in refusal(ids, ids.issue("x", entry()).replace(
        key_id(b"new-key-0123456789abcdef"), key_id(b"old-key-0123456789abcdef")), now=T + 21).detail


def test_a_bad_key_file_is_reported_and_never_half_applied(tmp_path, caplog):
    path = tmp_path / "keys"
    path.write_text("short\n")
    keys = FeedbackKeys(path)
    assert keys.source == "random" and len(keys.keys) == 1 and "too short" in caplog.text
    path.write_text("good-key-0123456789abcdef\n")
    assert keys.reload() and keys.source == "file"
    path.write_text("")
    assert not keys.reload() and list(keys.keys) == [key_id(b"good-key-0123456789abcdef")]
    assert FeedbackKeys(tmp_path / "missing").source == "random"


def test_the_table_of_accepted_ids_is_bounded_and_expires(tmp_path):
    ids = IssuedIds(100, 64, keyfile(tmp_path, "k" * 32))
    for i in range(200):
        ids.claim(ids.issue(f"r{i}", entry(issued_at=T + i * 0.1)), "ml/fraud", T + 30)
    assert len(ids) <= 64
    ids.expire(T + 200)
    assert len(ids) == 0


def test_the_replica_that_answered_finds_the_id_by_request_id(tmp_path):
    """Feedback naming only the request id (transparent mode's answers carry no x-feedback-id) works on the
    replica that issued it, as the same id; elsewhere it is unknown."""
    keys = keyfile(tmp_path, "k" * 32)
    a, b = IssuedIds(3600, 1000, keys), IssuedIds(3600, 1000, keys)
    token = a.issue("req-1", entry())
    assert a.by_request_id("req-1", "ml/fraud") == token
    assert b.claim(a.by_request_id("req-1", "ml/fraud"), "ml/fraud", T + 1).request_id == "req-1"
    e = pytest.raises(FeedbackRefused, b.by_request_id, "req-1", "ml/fraud").value
    assert (e.status, e.error) == (404, "unknown request_id") and "feedback_id" in e.detail
    a.expire(T + 3601)
    assert pytest.raises(FeedbackRefused, a.by_request_id, "req-1", "ml/fraud").value.status == 404


def test_an_unsigned_payload_kept_by_request_id_signs_into_the_same_id(tmp_path):
    """The worker keeps a transparent answer's feedback payload unsigned (`UnsignedIds`); the router signs it
    when feedback names the request id: the id is the one the router would have issued, counts once, and is
    forgotten once the TTL passed (also when the table is only ever added to)."""
    keys = keyfile(tmp_path, "k" * 32)
    router, kept = IssuedIds(3600, 1000, keys), UnsignedIds(3600, 1000)
    assert kept.issue("req-1", entry(propensity=0.5)) is None
    token = router.signed(kept.get("req-1"))
    assert token == IssuedIds(3600, 1000, keys).issue("req-1", entry(propensity=0.5))
    got = router.claim(token, "ml/fraud", T + 1)
    assert (got.request_id, got.output, got.segments, got.propensity) == ("req-1", 0.83, {"gender": "f"}, 0.5)
    assert refusal(router, router.signed(kept.get("req-1")), now=T + 2).status == 409
    assert kept.get("nope") is None
    for i in range(200):                       # issuing goes on past the TTL: the old entries go
        kept.issue(f"later-{i}", entry(issued_at=T + 3700 + i * 10))
    assert kept.get("req-1") is None and kept.get("later-199") is not None
