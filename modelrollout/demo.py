"""`modelrollout demo`: two rollouts side by side on this machine — a healthy candidate promoted, a drifting one
rolled back — with a live view, ending in an HTML report.

It starts real example models (`modelrollout.models.scorer`: the baseline, a retrained candidate with the same score
distribution, and one whose scores drift by one standard deviation) on free loopback ports, the local runtime
(`modelrollout.local`) and one traffic generator per rollout (`modelrollout.models.traffic`), then runs the rollouts of
`modelrollout/demo_data/rollouts.yaml` (about two minutes; `--fast`: about 30 seconds). Exit 0 when the healthy
candidate was promoted and the drifting one rolled back.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from policies.api import Phase
from policies.spec import Rollout, load_documents, parse_rollout

EXPECTED = {"fraud-healthy": Phase.PROMOTED, "fraud-drifting": Phase.ROLLED_BACK}
# version -> scorer arguments (same mean and spread; v3 shifted by one standard deviation)
MODELS = {"v1": ["--seed", "0"], "v2": ["--seed", "1"], "v3": ["--seed", "1", "--shift", "0.1"]}
RPS = {"fast": 200, "full": 120}


def demo_rollouts(fast: bool, urls: dict[str, str]) -> list[Rollout]:
    """The demo YAML with every model URL pointed at the process serving that version."""
    name = "rollouts-fast.yaml" if fast else "rollouts.yaml"
    text = resources.files("modelrollout.demo_data").joinpath(name).read_text(encoding="utf-8")
    docs = load_documents(text, f"modelrollout/demo_data/{name}")
    for doc in docs:
        for arm in ("baseline", "candidate"):
            ref = doc["spec"][arm]
            ref["url"] = urls[ref["version"]]
    return [parse_rollout(d) for d in docs]


def start_models(log_dir: Path) -> dict[str, Any]:
    from modelrollout.models.proc import start

    procs: dict[str, Any] = {}
    try:
        for version, extra in MODELS.items():
            procs[version] = start("modelrollout.models.scorer", ["--version", version, *extra], log_dir=log_dir)
    except Exception:
        stop_all(procs.values())
        raise
    return procs


def start_traffic(router_url: str, names: list[str], rps: float, log_dir: Path) -> list[subprocess.Popen]:
    out = []
    for i, name in enumerate(names):
        log = open(log_dir / f"traffic-{name}.log", "wb")
        out.append(subprocess.Popen(
            [sys.executable, "-m", "modelrollout.models.traffic", "--url", f"{router_url}/v1/rollouts/{name}",
             "--rps", str(rps), "--duration", "3600", "--users", "2000", "--seed", str(i + 1),
             "--concurrency", "32", "--timeout", "5"],
            stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return out


def stop_all(procs) -> None:
    from modelrollout.models.proc import stop_popen

    for p in procs:
        if isinstance(p, subprocess.Popen):
            stop_popen(p, signal.SIGTERM, 5)
        else:
            p.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modelrollout demo", description=__doc__.split("\n")[0])
    p.add_argument("--fast", action="store_true", help="short steps: about 30 seconds instead of two minutes")
    p.add_argument("--report", type=Path, default=Path("modelrollout-report.html"),
                   help="HTML report to write (default ./modelrollout-report.html)")
    p.add_argument("--no-live", action="store_true", help="plain lines instead of the live view "
                                                          "(automatic when stdout is not a terminal)")
    p.add_argument("--port", type=int, default=None, help="router port (default: a free one)")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="keep model/traffic output, the prediction log and run.json here (default: a temp dir)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    from modelrollout.local import LocalRun, RunOptions
    from modelrollout.models.proc import free_port

    tmp = None
    if args.log_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="modelrollout-demo-")
        log_dir = Path(tmp.name)
    else:
        log_dir = args.log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
    live = not args.no_live and sys.stdout.isatty()
    port = args.port or free_port()
    mode = "fast" if args.fast else "full"
    print(f"starting example models (baseline v1, healthy v2, drifting v3) — logs in {log_dir}", flush=True)
    models = start_models(log_dir / "models")
    traffic: list[subprocess.Popen] = []
    try:
        rollouts = demo_rollouts(args.fast, {v: proc.url for v, proc in models.items()})
        options = RunOptions(port=port, timeout=90.0 if args.fast else 300.0, log_dir=log_dir / "predictions",
                             record=log_dir / "run.json", report=args.report, quiet=live)
        view = None
        listeners = []
        if live:
            from modelrollout.view import LiveView

            view = LiveView(time.time(), "modelrollout demo")
            listeners.append(view)
        run = LocalRun(rollouts, options, source_name=f"modelrollout demo ({mode})", listeners=listeners)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, run.request_stop)

        def on_ready() -> None:
            traffic.extend(start_traffic(run.router.url, [r.spec.name for r in rollouts], RPS[mode], log_dir))
            if not live:
                print(f"router on {run.router.url}; traffic {RPS[mode]} requests/s per rollout", flush=True)

        if view is not None:
            with view:
                code = run.run(on_ready=on_ready)
        else:
            code = run.run(on_ready=on_ready)
    finally:
        stop_all(traffic)
        stop_all(models.values())
    phases = {t.spec.name: t.status.get("phase") for t in run.tracked}
    ok = all(phases.get(name) == phase for name, phase in EXPECTED.items())
    for t in run.tracked:
        want = EXPECTED.get(t.spec.name)
        mark = "as expected" if phases[t.spec.name] == want else f"expected {want}"
        print(f"{t.spec.key}: {phases[t.spec.name]} ({mark}) — {t.status.get('message', '')}")
    print(f"report: {args.report.resolve()}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if ok else (code or 1)


if __name__ == "__main__":
    sys.exit(main())
