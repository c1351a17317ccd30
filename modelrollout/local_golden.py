"""Golden sets in local mode: the ConfigMaps of the rollout file stand in for the cluster's.

`modelrollout run FILE --local` (and `modelrollout router --config FILE` users who run golden steps with the
local runtime) keep the golden set where `kubectl apply -f FILE` would put it: a ConfigMap document in the
same file, beside the ModelRollout that names it. `config_maps(path)` collects them; `LocalConfigMaps` reads a
key the way the controller reads it from the apiserver (`controller.kube.configmaps`), and the golden step
runs through `controller.golden.GoldenRunner` against the local router, the same path as in a cluster.
`modelrollout replay` judges a golden step on the golden answers the router logged (`LoggedGolden`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from controller.golden import GoldenUnavailable
from policies.golden import GoldenAnswer, GoldenRun
from policies.outcome import Outcome
from policies.spec import RolloutSpec, SpecError


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


class LoggedGolden:
    """Replay's golden runner: the golden answers a router logged (role `golden`, request ids
    `golden-RUN-INDEX`), run by run in the order they were made, judged against the golden set read as local
    mode reads it (inline, the ConfigMaps of the rollout file, or the URL). The n-th golden run replay asks for is
    the n-th complete run of the revision in the log; none left: Inconclusive, saying so."""

    def __init__(self, records: Iterable[Outcome], maps: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
                 source: str = "the rollout file"):
        self.records = [r for r in records if r.role == "golden"]
        self.maps, self.source = maps or {}, source
        self.used: dict[str, int] = {}

    def run(self, spec: RolloutSpec) -> GoldenRun:
        import httpx

        from controller.golden import GoldenRunner

        loader = GoldenRunner(httpx.Client(), lambda s: [], LocalConfigMaps(self.maps, self.source))
        try:
            cases = loader.load(spec)
        finally:
            loader.close()
            loader.http.close()
        runs: dict[str, dict[tuple[str, int], Outcome]] = {}
        for r in sorted(self.records, key=lambda r: r.time):
            if r.revision != spec.revision or r.rollout != spec.name or r.namespace not in ("", spec.namespace):
                continue
            run, _, index = r.request_id.rpartition("-")
            if run.startswith("golden-") and index.isdigit():
                runs.setdefault(run, {})[(r.arm, int(index))] = r
        complete = [got for got in runs.values()
                    if all((arm, i) in got for arm in ("baseline", "candidate") for i in range(len(cases)))]
        n = self.used.get(spec.key, 0)
        if n >= len(complete):
            raise GoldenUnavailable(f"the log holds {len(complete)} complete golden run(s) of {spec.revision} for "
                                    f"the {len(cases)} request(s) of the golden set, none left to replay")
        self.used[spec.key] = n + 1
        got = complete[n]

        def answers(arm: str) -> tuple[GoldenAnswer, ...]:
            return tuple(GoldenAnswer(got[(arm, i)].status, got[(arm, i)].error, got[(arm, i)].output)
                         for i in range(len(cases)))
        return GoldenRun(tuple(cases), answers("baseline"), answers("candidate"))
