"""Rollouts for the router from the Kubernetes API: the router's `RoutingSource` over list+watch.

Read-only (get/list/watch on modelrollouts). A status change written by the controller (new weights)
arrives through the watch and is yielded at once, so every router replica follows within a second.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import AsyncIterator

from controller.kube.watch import ListWatcher
from policies.spec import Rollout, SpecError, parse_rollout

log = logging.getLogger("modelrollout.router.kube")


def parse_objects(objects: list[dict]) -> list[Rollout]:
    """Every ModelRollout that parses; invalid ones are logged (with the field path) and skipped."""
    from router.routing import Routing

    out = []
    for obj in sorted(objects, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", ""))):
        try:
            rollout = parse_rollout(obj)
            Routing.from_status(rollout.status)
        except SpecError as e:
            meta = obj.get("metadata") or {}
            log.error("ModelRollout %s/%s skipped: %s", meta.get("namespace"), meta.get("name"), e)
            continue
        out.append(rollout)
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

        watcher = ListWatcher(self.api_client, self.namespace, on_change=poke, resync=self.resync)
        thread = threading.Thread(target=watcher.run, args=(stop,), name="kube-source", daemon=True)
        thread.start()
        try:
            last: list | None = None
            while True:
                await changed.wait()
                changed.clear()
                if not watcher.synced.is_set():
                    continue
                objects = watcher.objects()
                # a resync re-reports unchanged objects: yield only when something differs
                fingerprint = sorted((o["metadata"].get("namespace"), o["metadata"].get("name"),
                                      o["metadata"].get("resourceVersion")) for o in objects)
                if fingerprint == last:
                    continue
                last = fingerprint
                yield parse_objects(objects)
        finally:
            stop.set()
            watcher.stop()
