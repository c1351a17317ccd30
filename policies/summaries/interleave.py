"""InterleaveSummary: team-draft interleaving outcomes."""
from __future__ import annotations

from typing import Any, Mapping

from policies._result import StatResult
from policies.interleaving import interleave_test
from .base import check_mergeable, SummaryError
from .codec import _count, _decoder
from .reward import RewardSums


class InterleaveSummary:
    """Per-impression outcomes of the candidate against the baseline in team-draft interleaving, and the
    rewards credited to the teams (`reward_deltas`: per rewarded impression with clicks, the candidate's
    credited reward minus the baseline's, `policies.interleaving.reward_delta`; None until there is one)."""

    def __init__(self, wins: int = 0, losses: int = 0, ties: int = 0,
                 reward_deltas: RewardSums | None = None) -> None:
        self.wins, self.losses, self.ties = wins, losses, ties
        self.reward_deltas = reward_deltas

    def add_reward_delta(self, delta: float) -> None:
        if self.reward_deltas is None:
            self.reward_deltas = RewardSums()
        self.reward_deltas.add(delta)

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
        ra, rb = self.reward_deltas, other.reward_deltas
        return InterleaveSummary(self.wins + other.wins, self.losses + other.losses, self.ties + other.ties,
                                 ra.merge(rb) if ra is not None and rb is not None else (ra or rb))

    def to_dict(self) -> dict[str, Any]:
        d = {"type": "interleave", "wins": self.wins, "losses": self.losses, "ties": self.ties}
        if self.reward_deltas is not None:           # absent without credited rewards
            d["reward_deltas"] = self.reward_deltas.to_dict()
        return d

    @_decoder("interleave summary")
    def from_dict(cls, d: Mapping[str, Any]) -> "InterleaveSummary":
        where = "interleave summary"
        deltas = d.get("reward_deltas")
        return cls(_count(d, "wins", where), _count(d, "losses", where), _count(d, "ties", where),
                   RewardSums.from_dict(deltas) if deltas is not None else None)
