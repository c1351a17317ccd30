"""`modelrollout router --config FILE --port P`: serve the rollouts of a YAML file with uvicorn.

SIGTERM stops accepting connections, lets in-flight requests finish, waits (bounded) for shadow calls,
then writes and fsyncs the prediction log: a clean shutdown loses no recorded outcome.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from policies.spec import SpecError, parse_duration

log = logging.getLogger("modelrollout.router")


def _duration(text: str) -> float:
    try:
        return parse_duration(text, "duration")
    except SpecError as e:
        raise argparse.ArgumentTypeError(f"expected a duration like 5s, 15m or 1h, got {text!r}") from e


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = units.get(t[-1:], 1)
    t = t[:-1] if t[-1:] in units else t
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in bytes like 1048576 or 1MiB, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def _size_or_off(text: str) -> int | None:
    return None if text.strip().lower() in ("0", "off", "none") else _size(text)


def _duration_or_off(text: str) -> float | None:
    if text.strip().lower() in ("0", "off", "none"):
        return None
    value = _duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration or 0 (no limit), got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelrollout router", description="Serve the data plane: split, mirror or "
                                "interleave prediction requests between model versions and record outcomes.")
    p.add_argument("--config", required=True, help="YAML file of ModelRollout documents (re-read on change); "
                   "a rollout with spec.service {name, port} is also served to requests whose Host header is "
                   "that name (name, name.NAMESPACE, name.NAMESPACE.svc[...], any port), any method and path")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--replica-id", default=None, help="name of this replica in summaries and log files")
    p.add_argument("--log-dir", default=None, help="write the append-only prediction log (JSONL) here")
    p.add_argument("--log-max-bytes", type=_size, default=64 * 1024 * 1024, help="rotate log files at this size")
    p.add_argument("--log-max-total", type=_size_or_off, default=1024**3, metavar="SIZE",
                   help="delete this replica's oldest closed log files while its files hold more than this "
                   "(default 1GiB; 0 = no limit)")
    p.add_argument("--log-max-age", type=_duration_or_off, default=None, metavar="DURATION",
                   help="delete this replica's closed log files last written longer ago than this, e.g. 72h "
                   "(default 0 = no limit)")
    p.add_argument("--hash-key-file", default=None, metavar="FILE",
                   help="the HMAC key (at least 16 bytes; e.g. a mounted Secret) of the values a rollout's "
                   "spec.privacy hashes; without it, or when FILE does not exist, a random key for this process "
                   "only (hashes then differ between replicas and restarts, and erase cannot match them)")
    p.add_argument("--bucket", type=_duration, default=5.0, help="summary window width (default 5s)")
    p.add_argument("--retention", type=_duration, default=900.0, help="how long windows are kept (default 15m)")
    p.add_argument("--allow-override", action=argparse.BooleanOptionalAction, default=False,
                   help="honour the x-modelrollout-version header, so a caller picks the version that answers "
                   "(default off); such answers are logged with override: true and never enter the analysis")
    p.add_argument("--max-body", type=_size, default=1024 * 1024, help="largest request body (default 1MiB)")
    p.add_argument("--shadow-max-inflight", type=_positive_int, default=256,
                   help="mirrors held (waiting for a connection to the candidate or in flight) before further "
                   "ones are dropped and counted (default 256)")
    p.add_argument("--shadow-concurrency", type=_positive_int, default=32,
                   help="shadow calls in flight at once per candidate, i.e. at most this many keep-alive "
                   "connections to it (default 32)")
    p.add_argument("--worker", action=argparse.BooleanOptionalAction, default=True,
                   help="fold outcomes, write the log and make shadow calls in a worker process, off the event "
                   "loop that answers requests (default on)")
    p.add_argument("--worker-priority", choices=("idle", "normal"), default="idle",
                   help="idle (default): the worker only uses CPU the request path leaves (best tail latency; "
                   "under sustained full CPU records queue and summaries lag); normal: it competes equally")
    p.add_argument("--reservoir", type=_positive_int, default=2048,
                   help="uniform sample size per numeric summary and window (default 2048)")
    p.add_argument("--feedback-ttl", type=_duration, default=3600.0, help="feedback accepted this long (1h)")
    p.add_argument("--feedback-max-ids", type=_positive_int, default=200_000,
                   help="accepted feedback ids remembered so each counts once (default 200000)")
    p.add_argument("--feedback-key-file", default=os.environ.get("MODELROLLOUT_FEEDBACK_KEY_FILE"), metavar="FILE",
                   help="keys of the signed feedback ids, one per line (at least 16 bytes; the first signs, all "
                   "verify; re-read on change), shared by every replica, e.g. a mounted Secret; default "
                   "$MODELROLLOUT_FEEDBACK_KEY_FILE; without it a random key of this process: only this replica "
                   "accepts its feedback ids")
    p.add_argument("--upstream-ca", default=None, help="PEM file of CA certificates to trust for https model "
                   "URLs (in addition to the system's)")
    p.add_argument("--internal-auth", choices=("none", "kubernetes"), default="none",
                   help="who may read /v1/rollouts/NAME/summaries and /metrics: none (default: anyone who can "
                   "connect) or kubernetes (a ServiceAccount token for --internal-auth-audience, checked with "
                   "TokenReview, and RBAC permission to get the path as a non-resource URL)")
    p.add_argument("--internal-auth-audience", action="append", default=None, metavar="AUDIENCE",
                   help="an audience callers' tokens may be issued for (repeatable; default modelrollout-router)")
    p.add_argument("--auth-kubeconfig", default=None, metavar="FILE",
                   help="kubeconfig for the reviews (default: --kubeconfig with --kube, else in-cluster, else "
                   "$KUBECONFIG)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def read_hash_key(path: str | None) -> bytes | None:
    """The key in `path` (surrounding whitespace stripped); None, with a warning, when there is none.
    ValueError for a key shorter than 16 bytes or an unreadable file."""
    import logging
    import os

    if path is None or not os.path.exists(path):
        logging.getLogger("modelrollout.router").warning(
            "%s: hashed log fields (spec.privacy) use a random key for this process only: their hashes differ "
            "between replicas and restarts and `modelrollout log erase` cannot match them",
            f"--hash-key-file {path} does not exist" if path else "no --hash-key-file")
        return None
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as e:
        raise ValueError(f"--hash-key-file {path}: cannot read: {e.strerror}") from None
    if len(key) < 16:
        raise ValueError(f"--hash-key-file {path}: expected a key of at least 16 bytes, got {len(key)}")
    return key


def settings_from(args: argparse.Namespace):
    from router.settings import RouterSettings
    extra = {"replica_id": args.replica_id} if args.replica_id else {}
    key = read_hash_key(args.hash_key_file)
    if key is not None:
        extra["hash_key"] = key
    return RouterSettings(
        bucket_seconds=args.bucket, retention_seconds=args.retention, allow_override=args.allow_override,
        max_body_bytes=args.max_body, shadow_max_inflight=args.shadow_max_inflight,
        shadow_concurrency=args.shadow_concurrency,
        worker=args.worker, worker_priority=args.worker_priority,
        upstream_ca=Path(args.upstream_ca) if args.upstream_ca else None, reservoir=args.reservoir or 1,
        log_dir=Path(args.log_dir) if args.log_dir else None, log_max_bytes=args.log_max_bytes,
        log_max_total=args.log_max_total, log_max_age=args.log_max_age,
        feedback_ttl_seconds=args.feedback_ttl, feedback_max_ids=args.feedback_max_ids or 1,
        internal_auth=args.internal_auth, internal_auth_audiences=tuple(args.internal_auth_audience or ("modelrollout-router",)),
        auth_kubeconfig=args.auth_kubeconfig or getattr(args, "kubeconfig", None),
        feedback_key_file=Path(args.feedback_key_file) if args.feedback_key_file else None, **extra)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = Path(args.config)
    if not config.is_file():
        print(f"modelrollout router: --config {args.config}: no such file", file=sys.stderr)
        return 2
    try:
        settings = settings_from(args)
    except ValueError as e:
        print(f"modelrollout router: {e}", file=sys.stderr)
        return 2

    from router.source import FileSource

    return run(FileSource(config), settings, args)


def run(source, settings, args: argparse.Namespace) -> int:
    """The one main of every routing source (`--config` here, `--kube` in router.kube_source): the app for
    `source` served by `serve`, with the same server, tuning and drain. 2 on a bad setting."""
    from router.app import create_app

    try:
        app = create_app(source, settings)
    except ValueError as e:         # e.g. an unreadable --upstream-ca
        print(f"modelrollout router: {e}", file=sys.stderr)
        return 2
    return serve(app, args.host, args.port, args.log_level)


class CoalescingTransport:
    """A transport whose writes made in one event-loop turn leave as one socket write.

    uvicorn writes a response's status line and headers when the app sends `http.response.start` and the
    body when it sends `http.response.body`: two writes, so two TCP segments and two wake-ups of the client
    for every answer. Measured on the wire (tcpdump, one connection): every router answer was a 140-byte
    header segment followed 20-40 us later by the body. Holding writes until the end of the loop turn
    sends them together; nothing waits longer than the callback that made them."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            if not self._transport.is_closing():
                # uvloop buffers the pieces and sends them with one writev: one segment, no copy of the body.
                self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


