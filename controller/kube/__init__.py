"""`modelrollout controller`: the ModelRollout controller on a Kubernetes apiserver.

    modelrollout controller [--kubeconfig F] [--namespace NS|all] [--router-url URL ...]
        [--router-service NAME] [--prometheus-url URL] [--metrics-port P]
        [--leader-elect/--no-leader-elect] [--lease-name N] [--resync 30s]
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from controller.kube.controller import Controller, ControllerSettings, default_identity
from kubeio import load_client
from policies.spec import SpecError, parse_duration

__all__ = ["Controller", "ControllerSettings", "main", "parse_args"]


def _duration(text: str) -> float:
    try:
        return parse_duration(text, "duration")
    except SpecError as e:
        raise argparse.ArgumentTypeError(e.message) from e


def parse_args(argv: list[str]):
    """(argparse namespace, ControllerSettings) from the command line; bad values exit 2 with the flag named."""

    p = argparse.ArgumentParser(prog="modelrollout controller",
                                description="Run the ModelRollout controller against a Kubernetes apiserver.")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, else $KUBECONFIG/~/.kube/config)")
    p.add_argument("--namespace", default="all", help="namespace to watch, or 'all' (default)")
    p.add_argument("--router-url", action="append", default=[], metavar="URL",
                   help="a router replica's base URL (repeatable)")
    p.add_argument("--router-service", metavar="[NS/]NAME",
                   help="router Service whose EndpointSlices list the replicas")
    p.add_argument("--prometheus-url", help="Prometheus for checks without their own address")
    p.add_argument("--metrics-port", type=int, help="serve controller metrics on this port")
    p.add_argument("--metrics-host", default="0.0.0.0", help="address of the metrics server (default 0.0.0.0)")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                   help="campaign for a Lease and act only while leader (default on)")
    p.add_argument("--lease-name", default="modelrollout-controller")
    p.add_argument("--lease-namespace", "--leader-election-namespace", dest="lease_namespace", help="namespace of the Lease (default: $POD_NAMESPACE, the watched "
                                             "namespace, else 'default')")
    p.add_argument("--lease-duration", type=_duration, default=15.0)
    p.add_argument("--renew-deadline", type=_duration, default=10.0)
    p.add_argument("--retry-period", type=_duration, default=2.0)
    p.add_argument("--resync", type=_duration, default=30.0,
                   help="full relist period (default 30s): repairs lost watch events; only what changed is reconciled")
    p.add_argument("--router-token-file", metavar="FILE",
                   help="a token for the routers' audience, sent as Authorization: Bearer to their /summaries "
                   "(routers run with --internal-auth kubernetes; the manifests mount a projected token)")
    p.add_argument("--http-timeout", type=_duration, default=5.0,
                   help="timeout of one router or Prometheus query (default 5s)")
    p.add_argument("--workers", type=int, default=16,
                   help="reconciles run at once (default 16); windows due together are asked of each router "
                   "replica in one request, so more workers also mean fewer, larger summaries requests")
    p.add_argument("--deletion-grace", type=_duration, default=60.0,
                   help="remember a deleted rollout's stable this long: re-created within it, it starts from that "
                   "stable (default 60s, the routers' --deletion-grace)")
    p.add_argument("--identity", help="this replica's name in the Lease and in Events (default: host + random)")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    namespace = None if a.namespace in ("all", "", "*") else a.namespace
    if not (a.lease_duration > a.renew_deadline > a.retry_period > 0):
        p.error(f"expected --lease-duration ({a.lease_duration}s) > --renew-deadline ({a.renew_deadline}s) > "
                f"--retry-period ({a.retry_period}s) > 0")
    if a.workers < 1:
        p.error(f"--workers: expected at least 1, got {a.workers}")
    if a.resync <= 0:
        p.error("--resync: expected a positive duration")
    for url in a.router_url + ([a.prometheus_url] if a.prometheus_url else []):
        if not url.startswith(("http://", "https://")):
            p.error(f"expected an http:// or https:// URL, got {url!r}")
    settings = ControllerSettings(
        namespace=namespace, router_urls=tuple(a.router_url), router_service=a.router_service,
        prometheus_url=a.prometheus_url, metrics_port=a.metrics_port, metrics_host=a.metrics_host,
        leader_elect=a.leader_elect, lease_name=a.lease_name,
        lease_namespace=a.lease_namespace or os.environ.get("POD_NAMESPACE") or namespace or "default",
        lease_duration=a.lease_duration, renew_deadline=a.renew_deadline, retry_period=a.retry_period,
        resync=a.resync, http_timeout=a.http_timeout, workers=a.workers, deletion_grace=a.deletion_grace,
        router_token_file=a.router_token_file,
        identity=a.identity or default_identity())
    return a, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # one line per router query is noise
    try:
        # a connection to the apiserver per worker, and some for the watch, the lease, Events and Services
        api = load_client(args.kubeconfig, pool_size=settings.workers + 8)
    except Exception as e:  # noqa: BLE001
        print(f"modelrollout controller: cannot load Kubernetes configuration: {e}", file=sys.stderr)
        return 2

    ctl = Controller(api, settings)
    signal.signal(signal.SIGTERM, lambda *_: ctl.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: ctl.stop_event.set())
    ctl.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
