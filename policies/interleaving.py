"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008) and its per-impression credit.

The router calls `team_draft` once per request to merge two rankings; feedback clicks are
credited with `credit`; the controller tests the tally with `interleave_test`.
"""
from __future__ import annotations

import random
from typing import Iterable, Mapping, Sequence

from scipy import stats as sps

from ._result import StatError, StatResult


def team_draft(a: Sequence[str], b: Sequence[str], rng: random.Random,
               length: int | None = None) -> tuple[list[str], list[str]]:
    """Merge rankings ``a`` and ``b``; return (item ids, team per position: "a" | "b").

    As in the paper: while both rankings still hold an item not yet shown, the team with fewer
    picks picks next (``rng.random() < 0.5`` → team a on ties) and adds its highest-ranked item
    not yet shown. Stops at ``length`` items when given. Duplicates within a list are skipped.
    """
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
        raise ValueError(f"length must be a non-negative integer or None, got {length!r}")
    merged: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    ia = ib = 0
    picks = {"a": 0, "b": 0}
    limit = len(set(a) | set(b)) if length is None else length
    while len(merged) < limit:
        while ia < len(a) and a[ia] in shown:
            ia += 1
        while ib < len(b) and b[ib] in shown:
            ib += 1
        if ia >= len(a) or ib >= len(b):
            break
        if picks["a"] < picks["b"] or (picks["a"] == picks["b"] and rng.random() < 0.5):
            team, item = "a", a[ia]
        else:
            team, item = "b", b[ib]
        merged.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return merged, teams


def team_clicks(teams_by_item: Mapping[str, str], clicks: Iterable[str]) -> tuple[int, int]:
    """(clicks on team a's items, clicks on team b's items) of one impression; clicks on items that were not
    shown are ignored."""
    a = b = 0
    for item in clicks:
        team = teams_by_item.get(item)
        if team == "a":
            a += 1
        elif team == "b":
            b += 1
    return a, b


def credit(teams_by_item: Mapping[str, str], clicks: Iterable[str], counted: tuple[int, int] | None = None) -> str:
    """"a" or "b" when that team's items got more clicks in this impression, else "tie".

    Clicks on items that were not shown are ignored; no clicks is a tie. `counted`: `team_clicks` already
    taken for these clicks.
    """
    a, b = counted if counted is not None else team_clicks(teams_by_item, clicks)
    return "tie" if a == b else "a" if a > b else "b"


def reward_delta(teams_by_item: Mapping[str, str], clicks: Iterable[str], reward: float,
                 counted: tuple[int, int] | None = None) -> float | None:
    """The reward of one interleaved impression credited to the teams by the clicked items they placed:
    team b (the candidate) gets reward·c_b/(c_a + c_b), team a (the baseline) reward·c_a/(c_a + c_b), with c_x
    the clicks on shown items of team x; the value is the candidate's credit minus the baseline's,
    reward·(c_b − c_a)/(c_a + c_b). None (not credited) without a click on a shown item. `counted`: as
    `credit`."""
    a, b = counted if counted is not None else team_clicks(teams_by_item, clicks)
    return reward * (b - a) / (a + b) if a + b else None


def interleave_test(wins: int, losses: int, ties: int) -> StatResult:
    """Candidate's interleaving preference: value Δ = (wins + ties/2)/n − 0.5, n = all impressions.

    p_value: two-sided exact binomial test (scipy.stats.binomtest) of wins among wins + losses
    against 0.5; ties are excluded from the test. ``estimate`` is Δ; the CI is the Clopper–Pearson
    95% interval of wins/(wins + losses) mapped to the same scale (p − 0.5) when ties are 0.
    """
    for name, v in (("wins", wins), ("losses", losses), ("ties", ties)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise StatError(f"{name} must be a non-negative integer, got {v!r}")
    n = wins + losses + ties
    if n == 0:
        raise StatError("no impressions: wins + losses + ties is 0")
    delta = (wins + ties / 2) / n - 0.5
    detail = {"wins": wins, "losses": losses, "ties": ties, "test": "two-sided binomial, ties excluded"}
    if wins + losses == 0:
        return StatResult("interleave", delta, 1.0, n, n, estimate=delta,
                          detail={**detail, "reason": "every impression was a tie"})
    r = sps.binomtest(wins, wins + losses, 0.5)
    ci = r.proportion_ci(confidence_level=0.95, method="exact")
    share = (wins + losses) / n     # Δ = share · (p − 0.5) where p = wins / (wins + losses)
    return StatResult("interleave", delta, float(r.pvalue), n, n, estimate=delta,
                      ci_low=share * (ci.low - 0.5), ci_high=share * (ci.high - 0.5), detail=detail)
