"""`kubectl modelrollout` (and `modelrollout lint|status|list|...`): inspect and steer rollouts by hand.

Reading commands (list, status, history) render the CR as the controller wrote it. Steering commands
(promote, abort, pause, resume, retry) only set the `modelrollout.io/command` annotation to
`{"verb", "full", "id"}`; the controller applies each id once, so a command repeated by a retrying
client is still applied once. `lint` works offline: the CRD's schema plus the shared spec parser.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from modelrollout.plugin.commands import preview
from modelrollout.plugin.kube import PluginError
from policies.api import API_VERSION, COMMAND_ANNOTATION, KIND
from policies.errors import exit_code

VERBS = {
    "promote": "advance to the next step (--full: promote to 100%% now)",
    "abort": "roll back now: candidate weight 0, mirroring off",
    "pause": "hold the current step",
    "resume": "continue a paused rollout",
    "retry": "restart a rolled back or aborted rollout from step 0",
}


def _parser() -> argparse.ArgumentParser:
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("-n", "--namespace", help="namespace of the rollout (default: the context's)")
    conn.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    conn.add_argument("--context", help="kubeconfig context to use")
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("-o", "--output", choices=("json", "yaml"), help="print the raw object instead of tables")

    p = argparse.ArgumentParser(prog="kubectl modelrollout",
                                description=f"Inspect and steer {KIND}s ({API_VERSION}).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    s = sub.add_parser("list", parents=[conn, out], help="list rollouts")
    s.add_argument("-A", "--all-namespaces", action="store_true", help="list rollouts of every namespace")
    s = sub.add_parser("status", parents=[conn, out], help="show a rollout: steps, checks, conditions, history")
    s.add_argument("name")
    s.add_argument("-w", "--watch", action="store_true",
                   help="redraw on every change until the rollout is Promoted, RolledBack or Failed")
    s.add_argument("--timeout", type=float, default=None, help="with --watch: stop after this many seconds")
    s = sub.add_parser("history", parents=[conn, out], help="show a rollout's transitions")
    s.add_argument("name")
    for verb, help_ in VERBS.items():
        s = sub.add_parser(verb, parents=[conn, out], help=help_)
        s.add_argument("name")
        if verb == "promote":
            s.add_argument("--full", action="store_true", help="skip the remaining steps and analysis")
        s.add_argument("--force", action="store_true",
                       help="send the command even if the rollout's current status says it would be ignored")
    s = sub.add_parser("report", parents=[conn], help="write the self-contained HTML report of a rollout")
    s.add_argument("name")
    s.add_argument("-o", "--output", default=None, metavar="FILE", help="HTML file (default: NAME-report.html)")
    s.add_argument("--router", action="append", default=[], metavar="URL",
                   help="a router replica to read per-version numbers from (repeatable; e.g. after "
                        "`kubectl port-forward svc/modelrollout-router 8080`)")
    s.add_argument("--router-token-file", metavar="FILE",
                   help="a token for the routers' audience (modelrollout-router), for routers that run with "
                        "--internal-auth kubernetes")
    s.add_argument("--log", action="append", default=[], metavar="PATH",
                   help="a router's prediction log (file or directory; repeatable) to read per-version numbers from")
    s = sub.add_parser("dashboard", parents=[conn], help="serve a live web UI of the rollouts on 127.0.0.1")
    s.add_argument("-A", "--all-namespaces", action="store_true", help="show rollouts of every namespace")
    s.add_argument("--port", type=int, default=3200, help="port on 127.0.0.1 (0: any free port; default 3200)")
    s.add_argument("--allow-actions", action="store_true",
                   help="show promote/abort/pause/resume/retry buttons (default: read-only)")
    s = sub.add_parser("lint", parents=[out], help="validate ModelRollout YAML offline (schema and semantics)")
    s.add_argument("files", nargs="+", metavar="FILE", help="YAML file(s); - reads stdin")
    s.add_argument("--rate", type=float, default=None, metavar="R",
                   help="traffic in requests per second: warn when a step is too short to tell a check's tolerance "
                        "from 1.5x of it (power 0.8), or a window too short for minSamples")
    return p


def _console():
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=200, soft_wrap=False)


def _dump(obj: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(obj, indent=2, sort_keys=False))
    else:
        import yaml

        print(yaml.safe_dump(obj, sort_keys=False), end="")


def _connect(args):
    from modelrollout.plugin.kube import connect

    return connect(args.kubeconfig, args.context, args.namespace)


def cmd_list(args) -> int:
    from modelrollout.plugin.kube import list_rollouts
    from modelrollout.plugin.render import list_table

    conn = _connect(args)
    result = list_rollouts(conn, args.all_namespaces)
    items = sorted(result.get("items", []), key=lambda o: (o["metadata"].get("namespace", ""),
                                                           o["metadata"]["name"]))
    if args.output:
        _dump(result, args.output)
        return 0
    if not items:
        where = "any namespace" if args.all_namespaces else f"namespace {conn.namespace!r}"
        print(f"No modelrollouts found in {where}.", file=sys.stderr)
        return 0
    _console().print(list_table(items, time.time(), args.all_namespaces))
    return 0


def cmd_status(args) -> int:
    from modelrollout.plugin.kube import get_rollout, watch_rollout
    from modelrollout.plugin.render import status_view
    from policies.status import RolloutStatus

    conn = _connect(args)
    if not args.watch:
        obj = get_rollout(conn, args.name)
        if args.output:
            _dump(obj, args.output)
        else:
            _console().print(status_view(obj, time.time()))
        return 0
    console = _console()
    try:
        for obj in watch_rollout(conn, args.name, args.timeout):
            if args.output:
                _dump(obj, args.output)
            else:
                if console.is_terminal:
                    console.clear()
                console.print(status_view(obj, time.time()))
                console.rule()
            if RolloutStatus.from_status(obj.get("status")).phase.is_terminal and obj.get("status"):
                break
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_history(args) -> int:
    from modelrollout.plugin.kube import get_rollout
    from modelrollout.plugin.render import history_table

    obj = get_rollout(_connect(args), args.name)
    history = (obj.get("status") or {}).get("history") or []
    if args.output:
        _dump(history, args.output)
        return 0
    if not history:
        print(f"modelrollout {args.name!r} has no history yet.", file=sys.stderr)
        return 0
    _console().print(history_table(obj, time.time()))
    return 0


def cmd_verb(args) -> int:
    from modelrollout.plugin.kube import get_rollout, send_command
    from modelrollout.plugin.render import weight_text
    from policies.status import RolloutStatus

    conn = _connect(args)
    full = bool(getattr(args, "full", False))
    what = f"{args.command} --full" if full else args.command
    obj = get_rollout(conn, args.name)
    rejected, expected = preview(obj, args.command, full, time.time())
    if rejected and not args.force:
        print(f"error: cannot {what} modelrollout {conn.namespace}/{args.name}: {rejected} "
              f"(--force sends it anyway)", file=sys.stderr)
        return 1
    obj, cid = send_command(conn, args.name, args.command, full)
    if args.output:
        _dump(obj, args.output)
        return 0
    st = RolloutStatus.from_status(obj.get("status"))
    now = f"{st.phase.value}, {weight_text(st)}" if obj.get("status") else "not yet seen by a controller"
    print(f"modelrollout {conn.namespace}/{args.name}: {what} sent (id {cid}).")
    if expected is not None and not rejected:
        print(f"  now: {now}; expected after the controller's next reconcile: "
              f"{expected.phase.value}, {weight_text(expected)}.")
    return 0


def cmd_report(args) -> int:
    from modelrollout.plugin.kube import get_rollout, list_events
    from modelrollout.report.cluster import add_router_summaries, record_of, rollout_record
    from modelrollout.report.page import write_report
    from policies.spec import SpecError, parse_rollout

    conn = _connect(args)
    obj = get_rollout(conn, args.name)
    try:
        events = list_events(conn, args.name)
    except PluginError as e:
        print(f"warning: the report has no Events: {e}", file=sys.stderr)
        events = []
    now = time.time()
    rec = rollout_record(obj, events, now)
    if (args.router or args.log) and rec["windows"]:
        from modelrollout.report.summaries import log_buckets, router_buckets

        try:
            spec = parse_rollout(obj).spec
        except SpecError as e:
            print(f"warning: routers not read: the spec is invalid ({e})", file=sys.stderr)
        else:
            start, end = min(w["start"] for w in rec["windows"]), max(w["end"] for w in rec["windows"])
            problems, filled = [], {}
            token = _read_token(args.router_token_file)
            sources = (("routers", args.router, lambda *a: router_buckets(*a, token=token)),
                       ("prediction log", args.log, log_buckets))
            for what, paths, read in sources:
                if paths:      # the log fills only the windows the routers no longer hold
                    buckets, trouble = read(paths, spec, start, end)
                    problems += trouble
                    filled[what] = add_router_summaries(rec, spec, buckets, only_missing=True)
            for problem in problems:
                print(f"warning: {problem}", file=sys.stderr)
            print(f"{sum(filled.values())} of {len(rec['windows'])} windows have per-version numbers ("
                  + ", ".join(f"{n} from the {what}" for what, n in filled.items()) + ")", file=sys.stderr)
    out = write_report(record_of([rec], f"{conn.namespace}/{args.name}", now),
                       args.output or f"{args.name}-report.html")
    outcome = rec.get("outcome") or {}
    line = f"{rec['key']}: {outcome.get('phase') or (obj.get('status') or {}).get('phase') or 'Pending'}"
    if outcome.get("check"):
        line += (f" (check {outcome['check']}: value {_num(outcome.get('value'))}, "
                 f"threshold {_num(outcome.get('threshold'))})")
    print(line)
    print(out.resolve())
    return 0


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as e:
        raise PluginError(f"--router-token-file {path}: cannot read: {e.strerror or e}") from e


def _num(v) -> str:
    from modelrollout.report.svg import fmt

    return fmt(v)


def cmd_dashboard(args) -> int:
    from modelrollout.dashboard import serve

    conn = _connect(args)
    return serve(conn, port=args.port, all_namespaces=args.all_namespaces, allow_actions=args.allow_actions)


def cmd_lint(args) -> int:
    from modelrollout.plugin.lint import lint_text

    problems, warnings, checked = [], [], 0
    if args.rate is not None and not (args.rate > 0 and args.rate != float("inf")):
        raise PluginError(f"--rate: expected a positive number of requests per second, got {args.rate}")
    for name in args.files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as e:
            raise PluginError(f"{name}: cannot read: {e.strerror or e}") from e
        result = lint_text(text, "<stdin>" if name == "-" else name, args.rate)
        problems += result.problems
        warnings += result.warnings
        checked += result.documents
    if args.output:
        _dump({"documents": checked, "errors": [p.to_dict() for p in problems],
               "warnings": [p.to_dict() for p in warnings]}, args.output)
    else:
        for p in problems:
            print(p, file=sys.stderr)
        for p in warnings:
            print(f"warning: {p}", file=sys.stderr)
        if not problems:
            print(f"{checked} ModelRollout document(s) valid")
        else:
            print(f"{len(problems)} error(s) in {checked} ModelRollout document(s)", file=sys.stderr)
    return 1 if problems else 0


COMMANDS = {"list": cmd_list, "status": cmd_status, "history": cmd_history, "lint": cmd_lint,
            "report": cmd_report, "dashboard": cmd_dashboard,
            **{verb: cmd_verb for verb in VERBS}}


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as e:  # --help (0) or a usage error (2, already explained by argparse)
        return int(e.code or 0)
    try:
        return COMMANDS[args.command](args)
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    except BrokenPipeError:
        return 0


__all__ = ["main", "COMMAND_ANNOTATION", "VERBS"]

if __name__ == "__main__":
    sys.exit(main())
