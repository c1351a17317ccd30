"""The HTML report: one self-contained file of SVG charts, rendered from a run record, that a browser draws."""
from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from modelrollout.report import FORMAT, RunRecorder, load_record, main as report_main, render_html
from policies.spec import parse_rollout
from policies.status import CheckResult, Verdict
from policies.summaries import VersionWindow

REPO = Path(__file__).resolve().parents[2]


def _spec(name: str):
    return parse_rollout({
        "apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {"baseline": {"version": "v1", "url": "http://127.0.0.1:1"},
                 "candidate": {"version": "v2", "url": "http://127.0.0.1:2"},
                 "strategy": {"steps": [{"shadow": {"duration": "3s"}}, {"canary": {"weight": 50, "duration": "3s"}}]},
                 "analysis": {"interval": "1s", "checks": [
                     {"name": "score-psi", "metric": "psi", "max": 0.2},
                     {"name": "errors", "metric": "error-rate", "max": 0.01, "immediate": True}]}}}).spec


def _window(rng: random.Random, mean: float, n: int) -> VersionWindow:
    w = VersionWindow.new("score")
    for i in range(n):
        w.requests += 1
        w.latency.add(0.004 + rng.random() * 0.003)
        w.prediction.add(min(1.0, max(0.0, rng.gauss(mean, 0.1))), rng.random())
    return w


def make_record() -> dict:
    """A record of two rollouts built through the recorder API local mode uses: one promoted, one rolled back."""
    rng = random.Random(7)
    rec = RunRecorder("test.yaml", 1000.0)
    for name, shift, outcome in (("healthy", 0.0, "Promoted"), ("drifting", 0.15, "RolledBack")):
        spec = _spec(name)
        rec.add_rollout(spec)
        rec.transition(spec.key, 1000.0, {"phase": "Shadowing", "currentStep": 0,
                                          "routing": {"candidateWeight": 0, "shadow": True}}, "started")
        last = 1010 if outcome == "Promoted" else 1004
        for t in range(1001, last + 1):
            psi = 0.02 + rng.random() * 0.03 + shift * 3
            verdict = Verdict.PASS if psi <= 0.2 else Verdict.FAIL
            results = [CheckResult("score-psi", "psi", psi, 0.2, verdict, 300),
                       CheckResult("errors", "error-rate", 0.0, 0.01, Verdict.PASS, 300)]
            rec.window(spec.key, start=t - 1, end=t, now=t, results=results,
                       status={"phase": "Shadowing", "currentStep": 0, "routing": {"shadow": True}},
                       baseline=_window(rng, 0.3, 300), candidate=_window(rng, 0.3 + shift, 300))
        final = {"phase": outcome, "currentStep": 1, "routing": {"candidateWeight": 100 if outcome == "Promoted" else 0}}
        failing = CheckResult("score-psi", "psi", 0.47, 0.2, Verdict.FAIL, 300) if outcome == "RolledBack" else None
        rec.transition(spec.key, float(last), final, f"{outcome.lower()} at t={last}", failing)
        rec.finish(spec.key, final)
    rec.finished = 1012.0
    return rec.to_dict()


