"""Golden sets in local mode: the ConfigMaps of the rollout file stand in for the cluster's.

`modelrollout run FILE --local` (and `modelrollout router --config FILE` users who run golden steps with the
local runtime) keep the golden set where `kubectl apply -f FILE` would put it: a ConfigMap document in the
same file, beside the ModelRollout that names it. `config_maps(path)` collects them; `LocalConfigMaps` reads a
key the way the controller reads it from the apiserver (`controller.kube.configmaps`), and the golden step
runs through `controller.golden.GoldenRunner` against the local router, the same path as in a cluster.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from controller.golden import GoldenUnavailable
from policies.spec import SpecError


def config_maps(path: str | Path) -> dict[tuple[str, str], dict[str, str]]:
    """`{(namespace, name): data}` of every ConfigMap document in the YAML file at `path`."""
    import yaml

    try:
        docs = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(str(path), f"cannot read ConfigMaps: {e}") from e
    out: dict[tuple[str, str], dict[str, str]] = {}
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or d.get("kind") != "ConfigMap" or d.get("apiVersion") != "v1":
            continue
        meta = d.get("metadata") or {}
        data = d.get("data") or {}
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not isinstance(data, dict):
            raise SpecError(f"{path}[{i}]", "a ConfigMap needs metadata.name and a data mapping")
        out[(str(meta.get("namespace") or "default"), meta["name"])] = {str(k): str(v) for k, v in data.items()}
    return out


class LocalConfigMaps:
    """`(namespace, name, key) -> text` over the ConfigMaps of the rollout file."""

    def __init__(self, maps: Mapping[tuple[str, str], Mapping[str, Any]], source: str = "the rollout file"):
        self.maps, self.source = maps, source

    def __call__(self, namespace: str, name: str, key: str) -> str:
        data = self.maps.get((namespace, name))
        what = f"ConfigMap {namespace}/{name} key {key}"
        if data is None:
            raise GoldenUnavailable(f"{what}: not found in {self.source} (local mode reads the ConfigMaps of the "
                                    "rollout file)")
        if key not in data:
            raise GoldenUnavailable(f"{what}: no such key (keys: {', '.join(sorted(data)) or 'none'})")
        return str(data[key])
