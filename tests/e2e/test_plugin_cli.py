"""The plugin's command line on its own (no cluster needed): help and usage errors."""
from __future__ import annotations

import pytest

from modelrollout import plugin

SUBCOMMANDS = ["list", "status", "history", "lint", "report", "dashboard", *plugin.VERBS]


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in SUBCOMMANDS)], ids=lambda a: " ".join(a))
def test_help_works_for_every_command(args, capsys):
    """`kubectl modelrollout [COMMAND] --help` prints usage and exits 0."""
    assert plugin.main(args) == 0
    assert "usage: kubectl modelrollout" in capsys.readouterr().out


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["status"], ["list", "-o", "table"], ["promote", "x", "--fast"]],
                         ids=lambda a: " ".join(a) or "nothing")
def test_usage_errors_exit_2_with_a_message(args, capsys):
    """A missing or unknown command, argument or option exits 2 and says what is wrong."""
    assert plugin.main(args) == 2
    assert "error:" in capsys.readouterr().err
