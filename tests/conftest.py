"""Shared test setup: the real control plane fixtures (tests/cluster) are available to every test."""
pytest_plugins = ["tests.cluster.fixtures"]
