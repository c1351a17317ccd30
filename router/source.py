"""Where the router learns which rollouts exist and how to split their traffic.

A `RoutingSource` yields the full current set of rollouts each time it changes. The router does not care
whether the set comes from a YAML file (`FileSource`), from local mode (`StaticSource`) or from the
Kubernetes API (`router.kube_source.KubeSource`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol, Sequence, runtime_checkable

from policies.spec import Rollout, SpecError, load_documents, parse_rollout

log = logging.getLogger("modelrollout.router")


@runtime_checkable
class RoutingSource(Protocol):
    def watch(self) -> AsyncIterator[list[Rollout]]:
        """Yield the full current set of rollouts, first at once, then each time it changes."""
        ...


def documents(text: str, source: str) -> list[dict]:
    """The ModelRollout documents of a YAML text (none is fine); raises SpecError when it is not YAML."""
    try:
        return load_documents(text, source)
    except SpecError as e:
        if "no ModelRollout document" in e.message:
            log.warning("%s", e)
            return []
        raise


def parse_text(text: str, source: str) -> list[Rollout]:
    """Every valid ModelRollout in `text`; each invalid one is logged with its path and skipped (no memory
    of earlier versions: the sources serve through `LastValid`). Raises SpecError when it is not YAML."""
    return LastValid(source=source).update(documents(text, source))


def _key(doc: Any) -> str | None:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    ns = meta.get("namespace")
    return f"{ns if isinstance(ns, str) and ns else 'default'}/{meta['name']}"


class LastValid:
    """Fail-static reading of ModelRollout documents: per rollout, the last version that parsed.

    `update(docs)` takes the whole current set of documents and answers what to serve:

    - a valid document is served as it is (and remembered);
    - an invalid one (bad spec, `status.routing` or `status.stable`) keeps the last valid version of the same
      rollout in service, so an edit the parser rejects never turns into a 404 or moves anyone to another
      version; a rollout that never parsed is not served;
    - a rollout that disappears is served for `grace` seconds more, 100% to its stable (no analysis), so a
      delete and re-apply is no outage. Re-created within the grace, it keeps that routing until the
      controller has written its first status (`status.revision`).
    """

    def __init__(self, grace: float = 0.0, source: str = "ModelRollout", clock: Callable[[], float] = time.monotonic,
                 version: Callable[[dict], Any] | None = None, parsed: dict | None = None):
        """`version(doc)`: what a document is parsed from (equal: the cached parse is reused; default its
        resourceVersion, none for files); `parsed`: the cache of parses, per "namespace/name"."""
        self.grace, self.source, self.clock = grace, source, clock
        self.version = version or (lambda doc: ((doc.get("metadata") or {}).get("resourceVersion")
                                                if isinstance(doc, dict) else None))
        self.last: dict[str, Rollout] = {}
        self.invalid: dict[str, str] = {}
        """Rollouts whose current document is invalid, with the error (served from `last` when there)."""
        self.deleted: dict[str, tuple[float, Rollout]] = {}
        """Rollouts gone from the documents, with when and what is served for them during the grace."""
        self._parsed: dict[str, tuple[Any, Rollout | SpecError, Any]] = parsed if parsed is not None else {}
        """Per key: what the document was parsed from (`version`), the result, and the document itself (the
        very same object again, as a watch cache hands over an unchanged one, is not even looked at)."""

    def _parse(self, key: str | None, doc: Any) -> Rollout | SpecError:
        cached = self._parsed.get(key) if key is not None else None
        if cached is not None and cached[2] is doc:
            return cached[1]
        version = self.version(doc) if isinstance(doc, dict) else None
        if cached is not None and version is not None and cached[0] == version:
            self._parsed[key] = (version, cached[1], doc)
            return cached[1]
        from router.routing import served

        try:
            rollout = parse_rollout(doc)
            served(rollout)   # reject a bad status.routing or status.stable here, not on the request path
            result: Rollout | SpecError = rollout
        except SpecError as e:
            result = e
        if key is not None and version is not None:
            self._parsed[key] = (version, result, doc)
        return result

    def update(self, docs: Sequence[Any]) -> list[Rollout]:
        now = self.clock()
        out: dict[str, Rollout] = {}
        for i, doc in enumerate(docs):
            key = _key(doc)
            result = self._parse(key, doc)
            if isinstance(result, SpecError):
                where = key or f"{self.source}[{i}]"
                if self.invalid.get(where) != str(result):
                    kept = "keeping its last valid routing" if where in self.last else "not served"
                    log.error("%s: invalid ModelRollout (%s): %s", where, kept, result)
                self.invalid[where] = str(result)
                if where in self.last and where not in out:
                    out[where] = self.last[where]
                continue
            key = result.spec.key
            if key in out and key not in self.invalid:
                log.error("%s[%d]: skipped duplicate ModelRollout %s", self.source, i, key)
                continue
            self.invalid.pop(key, None)
            self.last[key] = result
            gone = self.deleted.get(key)
            if gone is not None and now - gone[0] < self.grace and not (result.status or {}).get("revision"):
                out[key] = gone[1]          # re-created: the old stable until the controller has spoken
            else:
                self.deleted.pop(key, None)
                out[key] = result
        present = {k for k in (_key(d) for d in docs) if k is not None}
        for key in list(self.last):
            if key in present:
                continue
            when, kept = self.deleted.get(key) or (now, _stable_only(self.last[key]))
            if now - when < self.grace:
                if key not in self.deleted:
                    log.warning("%s deleted: serving its stable for %gs more", key, self.grace)
                self.deleted[key] = (when, kept)
                out[key] = kept
            else:
                del self.last[key]
                self.deleted.pop(key, None)
                self.invalid.pop(key, None)
                self._parsed.pop(key, None)
        for key in [k for k in self.invalid if k not in present and k not in self.last]:
            del self.invalid[key]
        for key in [k for k in self._parsed if k not in present and k not in self.deleted]:
            del self._parsed[key]
        return [out[k] for k in sorted(out)]

    def next_expiry(self) -> float | None:
        """Seconds until the grace of a deleted rollout ends (None: none pending)."""
        if not self.deleted:
            return None
        return max(0.0, min(when for when, _ in self.deleted.values()) + self.grace - self.clock())

    def health(self) -> dict[str, Any]:
        return {"invalid": {k: self.invalid[k] for k in sorted(self.invalid)},
                "deleted": sorted(self.deleted)}


def _stable_only(rollout: Rollout) -> Rollout:
    """The rollout as served after its deletion: 100% to its stable, nothing mirrored or interleaved."""
    status = dict(rollout.status or {})
    promoted = status.get("phase") == "Promoted"
    status["routing"] = {"candidateWeight": 100 if promoted else 0, "shadow": False, "interleave": False}
    return Rollout(rollout.spec, status, rollout.metadata)


class FileSource:
    """Rollouts from a YAML file (several documents separated by ---), re-read when the file changes.

    A file that cannot be read or parsed keeps the previous set in force (logged), so a half-written
    edit never takes the router down; an invalid rollout in it keeps its last valid version (`LastValid`).
    """

    def __init__(self, path: str | os.PathLike, poll_seconds: float = 0.5):
        self.path = Path(path)
        self.poll_seconds = poll_seconds
        self.last_valid = LastValid(source=str(self.path))
        self.error: str | None = None

    def _stamp(self):
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> list[Rollout]:
        return self.last_valid.update(documents(self.path.read_text(), str(self.path)))

    def health(self) -> dict[str, Any]:
        """For /readyz and /metrics: whether the last read of the file worked, and the stale rollouts."""
        return {"kind": "file", "path": str(self.path), "connected": self.error is None, "error": self.error,
                **self.last_valid.health()}

    async def watch(self) -> AsyncIterator[list[Rollout]]:
        stamp = None
        while True:
            try:
                current = self._stamp()
                if current != stamp:
                    stamp = current
                    rollouts = self.load()
                    self.error = None
                    yield rollouts
            except (OSError, SpecError, UnicodeDecodeError) as e:
                log.error("%s: cannot load rollouts, keeping the previous set: %s", self.path, e)
                self.error = str(e)
            await asyncio.sleep(self.poll_seconds)


class StaticSource:
    """Rollouts set in-process with `.update()` (local mode, embedding code).

    `update()` may be called from any thread; the router's event loop picks the new set up at once.
    """

    def __init__(self, rollouts: Sequence[Rollout] = ()):
        self._rollouts = list(rollouts)
        self._version = 0
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def update(self, rollouts: Sequence[Rollout]) -> None:
        self._rollouts = list(rollouts)
        self._version += 1
        loop, changed = self._loop, self._changed
        if loop is None or changed is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            changed.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(changed.set)

    async def watch(self) -> AsyncIterator[list[Rollout]]:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        seen = -1
        while True:
            if seen != self._version:
                seen = self._version
                yield list(self._rollouts)
                continue
            self._changed.clear()
            if seen == self._version:
                await self._changed.wait()
