"""The architecture, checked from the source: which package may import which, and no import cycles.

    policies   the pure core: imports nothing of the project but itself, and nothing that does I/O
    kubeio     Kubernetes plumbing: policies only
    router     data plane: policies only
    controller control plane: policies and kubeio
    modelrollout  the layer above (CLI, local runtime, demo, replay, report, plugin): anything

Every import counts, including the ones inside functions: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("policies", "kubeio", "router", "controller", "modelrollout")
ALLOWED = {
    "policies": {"policies"},
    "kubeio": {"kubeio", "policies"},
    "router": {"router", "policies", "kubeio"},
    "controller": {"controller", "policies", "kubeio"},
    "modelrollout": set(PACKAGES),
}
# Modules that do I/O (files, sockets, processes, clocks of the wall) and may not appear in policies/.
IO_MODULES = {"os", "io", "socket", "subprocess", "pathlib", "shutil", "tempfile", "httpx", "aiohttp", "requests",
              "urllib", "kubernetes", "prometheus_client", "prometheus_api_client", "asyncio", "threading",
              "multiprocessing", "pyarrow", "csv", "sqlite3", "http", "uvicorn", "fastapi", "time", "glob",
              "signal", "select", "selectors", "logging"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module (project or not) that `name` imports, resolved to the longest known project module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        for t in targets:
            parts = t.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in known:
                    found.add(cand)
                    break
            else:
                found.add(parts[0])
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_packages_import_only_what_the_layering_allows():
    bad = []
    for mod, deps in graph().items():
        pkg = mod.split(".")[0]
        for dep in deps:
            top = dep.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[pkg]:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_policies_does_no_io():
    bad = [f"{mod} -> {dep}" for mod, deps in graph().items() if mod.split(".")[0] == "policies"
           for dep in deps if dep.split(".")[0] in IO_MODULES]
    assert not bad, "policies/ imports modules that do I/O:\n" + "\n".join(sorted(bad))


def _project_graph() -> dict[str, set[str]]:
    g = graph()
    # A package's __init__ re-exporting its modules is not a cycle with them: the edge that matters is
    # a module importing another module. Drop edges into a package from inside it.
    out = {}
    for mod, deps in g.items():
        out[mod] = {d for d in deps if d in g and not mod.startswith(d + ".")}
    return out


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    cycles = find_cycles(_project_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_a_forbidden_import_and_a_cycle(tmp_path):
    # The rules above must be able to fail: a cycle is found, and a lazy router -> controller import is seen.
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from controller.core import x\n")
    assert "controller.core" in imports_of("router.m", src, {"router.m", "controller.core"})


def test_product_modules_stay_readable():
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in modules().values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 650]
    assert not big, "modules over 650 lines (split them by concept):\n" + "\n".join(big)


def test_the_readme_layout_table_matches_the_tree():
    """Every top-level folder in the repository has a row in the README's layout table, and every row is a
    folder that exists."""
    import re
    import subprocess

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([^`/]+)/` \|", table, flags=re.M))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    folders = {line.split("/", 1)[0] for line in tracked.splitlines() if "/" in line}
    folders = {f for f in folders if not f.startswith(".")}
    assert rows == folders, f"README layout rows {sorted(rows)} vs folders {sorted(folders)}"
