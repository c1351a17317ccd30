"""The Dockerfile: one non-root image for controller and router, checked by hadolint when the venv has it."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_finds_nothing(hadolint):
    """hadolint reports no warning or error on the Dockerfile."""
    out = subprocess.run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_is_multi_stage_non_root_with_healthcheck():
    """The runtime stage runs as a numeric non-root user, has a HEALTHCHECK and enters `modelrollout`."""
    lines = [l.strip() for l in DOCKERFILE.read_text().splitlines() if l.strip() and not l.startswith("#")]
    froms = [l for l in lines if l.startswith("FROM ")]
    assert len(froms) == 2 and "slim" in froms[1]
    runtime = lines[lines.index(froms[1]):]
    user = [l for l in runtime if l.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    assert any(l.startswith("HEALTHCHECK ") for l in runtime)
    assert 'ENTRYPOINT ["modelrollout"]' in runtime


def test_build_context_keeps_sources_the_image_installs():
    """.dockerignore excludes tests and the venv but not the packages the Dockerfile copies."""
    ignored = {l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith("#")}
    assert {".venv", "tests", ".git"} <= ignored
    copied = [l.split()[1].rstrip("/") for l in DOCKERFILE.read_text().splitlines() if l.startswith("COPY ")
              and "--from" not in l]
    assert not [c for c in copied if c in ignored]


def test_image_copies_every_package_the_distribution_ships():
    """The build stage copies exactly the top-level packages pyproject.toml packages, plus pyproject itself."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {l.split()[1].rstrip("/") for l in DOCKERFILE.read_text().splitlines()
              if l.startswith("COPY ") and "--from" not in l}
    assert packages <= copied and "pyproject.toml" in copied
    assert all((ROOT / p).is_dir() for p in packages)
