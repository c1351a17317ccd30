"""Benchmark: the prediction log's flush, and how long it stalls the event loop it shares with requests.

Queues a batch of router-like records, then times `flush()` while a ticker task on the same loop sleeps
0.5 ms at a time and records how late it wakes up (the longest lateness is the longest stall a request
would have seen). Runs the current `router/predlog.py` and, with `--before REV`, the file at that git
revision in the same process, and prints both and the ratios.

    python -m bench.predlog [--records 5000] [--rounds 20] [--before HEAD~1]

Not run in CI.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def record(i: int) -> dict:
    return {"time": 1_700_000_000.0 + i / 1000, "request_id": f"{i:032x}", "rollout": "fraud", "namespace": "ml",
            "revision": "7", "version": "v2" if i % 3 else "v1", "arm": "candidate" if i % 3 else "baseline",
            "role": "primary", "status": 200, "error": None, "latency_ms": 1.234 + i % 17,
            "output": (i % 1000) / 1000, "features": {"age": 20 + i % 50, "gender": "fm"[i % 2],
                                                       "amount": 10.5 + i % 300, "hour": i % 24, "country": "de"},
            "segments": {"gender": "fm"[i % 2], "country": "de"}}


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module      # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module.PredictionLog


async def ticker(stop: asyncio.Event, lags: list[float], every: float = 0.0005) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(every)
        lags.append(time.perf_counter() - t - every)


async def measure(cls, directory: Path, records: list[dict], rounds: int, max_bytes: int) -> dict:
    log = cls(directory, "bench", max_bytes=max_bytes)
    flush_ms, stall_ms, every_lag = [], [], []
    for _ in range(rounds):
        for r in records:
            log.write(r)
        stop, lags = asyncio.Event(), []
        tick = asyncio.create_task(ticker(stop, lags))
        await asyncio.sleep(0.005)                 # ticker running before the flush starts
        lags.clear()
        t = time.perf_counter()
        await log.flush()
        flush_ms.append((time.perf_counter() - t) * 1000)
        stop.set()
        await tick
        stall_ms.append(max(lags, default=0.0) * 1000)
        every_lag += lags
    await log.close()
    return summary(flush_ms, stall_ms, every_lag)


def summary(flush_ms: list[float], stall_ms: list[float], every_lag: list[float]) -> dict:
    """Median flush time; per flush the longest stall: median, 90th percentile and max over the flushes;
    99th percentile of every tick's lateness."""
    stall_ms = sorted(stall_ms)
    every_lag = sorted(every_lag)
    return {"flush_ms": statistics.median(flush_ms), "stall_median_ms": statistics.median(stall_ms),
            "stall_p90_ms": stall_ms[int(0.9 * (len(stall_ms) - 1))], "stall_max_ms": stall_ms[-1],
            "tick_p99_ms": every_lag[int(0.99 * (len(every_lag) - 1))] * 1000}


async def idle(rounds: int, seconds: float = 0.01) -> dict:
    """The same measurement with no flush (the loop and machine's own noise), `seconds` per round."""
    stall_ms, every_lag = [], []
    for _ in range(rounds):
        stop, lags = asyncio.Event(), []
        tick = asyncio.create_task(ticker(stop, lags))
        await asyncio.sleep(0.005)
        lags.clear()
        await asyncio.sleep(seconds)
        stop.set()
        await tick
        stall_ms.append(max(lags, default=0.0) * 1000)
        every_lag += lags
    return summary([seconds * 1000], stall_ms, every_lag)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=5000, help="records per flush")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--before", default=None, help="git revision whose router/predlog.py to compare against")
    args = p.parse_args(argv)
    records = [record(i) for i in range(args.records)]
    impls = {"after": ROOT / "router" / "predlog.py"}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            before = Path(tmp) / "predlog_before.py"
            before.write_bytes(subprocess.run(["git", "show", f"{args.before}:router/predlog.py"], cwd=ROOT,
                                              check=True, capture_output=True).stdout)
            impls = {"before": before, **impls}
        classes = {k: load(v, f"predlog_{k}") for k, v in impls.items()}
        print(f"{args.records} records per flush, {args.rounds} rounds; stall = a flush's longest event-loop "
              f"stall (median / p90 / max over flushes), tick p99 = 99th percentile of every tick's lateness")
        head = ("flush ms", "stall p50", "stall p90", "stall max", "tick p99")
        print(f"{'case':20} {'impl':7} " + " ".join(f"{h:>10}" for h in head))
        keys = ("flush_ms", "stall_median_ms", "stall_p90_ms", "stall_max_ms", "tick_p99_ms")

        def row(case: str, name: str, r: dict) -> None:
            print(f"{case:20} {name:7} " + " ".join(f"{r[k]:10.2f}" for k in keys))
        row("no flush (idle)", "-", asyncio.run(idle(args.rounds)))
        results = {}
        for case, max_bytes in (("one file (64 MiB)", 64 << 20), ("rotating (256 KiB)", 256 << 10)):
            for name, cls in classes.items():
                d = Path(tmp) / f"{name}-{max_bytes}"
                results[case, name] = asyncio.run(measure(cls, d, records, args.rounds, max_bytes))
                row(case, name, results[case, name])
        if "before" in classes:
            for case in ("one file (64 MiB)", "rotating (256 KiB)"):
                b, a = results[case, "before"], results[case, "after"]
                print(f"{case}, after/before: " + ", ".join(f"{h} {a[k] / b[k]:.2f}" for h, k in zip(head, keys)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
