"""router.shadow.LoopWatch: the stretches when the event loop did not run, as a shadow call's timing sees them."""
from __future__ import annotations

import asyncio
import time

from router.shadow import LoopWatch


def test_a_blocked_loop_is_seen_and_a_free_one_is_not():
    async def main():
        watch = LoopWatch()
        watch.hold()
        await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        await asyncio.sleep(0.03)                 # the loop runs: nothing stalls
        t1 = time.perf_counter()
        time.sleep(0.05)                          # the loop does not run (a busy callback, or no CPU)
        t2 = time.perf_counter()
        overdue = watch.stalled(t1, t2)           # seen before the ticker has run again
        await asyncio.sleep(0.01)
        t3 = time.perf_counter()
        watch.release()
        await asyncio.sleep(0.01)
        return watch.stalled(t0, t1), overdue, watch.stalled(t1, t3), watch._task
    # A blocked loop is always seen. A free one is seen as free only when the machine gives this process the
    # CPU: on a loaded machine the loop really does not run for a while, and the watch rightly says so. So the
    # free stretch is asked of several runs, and one in which nothing else took the CPU must show no stall.
    runs = [asyncio.run(main()) for _ in range(5)]
    for free, overdue, blocked, task in runs:
        assert overdue >= 0.04 and blocked >= 0.04
        assert task is None                       # the ticker stops when nobody holds it
    assert min(free for free, *_ in runs) < 0.005, [r[0] for r in runs]
