"""Headless Chromium driven over the DevTools protocol, for tests that need a page's script to run.

`Browser(tmp)` starts Debian's chromium with `--remote-debugging-port=0` on 127.0.0.1, reads the port it
chose from its stderr, and talks to its one page over a websocket (websocket-client, which the kubernetes
client already depends on). `close()` stops the process it started.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, tmp: Path, width: int = 1280, height: int = 1700, timeout: float = 90.0):
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        profile = tmp / "chromium-profile"
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--disable-extensions",
             "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "HOME": str(tmp)})
        self.stderr: list[str] = []
        found = threading.Event()
        self.devtools = ""

        def read():
            for line in self.proc.stderr:
                self.stderr.append(line)
                m = re.search(r"DevTools listening on (ws://\S+)", line)
                if m and not found.is_set():
                    self.devtools = m.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout):
            self.close()
            raise BrowserError(f"chromium did not start its DevTools server: {''.join(self.stderr)[-2000:]}")
        port = int(re.search(r":(\d+)/", self.devtools).group(1))
        deadline = time.monotonic() + timeout
        page = None
        while page is None and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                page = next((t for t in json.load(r) if t.get("type") == "page"), None)
            if page is None:
                time.sleep(0.2)
        if page is None:
            self.close()
            raise BrowserError("chromium has no page target")
        import websocket

        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.viewport = (width, height)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # ---- the protocol ------------------------------------------------------------------------------------

    def call(self, method: str, timeout: float = 60.0, **params: Any) -> dict:
        self._id += 1
        mine = self._id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mine:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise BrowserError(f"{method}: no answer in {timeout}s")

    def goto(self, url: str, timeout: float = 60.0) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && location.href === " + json.dumps(url), timeout,
                  f"{url} loaded")

    def eval(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression}: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float, what: str, interval: float = 0.25) -> Any:
        """Poll `expression` in the page until it is truthy; fail naming `what` and the page's text."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.eval(expression)
            if last:
                return last
            time.sleep(interval)
        text = self.eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
        raise BrowserError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\npage:\n{text}")

    def key(self, key: str) -> None:
        """Press and release one key (Tab, Enter, Escape) as a keyboard user would."""
        codes = {"Tab": 9, "Enter": 13, "Escape": 27}
        base = {"key": key, "code": key, "windowsVirtualKeyCode": codes[key], "nativeVirtualKeyCode": codes[key]}
        down = {**base, "text": "\r"} if key == "Enter" else base
        self.call("Input.dispatchKeyEvent", type="keyDown", **down)
        self.call("Input.dispatchKeyEvent", type="keyUp", **base)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def color_scheme(self, scheme: str) -> None:
        self.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}])

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
