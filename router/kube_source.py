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
from policies.spec import Rollout
from router.source import LastValid

log = logging.getLogger("modelrollout.router.kube")


def served(obj: dict) -> tuple:
    """What the router serves a ModelRollout from: its spec (by uid and generation, which the apiserver bumps
    on every spec change) and the status fields routing depends on (`routing`, `stable`, `revision`, `phase`).
    The controller's other status writes (a window's verdicts) leave it unchanged, and the router then has
    nothing to redo."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    generation = meta.get("generation")
    return (meta.get("namespace"), meta.get("name"), meta.get("uid"),
            generation if generation is not None else meta.get("resourceVersion"),
            json.dumps([status.get(k) for k in ("routing", "stable", "revision", "phase")], sort_keys=True,
                       default=str))


class ServedChanges:
    """Which watch events can change what the router serves: `changed(key, obj)` is False for an object whose
    `served` fields equal those of the last one seen for its key (a window's status write), True otherwise
    (new, different, or deleted: obj None). At 1,000 rollouts the controller writes about 100 statuses a
    second, each a watch event; only the few that move a routing need the rollout set looked at again."""

    def __init__(self) -> None:
        self._last: dict[str, tuple] = {}

    def changed(self, key: str, obj: dict | None) -> bool:
        if obj is None:
            self._last.pop(key, None)
            return True
        now = served(obj)
        if self._last.get(key) == now:
            return False
        self._last[key] = now
        return True


def parse_objects(objects: list[dict], cache: dict | None = None) -> list[Rollout]:
    """Every ModelRollout that parses; invalid ones are logged (with the field path) and skipped.

    With `cache` (per "namespace/name": what it was parsed from, see `served`, and the result), an object
    served from the same spec and routing as before is not parsed again and yields the very same `Rollout`,
    which `Router.apply` keeps serving without rebuilding. `KubeSource` itself serves through one
    `router.source.LastValid`, which also remembers each rollout's last valid version (fail-static)."""
    return LastValid(source="apiserver", version=served, parsed=cache).update(objects)


class KubeSource:
    """`RoutingSource` over the apiserver; `namespace=None` watches every namespace.

    Fail-static (`LastValid`): an invalid edit keeps the rollout's last valid routing, a deleted rollout is
    served 100% to its stable for `deletion_grace` seconds, and while the apiserver cannot be reached the
    last routing read stays in force (`health()` says so, for /readyz and /metrics)."""

    def __init__(self, api_client, namespace: str | None = None, *, resync: float = 300.0,
                 deletion_grace: float = 60.0):
        self.api_client, self.namespace, self.resync = api_client, namespace, resync
        self.last_valid = LastValid(grace=deletion_grace, source="apiserver", version=served)
        self.watcher: ListWatcher | None = None

    def health(self) -> dict:
        w = self.watcher
        return {"kind": "kube", "connected": bool(w is not None and w.connected),
                "error": w.error if w is not None else None,
                "since": w.since if w is not None else None,
                "lastSync": w.last_sync if w is not None else None, **self.last_valid.health()}

    async def watch(self) -> AsyncIterator[list[Rollout]]:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        stop = threading.Event()

        served_changes = ServedChanges()

        def poke(*_):
            loop.call_soon_threadsafe(changed.set)

        def on_change(key: str, obj: dict | None) -> None:     # the watcher's thread
            if served_changes.changed(key, obj):
                poke()

        # on_resync too: a LIST with no items reports no key, and the router must still learn that the
        # (empty) set is loaded, or /readyz stays 503 until the first rollout is applied
        watcher = ListWatcher(self.api_client, self.namespace, on_change=on_change, on_resync=poke,
                              resync=self.resync)
        self.watcher = watcher
        thread = threading.Thread(target=watcher.run, args=(stop,), name="kube-source", daemon=True)
        thread.start()
        try:
            last: list[Rollout] | None = None
            while True:
                try:        # wake up too when the grace of a deleted rollout ends
                    await asyncio.wait_for(changed.wait(), self.last_valid.next_expiry())
                except asyncio.TimeoutError:
                    pass
                changed.clear()
                if not watcher.synced.is_set():
                    continue
                rollouts = self.last_valid.update(watcher.objects())
                # yield only when what the router serves differs: a resync re-reports unchanged objects, and
                # most status writes (a window's verdicts) change neither a spec nor a routing; both parse to
                # the same Rollout objects (cached by `served`), so comparing identities is enough (`last`
                # keeps the old ones alive, so their ids cannot be reused)
                if last is not None and [id(r) for r in rollouts] == [id(r) for r in last]:
                    continue
                last = rollouts
                yield rollouts
        finally:
            stop.set()
            watcher.stop()


# ---- `modelrollout router --kube`: the router's CLI with this source instead of --config ------------

def parser():
    """router.server's flags, with --config optional and the Kubernetes source's flags added."""
    from router.server import _duration, parser as file_parser

    p = file_parser()
    p.prog = "modelrollout router --kube"
    for action in p._actions:  # noqa: SLF001 - argparse has no public way to relax a required flag
        if action.dest == "config":
            action.required = False
    p.add_argument("--kube", action="store_true", help="read rollouts from the Kubernetes API (list+watch)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG)")
    p.add_argument("--namespace", default="all", help="namespace whose rollouts to serve, or 'all' (default)")
    p.add_argument("--deletion-grace", type=_duration, default=60.0,
                   help="keep serving a deleted ModelRollout, 100%% to its stable, this long (default 60s), so "
                   "a delete and re-apply is no outage")
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
    return run(KubeSource(api, namespace, deletion_grace=args.deletion_grace), settings, args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
