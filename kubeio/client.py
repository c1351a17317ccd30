"""Loading a Kubernetes API client: an explicit kubeconfig, else the in-cluster service account, else the
default kubeconfig (`$KUBECONFIG`, `~/.kube/config`)."""
from __future__ import annotations


def load_client(kubeconfig: str | None):
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()
