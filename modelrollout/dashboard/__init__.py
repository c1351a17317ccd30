"""`kubectl modelrollout dashboard`: a live web UI of the rollouts, served on 127.0.0.1.

    hub      list+watch of the ModelRollouts and their Events (`kubeio.watch.ListWatcher`), with the
             user's kubeconfig identity; every change wakes the pages' event streams
    views    the list and the detail as HTML, drawn from the report's run record and SVG charts
    assets   the page shell: inline CSS (light and dark) and script (no external assets)
    server   the HTTP server: pages, Server-Sent Events, a JSON API, and with --allow-actions the
             plugin's commands (same refusal rules, same annotation)

The page needs nothing but this server: it works offline and behind any proxy the kubeconfig uses.
"""
from __future__ import annotations

import signal
import sys
import threading

from modelrollout.plugin.kube import Connection, PluginError

__all__ = ["serve"]


def serve(conn: Connection, *, port: int = 3200, all_namespaces: bool = False, allow_actions: bool = False,
          out=None) -> int:
    """Serve until interrupted (Ctrl-C or SIGTERM); prints the URL first. A cluster that cannot be read
    (no CRD, forbidden, unreachable) is a PluginError before anything listens."""
    from modelrollout.plugin.kube import list_rollouts

    from .hub import Hub
    from .server import Dashboard

    out = out or sys.stdout
    list_rollouts(conn, all_namespaces)          # fail now, with the plugin's explanation, if we cannot read
    hub = Hub(conn.api, None if all_namespaces else conn.namespace)
    if not hub.start(timeout=30):
        hub.stop()
        raise PluginError("could not list modelrollouts within 30s (see the warnings above)")
    try:
        server = Dashboard(port, hub, conn, all_namespaces=all_namespaces, allow_actions=allow_actions)
    except OSError as e:
        hub.stop()
        raise PluginError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e} (choose another --port)") from e
    mode = "commands enabled" if allow_actions else "read-only"
    print(f"modelrollout dashboard: http://127.0.0.1:{server.port}/ ({server.where}, {mode}); "
          "Ctrl-C stops it", file=out, flush=True)
    stop = threading.Event()

    def on_term(signum, frame):
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() else None
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
