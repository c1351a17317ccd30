"""A keyed, delaying work queue: each rollout key is queued at most once and handled by one worker at a time.

Like client-go's workqueue: adding a key that is already waiting keeps the earlier due time; adding a key
that a worker is processing runs it again after that worker is done, never concurrently.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time


class WorkQueue:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, tuple[float, int]] = {}   # key -> its live heap entry
        self._processing: set[str] = set()
        self._seq = itertools.count()
        self._closed = False

    def add(self, key: str, delay: float = 0.0) -> None:
        """Queue `key` to run in `delay` seconds (or sooner if it is already due sooner)."""
        due = self._clock() + max(0.0, delay)
        with self._cond:
            current = self._due.get(key)
            if current is not None and current[0] <= due:
                return
            entry = (due, next(self._seq))
            self._due[key] = entry
            heapq.heappush(self._heap, (entry[0], entry[1], key))
            self._cond.notify()

    def forget(self, key: str) -> None:
        """Drop a pending run of `key` (the object was deleted)."""
        with self._cond:
            self._due.pop(key, None)

    def get(self, timeout: float | None = None) -> str | None:
        """The next due key not being processed (marked processing), or None on close/timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                wait = self._pop_ready()
                if isinstance(wait, str):
                    return wait
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    def _pop_ready(self) -> str | float | None:
        """A ready key, else seconds until the earliest candidate (None: nothing queued)."""
        now = self._clock()
        held: list[tuple[float, int, str]] = []
        result: str | float | None = None
        while self._heap:
            due, seq, key = self._heap[0]
            if self._due.get(key) != (due, seq):
                heapq.heappop(self._heap)       # superseded or forgotten entry
                continue
            if due > now:
                result = due - now
                break
            heapq.heappop(self._heap)
            if key in self._processing:
                held.append((due, seq, key))    # runs again once its worker calls done()
                continue
            del self._due[key]
            self._processing.add(key)
            result = key
            break
        for item in held:
            heapq.heappush(self._heap, item)
        if held and result is None:
            result = None  # woken by done()
        return result
