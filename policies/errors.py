"""The project's exceptions: one base, `ModelRolloutError`, and a family under it per kind of failure.

Every exception type the project raises derives from one family here (and keeps a builtin base such as
`ValueError` where callers catch that). Each family says, as data, what it becomes at a boundary:

| family | what failed | verdict | HTTP | exit code |
|---|---|---|---|---|
| `InvalidInput` | what a person gave: a spec, a flag, a file, a command annotation | — | 400 | 2 |
| `StatisticsError` | a statistic or summary cannot be computed, merged or decoded | Inconclusive | 422 | 1 |
| `EvidenceError` | an evidence source (router summaries, Prometheus) gave no usable value | Inconclusive | 502 | 1 |
| `RouterError` | the router's own machinery (worker, upstream connection, feedback ids) | — | 503 | 1 |
| `KubeError` | the Kubernetes API (lost leadership, expired watch) | — | 503 | 1 |
| `ToolError` | a command-line tool (kubectl plugin, local run) cannot go on | — | — | 1 |

`verdict_for`, `http_status` and `exit_code` read these so the controller (verdicts), the router (HTTP
answers) and the CLIs (exit codes) map errors the same way; `docs/architecture.md` ("Controller") says
where each boundary is. Expected failures of evidence are data (`controller.evidence.Failure`), not
exceptions; these types are for what cannot be returned.
"""
from __future__ import annotations

from policies.api import Verdict


class ModelRolloutError(Exception):
    """Base of every exception the project raises on purpose."""

    verdict: Verdict | None = None
    """The window verdict a check gets when evaluating it raised this (None: not a judging error)."""
    http_status: int = 500
    """The HTTP status an API answers with when a request fails with this."""
    exit_code: int = 1
    """The exit code of a command line tool that stops on this."""


class InvalidInput(ModelRolloutError):
    """Input a person gave that can never work as written: fix it and try again (never retried)."""

    http_status = 400
    exit_code = 2


class StatisticsError(ModelRolloutError):
    """A statistic or a summary cannot be computed, built, merged or decoded from the data at hand."""

    verdict = Verdict.INCONCLUSIVE
    http_status = 422


class EvidenceError(ModelRolloutError):
    """An evidence source failed or gave no usable value: temporary, the check is Inconclusive."""

    verdict = Verdict.INCONCLUSIVE
    http_status = 502


class RouterError(ModelRolloutError):
    """The router's own machinery failed: its worker, an upstream connection, a feedback id."""

    http_status = 503


class KubeError(ModelRolloutError):
    """The Kubernetes API did not let an operation complete (leadership lost, watch expired)."""

    http_status = 503


class ToolError(ModelRolloutError):
    """A command-line tool cannot go on; the message says what to fix."""


def verdict_for(error: BaseException) -> Verdict | None:
    """The verdict a check gets when evaluating it raised `error`; None when the error is not about data
    (a bug), which the caller still turns into Inconclusive but logs with its traceback."""
    return error.verdict if isinstance(error, ModelRolloutError) else None


def http_status(error: BaseException) -> int:
    """The HTTP status for `error`: its own `status` when it carries one (e.g. 404, 409), else its family's."""
    status = getattr(error, "status", None)
    if isinstance(status, int) and 400 <= status < 600:
        return status
    return error.http_status if isinstance(error, ModelRolloutError) else 500


def exit_code(error: BaseException) -> int:
    """The exit code for a tool that stops on `error` (2: bad input, 1: anything else)."""
    return error.exit_code if isinstance(error, ModelRolloutError) else 1


__all__ = ["ModelRolloutError", "InvalidInput", "StatisticsError", "EvidenceError", "RouterError", "KubeError",
           "ToolError", "verdict_for", "http_status", "exit_code"]