def _protocol_class():
    """uvicorn's httptools protocol on a CoalescingTransport."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:    # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))

    return CoalescingHttpToolsProtocol


def serve(app, host: str, port: int, log_level: str = "info") -> int:
    """Run a router app with uvicorn until SIGTERM/SIGINT; 0 after a clean drain, 1 if it never started.

    uvloop + httptools when available; the same tuning for every routing source (file, Kubernetes).
    """
    import uvicorn

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        log.warning("uvloop is not installed: serving on the slower asyncio event loop")
        loop = "asyncio"
    if hasattr(app, "server_info"):
        app.server_info["http"] = "httptools-coalesced"
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, loop=loop, http=_protocol_class(), lifespan="on", access_log=False,
        log_level=log_level if log_level != "info" else "warning", timeout_graceful_shutdown=30,
        backlog=2048, server_header=False, date_header=False, proxy_headers=False))
    # uvicorn re-raises the captured SIGTERM/SIGINT after its graceful shutdown; a no-op handler lets that
    # re-raise return, so a drained, flushed router exits 0 instead of dying of the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # Everything imported so far (FastAPI, numpy, scipy: ~100k objects) lives as long as the process; moving
    # it out of the collector's generations keeps full collections, and the tail latency they cause, short.
    gc.collect()
    gc.freeze()
    log.info("serving on http://%s:%d (uvicorn, %s event loop, httptools HTTP/1.1, coalesced writes)", host, port,
             loop)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
