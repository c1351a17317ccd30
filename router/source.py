"""Where the router learns which rollouts exist and how to split their traffic.

A `RoutingSource` yields the full current set of rollouts each time it changes. The router does not care
whether the set comes from a YAML file (`FileSource`), from local mode (`StaticSource`) or from the
Kubernetes API (`router.kube_source.KubeSource`).
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import AsyncIterator, Protocol, Sequence, runtime_checkable

from policies.spec import Rollout, SpecError, load_documents, parse_rollout

log = logging.getLogger("modelrollout.router")


@runtime_checkable
class RoutingSource(Protocol):
    def watch(self) -> AsyncIterator[list[Rollout]]:
        """Yield the full current set of rollouts, first at once, then each time it changes."""
        ...


def parse_text(text: str, source: str) -> list[Rollout]:
    """Every valid ModelRollout in `text`; each invalid one is logged with its path and skipped.

    Raises SpecError only when the text as a whole is unusable (not YAML).
    """
    try:
        docs = load_documents(text, source)
    except SpecError as e:
        if "no ModelRollout document" in e.message:
            log.warning("%s", e)
            return []
        raise
    rollouts: list[Rollout] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        try:
            rollout = parse_rollout(doc)
            from router.routing import Routing
            Routing.from_status(rollout.status)   # reject bad routing here, not on the request path
        except SpecError as e:
            log.error("%s[%d]: skipped invalid ModelRollout: %s", source, i, e)
            continue
        if rollout.spec.key in seen:
            log.error("%s[%d]: skipped duplicate ModelRollout %s", source, i, rollout.spec.key)
            continue
        seen.add(rollout.spec.key)
        rollouts.append(rollout)
    return rollouts


class FileSource:
    """Rollouts from a YAML file (several documents separated by ---), re-read when the file changes.

    A file that cannot be read or parsed keeps the previous set in force (logged), so a half-written
    edit never takes the router down.
    """

    def __init__(self, path: str | os.PathLike, poll_seconds: float = 0.5):
        self.path = Path(path)
        self.poll_seconds = poll_seconds

    def _stamp(self):
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> list[Rollout]:
        return parse_text(self.path.read_text(), str(self.path))

    async def watch(self) -> AsyncIterator[list[Rollout]]:
        stamp = None
        while True:
            try:
                current = self._stamp()
                if current != stamp:
                    stamp = current
                    yield self.load()
            except (OSError, SpecError, UnicodeDecodeError) as e:
                log.error("%s: cannot load rollouts, keeping the previous set: %s", self.path, e)
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
