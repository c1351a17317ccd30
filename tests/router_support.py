"""Helpers for router tests: rollout documents, real processes on free loopback ports, concurrent clients."""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import aiohttp
import httpx
import yaml

from modelrollout.models import proc as _proc


def rollout_doc(name: str, baseline: str, candidate: str, *, weight: float | None = None, shadow: bool = False,
                interleave: bool = False, phase: str | None = None, kind: str = "score",
                namespace: str = "ml", sticky: str | None = "x-user-id", timeout: str = "2s",
                shadow_timeout: str = "2s", checks: list | None = None, versions=("v1", "v2")) -> dict:
    """A ModelRollout document routed by `status.routing` (omitted when weight is None and no flags)."""
    spec: dict[str, Any] = {
        "baseline": {"version": versions[0], "url": baseline},
        "candidate": {"version": versions[1], "url": candidate},
        "predictPath": "/predict",
        "output": {"kind": kind, "path": "ranking" if kind == "ranking" else "prediction"},
        "strategy": {"steps": [{"interleave": {}}] if kind == "ranking" else [{"canary": {"weight": 50}}]},
        "timeout": timeout, "shadowTimeout": shadow_timeout,
    }
    if kind != "ranking":
        spec["features"] = {"path": "features"}
        spec["analysis"] = {"checks": checks if checks is not None else [
            {"name": "age-drift", "metric": "psi", "on": "feature:age", "max": 0.2},
            {"name": "fairness", "metric": "disparate-impact", "segment": "gender", "min": 0.8}]}
    if sticky:
        spec["strategy"]["stickiness"] = {"header": sticky}
    doc: dict[str, Any] = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    status: dict[str, Any] = {}
    if weight is not None or shadow or interleave:
        status["routing"] = {"candidateWeight": weight or 0, "shadow": shadow, "interleave": interleave}
    if phase:
        status["phase"] = phase
    if status:
        doc["status"] = status
    return doc


def write_config(path: Path, docs: Sequence[dict]) -> Path:
    """Write the YAML atomically (rename), as an operator's editor or a ConfigMap update would."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    os.replace(tmp, path)
    return path


class Procs:
    """Starts real processes for one test and stops every one of them afterwards (even on failure)."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[_proc.Proc] = []

    def scorer(self, version: str = "v1", *args: Any) -> _proc.Proc:
        return self._start("modelrollout.models.scorer", ["--version", version, *args])

    def echo(self, version: str = "v1", *args: Any) -> _proc.Proc:
        """modelrollout.models.echo: answers with what it received (method, path, headers, body)."""
        return self._start("modelrollout.models.echo", ["--version", version, *args])

    def ranker(self, version: str = "r1", *args: Any) -> _proc.Proc:
        return self._start("modelrollout.models.ranker", ["--version", version, *args])

    def router(self, config: Path, *args: Any) -> _proc.Proc:
        return self._start("router.server", ["--config", str(config), *args], ready="/readyz")

    def _start(self, module: str, args: list, ready: str = "/healthz") -> _proc.Proc:
        # 60 s: on a shared 2-core machine a router (FastAPI, numpy, scipy imports) can take 20 s to listen
        p = _proc.start(module, args, ready=ready, log_dir=self.tmp_path / "proc-logs", timeout=60)
        self.started.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.started):
            p.stop()


def body(age: float = 40.0, gender: str = "f", i: int = 0) -> dict:
    return {"features": {"age": age, "gender": gender, "amount": 10.0 + i, "i": i}}


async def _post_all(requests: Sequence[tuple[str, Any, dict]], concurrency: int) -> list[tuple[int, dict, bytes]]:
    sem = asyncio.Semaphore(concurrency)
    out: list[Any] = [None] * len(requests)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        async def one(i, url, payload, headers):
            async with sem:
                data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
                async with s.post(url, data=data, headers={"content-type": "application/json", **headers}) as r:
                    out[i] = (r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read())
        await asyncio.gather(*(one(i, *req) for i, req in enumerate(requests)))
    return out


def post_many(requests: Sequence[tuple[str, Any, dict]], concurrency: int = 16) -> list[tuple[int, dict, bytes]]:
    """POST every (url, json body or bytes, headers) concurrently; (status, headers, body) in order."""
    return asyncio.run(_post_all(requests, concurrency))


def summaries(router_url: str, name: str, **params) -> dict:
    r = httpx.get(f"{router_url}/v1/rollouts/{name}/summaries", params=params, timeout=10)
    r.raise_for_status()
    return r.json()


def wait_until(predicate, timeout: float = 10.0, every: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value (returned); raise naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} did not hold within {timeout}s")


def metric_value(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def metrics_once(router_url: str, name: str, want: float, timeout: float = 10.0, **labels) -> str:
    """The router's /metrics once `name{labels}` reached `want` (or at the timeout): counts the worker keeps
    (transparent-mode answers, shadow calls) reach /metrics when the worker answers the scrape, which a
    worker still starting on a busy machine may not do at once. The caller asserts the values."""
    text = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(f"{router_url}/metrics", timeout=10).text
        if metric_value(text, name, **labels) >= want:
            break
        time.sleep(0.1)
    return text
