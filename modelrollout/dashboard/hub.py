"""What the dashboard knows of the cluster: every ModelRollout and its Events, kept current by list+watch.

Two `kubeio.watch.ListWatcher`s (ModelRollouts, and core/v1 Events about ModelRollouts) run in threads
with the user's kubeconfig identity. Each change bumps `version` and wakes every page's event stream
(`Hub.wait`), which then renders its view again and sends it if it changed.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any

from kubeio.watch import ListWatcher
from policies.api import KIND

log = logging.getLogger("modelrollout.dashboard")


def events_lister(api_client: Any, namespace: str | None):
    """A `ListWatcher` lister of the core/v1 Events about ModelRollouts (in one namespace or all), as dicts."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    selector = f"involvedObject.kind={KIND}"

    def lister(**kw):
        call = (core.list_namespaced_event if namespace else core.list_event_for_all_namespaces)
        args = (namespace,) if namespace else ()
        if kw.get("watch"):
            return call(*args, field_selector=selector, **kw)
        kw["_preload_content"] = False
        return json.loads(call(*args, field_selector=selector, **kw).data)

    return lister


class Hub:
    """The cache of rollouts and Events, and a condition every event stream waits on."""

    def __init__(self, api_client: Any, namespace: str | None, resync: float = 30.0):
        self.namespace = namespace
        self.version = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.rollouts = ListWatcher(api_client, namespace, on_change=self._changed, resync=resync)
        self.events = ListWatcher(api_client, namespace, on_change=self._changed, resync=resync,
                                  lister=events_lister(api_client, namespace))
        self._threads: list[threading.Thread] = []

    def _changed(self, key: str, obj: dict | None) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()

    def start(self, timeout: float = 30.0) -> bool:
        """Start both watches; True once the rollouts are listed (within `timeout` seconds)."""
        for name, w in (("rollouts", self.rollouts), ("events", self.events)):
            t = threading.Thread(target=w.run, args=(self._stop,), name=f"dashboard-watch-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self.rollouts.synced.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.rollouts.stop()
        self.events.stop()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until `version` moves past `seen` (or `timeout` seconds, or stop); the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen or self._stop.is_set(), timeout)
            return self.version

    def rollout(self, namespace: str, name: str) -> dict | None:
        return self.rollouts.get(f"{namespace}/{name}")

    def all_rollouts(self) -> list[dict]:
        return sorted(self.rollouts.objects(), key=lambda o: ((o.get("metadata") or {}).get("namespace", ""),
                                                               (o.get("metadata") or {}).get("name", "")))

    def events_of(self, namespace: str, name: str, uid: str | None = None) -> list[dict]:
        out = []
        for ev in self.events.objects():
            inv = ev.get("involvedObject") or {}
            if inv.get("namespace") == namespace and inv.get("name") == name and inv.get("kind") == KIND:
                if uid and inv.get("uid") and inv["uid"] != uid:
                    continue          # an Event of an earlier rollout of the same name
                out.append(ev)
        return out
