"""The dashboard's HTTP server: pages, their live event streams, a JSON API and (opt-in) commands.

    GET  /                              the list of rollouts
    GET  /rollouts/NS/NAME              one rollout
    GET  /events?view=list | ?rollout=NS/NAME[&since=V]
                                        Server-Sent Events: `update` with {"html", "title", "version"} on
                                        every change of what the view shows (":" keep-alives in between)
    GET  /api/rollouts                  the list as JSON
    GET  /api/rollouts/NS/NAME          the rollout's run record (the report's format) as JSON
    POST /api/rollouts/NS/NAME/VERB     with --allow-actions: {"full": bool}; the plugin's refusal rules,
                                        then the command annotation (409 with the reason when refused)

It listens on 127.0.0.1 only and acts with the user's kubeconfig identity, so it guards against other web
pages reaching it through the browser: requests must name the server itself in `Host` (DNS rebinding),
commands need the page's random token in `X-Modelrollout-Token` and JSON bodies (a cross-site form or
script cannot send either) and a same-origin `Origin`; pages are framed by nobody and run only their own
inline script (Content-Security-Policy).
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from modelrollout.plugin.kube import Connection, PluginError

from .assets import shell
from .hub import Hub
from .views import VERBS, detail_view, list_rows, list_view

log = logging.getLogger("modelrollout.dashboard")
KEEPALIVE = 15.0


class Dashboard(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, hub: Hub, conn: Connection, *, all_namespaces: bool, allow_actions: bool):
        super().__init__(("127.0.0.1", port), Handler)
        self.hub, self.conn = hub, conn
        self.all_namespaces, self.allow_actions = all_namespaces, allow_actions
        self.token = secrets.token_urlsafe(24) if allow_actions else None
        self.port = self.server_address[1]
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        self.where = "all namespaces" if all_namespaces else f"namespace {conn.namespace}"

    # ---- what a view shows ---------------------------------------------------------------------------

    def render(self, rollout: str | None) -> tuple[str, str]:
        """(title, HTML) of the list (rollout None) or of one rollout `NS/NAME`."""
        if rollout is None:
            return f"Rollouts — modelrollout ({self.where})", list_view(
                self.hub.all_rollouts(), self.where, self.all_namespaces)
        ns, _, name = rollout.partition("/")
        obj = self.hub.rollout(ns, name)
        if obj is None:
            return f"{rollout} — modelrollout", (
                '<p class="crumbs"><a href="/" data-focus="back">← all rollouts</a></p>'
                f'<h1 id="title">{_h(rollout)}</h1><p class="empty" id="missing">No ModelRollout {_h(rollout)} '
                f'in {_h(self.where)} (not yet created, or deleted). This page shows it as soon as it exists.</p>')
        refusals, now = None, time.time()
        if self.allow_actions:
            from modelrollout.plugin.commands import preview

            refusals = {(verb, full): preview(obj, verb, full, now)[0] for verb, full, _, _ in VERBS}
        uid = (obj.get("metadata") or {}).get("uid")
        html, _ = detail_view(obj, self.hub.events_of(ns, name, uid), refusals, now)
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        return f"{name} ({phase}) — modelrollout", html

    def record(self, ns: str, name: str) -> dict | None:
        obj = self.hub.rollout(ns, name)
        if obj is None:
            return None
        _, rec = detail_view(obj, self.hub.events_of(ns, name, (obj.get("metadata") or {}).get("uid")), None)
        return rec

    # ---- commands ------------------------------------------------------------------------------------

    def command(self, ns: str, name: str, verb: str, full: bool) -> tuple[int, dict[str, Any]]:
        """The plugin's `cmd_verb` without --force: refuse what the controller would ignore, else annotate."""
        from modelrollout.plugin.commands import preview
        from modelrollout.plugin.kube import get_rollout, send_command
        from modelrollout.plugin.render import weight_text

        conn = Connection(self.conn.api, ns)
        what = f"{verb} --full" if full else verb
        try:
            obj = get_rollout(conn, name)
            rejected, expected = preview(obj, verb, full, time.time())
            if rejected:
                return 409, {"error": f"cannot {what} modelrollout {ns}/{name}: {rejected}"}
            _, cid = send_command(conn, name, verb, full)
        except PluginError as e:
            return 502, {"error": str(e)}
        log.warning("%s sent to modelrollout %s/%s (id %s)", what, ns, name, cid)
        msg = f"{what} sent (id {cid})"
        if expected is not None:
            msg += f"; expected after the controller's next reconcile: {expected.phase.value}, {weight_text(expected)}"
        return 200, {"id": cid, "verb": verb, "full": full, "message": msg}


