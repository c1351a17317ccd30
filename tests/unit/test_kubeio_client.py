"""`kubeio.load_client`: the apiserver connections it keeps for a process with many threads."""
from __future__ import annotations

import yaml

from kubeio import load_client


def _kubeconfig(path):
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    return str(path)


def test_the_pool_keeps_a_connection_per_thread_asked_for(tmp_path):
    """With 16 reconcile workers the library's default pool (5 per CPU) would drop the connections beyond it
    after each call and open new ones (a TLS handshake per status write); `pool_size` keeps that many."""
    config = _kubeconfig(tmp_path / "kubeconfig")
    api = load_client(config, pool_size=64)
    assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == 64
    assert api.configuration.host == "https://127.0.0.1:1"
    default = load_client(config)
    assert default.rest_client.pool_manager.connection_pool_kw["maxsize"] == default.configuration.connection_pool_maxsize
    assert load_client(config, pool_size=1).rest_client.pool_manager.connection_pool_kw["maxsize"] == \
        default.configuration.connection_pool_maxsize        # never fewer than the library's default
