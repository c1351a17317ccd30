"""`modelrollout router --kube` against a real apiserver: the same program, server and tuning as `--config`."""
from __future__ import annotations

import httpx

from tests.e2e.conftest import logs, wait_for

pytestmark = __import__("pytest").mark.usefixtures("mro_crd")


def test_kube_router_serves_on_uvloop_and_httptools_like_the_config_router(procs, kubeconfig, namespace):
    """The in-cluster router is the measured one: uvicorn on uvloop with the httptools protocol and coalesced
    writes (before, `router --kube` ran on the plain asyncio loop)."""
    router = procs.router(kubeconfig, namespace)
    wait_for(lambda: httpx.get(f"{router.url}/readyz", timeout=2).status_code == 200, 20, "router ready",
             diagnose=lambda: logs(router))
    text = httpx.get(f"{router.url}/metrics", timeout=5).text
    info = [line for line in text.splitlines() if line.startswith("modelrollout_router_server_info{")]
    assert info == ['modelrollout_router_server_info{event_loop="uvloop",http="httptools-coalesced"} 1.0'], info
