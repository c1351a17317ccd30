"""`modelrollout run FILE --local`: run rollouts with no cluster — router, controller core and policies in
one process.

The router (`router.app`) serves the same HTTP API as in the cluster on 127.0.0.1 from a thread of its own;
the controller loop runs `controller.core.reconcile_step` for every rollout on a logical clock that ticks at
the router's bucket boundaries, keeps each status dict in memory (the store) and pushes every new routing to
the router through `StaticSource.update`. Because decisions are taken at bucket boundaries, `modelrollout
replay` can rebuild the exact same windows from the prediction log.

Exit codes: 0 every rollout Promoted, 3 one was rolled back (or failed), 4 timed out or waiting on a manual
pause, 2 invalid spec or arguments.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from policies.api import Phase
from policies.errors import ToolError, exit_code as error_exit_code
from policies.spec import Rollout, RolloutSpec, SpecError, load_documents, parse_rollout

log = logging.getLogger("modelrollout.local")

EXIT_PROMOTED, EXIT_INVALID, EXIT_ROLLED_BACK, EXIT_STUCK = 0, 2, 3, 4
GRACE_SECONDS = 0.4
"""After a bucket closes, wait this long for in-flight requests to land in it before analysing."""
ROUTER_READY_SECONDS = 60.0
"""How long `run` waits for the router to answer its first summaries request before ticking anyway."""
MAX_BUCKET_SECONDS = 5.0


class LocalError(ToolError):
    """A local run that cannot start (bad file, port in use); the message says what to fix."""

    exit_code = EXIT_INVALID


# --- loading ------------------------------------------------------------------------------------------

def load_rollouts(path: str | Path) -> list[Rollout]:
    """Every ModelRollout in a YAML file, exactly as `kubectl apply -f` takes it; raises SpecError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(str(path), f"cannot read: {e.strerror}") from e
    docs = load_documents(text, str(path))
    rollouts, seen = [], set()
    for i, doc in enumerate(docs):
        try:
            rollout = parse_rollout(doc)
        except SpecError as e:
            where = str(path) if len(docs) == 1 else f"{path}, ModelRollout {i + 1} of {len(docs)}"
            raise SpecError(e.path, f"{e.message} (in {where})") from e
        if rollout.spec.key in seen:
            raise SpecError("metadata.name", f"duplicate rollout {rollout.spec.key} in {path}")
        seen.add(rollout.spec.key)
        rollouts.append(Rollout(rollout.spec, {}, rollout.metadata))   # a local run starts afresh
    return rollouts


def bucket_seconds(specs: Sequence[RolloutSpec]) -> float:
    """The router's summary bucket: the shortest analysis interval, at most 5 s.

    `replay` uses the same rule, so the windows it rebuilds from a log are the ones analysed live."""
    return min([MAX_BUCKET_SECONDS] + [s.analysis.interval for s in specs])


# --- the router in a thread ---------------------------------------------------------------------------

class RouterThread:
    """`router.app.create_app(StaticSource)` served by uvicorn on its own event loop and thread."""

    def __init__(self, rollouts: Sequence[Rollout], host: str, port: int, bucket: float,
                 log_dir: Path | None):
        from router.settings import RouterSettings
        from router.source import StaticSource

        self.host, self.port = host, port
        # The worker at normal priority: here models, traffic and controller share the machine, and the
        # decisions must not wait for records a busy machine never gives an idle worker the CPU to fold.
        self.settings = RouterSettings(replica_id="local", bucket_seconds=bucket, log_dir=log_dir,
                                       worker_priority="normal",
                                       retention_seconds=max(900.0, 4 * bucket))
        self.source = StaticSource(rollouts)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="modelrollout-router", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        import uvicorn

        from router.app import create_app

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            app = create_app(self.source, self.settings)
            config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning",
                                    access_log=False, lifespan="on")
            self.server = uvicorn.Server(config)
            self.loop.run_until_complete(self.server.serve())
        except BaseException as e:  # noqa: BLE001 - reported to the main thread by start()
            self.error = e
        finally:
            self.loop.close()

    def start(self, timeout: float = 20.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server is not None and self.server.started:
                return
            if not self.thread.is_alive():
                break
            time.sleep(0.02)
        if self.error is None or isinstance(self.error, SystemExit):   # uvicorn exits when it cannot bind
            why = "could not listen there (is the port in use? pass another --port)"
        else:
            why = f"{type(self.error).__name__}: {self.error}"
        raise LocalError(f"router did not start on {self.url}: {why}")

    def update(self, rollouts: Sequence[Rollout]) -> None:
        """Hand the router a new set of rollouts (thread-safe: runs on the router's loop)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.source.update, list(rollouts))

    def stop(self, timeout: float = 20.0) -> None:
        """Stop serving; the app's shutdown drains shadow calls and flushes the prediction log."""
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout)


