"""The controller's work queue runs each rollout key at most once at a time and never loses a requeue."""
from __future__ import annotations

import threading

from controller.kube.workqueue import WorkQueue


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_duplicate_adds_collapse_to_the_earliest():
    """Adding a waiting key again keeps one entry, due at the earlier time."""
    c = Clock()
    q = WorkQueue(clock=c)
    q.add("ns/a", 10)
    q.add("ns/a", 2)
    q.add("ns/a", 5)
    assert len(q) == 1
    assert q.get(timeout=0) is None
    c.t = 2.0
    assert q.get(timeout=0) == "ns/a"
    assert q.get(timeout=0) is None


def test_key_in_progress_is_not_handed_out_twice():
    """A key re-added while a worker holds it waits until that worker is done, then runs once more."""
    c = Clock()
    q = WorkQueue(clock=c)
    q.add("ns/a")
    assert q.get(timeout=0) == "ns/a"
    q.add("ns/a")
    q.add("ns/b")
    assert q.get(timeout=0) == "ns/b"        # a is busy: b goes first
    assert q.get(timeout=0) is None
    q.done("ns/a")
    assert q.get(timeout=0) == "ns/a"


def test_forget_drops_a_pending_key():
    """A deleted rollout's pending run is dropped."""
    q = WorkQueue(clock=Clock())
    q.add("ns/a")
    q.forget("ns/a")
    assert q.get(timeout=0) is None and len(q) == 0


def test_concurrent_workers_never_overlap_on_a_key():
    """Under 4 threads hammering 3 keys, no key is ever processed by two workers at once."""
    q = WorkQueue()
    active: set[str] = set()
    overlap = []
    lock = threading.Lock()
    done = threading.Event()
    counts = {"n": 0}

    def worker():
        while not done.is_set():
            key = q.get(timeout=0.05)
            if key is None:
                continue
            with lock:
                if key in active:
                    overlap.append(key)
                active.add(key)
                counts["n"] += 1
                if counts["n"] >= 300:
                    done.set()
            q.add(key)  # requeue while still processing
            with lock:
                active.discard(key)
            q.done(key)

    for k in ("a", "b", "c"):
        q.add(k)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    done.wait(20)
    q.close()
    for t in threads:
        t.join(5)
    assert counts["n"] >= 300 and overlap == []
