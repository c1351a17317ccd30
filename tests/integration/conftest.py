"""Fixtures for router integration tests: real model servers and routers on free loopback ports."""
from __future__ import annotations

import pytest

from tests.router_support import Procs


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()