class SvgCensus(HTMLParser):
    """Counts what the report draws, per rollout section."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.scripts = 0
        self.external = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("#"):
                self.external.append(a[key])
        if tag == "section" and "data-rollout" in a:
            self.current = self.sections[a["data-rollout"]] = {
                "outcome": a.get("data-outcome"), "svg": 0, "checks": set(), "points": 0,
                "baseline_bars": 0, "candidate_bars": 0, "phases": set(), "threshold_lines": 0}
        if self.current is None:
            return
        cls = a.get("class", "")
        if tag == "svg":
            self.current["svg"] += 1
        if tag == "g" and "check-series" in cls:
            self.current["checks"].add(a["data-check"])
        if tag == "circle" and "point" in cls.split():
            self.current["points"] += 1
        if tag == "rect" and "bar" in cls.split():
            self.current["baseline_bars" if "baseline" in cls else "candidate_bars"] += 1
        if tag == "rect" and "phase-band" in cls:
            self.current["phases"].add(a["data-phase"])
        if tag == "polyline" and "threshold-line" in cls:
            self.current["threshold_lines"] += 1


def census(html_text: str) -> SvgCensus:
    c = SvgCensus()
    c.feed(html_text)
    return c


def test_report_draws_every_chart_per_rollout():
    """Each rollout gets its timeline, one series per check with its threshold, overlaid distributions and
    per-version charts, all as inline SVG with no script or external resource."""
    c = census(render_html(make_record()))
    assert c.scripts == 0 and c.external == []
    assert set(c.sections) == {"demo/healthy", "demo/drifting"}
    healthy, drifting = c.sections["demo/healthy"], c.sections["demo/drifting"]
    assert healthy["outcome"] == "Promoted" and drifting["outcome"] == "RolledBack"
    for s in (healthy, drifting):
        assert s["checks"] == {"score-psi", "errors"}
        assert s["threshold_lines"] == 2
        assert s["baseline_bars"] > 5 and s["candidate_bars"] > 5
        assert s["svg"] >= 1 + 2 + 4      # timeline, two checks, distribution + three version series
    assert healthy["points"] == 2 * 10 and drifting["points"] == 2 * 4
    assert {"Shadowing", "Promoted"} <= healthy["phases"] and "RolledBack" in drifting["phases"]


def test_report_states_the_deciding_check():
    """A rolled-back rollout's decision names the check, its value and its threshold."""
    page = render_html(make_record())
    section = page.split('data-rollout="demo/drifting"', 1)[1]
    assert "check score-psi: value 0.47, threshold 0.2" in section


def test_record_round_trips_through_run_json(tmp_path):
    """A record written as RUN.json is strict JSON and `modelrollout report` renders it to the named file."""
    run = tmp_path / "run.json"
    run.write_text(json.dumps(make_record(), allow_nan=False))
    assert load_record(run)["format"] == FORMAT
    out = tmp_path / "r.html"
    assert report_main([str(run), "-o", str(out)]) == 0
    assert set(census(out.read_text()).sections) == {"demo/healthy", "demo/drifting"}


def test_report_rejects_a_file_that_is_not_a_record(tmp_path, capsys):
    """A JSON file of another format exits 2 with a message naming the format field."""
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"format": "something/else", "rollouts": []}))
    assert report_main([str(bad), "-o", str(tmp_path / "x.html")]) == 2
    assert "format: expected 'modelrollout.io/run/v1'" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


# --- the report in a real browser -----------------------------------------------------------------

def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, decoded with zlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color in (2, 6)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[j] for j in range(len(r)) if j % bpp < 3) for r in rows]


def screenshot(html_path: Path, png: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png}",
           "--window-size=1200,2000", html_path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert png.exists(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}"


def test_report_renders_in_headless_chromium(tmp_path):
    """Chromium draws the report: the screenshot shows the page's colours in varied regions, not a blank page."""
    page = tmp_path / "report.html"
    page.write_text(render_html(make_record()))
    png = tmp_path / "report.png"
    screenshot(page, png, tmp_path)
    width, height, rows = read_png(png)
    assert (width, height) == (1200, 2000)
    sample = [rows[y][x * 3:x * 3 + 3] for y in range(0, height, 7) for x in range(0, width, 7)]
    colours = {px for px in sample}
    lum = [sum(px) / 3 for px in sample]
    mean = sum(lum) / len(lum)
    variance = sum((v - mean) ** 2 for v in lum) / len(lum)
    assert variance > 200, f"screenshot looks blank (luminance variance {variance:.1f})"
    assert len(colours) > 50
    # the header band is dark, the candidate orange (#f58518) and baseline blue (#4c78a8) appear as drawn
    assert sum(rows[20][0:30]) / 30 < 80
    near = lambda px, rgb: all(abs(a - b) < 40 for a, b in zip(px, rgb))
    assert any(near(px, (0xf5, 0x85, 0x18)) for px in sample), "no candidate-orange pixels drawn"
    assert any(near(px, (0x4c, 0x78, 0xa8)) or near(px, (0x9f, 0xb6, 0xcf)) for px in sample), "no baseline bars"
