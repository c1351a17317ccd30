"""The dashboard page's shell: inline CSS and script, nothing fetched from anywhere but the server itself.

The CSS follows the reader's `prefers-color-scheme` (light and dark palettes, the report's SVG charts
recoloured through their classes). The script keeps the view current from the server's event stream
(Server-Sent Events: each message is the view's new HTML), counts down the step's time left and ages,
keeps keyboard focus on the same link or button across updates, and sends commands when they are enabled.
"""
from __future__ import annotations

import html

CSS = """
:root{color-scheme:light dark;--bg:#f5f6f8;--panel:#fff;--fg:#1d2330;--muted:#5b6475;--line:#e3e6ec;
--head:#1d2330;--headfg:#fff;--focus:#1a73e8;--pass:#2e7d32;--fail:#c62828;--inc:#6b6b6b;--warn:#9a5b00;
--chart:#fff;--grid:#eceef2;--axis:#9aa1ae;--value:#555}
@media (prefers-color-scheme: dark){:root{--bg:#111418;--panel:#1b1f26;--fg:#e6e8ec;--muted:#a3abb9;
--line:#2f3541;--head:#0a0c0f;--headfg:#e6e8ec;--focus:#8ab4f8;--pass:#81c995;--fail:#f28b82;--inc:#b0b0b0;
--warn:#fdd663;--chart:#1b1f26;--grid:#2a303b;--axis:#6b7383;--value:#d0d4dc}}
*{box-sizing:border-box}
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;background:var(--bg);color:var(--fg)}
a{color:var(--focus)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:var(--panel);padding:6px;z-index:9}
header{background:var(--head);color:var(--headfg);padding:12px 24px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header .brand{font-weight:700;font-size:18px}
header .live{font-size:12px;padding:1px 8px;border-radius:10px;background:#555;color:#fff}
header .live.on{background:#2e7d32}header .live.off{background:#c62828}
header .mode{font-size:12px;color:#c3c8d4}
main{padding:14px 24px 28px;max-width:1240px}
main:focus{outline:none}
h1{font-size:21px;margin:8px 0}h2{font-size:16px;margin:20px 0 6px}
h1 .ns{font-size:14px;color:var(--muted);font-weight:400}
.count{color:var(--muted);font-weight:400}
table{border-collapse:collapse;font-size:13px;margin:6px 0;background:var(--panel)}
td,th{border-bottom:1px solid var(--line);padding:5px 10px;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.rollouts{width:100%}
table.rollouts tr:hover td{background:color-mix(in srgb,var(--focus) 8%,transparent)}
.phase{display:inline-block;padding:1px 9px;border-radius:11px;font-size:12px;font-weight:600;border:1px solid var(--line)}
.p-Promoted{background:#2e7d32;color:#fff}.p-RolledBack,.p-Failed{background:#c62828;color:#fff}
.p-Paused{background:#f9d65c;color:#222}.p-Verifying,.p-Shadowing,.p-Progressing,.p-Interleaving{background:#1a73e8;color:#fff}
.v-Pass{color:var(--pass);font-weight:600}.v-Fail{color:var(--fail);font-weight:600}.v-Inconclusive{color:var(--inc)}
.Warning{color:var(--warn);font-weight:600}
.message{color:var(--muted);margin:2px 0}
.decided{border-left:5px solid var(--fail);padding:6px 12px;background:var(--panel)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:10px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}.url{color:var(--muted);font-size:12px}
.left{color:var(--muted);margin-left:6px}
ol.steps{display:flex;flex-wrap:wrap;gap:6px;list-style:none;padding:0;margin:12px 0}
ol.steps li{border:1px solid var(--line);border-radius:8px;padding:4px 10px;background:var(--panel)}
ol.steps .n{font-weight:700;margin-right:4px}ol.steps .state{color:var(--muted);font-size:12px}
li.s-running,li.s-paused{border-color:var(--focus);box-shadow:0 0 0 2px var(--focus) inset}
li.s-done .state{color:var(--pass)}li.s-RolledBack .state,li.s-Failed .state{color:var(--fail)}
.actions .buttons{display:flex;gap:8px;flex-wrap:wrap}
button.action{font:inherit;padding:6px 14px;border-radius:6px;border:1px solid var(--line);background:var(--panel);color:var(--fg);cursor:pointer}
button.action:hover:not([disabled]){border-color:var(--focus)}
button.action.danger:not([disabled]){border-color:var(--fail);color:var(--fail)}
button.action[disabled]{opacity:.45;cursor:not-allowed}
#action-result{margin:0;padding:0 24px;min-height:0;color:var(--muted)}#action-result:not(:empty){padding:8px 24px}
#action-result.error{color:var(--fail)}#action-result.ok{color:var(--pass)}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure.check-chart{margin:0;padding:3px;border:3px solid transparent;border-radius:9px}
figure.check-chart.deciding{border-color:var(--fail)}
figure.check-chart figcaption{font-size:12px;font-weight:600;color:var(--fail);padding:2px 4px}
svg.chart{background:var(--chart);border:1px solid var(--line);border-radius:6px;max-width:100%;height:auto}
svg .title{font-weight:600;font-size:13px;fill:var(--fg)}
svg .tick{font-size:11px;fill:var(--muted)}svg .empty{font-size:12px;fill:var(--muted)}
svg .grid{stroke:var(--grid)}svg .axis{stroke:var(--axis)}
svg .value-line{stroke:var(--value)}
@media (prefers-color-scheme: dark){svg .phase-band{opacity:.35}svg circle.transition{fill:var(--fg)}}
.meta{color:var(--muted);font-size:12px;margin:2px 0}
.empty{color:var(--muted)}
footer{color:var(--muted);font-size:12px;padding:0 24px 18px}
kbd{border:1px solid var(--line);border-radius:4px;padding:0 4px;font-size:11px}
"""

