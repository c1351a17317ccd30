"""The golden step's evidence: load the golden set, have a router replica call both versions with it.

The controller only orchestrates: it reads the set (inline, a ConfigMap of the rollout's namespace through
`config_maps`, or a URL), posts it to one ready router replica's internal `POST /v1/rollouts/{name}/golden`
(the router calls both versions with every request, the way it calls them for live traffic, and answers the
pairs: docs/contracts.md "The golden step") and hands the answers to the pure judge (`policies.golden`). Local mode
uses the same runner against its own router, with the ConfigMaps of its rollout file.

Anything that keeps the set from being answered (no router, a refusal, a timeout, a missing ConfigMap, a
malformed set) raises `GoldenUnavailable`; `controller.core` turns it into Inconclusive golden checks.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import httpx

from policies.errors import EvidenceError, ModelRolloutError
from policies.golden import GoldenRun
from policies.golden_spec import MAX_SET_BYTES, GoldenCase, parse_set
from policies.spec import RolloutSpec

GOLDEN_CONCURRENCY = 8
"""Golden requests the router has in flight at once (each to both versions): the router's own limit."""


class GoldenUnavailable(EvidenceError):
    """The golden set could not be read or answered this time; the message says why."""


ConfigMapReader = Callable[[str, str, str], str]
"""config_maps(namespace, name, key) -> the key's text; raises GoldenUnavailable naming what is missing."""


def golden_timeout(spec: RolloutSpec, n: int) -> float:
    """How long one router may take to answer `n` golden requests: every call is bounded by
    `spec.timeout`, and the router has `GOLDEN_CONCURRENCY` requests in flight at once."""
    return spec.timeout * math.ceil(max(n, 1) / GOLDEN_CONCURRENCY) + 5.0


class GoldenRunner:
    """`run(spec)` → `GoldenRun`: the golden set of `spec`'s golden step and both versions' answers.

    `http` carries the routers' credentials (the controller's router client); the set's URL is fetched
    with `fetch`, a client that sends no credentials."""

    def __init__(self, http: httpx.Client, routers: Callable[[RolloutSpec], Sequence[str]],
                 config_maps: ConfigMapReader | None = None, fetch: httpx.Client | None = None):
        self.http, self.routers, self.config_maps = http, routers, config_maps
        self.fetch = fetch or httpx.Client(timeout=10.0, follow_redirects=True)

    def load(self, spec: RolloutSpec) -> tuple[GoldenCase, ...]:
        g = spec.golden
        if g is None:
            raise GoldenUnavailable("the spec has no golden step")
        try:
            if g.config_map is not None:
                if self.config_maps is None:
                    raise GoldenUnavailable(f"cannot read ConfigMap {g.config_map} here")
                text = self.config_maps(spec.namespace, g.config_map, g.key or "")
                return parse_set(text, f"ConfigMap {spec.namespace}/{g.config_map} key {g.key}")
            if g.url is not None:
                return parse_set(self._get(g.url), g.url)
            return g.requests
        except GoldenUnavailable:
            raise
        except ModelRolloutError as e:           # a malformed set: SpecError naming the line
            raise GoldenUnavailable(f"golden set: {e}") from e

    def _get(self, url: str) -> str:
        try:
            with self.fetch.stream("GET", url) as r:
                if r.status_code != 200:
                    raise GoldenUnavailable(f"golden set {url}: HTTP {r.status_code}")
                data = b""
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > MAX_SET_BYTES:
                        raise GoldenUnavailable(f"golden set {url}: larger than {MAX_SET_BYTES} bytes")
        except httpx.HTTPError as e:
            raise GoldenUnavailable(f"golden set {url}: {type(e).__name__}: {e}") from e
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GoldenUnavailable(f"golden set {url}: not UTF-8 text") from e

    def run(self, spec: RolloutSpec) -> GoldenRun:
        cases = self.load(spec)
        urls = list(self.routers(spec))
        if not urls:
            raise GoldenUnavailable("no router replica known (no ready endpoints and no --router-url)")
        body = {"revision": spec.revision, "requests": [c.request for c in cases]}
        problems = []
        for url in urls:          # one replica answers; the next is tried when one cannot
            target = f"{url.rstrip('/')}/v1/rollouts/{spec.name}/golden"
            try:
                r = self.http.post(target, params={"namespace": spec.namespace}, json=body,
                                   timeout=golden_timeout(spec, len(cases)))
            except httpx.HTTPError as e:
                problems.append(f"{url}: {type(e).__name__}: {e}")
                continue
            if r.status_code != 200:
                problems.append(f"{url}: HTTP {r.status_code}: {r.text[:200]}")
                continue
            try:
                return GoldenRun.from_wire(r.json(), cases)
            except (ValueError, ModelRolloutError) as e:
                problems.append(f"{url}: {e}")
        raise GoldenUnavailable("no router replica answered the golden set: " + "; ".join(problems))

    def close(self) -> None:
        self.fetch.close()
