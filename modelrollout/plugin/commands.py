"""What a manual command will do, decided before it is sent: the plugin's verbs and the dashboard's
buttons refuse the same commands for the same reasons, the ones the controller itself would give."""
from __future__ import annotations


def preview(obj: dict, verb: str, full: bool, now: float):
    """What the controller will make of `verb` on `obj`, computed with its own pure `decide`:
    (why it would be ignored, or None; the RolloutStatus it would lead to, or None if the spec is invalid)."""
    from policies.machine import Command, Emit, decide
    from policies.spec import SpecError, parse_rollout

    try:
        spec = parse_rollout(obj).spec
    except SpecError as e:
        return f"the spec is invalid ({e}); fix it first", None
    decision = decide(spec, obj.get("status"), None, now, Command(verb, full, id="preview"))
    prefix = f"{verb} ignored: "
    rejected = [a.message.removeprefix(prefix) for a in decision.actions
                if isinstance(a, Emit) and a.reason == "CommandRejected"]
    return (rejected[0] if rejected else None), decision.status
