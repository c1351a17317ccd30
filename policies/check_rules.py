"""The spec rules of the paired and sequential checks, kept beside `policies.spec` (which applies them and
raises `SpecError` at the field they name): docs/statistics.md "Paired tests (shadow)" and "Sequential
decisions"."""
from __future__ import annotations

from typing import Any, Mapping

PAIRED_METRICS = ("shadow-mcnemar", "shadow-wilcoxon", "shadow-rbo", "shadow-ndcg")
PAIRED_OUTPUTS = {"shadow-mcnemar": ("score", "class"), "shadow-wilcoxon": ("score",), "shadow-rbo": ("ranking",),
                  "shadow-ndcg": ("ranking",)}


def sequential(explicit: bool | None, default: bool, metric: str | None, supported: tuple[str, ...],
               has_max: bool) -> bool:
    """A check's `sequential`: its own value, else the analysis default where the metric supports it (an
    error-rate check only with `max`, the rate the test is against)."""
    if explicit is not None:
        return explicit
    return default and metric in supported and (metric != "error-rate" or has_max)


def problem(data: Mapping[str, Any], check: Any, output_kind: str, supported: tuple[str, ...]
            ) -> tuple[str, str] | None:
    """(field, message) of the first rule the check breaks, or None."""
    metric = check.metric
    if check.sequential and metric not in supported:
        return "sequential", (f"sequential decisions apply to {', '.join(supported)}; got "
                              f"{'metric ' + metric if metric else 'a prometheus check'}")
    if check.sequential and metric == "error-rate" and check.max is None:
        return "sequential", "a sequential error-rate check needs max (the tolerated rate)"
    if metric not in ("shadow-ndcg", "shadow-rbo"):
        for f in ("k", "p"):
            if f in data:
                return f, f"k applies to shadow-ndcg and p to shadow-rbo; got metric {metric}"
    else:
        wrong = "p" if metric == "shadow-ndcg" else "k"
        if wrong in data:
            return wrong, f"{wrong} does not apply to {metric} (k: shadow-ndcg depth, p: shadow-rbo persistence)"
    if not 0.0 < check.p < 1.0:
        return "p", f"expected a number strictly between 0 and 1, got {check.p!r}"
    if metric == "reward":
        extra = [f for f, v in (("max", check.max), ("maxRatioToBaseline", check.max_ratio_to_baseline),
                                ("minRatioToBaseline", check.min_ratio_to_baseline), ("dynamic", check.dynamic))
                 if v is not None]
        if extra:
            return extra[0], f"reward takes min (the lowest tolerated candidate − baseline difference of mean " \
                             f"reward) and minPValue (the test's level), not {extra[0]}"
        if check.feature is not None:
            return "on", f"reward compares the versions' rewards; expected 'prediction', got {check.on!r}"
    return _paired(check, output_kind) if metric in PAIRED_METRICS else None


def _paired(check: Any, output_kind: str) -> tuple[str, str] | None:
    metric = check.metric
    kinds = PAIRED_OUTPUTS[metric]
    if output_kind not in kinds:
        return "metric", f"{metric} needs spec.output.kind {' or '.join(kinds)}, got {output_kind!r}"
    if check.feature is not None:
        return "on", f"{metric} compares the versions' outputs on the same request; expected 'prediction', got " \
                     f"{check.on!r}"
    bound, other = ("min", "max") if metric in ("shadow-rbo", "shadow-ndcg") else ("max", "min")
    extra = [f for f, v in (("maxRatioToBaseline", check.max_ratio_to_baseline),
                            ("minRatioToBaseline", check.min_ratio_to_baseline), ("dynamic", check.dynamic),
                            (other, getattr(check, other))) if v is not None]
    if extra:
        return extra[0], f"{metric} takes {bound} (the tolerance) and minPValue (the test's level), not {extra[0]}"
    if bound == "min" and check.min is None:
        return "min", f"{metric} needs min: the lowest tolerated mean agreement in [0, 1]"
    value = getattr(check, bound)
    if value is not None and (value < 0 or (bound == "min" and value > 1)):
        return bound, f"expected a number in {'[0, 1]' if bound == 'min' else '>= 0'}, got {value!r}"
    return None
