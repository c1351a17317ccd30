"""One base exception for the project, families under it, and what each becomes at a boundary."""
from __future__ import annotations

import pytest

from policies.api import Verdict
from policies.errors import (
    EvidenceError, InvalidInput, KubeError, ModelRolloutError, RouterError, StatisticsError, ToolError, exit_code,
    http_status, verdict_for,
)


def _types():
    from controller.kube.reconciler import NotLeader
    from kubeio.watch import _Gone
    from modelrollout.analyze import InputError
    from modelrollout.local import LocalError
    from modelrollout.plugin.kube import PluginError
    from modelrollout.report import RecordError
    from policies.checks import SourceError
    from policies.machine import CommandError
    from policies.outcome import OutcomeError
    from policies.spec import SpecError
    from policies.stats import StatError
    from policies.summaries import SummaryError
    from router.feedback import FeedbackRefused
    from router.predlog import LogError
    from router.upstream import _Closed
    from router.worker import WorkerUnavailable

    return [
        (SpecError, InvalidInput, ValueError), (CommandError, InvalidInput, ValueError),
        (OutcomeError, InvalidInput, ValueError),
        (LogError, InvalidInput, ValueError), (InputError, InvalidInput, ValueError),
        (RecordError, InvalidInput, ValueError), (StatError, StatisticsError, ValueError),
        (SummaryError, StatisticsError, ValueError), (SourceError, EvidenceError, None),
        (WorkerUnavailable, RouterError, None), (FeedbackRefused, RouterError, None), (_Closed, RouterError, None),
        (NotLeader, KubeError, None), (_Gone, KubeError, None), (PluginError, ToolError, None),
        (LocalError, ToolError, None),
    ]


def test_every_project_exception_is_in_its_family_and_keeps_its_builtin_base():
    """Callers that catch ValueError (or the family, or ModelRolloutError) keep catching each type."""
    for cls, family, builtin in _types():
        assert issubclass(cls, family) and issubclass(cls, ModelRolloutError), cls
        if builtin is not None:
            assert issubclass(cls, builtin), cls


def test_families_map_to_verdicts_http_statuses_and_exit_codes():
    from modelrollout.local import LocalError
    from policies.spec import SpecError
    from router.feedback import FeedbackRefused

    assert verdict_for(StatisticsError("x")) is Verdict.INCONCLUSIVE
    assert verdict_for(EvidenceError("x")) is Verdict.INCONCLUSIVE
    assert verdict_for(KeyError("bug")) is None and verdict_for(InvalidInput("x")) is None
    assert http_status(SpecError("spec.x", "bad")) == 400 and http_status(EvidenceError("x")) == 502
    assert http_status(RouterError("x")) == 503 and http_status(RuntimeError("bug")) == 500
    assert http_status(FeedbackRefused(409, "duplicate feedback", "already accepted")) == 409
    assert exit_code(SpecError("spec.x", "bad")) == 2 and exit_code(LocalError("port in use")) == 2
    assert exit_code(ToolError("x")) == 1 and exit_code(OSError("x")) == 1


@pytest.mark.parametrize("argv, code", [(["status", "x", "--kubeconfig", "/nonexistent/kubeconfig"], 1)])
def test_plugin_errors_exit_with_their_code(argv, code, capsys):
    from modelrollout import plugin

    assert plugin.main(argv) == code
    assert capsys.readouterr().err.startswith("error: --kubeconfig /nonexistent/kubeconfig: no such file")
