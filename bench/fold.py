"""Benchmark: the worker's per-record path, privacy (`router/privacy.py`, which now also classifies the inputs
against spec.expectations) and the fold (`policies.outcome.fold`), before and after, in one process.

The tree at `--before REV` (`git archive`) is imported first and its `RecordPrivacy` / `fold` / `Outcome` /
`parse_spec` kept; its `policies` and `router` modules are then dropped from `sys.modules` and the working
tree's imported, so both run side by side on the same records, rounds alternating. Cases:

* `plain`: a score rollout watching two features, no expectations, no embedding (what every rollout paid
  before: the regression check);
* `hashed`: the same with `privacy.features: hash` (privacy doing work);
* `expect` (after only): `spec.expectations` on both features, 20% of the rows breaking one;
* `embedding` (after only): a 32-dimensional embedding beside each score (`spec.output.embedding`).

Prints µs per record (median of the rounds) and the after/before ratio.

    python -m bench.fold [--records 5000] [--rounds 15] [--before HEAD~3]

Not run in CI.
"""
from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _spec_doc(expect: bool = False, embedding: bool = False, hashed: bool = False) -> dict:
    doc = {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
           "output": {"kind": "score", "path": "prediction"}, "features": {"path": "features"},
           "strategy": {"steps": [{"canary": {"weight": 50, "duration": "10m"}}]},
           "analysis": {"checks": [{"name": "p", "metric": "psi", "max": 0.2},
                                   {"name": "a", "metric": "psi", "on": "feature:gender", "max": 0.2},
                                   {"name": "b", "metric": "psi", "on": "feature:amount", "max": 0.2}]}}
    if hashed:
        doc["privacy"] = {"features": "hash", "fields": {"amount": "keep"}}
    if expect:
        doc["expectations"] = {"rows": {"min": 10}, "features": [
            {"name": "amount", "type": "number", "maxNullRate": 0.05, "min": 0},
            {"name": "gender", "type": "string", "in": ["f", "m"]}]}
    if embedding:
        doc["output"]["embedding"] = "embedding"
        doc["analysis"]["checks"].append({"name": "o", "metric": "outlier-rate", "on": "embedding", "max": 0.05})
    return doc


def _records(Outcome, spec, n: int, embedding: bool) -> list:
    out = []
    for i in range(n):
        arm = "candidate" if i % 2 else "baseline"
        feats = {"gender": "fm"[i % 2], "amount": None if i % 5 == 0 else 10.5 + i % 300}
        more = {"embedding": [((i * 7 + d) % 13) / 13.0 for d in range(32)]} if embedding else {}
        out.append(Outcome.answer(1_700_000_000.0 + i / 1000, f"{i:032x}", spec.name, spec.namespace, spec.revision,
                                  "v2" if i % 2 else "v1", arm, "primary", 200, None, 1.2, (i % 1000) / 1000,
                                  feats, None, **more))
    return out


def _load(tree: Path) -> dict:
    """The implementation in `tree`: imported with `tree` first on sys.path, then unloaded from sys.modules
    (the returned functions keep their modules alive)."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("policies", "router")]:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        privacy = importlib.import_module("router.privacy")
        bucket = importlib.import_module("policies.outcome.bucket")
        impl = {"RecordPrivacy": privacy.RecordPrivacy, "fold": bucket.fold, "Bucket": bucket.Bucket,
                "Outcome": importlib.import_module("policies.outcome").Outcome,
                "parse_spec": importlib.import_module("policies.spec").parse_spec}
    finally:
        sys.path.remove(str(tree))
        for name in [m for m in sys.modules if m.split(".")[0] in ("policies", "router")]:
            del sys.modules[name]
    return impl


def _time(impl: dict, doc: dict, n: int, embedding: bool) -> float:
    spec = impl["parse_spec"](doc, "bench", "ml")
    expect = getattr(spec, "expectations", None)      # before: no expectations
    rp = impl["RecordPrivacy"](spec.privacy, b"k" * 32, *((expect,) if expect is not None else ()))
    records = _records(impl["Outcome"], spec, n, embedding)
    b = impl["Bucket"].new(0.0, 5.0, spec.revision, "score")
    t = time.perf_counter()
    kept = [rp.apply(r) for r in records]
    impl["fold"](b, kept, spec)
    return (time.perf_counter() - t) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--before", default="HEAD", help="git revision to compare against (default HEAD)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tar = subprocess.run(["git", "archive", args.before, "policies", "router"], cwd=ROOT, check=True,
                             capture_output=True).stdout
        tarfile.open(fileobj=io.BytesIO(tar)).extractall(tmp, filter="data")
        impls = {"before": _load(Path(tmp)), "after": _load(ROOT)}
        cases = {"plain": (_spec_doc(), False, ("before", "after")),
                 "hashed": (_spec_doc(hashed=True), False, ("before", "after")),
                 "expect": (_spec_doc(expect=True), False, ("after",)),
                 "embedding": (_spec_doc(embedding=True), True, ("after",))}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for case, (doc, emb, which) in cases.items():
                for name in which:
                    times.setdefault((case, name), []).append(_time(impls[name], doc, args.records, emb))
    print(f"privacy + fold, {args.records} records per round, {args.rounds} rounds; µs per record (median); "
          f"before = {args.before}")
    print(f"{'case':10} {'before':>9} {'after':>9} {'after/before':>13}")
    for case in cases:
        b = times.get((case, "before"))
        a = statistics.median(times[(case, "after")])
        bm = statistics.median(b) if b else None
        ratio = f"{a / bm:13.2f}" if bm else f"{'':>13}"
        print(f"{case:10} {bm if bm is not None else float('nan'):9.2f} {a:9.2f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
