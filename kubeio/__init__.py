"""Kubernetes plumbing shared by the controller and the router's Kubernetes source: loading a client and
listing/watching ModelRollouts with relists. It knows the API's names (`policies.api`) and nothing of
routing or decisions."""
from kubeio.client import load_client
from kubeio.watch import ListWatcher, object_key

__all__ = ["ListWatcher", "load_client", "object_key"]
