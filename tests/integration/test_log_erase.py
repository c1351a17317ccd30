"""`modelrollout log erase`: every record of one subject leaves the log (found through the hashed sticky key,
its request ids carrying the rest), the router serving meanwhile loses nothing, the rewritten files are
whole and replay reproduces the decisions on the rest."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from modelrollout.replay import replay_rollout
from policies.privacy import keyed_hash
from policies.spec import parse_rollout
from router.predlog import read_log
from tests.router_support import metric_value, post_many, rollout_doc, wait_until, write_config

REPO = Path(__file__).resolve().parents[2]
KEY = b"erase-test-key-0123456789abcdef"
USERS = [f"user-{i}" for i in range(20)]
SUBJECT = "user-7"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelrollout.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def _doc(v1, v2) -> dict:
    doc = rollout_doc("fraud", v1.url, v2.url, weight=50, checks=[
        {"name": "score-psi", "metric": "psi", "max": 0.5},
        {"name": "errors", "metric": "error-rate", "max": 0.05}])
    doc["spec"]["strategy"]["steps"] = [{"canary": {"weight": 50, "duration": "2s"}}]
    doc["spec"]["analysis"].update({"interval": "1s", "minSamples": 10})
    return doc


def _lines(d: Path) -> list[bytes]:
    return [line for p in sorted(d.glob("*.jsonl")) for line in p.read_bytes().splitlines()]


def test_erase_removes_exactly_one_subject_while_the_router_serves_and_replay_agrees(procs, tmp_path):
    v1, v2 = procs.scorer("v1"), procs.scorer("v2")
    doc = _doc(v1, v2)
    (tmp_path / "key").write_bytes(KEY)
    logs = tmp_path / "log"
    router = procs.router(write_config(tmp_path / "r.yaml", [doc]), "--log-dir", str(logs), "--hash-key-file",
                          str(tmp_path / "key"), "--replica-id", "r1", "--bucket", "1s")
    url = f"{router.url}/v1/rollouts/fraud"

    # Traffic of every user over a few seconds, labels for a third of the answers.
    answers = []
    for burst in range(6):
        answers += post_many([(f"{url}/predict", {"features": {"age": 20 + i % 40}}, {"x-user-id": USERS[i % 20]})
                              for i in range(burst * 100, burst * 100 + 100)])
        labels = post_many([(f"{url}/feedback", {"request_id": h["x-request-id"], "label": i % 2}, {})
                            for i, (_, h, _) in enumerate(answers[-100:]) if i % 3 == 0])
        assert {s for s, _, _ in labels} == {200}
        time.sleep(0.5)     # over a few seconds whatever the machine's speed: replay needs windows to judge
    assert {s for s, _, _ in answers} == {200}
    first = len(answers) + 6 * 34
    wait_until(lambda: metric_value(httpx.get(f"{router.url}/metrics").text,
                                    "modelrollout_router_log_records_total") == first, timeout=60,
               what="all written")
    before_dir = tmp_path / "before"
    shutil.copytree(logs, before_dir)
    before = read_log([before_dir])
    assert len(before) == first
    # One file (64 MiB rotation; two if an hour starts meanwhile): the one the router writes to while erase
    # replaces it, so the lines it appends around the erase must end up in the new file.
    held = max(p.name for p in logs.glob("*.jsonl"))
    subject_ids = {r.request_id for r in before if r.sticky == keyed_hash(KEY, SUBJECT)}
    theirs = [r for r in before if r.request_id in subject_ids]
    assert len(subject_ids) == 30 and len(theirs) == 30 + 12        # 30 answers, 12 labels
    assert not any(SUBJECT.encode() in line for line in _lines(before_dir))

    # Erase while other users keep the router writing to its current file.
    during: list = []
    stop = threading.Event()

    def more_traffic():
        i = 0
        while not stop.is_set():
            got = post_many([(f"{url}/predict", {"features": {"age": 30}}, {"x-user-id": USERS[j % 20]})
                             for j in range(i, i + 20) if USERS[j % 20] != SUBJECT])
            during.extend(got)
            i += 20
    t = threading.Thread(target=more_traffic)
    t.start()
    try:
        wait_until(lambda: len(during) >= 40, timeout=60, what="traffic during the erase")
        out = _cli("log", "erase", "--dir", str(logs), "--subject", SUBJECT, "--key-file", str(tmp_path / "key"))
        wait_until(lambda: len(during) >= 200, timeout=60, what="traffic after the erase")
    finally:
        stop.set()
        t.join(60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"erased {len(theirs)} record(s)"), out.stdout
    assert "30 matched sticky, 12 shared their request ids" in out.stdout
    assert {s for s, _, _ in during} == {200}
    assert router.stop(signal.SIGTERM) == 0

    after = read_log([logs])
    assert not [p.name for p in logs.iterdir() if p.name.startswith(".")], "a temporary file was left"
    assert len(after) == len(before) - len(theirs) + len(during)
    assert not any(r.request_id in subject_ids for r in after)
    kept = [r for r in before if r.request_id not in subject_ids]
    assert sorted(after[:len(kept)], key=lambda r: (r.time, r.request_id)) == \
        sorted(kept, key=lambda r: (r.time, r.request_id))
    assert {r.request_id for r in after[len(kept):]} == {h["x-request-id"] for _, h, _ in during}
    assert "from 1 of 1 file(s)" in out.stdout or "from 1 of 2 file(s)" in out.stdout
    held_ids = {json.loads(line)["request_id"] for line in (logs / held).read_bytes().splitlines()}
    assert len(held_ids & {h["x-request-id"] for _, h, _ in during}) >= 200 or len(list(logs.glob("*.jsonl"))) > 1

    # Replay reads the erased log and decides on it what it decides on the same records filtered by hand.
    spec = parse_rollout(doc).spec
    mine = replay_rollout(spec, [r for r in after if r.time <= before[-1].time], bucket=1.0)
    expected = replay_rollout(spec, kept, bucket=1.0)
    assert mine.transitions == expected.transitions and mine.status == expected.status
    assert mine.windows == expected.windows > 0 and mine.records == len(kept)
    assert expected.transitions, "the policy decided something on this traffic"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    replayed = _cli("replay", str(tmp_path / "spec.yaml"), "--log", str(logs), "--bucket", "1", "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout.splitlines()[-1])["rollouts"]["ml/fraud"]["records"] == len(after)

    # Once more: nothing left to erase, and the files stay as they are.
    again = _cli("log", "erase", "--dir", str(logs), "--subject", SUBJECT, "--key-file", str(tmp_path / "key"))
    assert again.returncode == 0 and again.stdout.startswith("erased 0 record(s) from 0 of"), again.stdout


def test_erase_by_a_clear_field_keeps_file_times_and_matches_numbers_as_text(tmp_path):
    """A log whose field is kept in clear: erase by `--field features.user` removes those lines (a number
    logged as 7 matches the subject "7"), leaves each file's modification time, and a line that is not JSON
    is removed only when it holds the subject. Without a key, hashed values are reported, not matched."""
    d = tmp_path / "log"
    d.mkdir()
    lines = [{"v": 1, "time": 100.0 + i, "request_id": f"r{i}", "rollout": "fraud", "namespace": "ml", "role": "primary",
              "features": {"user": i % 4}, "sticky": keyed_hash(KEY, f"u{i % 4}")} for i in range(40)]
    a, b = d / "predictions-r-20240101T00-0000.jsonl", d / "predictions-r-20240101T00-0001.jsonl"
    a.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines[:20]) + b'{"broken": 3, "user": 7\n')
    b.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines[20:]) + b"{not json at all\n")
    os.utime(a, (1_000_000, 1_000_000))
    out = _cli("log", "erase", "--dir", str(d), "--subject", "3", "--field", "features.user")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("erased 11 record(s) from 2 of 2 file(s): 10 matched features.user, 0 shared "
                                 "their request ids, 1 unreadable line(s) held the subject"), out.stdout
    assert a.stat().st_mtime == 1_000_000
    left = [json.loads(x) for x in a.read_bytes().splitlines()] + [
        json.loads(x) for x in b.read_bytes().splitlines()[:-1]]
    assert len(left) == 30 and all(x["features"]["user"] != 3 for x in left)
    assert b.read_bytes().endswith(b"{not json at all\n")
    hashed = _cli("log", "erase", "--dir", str(d), "--subject", "u1")
    assert hashed.returncode == 0 and hashed.stdout.startswith("erased 0 record(s)")
    assert "30 record(s) hold a keyed hash at sticky" in hashed.stderr
    bad = _cli("log", "erase", "--dir", str(tmp_path / "nowhere"), "--subject", "x")
    assert bad.returncode == 2 and "not a directory" in bad.stderr