def _h(v: Any) -> str:
    from html import escape

    return escape(str(v), quote=True)


class Handler(BaseHTTPRequestHandler):
    server: Dashboard
    server_version = "modelrollout-dashboard"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    # ---- plumbing ------------------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, doc: Any) -> None:
        self._send(code, json.dumps(doc, allow_nan=False, default=str).encode(), "application/json")

    def _host_ok(self) -> bool:
        if self.headers.get("Host") in self.server.hosts:
            return True
        self._json(403, {"error": f"unexpected Host {self.headers.get('Host')!r}: open "
                                  f"http://127.0.0.1:{self.server.port}/"})
        return False

    def _page(self, rollout: str | None) -> None:
        nonce = secrets.token_urlsafe(16)
        version = self.server.hub.version
        title, content = self.server.render(rollout)
        stream = "/events?" + (f"rollout={rollout}" if rollout else "view=list") + f"&since={version}"
        page = shell(title=title, view="detail" if rollout else "list", stream=stream, content=content,
                     where=self.server.where, nonce=nonce, token=self.server.token, version=version)
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self._send(200, page.encode(), "text/html; charset=utf-8",
                   {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

    # ---- GET -----------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts == []:
            return self._page(None)
        if parts[0] == "rollouts" and len(parts) == 3:
            return self._page(f"{parts[1]}/{parts[2]}")
        if parts == ["events"]:
            return self._events(parse_qs(url.query))
        if parts == ["api", "rollouts"]:
            return self._json(200, {"items": list_rows(self.server.hub.all_rollouts())})
        if parts[:2] == ["api", "rollouts"] and len(parts) == 4:
            rec = self.server.record(parts[2], parts[3])
            if rec is None:
                return self._json(404, {"error": f"modelrollout {parts[2]}/{parts[3]} not found"})
            return self._json(200, rec)
        if parts == ["healthz"]:
            return self._send(200, b"ok\n", "text/plain")
        self._json(404, {"error": f"no such page: {url.path}"})

    def _events(self, query: dict[str, list[str]]) -> None:
        rollout = (query.get("rollout") or [None])[0]
        if rollout is not None and rollout.count("/") != 1:
            return self._json(400, {"error": f"rollout: expected NAMESPACE/NAME, got {rollout!r}"})
        hub = self.server.hub
        try:
            since = int((query.get("since") or ["-1"])[0])
        except ValueError:
            since = -1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        seen, last = hub.version, None
        if seen == since:
            last = self.server.render(rollout)[1]       # the page already shows this version
        else:
            seen = -1
        try:
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            while not hub.stopping:
                version = hub.version
                if version != seen:
                    title, html = self.server.render(rollout)
                    if html != last:
                        data = json.dumps({"html": html, "title": title, "version": version})
                        self.wfile.write(f"event: update\ndata: {data}\n\n".encode())
                        self.wfile.flush()
                        last = html
                    seen = version
                if hub.wait(seen, KEEPALIVE) == seen and not hub.stopping:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return
        self.close_connection = True

    # ---- POST ----------------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok():
            return
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if not (parts[:2] == ["api", "rollouts"] and len(parts) == 5):
            return self._json(404, {"error": f"no such command endpoint: {self.path}"})
        _, _, ns, name, verb = parts
        if not self.server.allow_actions:
            return self._json(403, {"error": "commands are disabled: start the dashboard with --allow-actions"})
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in self.server.hosts}:
            return self._json(403, {"error": f"cross-origin command refused (Origin {origin!r})"})
        if not secrets.compare_digest(self.headers.get("X-Modelrollout-Token", ""), self.server.token or ""):
            return self._json(403, {"error": "missing or wrong X-Modelrollout-Token (reload the page)"})
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._json(415, {"error": "Content-Type: expected application/json"})
        if verb not in {v for v, _, _, _ in VERBS}:
            return self._json(404, {"error": f"verb: expected one of promote, abort, pause, resume, retry, got {verb!r}"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 4096)) or b"{}") if length else {}
        except ValueError:
            return self._json(400, {"error": "body: expected a JSON object"})
        full = body.get("full", False) if isinstance(body, dict) else None
        if not isinstance(full, bool):
            return self._json(400, {"error": f"body.full: expected true or false, got {full!r}"})
        if full and verb != "promote":
            return self._json(400, {"error": f"body.full: only promote takes full, not {verb}"})
        code, doc = self.server.command(ns, name, verb, full)
        self._json(code, doc)
