"""Keeps the Helm chart in step with its sources; run from anywhere: `python charts/generate.py`.

- charts/modelrollout/files/ gets copies of manifests/crd.yaml, manifests/alerts.yaml and
  manifests/grafana-dashboard.json (a chart reads only files inside its directory; those three are
  generated or tested where they live, so they are written once, in manifests/);
- charts/modelrollout/README.md gets its "Values" table from the `# --` comments of values.yaml, between the
  markers `<!-- values:begin -->` and `<!-- values:end -->` (the rest of the README is written by hand).

`python charts/generate.py --check` changes nothing and exits 1, naming each file that is out of date
(tests/unit/test_chart_files.py runs the same check).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "modelrollout"
COPIES = {"files/crd.yaml": "manifests/crd.yaml", "files/alerts.yaml": "manifests/alerts.yaml",
          "files/grafana-dashboard.json": "manifests/grafana-dashboard.json"}
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\"-]+):(?:\s|$)")
_DOC = re.compile(r"^ *# -- ?(?P<text>.*)$")
_MORE = re.compile(r"^ *# ?(?P<text>.*)$")


class ValuesDocError(ValueError):
    """values.yaml has a key the README cannot describe; the message names it."""


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key of `text` preceded by a `# --` comment, in file order.

    A `# -- ...` line starts a description, following `# ...` lines continue it, and the key on the next
    line gets it. Keys are nested by indentation (2 spaces per level, as values.yaml is written)."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        if doc := _DOC.match(line):
            pending = [doc.group("text").strip()]
        elif pending is not None and (more := _MORE.match(line)):
            pending.append(more.group("text").strip())
        elif key := _KEY.match(line):
            indent = len(key.group("indent"))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key.group("key").strip('"')))
            if pending is not None:
                out.append((".".join(k for _, k in stack), " ".join(p for p in pending if p)))
            pending = None
        elif pending is not None:
            raise ValuesDocError(f"values.yaml:{line_no}: a `# --` comment must be followed by a key, got {line!r}")
    return out


def _lookup(values: dict, dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def _type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__)


def values_table(values_text: str) -> str:
    """The Markdown table of every documented key: key, type, default, description."""
    values = yaml.safe_load(values_text)
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    seen = set()
    for key, description in documented_keys(values_text):
        if not description:
            raise ValuesDocError(f"values.yaml: {key} has an empty `# --` description")
        seen.add(key)
        default = _lookup(values, key)
        shown = "`" + json.dumps(default, separators=(", ", ": ")) + "`"
        cell = description.replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(default)} | {shown} | {cell} |")
    undocumented = sorted(k for k in _leaves(values) if k not in seen and not any(
        k.startswith(s + ".") for s in seen))
    if undocumented:
        raise ValuesDocError(f"values.yaml: keys without a `# --` description: {', '.join(undocumented)}")
    return "\n".join(rows) + "\n"


def _leaves(values: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in values.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= _leaves(v, path + ".")
        else:
            out.add(path)
    return out


def readme(current: str, values_text: str) -> str:
    """`current` with the text between the markers replaced by the values table."""
    if BEGIN not in current or END not in current:
        raise ValuesDocError(f"charts/modelrollout/README.md must hold the markers {BEGIN} and {END}")
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{values_table(values_text)}{END}{tail}"


def expected() -> dict[Path, str]:
    """Every generated file of the chart and the text it must have."""
    out = {CHART / dst: (ROOT / src).read_text(encoding="utf-8") for dst, src in COPIES.items()}
    values_text = (CHART / "values.yaml").read_text(encoding="utf-8")
    out[CHART / "README.md"] = readme((CHART / "README.md").read_text(encoding="utf-8"), values_text)
    return out


def stale() -> list[Path]:
    return [p for p, text in expected().items() if not p.is_file() or p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in ([], ["--check"]):
        print("usage: python charts/generate.py [--check]", file=sys.stderr)
        return 2
    try:
        if argv == ["--check"]:
            out = stale()
            for p in out:
                print(f"{p.relative_to(ROOT)} is out of date: run python charts/generate.py", file=sys.stderr)
            return 1 if out else 0
        for path, text in expected().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path.relative_to(ROOT)}")
    except ValuesDocError as e:
        print(f"charts/generate.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