# --- the controller loop ------------------------------------------------------------------------------

@dataclass
class Tracked:
    """One rollout as the local store holds it."""
    rollout: Rollout
    status: dict = field(default_factory=dict)
    started: float | None = None

    @property
    def spec(self) -> RolloutSpec:
        return self.rollout.spec

    def current(self) -> Rollout:
        return Rollout(self.spec, self.status, self.rollout.metadata)


def waiting_on_user(spec: RolloutSpec, status: Mapping[str, Any]) -> bool:
    """Paused in a way only a person can end (a pause step without duration, a check or user pause)."""
    if status.get("phase") != Phase.PAUSED:
        return False
    if status.get("pauseReason") != "step":
        return True
    step = int(status.get("currentStep") or 0)
    return step >= len(spec.steps) or spec.steps[step].duration is None


def exit_code(tracked: Sequence[Tracked]) -> int:
    phases = [t.status.get("phase") for t in tracked]
    if any(p in (Phase.ROLLED_BACK, Phase.FAILED) for p in phases):
        return EXIT_ROLLED_BACK
    if all(p in (Phase.PROMOTED, Phase.STABLE) for p in phases):
        return EXIT_PROMOTED        # a steady state (no candidate) has nothing left to do either
    return EXIT_STUCK


def deciding_check(spec: RolloutSpec, status: Mapping[str, Any]):
    """The check behind a rollback or pause: the failing (else inconclusive) one with the longest streak."""
    from policies.status import RolloutStatus, Verdict

    s = RolloutStatus.from_status(status)
    failing = [c for c in s.checks if c.verdict is Verdict.FAIL]
    if failing:
        return max(failing, key=lambda c: c.failures)
    stuck = [c for c in s.checks if c.verdict is Verdict.INCONCLUSIVE]
    return max(stuck, key=lambda c: c.inconclusive) if stuck and s.pause_reason == "inconclusive" else None


class CapturingSource:
    """An evidence source that keeps each rollout's last observations (for the run record)."""

    def __init__(self, inner):
        self.inner = inner
        self.last: dict[str, Any] = {}

    def gather(self, spec: RolloutSpec, start: float, end: float):
        evidence = self.inner.gather(spec, start, end)
        self.last[spec.key] = evidence.observations
        return evidence


Listener = Callable[[str, "Tracked", dict, dict, Any], None]
"""listener(kind, tracked, old_status, new_status, observations) with kind "transition" or "window"."""


