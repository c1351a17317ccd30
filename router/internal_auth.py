"""Who may read the router's internal endpoints: `/v1/rollouts/{name}/summaries` and `/v1/summaries` (every
version's prediction distributions, for the controller), `/v1/rollouts/{name}/golden` and `/metrics` (for
Prometheus).

With `--internal-auth kubernetes` a request to one of them must carry `Authorization: Bearer TOKEN`, a
Kubernetes ServiceAccount token issued for one of the `--internal-auth-audience`s (default only
`modelrollout-router`, so a token meant for the apiserver is refused, and the router-audience token the
controller sends is useless against the apiserver; a scraper that can only present a token Secret, which is
issued for the apiserver's audience, needs that audience added, at the cost of the separation). The router
asks the apiserver:

1. a TokenReview (authentication.k8s.io/v1): is the token valid, for that audience, and whose is it;
2. a SubjectAccessReview (authorization.k8s.io/v1): may that user `get` the request's path as a
   non-resource URL. RBAC decides: the controller's ClusterRole grants `nonResourceURLs: [/v1/rollouts/*, /v1/summaries]`,
   `modelrollout-metrics-reader` grants `[/metrics]` (bind it to Prometheus's ServiceAccount).

No token or a rejected one: 401 with `WWW-Authenticate: Bearer`; a valid token without the permission: 403;
the apiserver unreachable: 503 (the caller retries; nothing is served unverified). Answers are cached per
(token digest, path) for `cache_seconds` (refusals for `refusal_seconds`), at most `max_entries`, and at most
`concurrency` reviews run at once, so neither the controller's polling nor a flood of made-up tokens turns
into a flood of apiserver calls beyond that. The router's own RBAC: `create` on tokenreviews and
subjectaccessreviews (the built-in ClusterRole `system:auth-delegator`). `--internal-auth none` (the
default outside the manifests) serves everyone, as before.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

log = logging.getLogger("modelrollout.router")

MODES = ("none", "kubernetes")
DEFAULT_AUDIENCE = "modelrollout-router"


class Refused(Exception):
    """Why a request for an internal endpoint is refused: an HTTP status and a sentence."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class TokenReviewer:
    """`await reviewer.check(authorization_header, path)`: returns the user name allowed, raises Refused."""

    def __init__(self, api_client: Any, audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,), *,
                 cache_seconds: float = 60.0,
                 refusal_seconds: float = 5.0, max_entries: int = 4096, concurrency: int = 4, timeout: float = 5.0):
        from kubernetes import client

        self.authn = client.AuthenticationV1Api(api_client)
        self.authz = client.AuthorizationV1Api(api_client)
        self.audiences = tuple(audiences)
        self.realm = self.audiences[0]
        self.cache_seconds, self.refusal_seconds, self.max_entries = cache_seconds, refusal_seconds, max_entries
        self.timeout = timeout
        self._sem = asyncio.Semaphore(concurrency)
        self._cache: OrderedDict[tuple[bytes, str], tuple[float, str | Refused]] = OrderedDict()
        self.reviews = 0
        """TokenReviews sent (cache misses), for tests and logs."""

    async def check(self, authorization: str | None, path: str) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused(401, f"{path} needs a ServiceAccount token for audience {self.realm!r}: "
                               "Authorization: Bearer TOKEN")
        key = (hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest(), path)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(key)
            answer = hit[1]
        else:
            async with self._sem:
                answer = await asyncio.to_thread(self._review, token, path)
            ttl = self.cache_seconds if isinstance(answer, str) else self.refusal_seconds
            if not (isinstance(answer, Refused) and answer.status >= 500):
                self._cache[key] = (time.monotonic() + ttl, answer)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        if isinstance(answer, Refused):
            raise answer
        return answer

    def _review(self, token: str, path: str) -> str | Refused:
        from kubernetes import client

        self.reviews += 1
        try:
            review = self.authn.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(
                token=token, audiences=list(self.audiences))), _request_timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - apiserver down, RBAC missing: the caller tries again
            log.warning("internal auth: TokenReview failed: %s", _short(e))
            return Refused(503, f"cannot verify the token now (TokenReview failed: {_short(e)}); try again")
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            why = (status.error if status is not None and status.error else "not a valid token")
            return Refused(401, f"token refused for audience {' or '.join(self.audiences)}: {why}"[:300])
        user = status.user
        try:
            sar = self.authz.create_subject_access_review(client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user.username, groups=user.groups, uid=user.uid, extra=user.extra,
                    non_resource_attributes=client.V1NonResourceAttributes(path=path, verb="get"))),
                _request_timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            log.warning("internal auth: SubjectAccessReview failed: %s", _short(e))
            return Refused(503, f"cannot authorize the request now (SubjectAccessReview failed: {_short(e)}); "
                                "try again")
        if sar.status is None or not sar.status.allowed:
            return Refused(403, f"{user.username} may not get {path} (RBAC: nonResourceURLs)")
        return user.username


def _short(e: Exception) -> str:
    status = getattr(e, "status", None)
    return f"HTTP {status} {getattr(e, 'reason', '')}".strip() if status else type(e).__name__


def reviewer_from(settings: Any, kubeconfig: str | None = None) -> TokenReviewer | None:
    """The reviewer `settings.internal_auth` asks for (None for "none"); ValueError when no Kubernetes
    client can be loaded."""
    if settings.internal_auth == "none":
        return None
    from kubeio import load_client

    try:
        api = load_client(kubeconfig or settings.auth_kubeconfig)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"--internal-auth kubernetes: cannot load a Kubernetes client: {e}") from e
    return TokenReviewer(api, settings.internal_auth_audiences)


def internal_guard(settings: Any) -> list:
    """FastAPI `dependencies=` for the internal routes: [] when `settings.internal_auth` is "none"."""
    reviewer = reviewer_from(settings)
    if reviewer is None:
        return []
    async def authorized(request: Request) -> None:
        try:
            await reviewer.check(request.headers.get("authorization"), request.url.path)
        except Refused as e:
            headers = {"WWW-Authenticate": f'Bearer realm="{reviewer.realm}"'} if e.status == 401 else None
            raise HTTPException(e.status, e.detail, headers=headers) from None

    return [Depends(authorized)]
