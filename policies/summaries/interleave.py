"""InterleaveSummary: team-draft interleaving outcomes."""
from __future__ import annotations

from typing import Any, Mapping

from policies._result import StatResult
from policies.interleaving import interleave_test
from .base import check_mergeable, SummaryError
from .codec import _count, _decoder

class InterleaveSummary:
    """Per-impression outcomes of the candidate against the baseline in team-draft interleaving."""

    def __init__(self, wins: int = 0, losses: int = 0, ties: int = 0) -> None:
        self.wins, self.losses, self.ties = wins, losses, ties

    def add(self, winner: str) -> None:
        """``winner`` is "candidate", "baseline" or "tie"."""
        if winner == "candidate":
            self.wins += 1
        elif winner == "baseline":
            self.losses += 1
        elif winner == "tie":
            self.ties += 1
        else:
            raise SummaryError(f"winner must be 'candidate', 'baseline' or 'tie', got {winner!r}")

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    def test(self) -> StatResult:
        """`interleave_test` on the tally (raises StatError when there are no impressions)."""
        return interleave_test(self.wins, self.losses, self.ties)

    def merge(self, other: "InterleaveSummary") -> "InterleaveSummary":
        check_mergeable(self, other)
        return InterleaveSummary(self.wins + other.wins, self.losses + other.losses, self.ties + other.ties)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "interleave", "wins": self.wins, "losses": self.losses, "ties": self.ties}

    @_decoder("interleave summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "InterleaveSummary":
        where = "interleave summary"
        return cls(_count(d, "wins", where), _count(d, "losses", where), _count(d, "ties", where))
