"""Rollouts for the router from the Kubernetes API: the router's `RoutingSource` over list+watch.

Read-only (get/list/watch on modelrollouts). A status change written by the controller (new weights)
arrives through the watch and is yielded at once, so every router replica follows within a second.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import AsyncIterator

from kubeio.watch import ListWatcher
from policies.spec import Rollout, SpecError, parse_rollout

log = logging.getLogger("modelrollout.router.kube")


def served(obj: dict) -> tuple:
    """What the router serves a ModelRollout from: its spec (by uid and generation, which the apiserver bumps
    on every spec change) and `status.routing`. The controller's other status writes (a window's verdicts)
    leave it unchanged, and the router then has nothing to redo."""
    meta = obj.get("metadata") or {}
    routing = (obj.get("status") or {}).get("routing")
    generation = meta.get("generation")
    return (meta.get("namespace"), meta.get("name"), meta.get("uid"),
            generation if generation is not None else meta.get("resourceVersion"),
            json.dumps(routing, sort_keys=True, default=str))


def parse_objects(objects: list[dict], cache: dict[str, tuple[tuple, Rollout | None]] | None = None) -> list[Rollout]:
    """Every ModelRollout that parses; invalid ones are logged (with the field path) and skipped.

    With `cache` (per "namespace/name": what it was parsed from, see `served`, and the result), an object
    served from the same spec and routing as before is not parsed again and yields the very same `Rollout`,
    which `Router.apply` keeps serving without rebuilding."""
    from router.routing import Routing

    out = []
    seen = set()
    for obj in sorted(objects, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", ""))):
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        seen.add(key)
        version = served(obj)
        if cache is not None and key in cache and cache[key][0] == version:
            rollout = cache[key][1]
        else:
            try:
                rollout = parse_rollout(obj)
                Routing.from_status(rollout.status)
            except SpecError as e:
                log.error("ModelRollout %s/%s skipped: %s", meta.get("namespace"), meta.get("name"), e)
                rollout = None
            if cache is not None:
                cache[key] = (version, rollout)
        if rollout is not None:
            out.append(rollout)
    if cache is not None:
        for key in [k for k in cache if k not in seen]:
            del cache[key]
    return out


class KubeSource:
    """`RoutingSource` over the apiserver; `namespace=None` watches every namespace."""

    def __init__(self, api_client, namespace: str | None = None, *, resync: float = 300.0):
        self.api_client, self.namespace, self.resync = api_client, namespace, resync

    async def watch(self) -> AsyncIterator[list[Rollout]]:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        stop = threading.Event()

        def poke(*_):
            loop.call_soon_threadsafe(changed.set)

        # on_resync too: a LIST with no items reports no key, and the router must still learn that the
        # (empty) set is loaded, or /readyz stays 503 until the first rollout is applied
        watcher = ListWatcher(self.api_client, self.namespace, on_change=poke, on_resync=poke, resync=self.resync)
        thread = threading.Thread(target=watcher.run, args=(stop,), name="kube-source", daemon=True)
        thread.start()
        try:
            last: list | None = None
            cache: dict[str, tuple[tuple, Rollout | None]] = {}
            while True:
                await changed.wait()
                changed.clear()
                if not watcher.synced.is_set():
                    continue
                objects = watcher.objects()
                # yield only when what the router serves differs: a resync re-reports unchanged objects, and
                # most status writes (a window's verdicts) change neither a spec nor a routing
                fingerprint = sorted(served(o) for o in objects)
                if fingerprint == last:
                    continue
                last = fingerprint
                yield parse_objects(objects, cache)
        finally:
            stop.set()
            watcher.stop()


# ---- `modelrollout router --kube`: the router's CLI with this source instead of --config ------------

def parser():
    """router.server's flags, with --config optional and the Kubernetes source's flags added."""
    from router.server import parser as file_parser

    p = file_parser()
    p.prog = "modelrollout router --kube"
    for action in p._actions:  # noqa: SLF001 - argparse has no public way to relax a required flag
        if action.dest == "config":
            action.required = False
    p.add_argument("--kube", action="store_true", help="read rollouts from the Kubernetes API (list+watch)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG)")
    p.add_argument("--namespace", default="all", help="namespace whose rollouts to serve, or 'all' (default)")
    return p


def main(argv: list[str] | None = None) -> int:
    import sys

    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from router.server import settings_from

    try:
        settings = settings_from(args)
    except ValueError as e:
        print(f"modelrollout router: {e}", file=sys.stderr)
        return 2
    from kubeio import load_client

    try:
        api = load_client(args.kubeconfig)
    except Exception as e:  # noqa: BLE001
        print(f"modelrollout router: cannot load Kubernetes configuration: {e}", file=sys.stderr)
        return 2
    from router.server import run

    namespace = None if args.namespace in ("all", "", "*") else args.namespace
    # The same main as --config: uvloop + httptools, coalesced writes, graceful SIGTERM drain.
    return run(KubeSource(api, namespace), settings, args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
