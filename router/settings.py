"""Typed router settings, each with its unit, shared by the CLI and in-process users (local mode)."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RouterSettings:
    replica_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    """Names this router in summaries and log file names (one per replica)."""
    bucket_seconds: float = 5.0
    """Width of a summary window, seconds; windows are aligned to the epoch."""
    retention_seconds: float = 900.0
    """Closed windows older than this many seconds are dropped (bounds memory)."""
    allow_override: bool = False
    """Honour the `x-modelrollout-version` header (testing a version directly). Off by default: any client could
    otherwise route itself, e.g. to a rolled-back candidate. Overridden answers never enter the analysis."""
    max_body_bytes: int = 1024 * 1024
    """Largest accepted request body, bytes; larger → 413."""
    shadow_max_inflight: int = 256
    """Mirrors held at once, waiting for a connection to the candidate or in flight; beyond this a mirror is
    dropped and counted."""
    shadow_concurrency: int = 32
    """Shadow calls in flight at once per candidate, so at most this many keep-alive connections to it, reused
    the way the primary path reuses its connections to the baseline; further mirrors wait (see
    shadow_max_inflight). New connections are opened a few at a time (router.shadow.CONNECTS_AT_ONCE)."""
    reservoir: int = 2048
    """Uniform sample size kept per numeric summary (prediction, each watched feature) per window."""
    log_dir: Path | None = None
    """Directory of the append-only prediction log (JSONL); None = no log."""
    log_max_bytes: int = 64 * 1024 * 1024
    """A log file is rotated when it reaches this size, bytes (and at every hour)."""
    log_max_total: int | None = 1024 * 1024 * 1024
    """This replica's log files hold at most about this many bytes: beyond it the oldest closed files are
    deleted (the file being written is never deleted); None = no limit."""
    log_max_age: float | None = None
    """Closed log files last written longer ago than this, seconds, are deleted; None = no limit."""
    hash_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    """The HMAC key of the values the spec's `privacy` settings hash (`policies.privacy`); by default a random
    key for this process only (`--hash-key-file` gives a stable one)."""
    feedback_ttl_seconds: float = 3600.0
    """How long after its prediction a request id accepts feedback, seconds."""
    feedback_max_ids: int = 200_000
    """Accepted feedback ids remembered (until they expire) so each counts once (oldest forgotten first)."""
    feedback_key_file: Path | None = None
    """Keys of the signed feedback ids, one per line, the first signs (a Secret mounted into every replica);
    None: a random key for this process only."""
    upstream_connections: int = 512
    """Keep-alive connections per model upstream."""
    upstream_ca: Path | None = None
    """PEM file of CA certificates trusted for https model URLs, besides the system's."""
    worker: bool = True
    """Fold outcomes, write the prediction log and make shadow calls in a worker process (router.worker), off
    the event loop that answers requests."""
    worker_priority: str = "idle"
    """"idle": the worker runs only on CPU the request path does not want (Linux SCHED_IDLE; best tail
    latency, but under sustained full CPU records queue and summaries lag); "normal": it competes equally."""
    internal_auth: str = "none"
    """Who may read /summaries and /metrics: "none" (anyone who can connect) or "kubernetes" (a ServiceAccount
    token, checked with TokenReview and SubjectAccessReview; `router.internal_auth`)."""
    internal_auth_audiences: tuple[str, ...] = ("modelrollout-router",)
    """A token must be issued for one of these audiences (internal_auth "kubernetes")."""
    auth_kubeconfig: str | None = None
    """Kubeconfig of the client that sends the reviews; None: in-cluster, else $KUBECONFIG."""
    drain_seconds: float = 15.0
    """On shutdown, how long to wait for in-flight shadow calls before flushing the log, seconds."""

    def __post_init__(self):
        checks = [("bucket_seconds", self.bucket_seconds > 0), ("retention_seconds", self.retention_seconds > 0),
                  ("max_body_bytes", self.max_body_bytes > 0), ("shadow_max_inflight", self.shadow_max_inflight >= 0),
                  ("reservoir", self.reservoir > 0), ("log_max_bytes", self.log_max_bytes > 0),
                  ("log_max_total", self.log_max_total is None or self.log_max_total > 0),
                  ("log_max_age", self.log_max_age is None or self.log_max_age > 0),
                  ("feedback_ttl_seconds", self.feedback_ttl_seconds > 0),
                  ("feedback_max_ids", self.feedback_max_ids > 0),
                  ("upstream_connections", self.upstream_connections > 0),
                  ("shadow_concurrency", self.shadow_concurrency > 0)]
        if self.internal_auth not in ("none", "kubernetes"):
            raise ValueError(f"internal_auth: expected none or kubernetes, got {self.internal_auth!r}")
        if self.worker_priority not in ("idle", "normal"):
            raise ValueError(f"worker_priority: expected idle or normal, got {self.worker_priority!r}")
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name}: expected a positive value, got {getattr(self, name)!r}")
