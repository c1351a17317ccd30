"""What a window's results mean together: Holm's step-down over the checks judged on a p-value, and the
sequential checks' evidence over the windows (docs/statistics.md "Family-wise control (Holm)" and
"Sequential decisions"). `policies.checks.evaluate` calls `finish` once per window."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

from . import planning, sequential
from .status import CheckResult, RolloutStatus
from .thresholds import failure_limit, fmt, planned_windows


def holm(tested: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Holm-adjusted p-values, each on its check's own scale: for m checks with p-values pₖ judged at levels
    aₖ, uₖ = pₖ/aₖ sorted ascending, ũ₍ᵢ₎ = max_{j <= i} (m − j + 1)·u₍ⱼ₎, adjusted pₖ = min(1, ũₖ·aₖ). A check
    rejects after Holm iff its adjusted p < aₖ (with equal levels: the standard Holm adjusted p-values).
    Fewer than two checks: no adjustment."""
    if len(tested) < 2:
        return {}
    m = len(tested)
    order = sorted(tested, key=lambda k: (tested[k][0] / tested[k][1], k))
    out, running = {}, 0.0
    for i, k in enumerate(order):
        p, a = tested[k]
        running = max(running, (m - i) * p / a)
        out[k] = min(1.0, running * a)
    return out


def finish(spec: Any, status: RolloutStatus, results: list[CheckResult], tested: Mapping[str, Mapping[str, Any]],
           seconds: float, reevaluate: Callable[[Any, Mapping[str, float]], CheckResult]) -> list[CheckResult]:
    """Apply Holm (when `spec.analysis.multipleTesting` is holm) to the non-sequential checks that were judged
    on a p-value this window — re-evaluating those it turns from Fail to Pass, and stating the adjustment in
    every member's evidence — then the sequential checks' evidence (with holm, a second family: Holm over
    their anytime-valid p-values, a check deciding Fail only when its adjusted one is below its α too), then
    each check's plan for the step (`policies.planning`, from the window's samples over its `seconds`)."""
    checks = {c.name: c for c in spec.analysis.checks}
    out = list(results)
    if spec.analysis.multiple_testing == "holm":
        family = {k: (float(v["p"]), float(v["level"])) for k, v in tested.items()
                  if "p" in v and not checks[k].sequential}
        adjusted = holm(family)
        for i, r in enumerate(out):
            if r.name not in adjusted:
                continue
            p, a = family[r.name]
            if p < a <= adjusted[r.name]:
                r = reevaluate(checks[r.name], adjusted)
            note = {"family": sorted(family), "pValue": p, "level": a, "adjustedPValue": adjusted[r.name]}
            out[i] = replace(r, evidence={**dict(r.evidence or {}), "holm": note})
    seq = [(i, checks[r.name]) for i, r in enumerate(out)
           if r.name in checks and checks[r.name].sequential and not r.skipped]

    def prior(name: str) -> Any:
        st = status.check(name)
        return st.evidence if st is not None else None
    updated = {c.name: sequential.update(prior(c.name), status.current_step, c, tested.get(c.name)) for _, c in seq}
    adjusted_seq: dict[str, float] = {}
    if spec.analysis.multiple_testing == "holm":
        adjusted_seq = holm({c.name: (sequential.anytime_p(updated[c.name]), sequential.alpha(c)) for _, c in seq})
    for i, c in seq:
        h = (adjusted_seq[c.name], len(seq)) if c.name in adjusted_seq else None
        out[i] = sequential.apply(c, prior(c.name), status.current_step, tested.get(c.name), out[i],
                                  spec.analysis.min_samples, holm=h, updated=updated[c.name])
    step = spec.steps[min(status.current_step, len(spec.steps) - 1)]
    windows = planned_windows(spec)
    for i, r in enumerate(out):
        info, c = tested.get(r.name) or {}, checks.get(r.name)
        if c is None or r.skipped or not info.get("samples"):
            continue
        p = planning.plan(c, spec, step, windows, failure_limit(spec, c.name), float(info["samples"]), seconds,
                          info.get("spread"), info.get("se"))
        if p is not None:
            out[i] = replace(out[i], evidence={**dict(out[i].evidence or {}), "plan": p})
    return out


def holm_note(name: str, p: float, adjusted: float, family: int) -> str:
    return f"Holm over {family} p-value checks: {name} p={fmt(p)} adjusted to {fmt(adjusted)}"
