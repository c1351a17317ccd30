"""Reading values out of JSON documents: dotted paths, model outputs by kind, watched features."""
from __future__ import annotations

import math
from typing import Any

from policies.jsonpath import MISSING as _MISSING, get_path, set_path, split_path  # noqa: F401 - re-exported


def is_missing(x: Any) -> bool:
    return x is _MISSING


def output_value(kind: str, raw: Any) -> tuple[Any, bool]:
    """(the prediction as recorded, valid?) for an output of `kind` (score, class, ranking, embedding)."""
    if raw is _MISSING or raw is None:
        return None, False
    if kind == "score":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            return None, False
        return float(raw), True
    if kind == "class":
        if isinstance(raw, (str, int)) and not isinstance(raw, float):
            return str(raw) if not isinstance(raw, str) else raw, True
        return None, False
    if kind == "ranking":
        if isinstance(raw, list) and all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in raw):
            return raw, True
        return None, False
    if kind == "embedding":
        if (isinstance(raw, list) and raw and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  and math.isfinite(v) for v in raw)):
            return [float(v) for v in raw], True
        return None, False
    return None, False


def attribution_values(raw: Any) -> dict[str, float] | None:
    """Per-feature attributions `{feature: number}` as recorded, or None when absent or not such a mapping.

    Entries whose value is not a finite number (null, NaN, strings, booleans) are left out: one feature the
    explainer could not score does not discard the others."""
    if raw is _MISSING or not isinstance(raw, dict):
        return None
    out = {str(k): float(v) for k, v in raw.items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return out or None


def scalar(value: Any) -> Any:
    """A feature or segment value as recorded: numbers and strings kept, everything else None."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return value
    return None


def redact(body: Any, paths: tuple[tuple[str, ...], ...]) -> Any:
    """A copy of `body` with each dotted path replaced by "[redacted]" (`policies.privacy.REDACTED`)."""
    if not paths or not isinstance(body, dict):
        return body
    import copy
    out = copy.deepcopy(body)
    for p in paths:
        set_path(out, p, "[redacted]")
    return out
