"""A small informer for one custom resource: LIST, then WATCH from the list's resourceVersion.

The official client has no informer and does not relist for you (kubernetes-client/python#2223), so this
keeps a cache keyed by "namespace/name", relists on 410 Gone, on any broken stream (an apiserver restart)
and every `resync` seconds, and reports each key whose object changed to `on_change`.

The LIST and the WATCH stream are read raw and decoded once with orjson (`watch_events`): the official
client's `Watch` decodes every event, encodes it again and decodes that (a custom object's model is
`object`), three passes of the stdlib `json` per event for every client, at 1,000 rollouts about 100 status
writes a second.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator

import orjson
from kubernetes import client
from kubernetes.client.rest import ApiException

from policies.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from policies.errors import KubeError


log = logging.getLogger("modelrollout.watch")


def object_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class ListWatcher:
    """Mirror of every ModelRollout (in one namespace or all) kept current by list+watch.

    `on_change(key, obj_or_None)` is called from the watcher thread after the cache is updated: for every
    added, modified or deleted object, and for every object on a periodic resync (so a lost event can never
    leave a rollout unreconciled). `on_event(key, old, new)` is called at the same points with the cached
    version before the change (None: not seen before) and after it (None: deleted), but only for a real
    change: a relist reports an object only if it is new, gone, or its resourceVersion moved while the
    watch was down, so a periodic relist repairs lost events without re-reporting what did not change.
    `on_resync(objects)` runs after each LIST with the full current set.

    `lister` follows another resource the same way (the dashboard follows Events with it): called with the
    list call's keyword arguments, it returns the list as a dict, or, when they include `watch=True` (and
    `_preload_content=False`), the raw streaming response, as the generated clients' list functions do.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str | None = None, *,
                 on_change: Callable[[str, dict | None], None] | None = None,
                 on_resync: Callable[[list[dict]], None] | None = None,
                 on_event: Callable[[str, dict | None, dict | None], None] | None = None,
                 resync: float = 30.0, watch_timeout: float = 60.0,
                 lister: Callable[..., Any] | None = None):
        self.api = client.CustomObjectsApi(api_client)
        self._lister = lister
        self.namespace = namespace
        self.on_change = on_change or (lambda key, obj: None)
        self.on_resync = on_resync or (lambda objs: None)
        self.on_event = on_event or (lambda key, old, new: None)
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.cache: dict[str, dict] = {}
        self.synced = threading.Event()
        self.relists = 0
        self.connected = False
        """True since the last successful LIST, False since the last failure to list or watch."""
        self.error: str | None = None
        """Why the last LIST or WATCH failed (None while connected)."""
        self.since: float | None = None
        """Wall-clock time `connected` last changed."""
        self.last_sync: float | None = None
        """Wall-clock time of the last successful LIST (the cache is at least this fresh)."""
        self._lock = threading.Lock()
        self._stopping = False

    # ---- reading the cache -------------------------------------------------------------------------

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self.cache.get(key)

    def objects(self) -> list[dict]:
        with self._lock:
            return list(self.cache.values())

    # ---- the loop ----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """LIST+WATCH until `stop` is set; every failure leads to a relist after a bounded backoff."""
        backoff = 0.2
        while not stop.is_set():
            try:
                rv = self._relist()
                backoff = 0.2
                self._watch_until(stop, rv, time.monotonic() + self.resync)
            except _Gone:
                log.info("watch resourceVersion expired (410 Gone); relisting")
            except Exception as e:  # noqa: BLE001 - the apiserver may be restarting; relist after a pause
                if stop.is_set():
                    break
                self._connected(False, _short(e))
                log.warning("list/watch of %s failed: %s; relisting in %.1fs", PLURAL, _short(e), backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        """Stop reading the watch stream at its next event (the `run` loop ends when its `stop` is set)."""
        self._stopping = True

    def _list(self, **kw):
        if self._lister is not None:
            return self._lister(**kw)
        if self.namespace:
            return self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, **kw)
        return self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)

    def _relist(self) -> str:
        if self._lister is None:
            resp = self._list(_request_timeout=30, _preload_content=False)
            if not 200 <= resp.status <= 299:
                raise ApiException(status=resp.status, reason=resp.reason, body=resp.data.decode("utf-8", "replace"))
            listed = orjson.loads(resp.data)
        else:
            listed = self._list(_request_timeout=30)
        items = {object_key(o): o for o in listed.get("items", [])}
        for o in items.values() if self._lister is None else ():
            o.setdefault("apiVersion", API_VERSION)  # LIST items lack apiVersion/kind; put them back so they
            o.setdefault("kind", KIND)               # parse as documents
        with self._lock:
            before = self.cache
            gone = [k for k in before if k not in items]
            self.cache = items
        self.relists += 1
        self.last_sync = time.time()
        self._connected(True, None)
        self.synced.set()
        self.on_resync(list(items.values()))
        for k in gone:
            self.on_change(k, None)
            self.on_event(k, before[k], None)
        for k, o in items.items():
            self.on_change(k, o)
            old = before.get(k)
            if old is None or _version(old) != _version(o):
                self.on_event(k, old, o)
        return listed["metadata"]["resourceVersion"]

    def _connected(self, up: bool, error: str | None) -> None:
        if up != self.connected or self.since is None:
            self.since = time.time()
            if up and self.relists > 1:
                log.info("list/watch of %s reconnected", PLURAL)
        self.connected, self.error = up, error

    def _watch_until(self, stop: threading.Event, rv: str, deadline: float) -> None:
        self._stopping = False
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return  # periodic resync: the caller relists
            timeout = max(1, int(min(remaining, self.watch_timeout)))
            resp = self._list(watch=True, _preload_content=False, resource_version=rv, allow_watch_bookmarks=True,
                              timeout_seconds=timeout, _request_timeout=timeout + 10)
            try:
                for event in watch_events(resp):
                    if stop.is_set() or self._stopping:
                        return
                    rv = self._apply(event) or rv
            except ApiException as e:
                if e.status == 410:
                    raise _Gone() from e
                raise
            finally:
                resp.close()
                getattr(resp, "release_conn", lambda: None)()

    def _apply(self, event: dict) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return rv
        key = object_key(obj)
        if kind == "DELETED":
            with self._lock:
                old = self.cache.pop(key, None)
            self.on_change(key, None)
            self.on_event(key, old, None)
        elif kind in ("ADDED", "MODIFIED"):
            with self._lock:
                old = self.cache.get(key)
                self.cache[key] = obj
            self.on_change(key, obj)
            self.on_event(key, old, obj)
        return rv


def watch_events(resp) -> Iterator[dict]:
    """The events of a raw WATCH response (`_preload_content=False`), one JSON object a line, each decoded
    once: {"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": {...}}. A non-2xx answer raises ApiException;
    an ERROR event raises ApiException with the Status it carries (410 Gone: the resourceVersion expired)."""
    status = getattr(resp, "status", 200)
    if not 200 <= status <= 299:
        raise ApiException(status=status, reason=getattr(resp, "reason", None),
                           body=(resp.data or b"").decode("utf-8", "replace"))
    buffer = b""
    for segment in resp.stream(amt=None, decode_content=False):
        buffer += segment
        if b"\n" not in segment:
            continue
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            event = orjson.loads(line)
            if isinstance(event, dict) and event.get("type") == "ERROR":
                obj = event.get("object") if isinstance(event.get("object"), dict) else {}
                raise ApiException(status=obj.get("code"), reason=f"{obj.get('reason')}: {obj.get('message')}")
            yield event


def _version(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class _Gone(KubeError):
    pass


def _short(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}"
    return f"{type(e).__name__}: {e}"[:300]