class LocalController:
    """Reconciles every tracked rollout at each tick; calls `listeners` on transitions and windows."""

    def __init__(self, tracked: Sequence[Tracked], router: RouterThread, bucket: float,
                 listeners: Sequence[Listener] = (), prometheus_url: str | None = None,
                 config_maps: Mapping[tuple[str, str], Mapping[str, Any]] | None = None):
        import httpx

        from controller.evidence import RouterSummaries, http_sources
        from controller.golden import GoldenRunner
        from modelrollout.local_golden import LocalConfigMaps

        self.tracked = list(tracked)
        self.router = router
        self.bucket = bucket
        self.listeners = list(listeners)
        self.http = httpx.Client(timeout=5.0)
        self.prometheus_http = httpx.Client(timeout=5.0, verify=False)   # as the controller's
        self.summaries = RouterSummaries(self.http, lambda spec: [router.url])
        self.evidence = CapturingSource(http_sources(self.http, lambda spec: [router.url], prometheus_url,
                                                     self.prometheus_http))
        self.golden = GoldenRunner(self.http, lambda spec: [router.url], LocalConfigMaps(config_maps or {}))
        """Golden steps: the same runner as the controller's, against this router and the file's ConfigMaps."""
        self.stop = threading.Event()
        self.notifier = None
        self.wait_for_traffic = True
        """Start a rollout's clock at the first tick after its first request (the bucket boundary after it
        when the loop keeps pace; ticks start once the router answers summaries), so steps and
        inconclusive limits count time with traffic, not the time a client took to start."""

    def publish(self) -> None:
        self.router.update([t.current() for t in self.tracked])

    def tick(self, now: float) -> None:
        """One reconcile of every rollout as of logical time `now` (a bucket boundary)."""
        from controller.core import reconcile_step

        changed = False
        for t in self.tracked:
            if _terminal(t.status):
                continue
            if not t.status and self.wait_for_traffic and not self.traffic_seen(t.spec, now):
                continue
            old = t.status
            decision = reconcile_step(t.current(), now, self.evidence, golden=self.golden)
            self.carry_out(t, decision.actions, now)
            new = decision.status.to_status()
            if t.started is None:
                t.started = now
            t.status = new
            if new.get("lastAnalysisAt") != old.get("lastAnalysisAt") and new.get("revision") == old.get("revision"):
                self._notify("window", t, old, new, self.evidence.last.get(t.spec.key))
            if _transitioned(old, new):
                self._notify("transition", t, old, new, None)
            changed = changed or new.get("routing") != old.get("routing") or _judging(new) != _judging(old)
        if changed:
            self.publish()

    def carry_out(self, t: Tracked, actions: Sequence[Any], now: float) -> None:
        """Notifications go to the spec's webhooks; Events are logged (routing is published after the tick)."""
        from policies.machine import Emit, Notify

        for a in actions:
            if isinstance(a, Notify) and self.notifier is not None:
                self.notifier.notify(t.spec, a.phase, a.severity, a.message, now)
            elif isinstance(a, Emit):
                (log.warning if a.type == "Warning" else log.info)("%s event %s: %s", t.spec.key, a.reason, a.message)

    def traffic_seen(self, spec: RolloutSpec, now: float) -> bool:
        """Whether the router has answered a prediction for this rollout in a bucket that ended by `now`."""
        body = self.summaries.fetch(self.router.url, spec, now - 60.0, now)
        if not isinstance(body, dict):
            return False   # a Failure: no answer yet
        return any(((w.get(arm) or {}).get("requests") or 0) > 0
                   for w in body["windows"] if isinstance(w, dict) for arm in ("baseline", "candidate"))

    def close(self) -> None:
        self.golden.close()
        self.http.close()
        self.prometheus_http.close()

    def _notify(self, kind: str, t: Tracked, old: dict, new: dict, obs: Any) -> None:
        for listener in self.listeners:
            listener(kind, t, old, new, obs)

    def done(self) -> bool:
        return bool(self.tracked) and all(_terminal(t.status) or waiting_on_user(t.spec, t.status)
                                          for t in self.tracked)

    def wait_for_router(self, timeout: float = ROUTER_READY_SECONDS) -> None:
        """Wait until the router answers a summaries request (its worker process, which keeps the summaries,
        takes a second or two to start, longer on a busy machine): the first tick then starts no rollout
        late, and no tick waits on it."""
        if not self.tracked:
            return
        spec = self.tracked[0].spec
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            now = time.time()
            if isinstance(self.summaries.fetch(self.router.url, spec, now - 1.0, now), dict):
                return
            self.stop.wait(0.1)
        log.warning("the router did not answer summaries within %gs; starting anyway", timeout)

    def run(self, timeout: float | None) -> bool:
        """Tick at every bucket boundary until every rollout is finished (True) or time is up (False).

        A tick that ends later than the next boundary plus the grace (a busy machine) does not make the loop
        judge the boundaries it missed one by one: their windows would be judged after the fact, under the
        routing of their time, and a rollout would start in the past with its routing published only now. The
        loop goes on from the last boundary that has passed: the next window of each rollout covers the
        missed buckets."""
        deadline = None if timeout is None else time.time() + timeout
        now = math.floor(time.time() / self.bucket) * self.bucket
        self.tick(now)
        self.publish()
        while not self.done():
            now += self.bucket
            latest = math.floor((time.time() - GRACE_SECONDS) / self.bucket) * self.bucket
            if latest > now:
                log.warning("the controller loop fell %gs behind (a busy machine): the next windows cover the "
                            "buckets it skipped, and a replay of this run may judge them one by one", latest - now)
                now = latest
            wake = now + GRACE_SECONDS
            if deadline is not None and wake > deadline:
                return False
            if self.stop.wait(max(0.0, wake - time.time())):
                return False
            self.tick(now)
        return True


