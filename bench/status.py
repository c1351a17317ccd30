"""What the drawable history costs the controller: the status's size and one reconcile's status work.

A rollout with 8 checks, after enough one-minute windows to fill the bounds. Side by side in one process:
the bound before the status kept a drawable history (10 windows per check of time, value and verdict) and
now (60 windows per check, with threshold and samples; history entries with phase, routing and the deciding
check). Per reconcile the controller reads the status (`from_status`), decides, writes it (`to_status`)
and compares it with what the apiserver holds (`controller.kube.reconciler._clean`); the router replicas
receive the whole object on every status write through their watch, so the JSON size is what each write
sends to each of them. Both columns run today's code (the baseline is the old bound's data, not the old
code, which was slower on both: `isinstance` against `typing.Mapping` and `Verdict(...)` per window).

On 2 cores shared with other test runs (8 checks): 9.4 KB -> 55.5 KB per write (5.9x), 6.4 -> 18.8 ms of
status work per reconcile (2.9x); before `from_status` was made cheaper per window, the 60-window status
cost 34.7 ms against 5.7 ms (6.1x).

    python -m bench.status [--checks 8] [--repeat 300]
"""
from __future__ import annotations

import argparse
import json
import time

import policies.machine as machine
import policies.status as status_mod
from controller.kube.reconciler import _clean
from policies.machine import decide
from policies.spec import parse_spec
from policies.status import CheckResult, RolloutStatus, Verdict

T0 = 1_800_000_000.0


def spec(checks: int):
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
        "strategy": {"steps": [{"shadow": {"duration": "10h"}}]},
        "analysis": {"interval": "1m", "checks": [{"name": f"check-{i}", "metric": "psi", "max": 0.2}
                                                  for i in range(checks)]}}, "r", "ns", generation=1)


def filled(sp, windows: int) -> dict:
    d = decide(sp, None, None, T0)
    for w in range(windows):
        results = [CheckResult(c.name, "psi", 0.0123456789 + w * 1e-4, 0.2, Verdict.PASS, 500 + w,
                               reason=f"{c.name} 0.0123 <= 0.2") for c in sp.analysis.checks]
        d = decide(sp, d.status, results, T0 + 60.123456 * (w + 1))
    return _clean(d.status.to_status())


def legacy(doc: dict) -> dict:
    """The same status as the controller wrote it before: windows without threshold and samples, history
    entries without phase, routing and check."""
    out = json.loads(json.dumps(doc))
    for c in out["checks"]:
        c["recent"] = [{k: w[k] for k in ("time", "value", "verdict") if k in w} for w in c["recent"]][-10:]
    out["history"] = [{k: h[k] for k in ("time", "step", "action", "reason")} for h in out["history"]]
    return out


def reconcile_cost(sp, doc: dict, repeat: int) -> float:
    """Seconds per reconcile's status work: read, decide (no window due), write, compare."""
    t = time.perf_counter()
    for _ in range(repeat):
        st = RolloutStatus.from_status(doc)
        new = _clean(decide(sp, st, None, T0 + 1e5).status.to_status())
        _ = new == _clean(doc)
    return (time.perf_counter() - t) / repeat


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checks", type=int, default=8)
    p.add_argument("--repeat", type=int, default=300)
    a = p.parse_args()
    sp = spec(a.checks)
    now_doc = filled(sp, 120)
    saved = (status_mod.RECENT_LIMIT, machine.RECENT_LIMIT)
    status_mod.RECENT_LIMIT = machine.RECENT_LIMIT = 10
    try:
        old_doc = legacy(filled(sp, 120))
        old_cost = reconcile_cost(sp, old_doc, a.repeat)
    finally:
        status_mod.RECENT_LIMIT, machine.RECENT_LIMIT = saved
    new_cost = reconcile_cost(sp, now_doc, a.repeat)
    old_size, new_size = (len(json.dumps(d, separators=(",", ":"))) for d in (old_doc, now_doc))
    print(f"status of a rollout with {a.checks} checks after 120 windows")
    print(f"{'':34}{'before (10 windows)':>22}{'now (60 windows)':>20}{'ratio':>8}")
    print(f"{'status JSON, bytes per write':34}{old_size:>22,}{new_size:>20,}{new_size / old_size:>8.2f}")
    print(f"{'status work per reconcile, ms':34}{old_cost * 1e3:>22.3f}{new_cost * 1e3:>20.3f}"
          f"{new_cost / old_cost:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
