"""Helpers of the summaries' dict (wire) form: base64 arrays, typed field access, decoder errors."""
from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import SummaryError

def _b64(a: np.ndarray, dtype: str = "<f8") -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _unb64(d: Mapping[str, Any], field: str, dtype: str = "<f8") -> np.ndarray:
    try:
        raw = base64.b64decode(d[field], validate=True)
        return np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))
    except KeyError as e:
        raise SummaryError(f"missing field {field!r}") from e
    except (TypeError, ValueError) as e:
        raise SummaryError(f"field {field!r} is not base64 of {dtype} values: {e}") from e


def _get(d: Mapping[str, Any], field: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, Mapping):
        raise SummaryError(f"{where}: expected an object, got {type(d).__name__}")
    if field not in d:
        raise SummaryError(f"{where}: missing field {field!r}")
    v = d[field]
    if isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise SummaryError(f"{where}.{field}: expected {kind}, got {v!r}")
    if not isinstance(v, kind):
        raise SummaryError(f"{where}.{field}: expected {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


def _expect_type(d: Mapping[str, Any], kind: str, where: str) -> None:
    if _get(d, "type", str, where) != kind:
        raise SummaryError(f"{where}: type must be {kind!r}, got {d['type']!r}")


def _count(d: Mapping[str, Any], field: str, where: str) -> int:
    v = _get(d, field, int, where)
    if v < 0:
        raise SummaryError(f"{where}.{field}: must be >= 0, got {v}")
    return v


def _decoder(what: str) -> Any:
    """Wrap a from_dict so malformed input of a kind no explicit check foresaw still surfaces as
    a SummaryError naming the summary, never as an unrelated TypeError/KeyError."""
    def wrap(fn: Any) -> Any:
        def decode(cls: Any, d: Any) -> Any:
            if not isinstance(d, Mapping):
                raise SummaryError(f"{what}: expected an object, got {type(d).__name__}")
            try:
                return fn(cls, d)
            except SummaryError:
                raise
            except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as e:
                raise SummaryError(f"{what}: malformed ({type(e).__name__}: {e})") from e
        decode.__doc__ = fn.__doc__
        return classmethod(decode)
    return wrap


def _opt_float(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)
