"""A real Kubernetes control plane (etcd + kube-apiserver + kubectl built from Go modules) for the tests."""
from tests.cluster.plane import ControlPlane, ControlPlaneError, KubectlError

__all__ = ["ControlPlane", "ControlPlaneError", "KubectlError"]
