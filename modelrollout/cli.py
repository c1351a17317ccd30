"""`modelrollout` — one command for every role: the router, the controller, local runs and the tools.

Each subcommand lives in the module that owns it and exposes `main(argv) -> int`; this file only
dispatches, so `modelrollout router` and `python -m router.server` are the same program.
"""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line help, argv prefix passed before the user's arguments)
COMMANDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "demo": ("modelrollout.demo", "run two example rollouts locally (one promoted, one rolled back) and write a report", ()),
    "run": ("modelrollout.local", "run the rollouts of a YAML file with no cluster (`run FILE --local`)", ()),
    "report": ("modelrollout.report", "render the HTML report of a finished run or a prediction log", ()),
    "replay": ("modelrollout.replay", "backtest a rollout policy on a recorded prediction log", ()),
    "log": ("modelrollout.logtool", "prediction log maintenance: `log erase` removes one subject's records", ()),
    "analyze": ("modelrollout.analyze", "compare two data files with the drift statistics", ()),
    "router": ("router.server", "serve the data plane (split, mirror, interleave, record)", ()),
    "controller": ("controller.kube", "run the Kubernetes controller for ModelRollout resources", ()),
    "lint": ("modelrollout.plugin", "validate a ModelRollout YAML offline", ("lint",)),
    "status": ("modelrollout.plugin", "show a rollout in the cluster (same as kubectl modelrollout status)", ("status",)),
    "list": ("modelrollout.plugin", "list rollouts in the cluster", ("list",)),
    "promote": ("modelrollout.plugin", "promote a rollout to its next step (--full: to the end)", ("promote",)),
    "abort": ("modelrollout.plugin", "roll a rollout back now", ("abort",)),
    "pause": ("modelrollout.plugin", "pause a rollout", ("pause",)),
    "resume": ("modelrollout.plugin", "resume a paused rollout", ("resume",)),
    "retry": ("modelrollout.plugin", "restart an aborted or rolled back rollout from step 0", ("retry",)),
    "history": ("modelrollout.plugin", "show a rollout's decisions", ("history",)),
    "dashboard": ("modelrollout.plugin", "serve a live web UI of the rollouts in the cluster on 127.0.0.1",
                  ("dashboard",)),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: modelrollout COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_, _) in COMMANDS.items()]
    lines += ["", "`modelrollout COMMAND --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(version("modelrollout"))
        except PackageNotFoundError:
            print("modelrollout (not installed)")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"modelrollout: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, prefix = COMMANDS[name]
    if name == "router" and "--kube" in rest:
        # Same router, routing read from ModelRollout status through the Kubernetes API.
        module_name = "router.kube_source"
    module = importlib.import_module(module_name)
    code = module.main([*prefix, *rest])
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
