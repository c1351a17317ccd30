"""The live terminal view of local runs and the demo: one panel per rollout (rich), redrawn as it changes.

It is a controller listener like the plain printer: it only reads the statuses the loop hands it, so what it
shows is exactly what the controller decided.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from policies.api import Phase
from policies.spec import Step
from policies.status import RolloutStatus, format_left

PHASE_STYLES = {Phase.VERIFYING: "blue", Phase.SHADOWING: "cyan", Phase.PROGRESSING: "yellow", Phase.INTERLEAVING: "magenta", Phase.PAUSED: "bold yellow",
                Phase.PROMOTED: "bold green", Phase.ROLLED_BACK: "bold red", Phase.FAILED: "bold red", Phase.PENDING: "dim",
                Phase.STABLE: "green"}
VERDICT_STYLES = {"Pass": "green", "Fail": "bold red", "Inconclusive": "dim"}


def _num(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class LiveView:
    """Listener that keeps the newest status per rollout and renders them in a rich Live display."""

    def __init__(self, started: float, title: str = "modelrollout"):
        self.started = started
        self.title = title
        self.rollouts: dict[str, tuple[Any, Mapping[str, Any]]] = {}
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.live: Live | None = None

    def __call__(self, kind: str, t: Any, old: dict, new: dict, obs: Any) -> None:
        from modelrollout.local import transition_line

        with self.lock:
            self.rollouts[t.spec.key] = (t.spec, new)
            if kind == "transition":
                self.events.append(transition_line(t, new, self.started, time.time()))
                self.events = self.events[-8:]

    def panel(self, spec: Any, status: Mapping[str, Any]) -> Panel:
        from policies.status import stable_from

        phase = status.get("phase", Phase.PENDING)
        spec = spec.resolved(stable_from(status.get("stable")))   # the baseline is the stable once promoted
        steps = spec.steps or (Step("pause"),)
        step = int(status.get("currentStep") or 0)
        routing = status.get("routing") or {}
        weight = 100 if phase == Phase.PROMOTED else int(routing.get("candidateWeight") or 0)
        # the time left is computed here, from the status's step start and duration (the status holds no clock text)
        left = RolloutStatus.from_status(status).step_left(time.time())
        head = Table.grid(padding=(0, 2))
        head.add_row(Text(phase, style=PHASE_STYLES.get(phase, "")),
                     Text(f"step {min(step + 1, len(steps))}/{len(steps)}: "
                          f"{steps[min(step, len(steps) - 1)].describe()}"
                          + (f" ({format_left(left)} left)" if left is not None and left > 0 else "")),
                     Text("shadow (mirrored)" if routing.get("shadow") else f"candidate {weight}%"))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(Text("candidate traffic", style="dim"),
                    ProgressBar(total=100, completed=weight, width=40,
                                complete_style="green" if phase != Phase.ROLLED_BACK else "red"),
                    Text(f"{weight}%"))
        checks = Table(box=None, pad_edge=False, show_edge=False)
        for col in ("check", "value", "threshold", "verdict", "samples", "fails"):
            checks.add_column(col, justify="right" if col not in ("check", "verdict") else "left")
        for c in status.get("checks", []):
            v = c.get("verdict") or "–"
            checks.add_row(c.get("name", "?"), _num(c.get("value")), _num(c.get("threshold")),
                           Text(v, style=VERDICT_STYLES.get(v, "")), str(c.get("samples", 0)),
                           str(c.get("failures", 0)))
        message = Text(status.get("message", ""), style="italic")
        return Panel(Group(head, bar, checks, message), title=f"{spec.key}  {spec.baseline.version} → "
                     f"{spec.candidate.version}", border_style=PHASE_STYLES.get(phase, "white").split()[-1])

    def render(self):
        with self.lock:
            items = list(self.rollouts.values())
            events = list(self.events)
        elapsed = time.time() - self.started
        parts: list[Any] = [Text(f"{self.title} — {elapsed:5.1f}s", style="bold")]
        parts += [self.panel(spec, status) for spec, status in items]
        if events:
            parts.append(Text("\n".join(events), style="dim"))
        return Group(*parts)

    def __enter__(self) -> "LiveView":
        self.live = Live(get_renderable=self.render, refresh_per_second=4, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