JS = r"""
(function () {
  "use strict";
  var body = document.body, view = document.getElementById("view"), live = document.getElementById("live");
  var token = (document.querySelector('meta[name="mr-token"]') || {}).content || "";
  function fmt(s) {
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return (h ? h + "h" : "") + (m ? m + "m" : "") + (x || !(h || m) ? x + "s" : "");
  }
  function age(s) {
    s = Math.max(0, s);
    if (s >= 86400) return Math.floor(s / 86400) + "d";
    if (s >= 3600) return Math.floor(s / 3600) + "h";
    if (s >= 60) return Math.floor(s / 60) + "m";
    return Math.floor(s) + "s";
  }
  function tick() {
    var now = Date.now() / 1000;
    view.querySelectorAll("[data-until]").forEach(function (el) {
      var left = parseFloat(el.dataset.until) - now;
      el.textContent = left > 0 ? "(" + fmt(left) + " left)" : "(time up: waiting for a passing window)";
    });
    view.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = age(now - parseFloat(el.dataset.since));
    });
  }
  function swap(msg) {
    var active = document.activeElement, key = active && active.dataset ? active.dataset.focus : null;
    view.innerHTML = msg.html;
    if (msg.title) document.title = msg.title;
    body.dataset.version = msg.version;
    tick();
    if (key) {
      var again = view.querySelector('[data-focus="' + key + '"]');
      if (again) again.focus();
    }
  }
  function connect() {
    var es = new EventSource(body.dataset.stream);
    es.addEventListener("update", function (e) { swap(JSON.parse(e.data)); });
    es.onopen = function () { live.textContent = "live"; live.className = "live on"; };
    es.onerror = function () { live.textContent = "reconnecting…"; live.className = "live off"; };
  }
  function send(button) {
    var out = document.getElementById("action-result");
    var parts = button.dataset.rollout.split("/");
    button.disabled = true;
    out.className = ""; out.textContent = "sending " + button.textContent + "…";
    fetch("/api/rollouts/" + encodeURIComponent(parts[0]) + "/" + encodeURIComponent(parts[1]) + "/" +
          button.dataset.verb, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Modelrollout-Token": token},
      body: JSON.stringify({full: button.dataset.full === "true"})})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        var el = document.getElementById("action-result");
        el.className = res[0] ? "ok" : "error";
        el.textContent = res[0] ? res[1].message : "refused: " + res[1].error;
      })
      .catch(function (e) {
        var el = document.getElementById("action-result");
        el.className = "error"; el.textContent = "failed: " + e;
      });
  }
  document.addEventListener("click", function (e) {
    var b = e.target.closest("button.action");
    if (b && !b.disabled) send(b);
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && body.dataset.view === "detail") { window.location.href = "/"; }
  });
  tick();
  setInterval(tick, 1000);
  connect();
})();
"""


def shell(*, title: str, view: str, stream: str, content: str, where: str, nonce: str, token: str | None,
          version: int) -> str:
    """The whole page: header, the view's initial HTML (so it shows even before the stream connects), the
    inline script. `token` (only with --allow-actions) authorises the page's command requests."""
    meta = f'<meta name="mr-token" content="{html.escape(token)}">' if token else ""
    mode = "commands enabled" if token else "read-only"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="color-scheme" content="light dark">{meta}<title>{html.escape(title)}</title>'
            f'<style>{CSS}</style></head>'
            f'<body data-view="{view}" data-stream="{html.escape(stream)}" data-version="{version}">'
            f'<a class="skip" href="#view">Skip to content</a>'
            f'<header><span class="brand">modelrollout</span><span class="where">{html.escape(where)}</span>'
            f'<span id="live" class="live" role="status">connecting…</span>'
            f'<span class="mode" id="mode">{mode}</span></header>'
            f'<p id="action-result" class="toast" role="status" aria-live="polite"></p>'
            f'<main id="view" tabindex="-1">{content}</main>'
            f'<footer><kbd>Tab</kbd> moves between links and buttons, <kbd>Enter</kbd> opens or presses, '
            f'<kbd>Esc</kbd> goes back to the list. The page follows the cluster live.</footer>'
            f'<script nonce="{nonce}">{JS}</script></body></html>\n')
