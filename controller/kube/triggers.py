"""Which changes of a ModelRollout need a reconcile: the controller's predicate on watch events (pure).

A reconcile is needed for what can change a decision, and for nothing else:

1. **new**: the object is new to this controller (first LIST, ADDED);
2. **spec**: `metadata.generation` moved (the apiserver bumps it on every spec change and never on a
   status or metadata change), or differs from `status.observedGeneration` (a spec change not decided on
   yet, also one that arrived while the watch was broken);
3. **command**: the `modelrollout.io/command` annotation changed (a verb from `kubectl modelrollout`);
4. **status**: the status changed and is not the status this controller wrote: a hand edit, a restore, a
   replica that led before. The controller recognises its own writes by the `resourceVersion` the write
   returned and by content (the status it sent), since the watch event of a write can arrive before the
   write's answer.

The other reason is time: after each reconcile the key is queued again for its next deadline, the next
analysis window or the end of the step (`controller.core.next_wakeup`). Everything else, above all the
MODIFIED event each of the controller's own status writes causes, is ignored: the status holds facts only
(no clock text), so a reconcile right after a write would find nothing to do.
"""
from __future__ import annotations

from typing import Any, Callable

from policies.api import COMMAND_ANNOTATION

NEW, SPEC, COMMAND, STATUS = "new", "spec", "command", "status"
LEADER, TIMER, RETRY, ROUTERS = "leader", "timer", "retry", "routers"
TRIGGERS = (NEW, SPEC, COMMAND, STATUS, LEADER, TIMER, RETRY, ROUTERS)
"""Every reason a key is queued: the four above from watch events; `leader` (this replica became leader
and queues every rollout), `timer` (the next window or step end), `retry` (a reconcile or its Service
failed) and `routers` (the router pods moved: rollouts with `spec.service` update their endpoints)."""


def reason(old: dict | None, new: dict, written: tuple[dict | None, str | None] = (None, None),
           clean: Callable[[Any], Any] = lambda v: v) -> str | None:
    """Why the change from `old` (None: not seen before) to `new` needs a reconcile, or None.

    `written` is (the cleaned status this controller last wrote for the object or is writing, the
    resourceVersion that write returned); `clean` is how the reconciler cleans a status before comparing
    (drops nulls)."""
    if old is None:
        return NEW
    meta, before = new.get("metadata") or {}, old.get("metadata") or {}
    generation = meta.get("generation")
    status = new.get("status") or {}
    if generation != before.get("generation"):
        return SPEC
    if generation is not None and status.get("observedGeneration") != generation:
        return SPEC
    if (meta.get("annotations") or {}).get(COMMAND_ANNOTATION) != \
            (before.get("annotations") or {}).get(COMMAND_ANNOTATION):
        return COMMAND
    if status == (old.get("status") or {}):
        return None
    ours, version = written
    if version is not None and meta.get("resourceVersion") == version:
        return None
    if ours is not None and clean(status) == ours:
        return None
    return STATUS
