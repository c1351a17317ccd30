"""charts/generate.py: the chart's copies of the manifests and its values table are in sync, and the
generator refuses values.yaml keys it cannot document (the README is never written twice)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelrollout"


def _generator():
    spec = importlib.util.spec_from_file_location("chart_generate", ROOT / "charts" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _generator()


def test_chart_files_are_in_sync_with_their_sources():
    """`python charts/generate.py --check` passes: files/ equals manifests/, the README table equals values.yaml."""
    out = subprocess.run([sys.executable, str(ROOT / "charts" / "generate.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_every_value_is_in_the_readme_with_its_default():
    """Each leaf of values.yaml is a row of the README (itself or its documented parent), default included."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    table = readme.split(gen.BEGIN, 1)[1].split(gen.END, 1)[0]
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines()[2:]}
    assert "router.service.type" in rows and '`"ClusterIP"`' in rows["router.service.type"]
    assert "controller.replicas" in rows and "| int | `2` |" in rows["controller.replicas"]
    for leaf in gen._leaves(values):
        assert leaf in rows or any(leaf.startswith(r + ".") for r in rows), leaf


def test_the_generator_finds_comments_keys_and_gaps():
    """Nested keys get their dotted path and multi-line descriptions; a key without a description, or a
    description not followed by a key, is an error naming it."""
    text = ("a:\n  # -- first line\n  # second line\n  b: 1\n  # -- a list\n  c: [x]\n"
            "# -- top\nd: {}\n")
    assert gen.documented_keys(text) == [("a.b", "first line second line"), ("a.c", "a list"), ("d", "top")]
    table = gen.values_table(text)
    assert "| `a.b` | int | `1` | first line second line |" in table and "| `d` | object | `{}` | top |" in table
    with pytest.raises(gen.ValuesDocError, match="a.e"):
        gen.values_table("a:\n  # -- x\n  b: 1\n  e: 2\n")
    with pytest.raises(gen.ValuesDocError, match="must be followed by a key"):
        gen.documented_keys("# -- orphan\n- item\n")


def test_check_names_a_stale_copy(tmp_path, monkeypatch):
    """A copy that differs from its source is reported by --check (and the generator rewrites it)."""
    chart = tmp_path / "charts" / "modelrollout"
    (chart / "files").mkdir(parents=True)
    (tmp_path / "manifests").mkdir()
    for dst, src in gen.COPIES.items():
        (tmp_path / src).write_text(f"source of {dst}\n")
        (chart / dst).write_text(f"source of {dst}\n")
    (chart / "files" / "alerts.yaml").write_text("stale\n")
    (chart / "values.yaml").write_text("# -- doc\nx: 1\n")
    (chart / "README.md").write_text(f"# t\n{gen.BEGIN}\n{gen.END}\n")
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "CHART", chart)
    assert {p.name for p in gen.stale()} == {"alerts.yaml", "README.md"}
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.stale() == []
    assert (chart / "files" / "alerts.yaml").read_text() == "source of files/alerts.yaml\n"
    assert "| `x` | int | `1` | doc |" in (chart / "README.md").read_text()
