"""Benchmark: what a prediction's feedback id costs on the request path, and a feedback post's check.

Times `IssuedIds.issue` (once per answered prediction) and `IssuedIds.claim` (once per feedback) of the
current `router/feedback.py` (signed, self-contained ids: HMAC-SHA256 over the JSON, nothing remembered
until feedback arrives) and, side by side in the same process, of the file at `--before REV` (the
in-memory table of issued ids each replica kept for itself), for a score prediction with two segments and
an interleaved ranking of 20 items. Prints microseconds per call, the ratios, and the ids' sizes.

    python -m bench.feedback [--n 50000] [--rounds 5] [--before 2b443d4]

Not run in CI.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module      # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


def entries(mod, kind: str, n: int):
    if kind == "score":
        return [mod.Issued("ml/fraud", "v2@http://fraud-v2.ml.svc:8080", "candidate", "v2", (i % 1000) / 1000,
                           {"gender": "fm"[i % 2], "country": "de"}, None, T0 + i / 1000) for i in range(n)]
    items = [f"item-{j}" for j in range(20)]
    teams = {item: "ab"[j % 2] for j, item in enumerate(items)}
    return [mod.Issued("ml/ranker", "r2@http://ranker-v2.ml.svc:8080", "interleave", "r1+r2", items, None, teams,
                       T0 + i / 1000) for i in range(n)]


def run(mod, kind: str, n: int, keyfile: Path | None) -> tuple[float, float, int]:
    """(µs per issue, µs per claim, bytes of one id) for n predictions and n feedback posts."""
    kw = {"keys": mod.FeedbackKeys(keyfile)} if hasattr(mod, "FeedbackKeys") else {}
    ids = mod.IssuedIds(3600.0, 2 * n, **kw)       # room for all: nothing is forgotten while timed
    batch = entries(mod, kind, n)
    rids = [f"{i:032x}" for i in range(n)]
    t = time.perf_counter()
    tokens = [ids.issue(rid, e) for rid, e in zip(rids, batch)]
    issue = (time.perf_counter() - t) / n * 1e6
    handles = tokens if tokens[0] is not None else rids       # before: the request id is the handle
    key = batch[0].rollout_key
    t = time.perf_counter()
    for h in handles:
        ids.claim(h, key, T0 + 60)
    claim = (time.perf_counter() - t) / n * 1e6
    return issue, claim, len(handles[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.feedback", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--before", default="2b443d4", help="git revision of the baseline router/feedback.py")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        old_src = subprocess.run(["git", "show", f"{a.before}:router/feedback.py"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        (Path(d) / "before.py").write_bytes(old_src)
        before = load(Path(d) / "before.py", "feedback_before")
        now = load(ROOT / "router" / "feedback.py", "feedback_now")
        keyfile = Path(d) / "keys"
        keyfile.write_text("bench-key-0123456789abcdef\n")
        print(f"{'ids':<28}{'issue µs':>10}{'claim µs':>10}{'id bytes':>10}")
        for kind in ("score", "interleaved ranking"):
            rows = {}
            for label, mod in ((f"before ({a.before}, memory)", before), ("signed (now)", now)):
                runs = [run(mod, kind.split()[0] if kind == "score" else "ranking", a.n, keyfile)
                        for _ in range(a.rounds)]
                rows[label] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
            print(kind)
            for label, (issue, claim, size) in rows.items():
                print(f"  {label:<26}{issue:>10.2f}{claim:>10.2f}{size:>10d}")
            (bi, bc, _), (ni, nc, _) = rows.values()
            print(f"  {'ratio now/before':<26}{ni / bi:>10.2f}{nc / bc:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
