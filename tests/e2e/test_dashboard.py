"""`kubectl modelrollout dashboard` against a real apiserver, looked at in headless Chromium.

The dashboard runs as users run it (the real kubectl's plugin mechanism, the kubeconfig's identity); the
page is driven over the DevTools protocol (tests/browser.py) so its script runs: the live updates arrive
over its event stream while the test watches the same page, never reloaded (a marker set in the page's
JavaScript survives). What is checked is content — titles, how many series and thresholds are drawn, which
check is highlighted — plus a screenshot's pixels at the highlighted chart's frame; never whole images.

`MODELROLLOUT_UPDATE_SCREENSHOTS=1` writes the screenshot the README shows (docs/dashboard.png).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from policies.machine import decide
from policies.spec import parse_rollout
from policies.status import CheckResult, Verdict
from tests.browser import Browser
from tests.e2e.conftest import apply, get_rollout, logs, rollout_doc, wait_for, wait_phase
from tests.e2e.test_crd import example_text, install_crd, patch_status
from tests.integration.test_report import read_png

BIN = str(Path(sys.executable).parent)   # holds the kubectl-modelrollout console script
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "dashboard.png"


@pytest.fixture(scope="module")
def crd(kubectl):
    install_crd(kubectl)


class Dashboard:
    """`kubectl modelrollout dashboard --port 0 ARGS` as a user starts it; `url` from its first line."""

    def __init__(self, control_plane, *args: str, kubeconfig: str | None = None):
        env = control_plane.kubectl_env(kubeconfig)
        env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
        self.proc = subprocess.Popen([control_plane.kubectl, "modelrollout", "dashboard", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.first = ""
        got = threading.Event()

        def read():
            self.first = self.proc.stdout.readline()
            got.set()

        threading.Thread(target=read, daemon=True).start()
        if not got.wait(60) or "http://127.0.0.1:" not in self.first:
            self.stop()
            pytest.fail(f"dashboard did not start: {self.first!r} {self.proc.stderr.read()[-3000:]}")
        self.url = self.first.split()[2].rstrip("/")

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        """(status, JSON answer) of one request to the dashboard."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def dashboards(control_plane):
    started: list[Dashboard] = []

    def start(*args, **kw) -> Dashboard:
        d = Dashboard(control_plane, *args, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
        assert d.proc.returncode == 0, f"dashboard exited {d.proc.returncode}"


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    yield b
    b.close()


# ---- what the page shows, read in the page ------------------------------------------------------------

CENSUS = """(() => {
  const charts = [...document.querySelectorAll('figure.check-chart')];
  return {
    title: document.title,
    h1: (document.querySelector('h1') || {}).innerText,
    phase: (document.querySelector('h1 .phase') || {dataset: {}}).dataset.phase,
    series: charts.map(f => f.dataset.check),
    thresholds: charts.map(f => f.querySelectorAll('polyline.threshold-line').length),
    points: Object.fromEntries(charts.map(f => [f.dataset.check, [...f.querySelectorAll('circle.point')]
                                                   .map(c => c.dataset.verdict)])),
    deciding: charts.filter(f => f.classList.contains('deciding')).map(f => f.dataset.check),
    buttons: document.querySelectorAll('button').length,
    weightLine: document.querySelectorAll('svg.timeline polyline.weight-line').length,
    bands: [...document.querySelectorAll('svg.timeline rect.phase-band')].map(r => r.dataset.phase),
    history: [...document.querySelectorAll('table.transitions tr')].map(r => r.innerText),
    events: [...document.querySelectorAll('table.events tr')].map(r => r.innerText),
    decided: (document.getElementById('decided') || {}).innerText || '',
    marker: window.__marker || null,
  };
})()"""

ROWS = """[...document.querySelectorAll('tr[data-rollout]')].map(r => [r.dataset.rollout, r.dataset.phase,
  r.innerText])"""


def simulated_status(obj: dict, windows: int, fail_from: int | None, t0: float) -> dict:
    """The status the controller's own `decide` writes after `windows` one-minute windows of this rollout,
    every check passing except score-psi from window `fail_from` on (value 0.31 against its 0.2)."""
    spec = parse_rollout(obj).spec
    d = decide(spec, None, None, t0)
    for i in range(windows):
        results = []
        for c in spec.analysis.checks:
            failing = c.name == "score-psi" and fail_from is not None and i >= fail_from
            value = 0.31 if failing else 0.02 + 0.01 * (i % 3)
            results.append(CheckResult(c.name, c.metric, value, 0.2, Verdict.FAIL if failing else Verdict.PASS,
                                       500 + i, reason=f"{c.name} {value} {'>' if failing else '<='} 0.2",
                                       action=c.action))
        d = decide(spec, d.status, results, t0 + 60 * (i + 1))
    return json.loads(json.dumps(d.status.to_status()))


def test_list_and_detail_follow_status_changes_live(crd, kubectl, k8s_api, namespace, dashboards, browser,
                                                    tmp_path):
    """The list shows every rollout; a status change (written here as the controller would) reaches the
    open pages without a reload; the detail draws each check's series against its threshold, marks each
    window's verdict, highlights the check that decided, and offers no button when read-only."""
    kubectl("apply", "-f", "-", input=example_text(namespace))
    kubectl("apply", "-f", "-", input=example_text(namespace).replace("name: fraud-scorer", "name: ranker-b"))
    dash = dashboards("-n", namespace)
    assert "read-only" in dash.first

    browser.goto(dash.url + "/")
    rows = browser.wait(f"(() => {{ const r = {ROWS}; return r.length == 2 && r; }})()", 30, "two rows")
    assert sorted(r[0] for r in rows) == [f"{namespace}/fraud-scorer", f"{namespace}/ranker-b"]
    assert all(r[1] == "" and "not yet seen by a controller" in r[2] for r in rows)
    browser.eval("window.__marker = 'same page'")

    obj = get_rollout(k8s_api, namespace, "fraud-scorer")
    t0 = time.time() - 600
    patch_status(kubectl, namespace, simulated_status(obj, 3, None, t0))
    row = browser.wait(f"(() => {{ const r = {ROWS}.find(r => r[0].endsWith('/fraud-scorer'));"
                       " return r && r[1] == 'Shadowing' && r; })()", 30, "fraud-scorer Shadowing in the list")
    assert "1/5 shadow for 30m" in row[2] and "0% +shadow" in row[2]
    assert re.search(r"\((19m\d+s|20m) left\)", row[2]), row[2]          # counted by the page from stepStartedAt
    assert browser.eval("window.__marker") == "same page"        # updated in place, not reloaded

    browser.goto(f"{dash.url}/rollouts/{namespace}/fraud-scorer")
    browser.eval("window.__marker = 'detail page'")
    before = browser.eval(CENSUS)
    assert before["phase"] == "Shadowing" and before["buttons"] == 0
    assert before["title"] == "fraud-scorer (Shadowing) — modelrollout"
    assert all(len(v) == 3 for v in before["points"].values()), before["points"]

    patch_status(kubectl, namespace, simulated_status(obj, 5, 3, t0))       # score-psi fails twice: RolledBack
    browser.wait("document.querySelector('h1 .phase').dataset.phase == 'RolledBack'", 30, "RolledBack live")
    page = browser.eval(CENSUS)
    assert page["marker"] == "detail page"
    spec = parse_rollout(obj).spec
    assert page["series"] == [c.name for c in spec.analysis.checks] and len(page["series"]) == 8
    assert page["thresholds"] == [1] * 8                                   # one threshold line per series
    assert page["points"]["score-psi"] == ["Pass", "Pass", "Pass", "Fail", "Fail"]
    assert page["points"]["nan-or-5xx"] == ["Pass"] * 5
    assert page["deciding"] == ["score-psi"]
    assert "Decided by score-psi: value 0.31, threshold 0.2" in page["decided"]
    assert page["buttons"] == 0 and page["weightLine"] == 1
    assert {"Shadowing", "RolledBack"} <= set(page["bands"])
    assert any("RolledBack" in r and "score-psi = 0.31 vs 0.2" in r for r in page["history"]), page["history"]
    assert page["title"] == "fraud-scorer (RolledBack) — modelrollout"

    # read-only: the command endpoint refuses even a well-formed request
    status, answer = dash.request("POST", f"/api/rollouts/{namespace}/fraud-scorer/retry", {"full": False},
                                  {"Content-Type": "application/json"})
    assert status == 403 and "--allow-actions" in answer["error"]
    assert "modelrollout.io/command" not in (get_rollout(k8s_api, namespace, "fraud-scorer")["metadata"]
                                             .get("annotations") or {})

    # the JSON API holds the same record the page is drawn from
    status, rec = dash.request("GET", f"/api/rollouts/{namespace}/fraud-scorer")
    assert status == 200 and rec["outcome"]["check"] == "score-psi" and len(rec["windows"]) == 5


def test_page_is_self_contained_keyboard_usable_and_dark_aware(crd, kubectl, namespace, dashboards, browser):
    """No external resource (the page's CSP forbids them); links reachable by Tab and opened by Enter;
    Esc goes back; a deleted rollout leaves the list; the palette follows prefers-color-scheme; a foreign
    Host is refused."""
    kubectl("apply", "-f", "-", input=example_text(namespace))
    dash = dashboards("-n", namespace)
    with urllib.request.urlopen(dash.url + "/", timeout=30) as r:
        html, csp = r.read().decode(), r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert not re.search(r"\ssrc=|<link|@import|url\(", html), "the page loads something"
    browser.goto(dash.url + "/")
    browser.wait("document.getElementById('live').textContent == 'live'", 30, "event stream connected")
    for _ in range(6):
        browser.key("Tab")
        if browser.eval("document.activeElement.dataset.focus || ''").startswith("row:"):
            break
    assert browser.eval("document.activeElement.dataset.focus") == f"row:{namespace}/fraud-scorer"
    browser.key("Enter")
    browser.wait(f"location.pathname == '/rollouts/{namespace}/fraud-scorer'", 30, "detail opened by Enter")
    browser.wait("document.body.dataset.view == 'detail' && document.getElementById('live').textContent == 'live'",
                 30, "detail page live")
    browser.key("Escape")
    browser.wait("location.pathname == '/'", 30, "Esc back to the list")
    browser.wait("document.getElementById('live').textContent == 'live'", 30, "list page live")
    kubectl("delete", "mro", "fraud-scorer", "-n", namespace)
    browser.wait("!!document.getElementById('empty')", 30, "the deleted rollout gone from the list, live")

    light = browser.eval("getComputedStyle(document.body).backgroundColor")
    browser.color_scheme("dark")
    dark = browser.eval("getComputedStyle(document.body).backgroundColor")
    browser.color_scheme("light")
    assert (light, dark) == ("rgb(245, 246, 248)", "rgb(17, 20, 24)")

    status, answer = dash.request("GET", "/api/rollouts", headers={"Host": "attacker.example:80"})
    assert status == 403 and "unexpected Host" in answer["error"]


# ---- with a controller --------------------------------------------------------------------------------

def _frame_pixel(browser: Browser, png: Path, selector: str) -> tuple[int, int, int]:
    """The screenshot's pixel in the middle of the left border of the element `selector`."""
    box = browser.eval(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                       " return [r.left, r.top, r.height, window.devicePixelRatio]; })()")
    left, top, height, ratio = box
    width, _, rows = read_png(png)
    x, y = int((left + 1.5) * ratio), int((top + height / 2) * ratio)
    row = rows[y]
    return tuple(row[x * 3:x * 3 + 3])


def test_a_rollback_by_the_controller_appears_live(procs, kubeconfig, kubectl, k8s_api, namespace, mro_crd,
                                                   dashboards, browser, tmp_path):
    """The page of a rollout is open before any controller runs; the controller then rolls the drifting
    candidate back, and the page shows it (phase, the failing windows, the deciding check, the history and
    the Events) without being reloaded. The screenshot of that page shows the deciding check's red frame."""
    v1 = procs.scorer("v1", seed=7)
    v2 = procs.scorer("v2", seed=7, shift=0.35)
    router = procs.router(kubeconfig, namespace)
    steps = [{"shadow": {"duration": "30s"}}, {"canary": {"weight": 50, "duration": "30s"}}]
    apply(kubectl, rollout_doc("drifty", namespace, v1, v2, steps=steps))
    apply(kubectl, rollout_doc("steady", namespace, v1, v1, candidate_version="v1-rebuilt",
                               steps=[{"shadow": {"duration": "10m"}}]))
    dash = dashboards("-n", namespace)
    browser.goto(f"{dash.url}/rollouts/{namespace}/drifty")
    browser.wait("document.getElementById('live').textContent == 'live'", 30, "event stream connected")
    browser.eval("window.__marker = 'opened before the controller'")
    assert browser.eval(CENSUS)["phase"] == ""                        # not yet seen by a controller

    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    procs.traffic(router, "drifty", namespace, rps=60)
    diagnose = lambda: logs(ctl, router)  # noqa: E731
    browser.wait("document.querySelector('h1 .phase').dataset.phase == 'Shadowing'", 60, "Shadowing, live")
    try:
        browser.wait("document.querySelector('h1 .phase').dataset.phase == 'RolledBack'", 90, "RolledBack, live")
    except AssertionError:
        pytest.fail(f"no rollback on the page\n{diagnose()}")
    browser.wait("[...document.querySelectorAll('table.events td')].some(td => td.innerText == 'RolledBack')",
                 30, "the RolledBack Event, live")
    page = browser.eval(CENSUS)
    assert page["marker"] == "opened before the controller"
    st = get_rollout(k8s_api, namespace, "drifty")["status"]
    psi = next(c for c in st["checks"] if c["name"] == "score-psi")
    assert page["series"] == ["score-psi", "errors"] and page["thresholds"] == [1, 1]
    assert page["points"]["score-psi"] == [w["verdict"] for w in psi["recent"]]     # every window kept
    assert page["points"]["score-psi"][-2:] == ["Fail", "Fail"]       # failureLimit 2
    assert page["deciding"] == ["score-psi"]
    assert "Decided by score-psi" in page["decided"] and "threshold 0.5" in page["decided"]
    assert page["title"] == "drifty (RolledBack) — modelrollout" and page["buttons"] == 0
    assert any("RolledBack" in r and "score-psi" in r for r in page["history"]), page["history"]

    png = browser.screenshot(tmp_path / "dashboard.png")
    width, height, _ = read_png(png)
    assert (width, height) == browser.viewport
    red = _frame_pixel(browser, png, "figure.check-chart.deciding")
    assert red[0] > 150 and red[1] < 90 and red[2] < 90, f"deciding check's frame is not red: {red}"
    plain = _frame_pixel(browser, png, "figure.check-chart:not(.deciding)")
    assert not (plain[0] > 150 and plain[1] < 90), f"a check that did not decide is framed: {plain}"
    if os.environ.get("MODELROLLOUT_UPDATE_SCREENSHOTS"):
        SCREENSHOT.write_bytes(png.read_bytes())

    browser.goto(dash.url + "/")
    rows = {r[0]: r for r in browser.eval(ROWS)}
    assert set(rows) == {f"{namespace}/drifty", f"{namespace}/steady"}
    assert rows[f"{namespace}/drifty"][1] == "RolledBack" and "score-psi" in rows[f"{namespace}/drifty"][2]
    assert rows[f"{namespace}/steady"][1] in ("Shadowing", "Paused")


def test_commands_go_through_the_annotation_and_the_controller_acts(procs, kubeconfig, kubectl, k8s_api,
                                                                     namespace, mro_crd, dashboards, browser):
    """With --allow-actions each command is a button; one the controller would refuse is disabled with the
    reason; pressing Pause with the keyboard writes the command annotation, the controller pauses the rollout
    and the page shows it; a refused command and requests without the page's token or from another origin
    write nothing."""
    apply(kubectl, rollout_doc("manual", namespace, procs.scorer("v1"), procs.scorer("v2"), checks=[],
                               steps=[{"shadow": {"duration": "10m"}}]))
    ctl = procs.controller(kubeconfig, namespace)
    wait_phase(k8s_api, namespace, "manual", {"Shadowing"}, 30, diagnose=lambda: logs(ctl))
    dash = dashboards("-A", "--allow-actions")
    assert "all namespaces, commands enabled" in dash.first
    browser.goto(dash.url + "/")
    row = browser.wait(f"{ROWS}.find(r => r[0] == '{namespace}/manual')", 30, "the rollout in the -A list")
    assert row[2].startswith(namespace)                               # the namespace column
    browser.goto(f"{dash.url}/rollouts/{namespace}/manual")
    browser.wait("document.getElementById('live').textContent == 'live'", 30, "event stream connected")
    buttons = browser.eval("[...document.querySelectorAll('button.action')].map(b => [b.dataset.focus, "
                           "b.disabled, b.title])")
    assert [b[0] for b in buttons] == ["action:promote", "action:promote-full", "action:pause", "action:resume",
                                       "action:abort", "action:retry"]
    disabled = {b[0]: b[2] for b in buttons if b[1]}
    assert set(disabled) == {"action:resume", "action:retry"}
    assert "not paused (phase Shadowing)" in disabled["action:resume"]

    for _ in range(20):
        browser.key("Tab")
        if browser.eval("document.activeElement.dataset.focus || ''") == "action:pause":
            break
    assert browser.eval("document.activeElement.dataset.focus") == "action:pause"
    browser.eval("window.__marker = 'before pause'")
    browser.key("Enter")
    result = browser.wait("(() => { const t = document.getElementById('action-result').innerText;"
                          " return t.includes('sent') && t; })()", 30, "the command's answer")
    browser.wait("document.querySelector('h1 .phase').dataset.phase == 'Paused'", 30, "Paused by the controller")
    obj = get_rollout(k8s_api, namespace, "manual")
    cmd = json.loads(obj["metadata"]["annotations"]["modelrollout.io/command"])
    assert cmd["verb"] == "pause" and cmd["full"] is False and f"pause sent (id {cmd['id']})" in result
    assert obj["status"]["lastCommandId"] == cmd["id"] and obj["status"]["pauseReason"] == "user"
    assert browser.eval("window.__marker") == "before pause"
    browser.wait("!document.querySelector('[data-focus=\"action:resume\"]').disabled", 30, "Resume enabled")

    token = browser.eval("document.querySelector('meta[name=mr-token]').content")
    path = f"/api/rollouts/{namespace}/manual/"
    json_ = {"Content-Type": "application/json"}
    status, answer = dash.request("POST", path + "retry", {}, {**json_, "X-Modelrollout-Token": token})
    assert status == 409
    assert answer["error"] == (f"cannot retry modelrollout {namespace}/manual: retry applies after a rollback "
                               "or abort; phase is Paused")
    for headers, code in (({**json_}, 403), ({**json_, "X-Modelrollout-Token": "guess"}, 403),
                          ({**json_, "X-Modelrollout-Token": token, "Origin": "http://evil.example"}, 403),
                          ({"Content-Type": "text/plain", "X-Modelrollout-Token": token}, 415)):
        assert dash.request("POST", path + "abort", {}, headers)[0] == code, headers
    status, answer = dash.request("POST", path + "pause", {"full": True}, {**json_, "X-Modelrollout-Token": token})
    assert status == 400 and "body.full" in answer["error"]
    after = get_rollout(k8s_api, namespace, "manual")["metadata"]["annotations"]["modelrollout.io/command"]
    assert json.loads(after)["id"] == cmd["id"]                        # nothing refused was written

    browser.eval("document.querySelector('[data-focus=\"action:abort\"]').click()")
    browser.wait("document.querySelector('h1 .phase').dataset.phase == 'RolledBack'", 30, "aborted")
    browser.wait("[...document.querySelectorAll('table.events td')].some(td => td.innerText == 'Aborted')",
                 30, "the Aborted Event")
    assert browser.eval("[...document.querySelectorAll('button.action')].filter(b => !b.disabled)"
                        ".map(b => b.dataset.focus)") == ["action:retry"]
