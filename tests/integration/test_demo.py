"""`modelrollout demo --fast` from a fresh virtualenv: the README's first command works on a new machine."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.integration.test_report import census

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(os.environ.get("MODELROLLOUT_WHEELHOUSE", Path.home() / ".cache" / "modelrollout" / "wheelhouse"))


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Wheels of the project's dependencies at the versions the test venv runs, built once and cached, so a
    fresh venv installs offline (`--no-index`) in seconds rather than downloading every time."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    freeze = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).stdout
    key = hashlib.sha256(("\n".join(deps) + freeze).encode()).hexdigest()[:16]
    target = WHEELHOUSE / key
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        constraints = target / "constraints.txt"
        constraints.write_text("\n".join(line for line in freeze.splitlines() if "==" in line) + "\n")
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", target, "-c", constraints, *deps,
              "setuptools>=68", "wheel"], timeout=900)
        (target / ".complete").write_text(key)
    return target


def test_demo_runs_from_a_fresh_venv_and_writes_the_report(wheelhouse, tmp_path):
    """Installed with pip into an empty venv, `modelrollout demo --fast` promotes the healthy candidate, rolls
    back the drifting one, exits 0 and writes a report with both rollouts' charts."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    _run([venv / "bin" / "pip", "install", "-q", "--no-index", "--find-links", wheelhouse, REPO], timeout=600)
    work = tmp_path / "work"          # not the repository: the demo must run from what pip installed
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([venv / "bin" / "modelrollout", "demo", "--fast"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "demo/fraud-healthy: Promoted (as expected)" in out
    assert "demo/fraud-drifting: RolledBack (as expected)" in out
    report = work / "modelrollout-report.html"
    assert f"report: {report}" in out
    sections = census(report.read_text()).sections
    assert sections["demo/fraud-healthy"]["outcome"] == "Promoted"
    assert sections["demo/fraud-drifting"]["outcome"] == "RolledBack"
    for s in sections.values():
        assert s["checks"] == {"score-psi", "errors", "latency", "age-drift"}
        assert s["points"] > 0 and s["threshold_lines"] >= 1
        assert s["baseline_bars"] > 5 and s["candidate_bars"] > 5
    assert "RolledBack" in sections["demo/fraud-drifting"]["phases"]
    # What pip put into site-packages: the product's packages and nothing generic besides them.
    probe = subprocess.run([venv / "bin" / "python", "-c", (
        "import importlib.metadata as m, importlib.util as u\n"
        "files = m.distribution('modelrollout').files\n"
        "print(sorted({f.parts[0] for f in files if f.suffix == '.py' and len(f.parts) > 1}))\n"
        "print(u.find_spec('examples') is None)")], cwd=work, env=env, capture_output=True, text=True)
    tops, no_examples = probe.stdout.splitlines()
    assert tops == str(["controller", "kubeio", "modelrollout", "policies", "router"]), probe.stdout + probe.stderr
    assert no_examples == "True"
