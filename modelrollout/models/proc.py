"""Start a real server process on a free loopback port and wait until it answers.

The tests, the demo and the benchmarks all start model servers and routers the same way, so the
readiness wait and the clean stop (SIGTERM, then SIGKILL) live here once.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    """A started server process: its port, base URL and how to stop it."""
    args: list[str]
    port: int
    popen: subprocess.Popen
    log_path: Path | None = None
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """What the process wrote to stdout/stderr so far (for error messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig`, wait up to `timeout` seconds, then SIGKILL; returns the exit code."""
        return stop_popen(self.popen, sig, timeout)

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_popen(popen: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Send `sig` to a running process, wait up to `timeout` seconds, then SIGKILL; returns the exit code."""
    if popen.poll() is None:
        try:
            popen.send_signal(sig)
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
    return popen.returncode


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; raise with the reason if it never does."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s (last: {last})")


def start(module: str, args: Sequence[str] = (), *, port: int | None = None, ready: str = "/healthz",
          timeout: float = 20.0, log_dir: Path | None = None, env: dict | None = None) -> Proc:
    """`python -m module --port P *args` on a free port; returns once GET `ready` answers 200."""
    port = port or free_port()
    argv = [sys.executable, "-m", module, "--port", str(port), *map(str, args)]
    log_path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{module.rsplit('.', 1)[-1]}-{port}.log"
        out = open(log_path, "wb")
    else:
        out = subprocess.DEVNULL
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    if log_dir is not None:
        out.close()
    proc = Proc(argv, port, popen, log_path, env or {})
    try:
        wait_http(proc.url + ready, timeout, popen)
    except Exception as e:
        proc.stop(signal.SIGKILL)
        raise RuntimeError(f"{' '.join(argv)} did not start: {e}\n{proc.output()}") from e
    return proc
