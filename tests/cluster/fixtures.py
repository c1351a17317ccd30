"""pytest fixtures over tests.cluster.plane: one real control plane per session, a fresh namespace per test.

Registered for the whole suite by tests/conftest.py (`pytest_plugins = ["tests.cluster.fixtures"]`);
nothing starts unless a test asks for one of these fixtures.
"""
from __future__ import annotations

import re
import secrets
import subprocess
from typing import Callable, Iterator

import pytest

from tests.cluster.plane import ControlPlane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's ControlPlane (built binaries, or KUBECONFIG_E2E's cluster); stopped at session end."""
    with ControlPlane() as plane:
        yield plane


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> str:
    """Path of the admin kubeconfig (system:masters)."""
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Callable[..., subprocess.CompletedProcess]:
    """`kubectl(*args, input=None, check=True)` runs the plane's kubectl as admin and returns CompletedProcess.

    With check=True a non-zero exit raises KubectlError (a CalledProcessError whose str() shows stderr).
    """
    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return control_plane.run_kubectl(*args, input=input, check=check)

    return run


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane):
    """A kubernetes.client.ApiClient authenticated as admin."""
    with control_plane.api_client() as api:
        yield api


@pytest.fixture
def namespace(request: pytest.FixtureRequest, k8s_api) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (it stays Terminating: no controller-manager)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "test"
    name = f"t-{stem}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace({"metadata": {"name": name, "labels": {"modelrollout.io/test": "true"}}})
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def restricted_kubeconfig(control_plane: ControlPlane) -> Callable[..., str]:
    """Factory `restricted_kubeconfig(namespace, name="restricted") -> path`: a kubeconfig for that
    ServiceAccount's bearer token only (created if missing), so only RBAC bindings grant it anything."""
    def make(namespace: str, name: str = "restricted") -> str:
        return control_plane.service_account_kubeconfig(namespace, name)

    return make


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess]:
    """`helm(*args, check=True, kubeconfig=None)` runs the helm CLI built by tests/cluster/build-helm.sh (or the one
    in $MODELROLLOUT_HELM_BIN) with its config, cache and data in a temp dir, never the user's."""
    import os
    from pathlib import Path

    bin_dir = os.environ.get("MODELROLLOUT_HELM_BIN")
    if not bin_dir:
        script = Path(__file__).resolve().parent / "build-helm.sh"
        bin_dir = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1]
    binary = str(Path(bin_dir) / "helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, check: bool = True, kubeconfig: str | None = None,
            timeout: float = 300.0) -> subprocess.CompletedProcess:
        out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                             env={**env, **({"KUBECONFIG": kubeconfig} if kubeconfig else {})})
        if check and out.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out

    return run