_DECIDED_BY_A_CHECK = (Phase.ROLLED_BACK, Phase.PAUSED, Phase.FAILED)
"""Phases a check may have caused (the run's output names the check)."""


def _terminal(status: Mapping[str, Any]) -> bool:
    """Finished: a terminal phase, and no promoted version still judged on delayed labels (postPromotion)."""
    if status.get("phase") not in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.STABLE):
        return False
    pp = status.get("postPromotion")
    return not (isinstance(pp, Mapping) and pp.get("state") == "Judging")


def _judging(status: Mapping[str, Any]) -> Any:
    """What the routers serve differently after a promotion (both arms while judging, postPromotion)."""
    pp = status.get("postPromotion")
    return pp.get("state") if isinstance(pp, Mapping) else None


def _transitioned(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return (old.get("phase"), old.get("currentStep"), old.get("routing"), _judging(old)) != \
        (new.get("phase"), new.get("currentStep"), new.get("routing"), _judging(new))


# --- output -------------------------------------------------------------------------------------------

def describe_route(status: Mapping[str, Any]) -> str:
    r = status.get("routing") or {}
    if status.get("phase") == Phase.PROMOTED:
        return "candidate 100%"
    if status.get("phase") == Phase.STABLE:
        return "stable 100%"
    if r.get("shadow"):
        return "shadow (mirrored)"
    if r.get("interleave"):
        return "interleaved"
    return f"candidate {r.get('candidateWeight', 0)}%"


def transition_line(t: Tracked, new: Mapping[str, Any], started: float, now: float) -> str:
    """`[  6.0s] default/fraud  Progressing  step 2/3  candidate 50%  — why (check = value vs threshold)`."""
    step = int(new.get("currentStep") or 0)
    n = len(t.spec.steps)
    step_text = f"step {min(step + 1, n)}/{n}"
    line = (f"[{now - started:6.1f}s] {t.spec.key}  {new.get('phase')}  {step_text}  {describe_route(new)}"
            f"  — {new.get('message', '')}")
    if new.get("phase") in _DECIDED_BY_A_CHECK:
        check = deciding_check(t.spec, new)
        if check is not None:
            line += f" [check {check.name}: value {_num(check.value)}, threshold {_num(check.threshold)}]"
    return line


def window_line(t: Tracked, new: Mapping[str, Any], started: float, now: float) -> str:
    parts = []
    for c in new.get("checks", []):
        parts.append(f"{c['name']}={_num(c.get('value'))}/{_num(c.get('threshold'))} {c.get('verdict')}")
    return f"[{now - started:6.1f}s] {t.spec.key}  window: " + ", ".join(parts)


def _num(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Printer:
    """Prints transitions (and, verbose, every window) as plain lines; flushes so pipes see them live."""

    def __init__(self, started: float, verbose: bool = False, stream=None):
        self.started, self.verbose = started, verbose
        self.stream = stream or sys.stdout

    def __call__(self, kind: str, t: Tracked, old: dict, new: dict, obs: Any) -> None:
        now = time.time()
        if kind == "transition":
            print(transition_line(t, new, self.started, now), file=self.stream, flush=True)
        elif self.verbose:
            print(window_line(t, new, self.started, now), file=self.stream, flush=True)


class Recording:
    """Feeds the run record (RUN.json) from the controller's transitions and windows."""

    def __init__(self, recorder):
        self.recorder = recorder

    def __call__(self, kind: str, t: Tracked, old: dict, new: dict, obs: Any) -> None:
        from policies.status import RolloutStatus, parse_time

        now = parse_time(new.get("lastAnalysisAt")) if kind == "window" else _status_time(new)
        if now is None:
            now = time.time()
        if kind == "window":
            s = RolloutStatus.from_status(new)
            start = obs.window_start if obs is not None else now - t.spec.analysis.interval
            self.recorder.window(t.spec.key, start=start, end=now, now=now, results=s.checks, status=new,
                                 baseline=getattr(obs, "baseline", None), candidate=getattr(obs, "candidate", None))
        else:
            check = deciding_check(t.spec, new) if new.get("phase") in _DECIDED_BY_A_CHECK else None
            self.recorder.transition(t.spec.key, now, new, new.get("message", ""), check)


def _status_time(status: Mapping[str, Any]) -> float | None:
    from policies.status import parse_time

    hist = status.get("history") or []
    return parse_time(hist[-1].get("time")) if hist else None


# --- the run ------------------------------------------------------------------------------------------

@dataclass
class RunOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    timeout: float | None = None
    log_dir: Path | None = None
    record: Path | None = None
    report: Path | None = None
    prometheus_url: str | None = None
    verbose: bool = False
    quiet: bool = False
    wait_for_traffic: bool = True
    config_maps: dict = field(default_factory=dict)
    """`{(namespace, name): data}`: the ConfigMaps of the rollout file, for golden steps."""


class LocalRun:
    """Router + controller for a set of rollouts; `run()` blocks until they finish and returns the exit code.

    Embedding code (the demo) may add listeners and read `tracked` while it runs."""

    def __init__(self, rollouts: Sequence[Rollout], options: RunOptions, source_name: str = "<rollouts>",
                 listeners: Sequence[Listener] = ()):
        from modelrollout.report.run import RunRecorder

        self.options = options
        self.started = time.time()
        self.tracked = [Tracked(r) for r in rollouts]
        self.bucket = bucket_seconds([r.spec for r in rollouts])
        self.recorder = RunRecorder(source_name, self.started)
        for r in rollouts:
            self.recorder.add_rollout(r.spec)
        self.router = RouterThread(rollouts, options.host, options.port, self.bucket, options.log_dir)
        own = [Recording(self.recorder)]
        if not options.quiet:
            own.append(Printer(self.started, options.verbose))
        self.controller = LocalController(self.tracked, self.router, self.bucket, [*own, *listeners],
                                          options.prometheus_url, options.config_maps)
        self.controller.wait_for_traffic = options.wait_for_traffic
        self.timed_out = False

    def request_stop(self, *_: Any) -> None:
        self.controller.stop.set()

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        """Serve and reconcile until done; `on_ready()` runs once the router answers (start traffic there)."""
        from controller.notify import Notifier

        self.router.start()
        if any(t.spec.notifications for t in self.tracked):
            self.controller.notifier = Notifier().start()
        try:
            self.controller.wait_for_router()
            if on_ready is not None:
                on_ready()
            finished = self.controller.run(self.options.timeout)
            self.timed_out = not finished and not self.controller.stop.is_set()
        finally:
            self.router.stop()
            self.controller.close()
            if self.controller.notifier is not None:
                self.controller.notifier.close(drain=5.0)
        code = exit_code(self.tracked)
        self.recorder.finished = time.time()
        self.recorder.exit_code = code
        for t in self.tracked:
            self.recorder.finish(t.spec.key, t.status)
        self._write_outputs()
        return code

    def _write_outputs(self) -> None:
        from modelrollout.report.page import write_report

        o = self.options
        record = o.record or (o.log_dir / "run.json" if o.log_dir else None)
        if record is not None:
            self.recorder.write(record)
        if o.report is not None:
            write_report(self.recorder.to_dict(), o.report)

    def final(self) -> dict[str, Any]:
        return {"exit_code": exit_code(self.tracked), "timed_out": self.timed_out,
                "rollouts": {t.spec.key: t.status for t in self.tracked}}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="modelrollout run",
        description="Run the ModelRollouts of FILE with no cluster: router, controller and policies in one "
                    "process. Send traffic to http://HOST:PORT/v1/rollouts/NAME/predict.",
        epilog="exit codes: 0 promoted, 3 rolled back, 4 timed out or waiting on a manual pause, 2 invalid spec")
    p.add_argument("file", help="YAML with one or more ModelRollout documents (what `kubectl apply -f` takes)")
    p.add_argument("--local", action="store_true", help="run without a cluster (required: the cluster way is "
                                                        "`kubectl apply -f FILE`)")
    p.add_argument("--host", default="127.0.0.1", help="router address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="router port (default 8080)")
    p.add_argument("--timeout", type=str, default=None, help="give up after this long (30s, 5m): exit 4")
    p.add_argument("--log-dir", type=Path, default=None, help="write the prediction log and run.json here")
    p.add_argument("--record", type=Path, default=None, help="write the run record (RUN.json) here")
    p.add_argument("--report", type=Path, default=None, help="write the HTML report here when done")
    p.add_argument("--prometheus-url", default=None, help="Prometheus for `prometheus:` checks")
    p.add_argument("--start-now", action="store_true",
                   help="start the rollouts at once instead of at their first request")
    p.add_argument("--json", action="store_true", help="print the final statuses as one JSON object last")
    p.add_argument("-v", "--verbose", action="store_true", help="also print every analysis window")
    return p.parse_args(list(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except SystemExit as e:
        return EXIT_INVALID if e.code else 0
    if not args.local:
        print("modelrollout run: only --local is supported here; in a cluster, `kubectl apply -f "
              f"{args.file}` and the controller runs it", file=sys.stderr)
        return EXIT_INVALID
    if not 0 < args.port < 65536:
        print(f"modelrollout run: --port: expected 1-65535, got {args.port}", file=sys.stderr)
        return EXIT_INVALID
    try:
        from policies.spec import parse_duration

        timeout = parse_duration(args.timeout, "--timeout") if args.timeout is not None else None
        rollouts = load_rollouts(args.file)
        from modelrollout.local_golden import config_maps

        maps = config_maps(args.file)
    except SpecError as e:
        what = "" if e.path.startswith("--") else "invalid spec: "
        print(f"modelrollout run: {what}{e}", file=sys.stderr)
        if args.json:
            print(json.dumps({"exit_code": EXIT_INVALID, "error": str(e), "path": e.path, "rollouts": {}}))
        return EXIT_INVALID
    options = RunOptions(args.host, args.port, timeout, args.log_dir, args.record, args.report,
                         args.prometheus_url, args.verbose, quiet=False, wait_for_traffic=not args.start_now,
                         config_maps=maps)
    run = LocalRun(rollouts, options, source_name=str(args.file))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, run.request_stop)
    print(f"router listening on http://{args.host}:{args.port}  "
          f"(POST /v1/rollouts/NAME/predict; {len(rollouts)} rollout(s))", flush=True)
    if not args.start_now:
        print("each rollout starts with its first request: " + ", ".join(
            f"{r.spec.key} at /v1/rollouts/{r.spec.name}/predict" for r in rollouts), flush=True)
    try:
        code = run.run()
    except LocalError as e:
        print(f"modelrollout run: {e}", file=sys.stderr)
        return error_exit_code(e)
    for t in run.tracked:
        print(f"{t.spec.key}: {t.status.get('phase')} — {t.status.get('message', '')}", flush=True)
    if run.timed_out:
        print(f"modelrollout run: timed out after {args.timeout}", file=sys.stderr)
    if args.report:
        print(f"report: {args.report.resolve()}")
    if args.json:
        print(json.dumps(run.final(), default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
