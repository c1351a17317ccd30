"""Dotted paths into JSON documents (`spec.output.path`, `spec.features.path`, redaction paths): split, read
and replace. Pure; the router's extraction (router.extract) and the spec's checks (policies.fallback) share
it."""
from __future__ import annotations

from typing import Any

MISSING = object()
"""What get_path answers for an absent path when no default is given."""


def split_path(path: str | None) -> tuple[str, ...]:
    return tuple(p for p in (path or "").split(".") if p)


def get_path(doc: Any, path: tuple[str, ...], default: Any = MISSING) -> Any:
    """`doc` at a dotted path (list items by index); `default` (or MISSING) when absent."""
    for part in path:
        if isinstance(doc, dict):
            if part not in doc:
                return default
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return default
    return doc


def set_path(doc: Any, path: tuple[str, ...], value: Any) -> bool:
    """Replace the value at a dotted path in place; False when the path does not exist."""
    if not path:
        return False
    parent = get_path(doc, path[:-1], None)
    if isinstance(parent, dict) and path[-1] in parent:
        parent[path[-1]] = value
        return True
    if isinstance(parent, list) and path[-1].isdigit() and int(path[-1]) < len(parent):
        parent[int(path[-1])] = value
        return True
    return False
