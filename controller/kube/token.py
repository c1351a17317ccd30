"""The controller's credential for the routers' internal endpoints (`/summaries`; router/internal_auth.py).

`--router-token-file FILE` names a ServiceAccount token issued for the routers' audience (the manifests
mount a projected token with audience `modelrollout-router`, which the kubelet rotates). `RouterToken` puts
it in `Authorization: Bearer` of every router request, re-reading the file every `refresh` seconds so a
rotated token is picked up. A token for that audience is worthless against the apiserver, so a router
(or whoever answers at an address the EndpointSlices list) learns nothing it could use elsewhere.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

import httpx

log = logging.getLogger("modelrollout.controller")


class RouterToken(httpx.Auth):
    def __init__(self, path: str, refresh: float = 60.0):
        self.path, self.refresh = path, refresh
        self._token: str | None = None
        self._read_at = -1e18
        self._lock = threading.Lock()

    def token(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self.refresh:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        self._token = f.read().strip() or None
                except OSError as e:
                    log.warning("router token %s: %s; router requests go without it", self.path, e.strerror)
                    self._token = None
                self._read_at = now
            return self._token

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        token = self.token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request
