"""The routers' summaries of a rollout, for the report of a rollout in a cluster (when they are reachable).

Each router replica answers `GET /v1/rollouts/{name}/summaries` (docs/contracts.md, "Summaries") with the
buckets it still holds (`--retention`, 15 min by default); the report adds every replica's buckets of the
rollout's current revision and draws per-version error rate, latency and prediction distributions from
them. A replica that cannot be read is named in the returned problems, never fatal: the report is drawn
from the status alone then.
"""
from __future__ import annotations

from typing import Any, Sequence

from policies.errors import ModelRolloutError
from policies.outcome.bucket import Bucket, in_analysis_window


def router_buckets(urls: Sequence[str], spec: Any, start: float, end: float, timeout: float = 5.0,
                   token: str | None = None) -> tuple[list[Bucket], list[str]]:
    """(every bucket of `spec`'s revision in [start, end] the routers at `urls` hold, one sentence per
    router that could not be read). `token` goes as `Authorization: Bearer` (routers that run with
    `--internal-auth kubernetes` answer only a token issued for their audience)."""
    import httpx

    buckets: list[Bucket] = []
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=timeout, headers=headers) as http:
        for url in urls:
            where = f"router {url}"
            try:
                r = http.get(f"{url.rstrip('/')}/v1/rollouts/{spec.name}/summaries",
                             params={"namespace": spec.namespace, "start": f"{start:.3f}", "end": f"{end:.3f}"})
            except httpx.HTTPError as e:
                problems.append(f"{where}: unreachable ({type(e).__name__}: {e})")
                continue
            if r.status_code != 200:
                hint = ""
                if r.status_code in (401, 403):
                    hint = (" (the router runs with --internal-auth kubernetes: pass --router-token-file with a "
                            "token for its audience, or read its prediction log with --log)")
                problems.append(f"{where}: HTTP {r.status_code}: {r.text[:200]}{hint}")
                continue
            try:
                body = r.json()
                buckets += in_analysis_window(body["windows"], spec, start, float(body.get("bucket_seconds") or 5.0))
            except (ValueError, KeyError, TypeError, ModelRolloutError) as e:
                problems.append(f"{where}: the summaries do not decode: {e}")
    return buckets, problems


def log_buckets(paths: Sequence[str], spec: Any, start: float, end: float) -> tuple[list[Bucket], list[str]]:
    """(the buckets a router would have served for `spec` between `start` and `end`, rebuilt from its
    prediction log files or directories, one sentence per path that could not be read). Buckets are
    `interval / 2` wide (0.5 to 5 s), so each analysis window gets whole buckets."""
    from policies.outcome import rebuild
    from router.predlog import read_log

    problems: list[str] = []
    records = []
    for path in paths:
        try:
            records += [r for r in read_log([path]) if start - 5.0 <= r.time <= end]
        except (OSError, ModelRolloutError) as e:
            problems.append(f"prediction log {path}: {e}")
    width = min(max(spec.analysis.interval / 2, 0.5), 5.0)
    return rebuild(records, spec, width), problems
