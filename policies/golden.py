"""Judging the golden step: both versions' answers to the golden set → one verdict per golden check.

Pure. The router calls both versions with every golden request (`router/golden.py`, the same transport,
request form and output extraction as live traffic) and answers the pairs; the controller (or local mode)
reads them with `GoldenRun.from_wire` and judges them here:

* `golden-errors`: the share of the candidate's answers that failed (5xx, 4xx, timeout, unreachable, NaN or
  unparsable output) against `maxErrorRate` (default 0);
* `golden-agreement`: over the requests both versions answered, the share whose answers agree (class: the
  same label; ranking: the same top item; score: the same decision at `spec.output.threshold`), against
  `minAgreement`;
* `golden-max-abs-delta`, `golden-mean-abs-delta` (scores): the largest and the mean |candidate − baseline|
  over the requests both answered, against `maxAbsDelta` and `maxMeanAbsDelta`;
* `golden-accuracy`: the share of the requests with an expected output the candidate answered correctly (a
  failed answer is wrong), against `minAccuracy`; the baseline's accuracy is given beside it.

The set is fixed and every answer is in: a value is the set's, not a sample's, so a check fails on its
first run (no persistence, no confidence bound). Evidence that cannot be read (no router, a router error)
makes every golden check Inconclusive with the reason; it never passes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from policies.golden_spec import GoldenCase
from policies.spec import RolloutSpec
from policies.status import CheckResult, Verdict
from policies.summaries import SummaryError
from policies.thresholds import fmt

EXAMPLES = 3
"""Requests named in a reason (by id, else by index)."""


@dataclass(frozen=True)
class GoldenAnswer:
    """One version's answer to one golden request, as the router read it."""
    status: int | None
    error: str | None
    output: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.output is not None

    @property
    def failure(self) -> str:
        """What went wrong (`http_5xx`, `timeout`, `invalid_output`, `http_4xx`, ...), for reasons."""
        if self.error is not None:
            return self.error
        if self.status != 200:
            return f"http_{self.status}" if self.status else "no_answer"
        return "no_output"


@dataclass(frozen=True)
class GoldenRun:
    """The golden set and both versions' answers, in the set's order."""
    cases: tuple[GoldenCase, ...]
    baseline: tuple[GoldenAnswer, ...]
    candidate: tuple[GoldenAnswer, ...]

    @staticmethod
    def from_wire(doc: Any, cases: Sequence[GoldenCase]) -> "GoldenRun":
        """The router's `/golden` answer (`{"answers": [{"baseline": A, "candidate": A}, ...]}`, A =
        `{status, error, output}`) for `cases`; raises SummaryError naming what is malformed."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("answers"), list):
            raise SummaryError(f"golden answer: expected an object with a list 'answers', got {str(doc)[:80]!r}")
        answers = doc["answers"]
        if len(answers) != len(cases):
            raise SummaryError(f"golden answer: {len(answers)} answers for {len(cases)} requests")
        base, cand = [], []
        for i, pair in enumerate(answers):
            if not isinstance(pair, Mapping):
                raise SummaryError(f"golden answer.answers[{i}]: expected an object")
            base.append(_answer(pair.get("baseline"), f"answers[{i}].baseline"))
            cand.append(_answer(pair.get("candidate"), f"answers[{i}].candidate"))
        return GoldenRun(tuple(cases), tuple(base), tuple(cand))


def _answer(raw: Any, where: str) -> GoldenAnswer:
    if not isinstance(raw, Mapping):
        raise SummaryError(f"golden answer.{where}: expected an object")
    status, error = raw.get("status"), raw.get("error")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise SummaryError(f"golden answer.{where}.status: expected an integer or null, got {status!r}")
    if error is not None and not isinstance(error, str):
        raise SummaryError(f"golden answer.{where}.error: expected a string or null, got {error!r}")
    return GoldenAnswer(status, error, raw.get("output"))


def unavailable(spec: RolloutSpec, reason: str) -> tuple[CheckResult, ...]:
    """Every golden check Inconclusive because the set could not be read or answered."""
    return tuple(CheckResult(c.name, c.metric, None, None, Verdict.INCONCLUSIVE, 0, reason=f"{c.name}: {reason}",
                             action=c.action, immediate=True) for c in spec.golden_checks)


def judge(spec: RolloutSpec, run: GoldenRun) -> tuple[CheckResult, ...]:
    """One `CheckResult` per golden check of `spec` (`RolloutSpec.golden_checks`), in order."""
    out = []
    for c in spec.golden_checks:
        verdict, value, threshold, samples, reason = _JUDGES[c.metric](spec, run, c.min, c.max)
        out.append(CheckResult(c.name, c.metric, value, threshold, verdict, samples, reason=f"{c.name} {reason}"
                               if verdict is not Verdict.INCONCLUSIVE else f"{c.name}: {reason}",
                               action=c.action, immediate=True))
    return tuple(out)


def _name(run: GoldenRun, i: int) -> str:
    return run.cases[i].id or f"#{i}"


def _examples(run: GoldenRun, idx: Sequence[int]) -> str:
    names = ", ".join(_name(run, i) for i in idx[:EXAMPLES])
    return f"{names}{', ...' if len(idx) > EXAMPLES else ''}"


def _bound(value: float, lo: float | None, hi: float | None) -> tuple[Verdict, float, str]:
    if hi is not None:
        return (Verdict.FAIL, hi, f"{fmt(value)} > {fmt(hi)}") if value > hi else (
            Verdict.PASS, hi, f"{fmt(value)} <= {fmt(hi)}")
    assert lo is not None
    return (Verdict.FAIL, lo, f"{fmt(value)} < {fmt(lo)}") if value < lo else (
        Verdict.PASS, lo, f"{fmt(value)} >= {fmt(lo)}")


def _errors(spec: RolloutSpec, run: GoldenRun, lo: float | None, hi: float | None):
    n = len(run.cases)
    failed = [i for i, a in enumerate(run.candidate) if not a.ok]
    value = len(failed) / n
    verdict, threshold, text = _bound(value, lo, hi)
    kinds: dict[str, int] = {}
    for i in failed:
        kinds[run.candidate[i].failure] = kinds.get(run.candidate[i].failure, 0) + 1
    what = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    detail = f" ({what}: {_examples(run, failed)})" if failed else ""
    base = sum(1 for a in run.baseline if not a.ok)
    return verdict, value, threshold, n, (f"{text}: {len(failed)}/{n} candidate answers failed{detail}; "
                                         f"baseline failed {base}/{n}")


def _both(run: GoldenRun) -> list[int]:
    return [i for i in range(len(run.cases)) if run.baseline[i].ok and run.candidate[i].ok]


def _decision(spec: RolloutSpec, out: Any) -> Any:
    """What two answers must share to agree: the label (class), the top item (ranking), the decision at
    `spec.output.threshold` (score)."""
    kind = spec.output.kind
    if kind == "score":
        return isinstance(out, (int, float)) and out >= spec.output.threshold
    if kind == "ranking":
        return _text(out[0]) if isinstance(out, list) and out else None
    return _text(out)


def _agreement(spec: RolloutSpec, run: GoldenRun, lo: float | None, hi: float | None):
    both = _both(run)
    if not both:
        return Verdict.INCONCLUSIVE, None, None, 0, "no golden request was answered by both versions"
    differ = [i for i in both if _decision(spec, run.baseline[i].output) != _decision(spec, run.candidate[i].output)]
    value = (len(both) - len(differ)) / len(both)
    verdict, threshold, text = _bound(value, lo, hi)
    detail = f"; they differ on {_examples(run, differ)}" if differ else ""
    return verdict, value, threshold, len(both), f"{text}: {len(both) - len(differ)}/{len(both)} answers agree{detail}"


def _deltas(spec: RolloutSpec, run: GoldenRun) -> list[tuple[int, float]]:
    out = []
    for i in _both(run):
        b, c = run.baseline[i].output, run.candidate[i].output
        if _number(b) and _number(c):
            out.append((i, abs(float(c) - float(b))))
    return out


def _max_delta(spec: RolloutSpec, run: GoldenRun, lo: float | None, hi: float | None):
    d = _deltas(spec, run)
    if not d:
        return Verdict.INCONCLUSIVE, None, None, 0, "no golden request got a score from both versions"
    i, value = max(d, key=lambda x: x[1])
    verdict, threshold, text = _bound(value, lo, hi)
    over = [j for j, v in d if hi is not None and v > hi]
    extra = f"; {len(over)}/{len(d)} requests over it ({_examples(run, over)})" if over else ""
    return verdict, value, threshold, len(d), (f"{text} (on {_name(run, i)}: baseline {fmt(run.baseline[i].output)}, "
                                               f"candidate {fmt(run.candidate[i].output)}){extra}")


def _mean_delta(spec: RolloutSpec, run: GoldenRun, lo: float | None, hi: float | None):
    d = _deltas(spec, run)
    if not d:
        return Verdict.INCONCLUSIVE, None, None, 0, "no golden request got a score from both versions"
    value = math.fsum(v for _, v in d) / len(d)
    verdict, threshold, text = _bound(value, lo, hi)
    return verdict, value, threshold, len(d), f"{text} over {len(d)} requests"


def _accuracy(spec: RolloutSpec, run: GoldenRun, lo: float | None, hi: float | None):
    labelled = [i for i, c in enumerate(run.cases) if c.has_expected]
    if not labelled:
        return Verdict.INCONCLUSIVE, None, None, 0, "the golden set has no expected outputs"
    tol = spec.golden.tolerance if spec.golden is not None else 0.0
    wrong = [i for i in labelled if not _correct(spec, run.candidate[i], run.cases[i].expected, tol)]
    base_right = sum(1 for i in labelled if _correct(spec, run.baseline[i], run.cases[i].expected, tol))
    n = len(labelled)
    value = (n - len(wrong)) / n
    verdict, threshold, text = _bound(value, lo, hi)
    detail = f"; wrong on {_examples(run, wrong)}" if wrong else ""
    return verdict, value, threshold, n, (f"{text}: {n - len(wrong)}/{n} expected outputs matched{detail} "
                                          f"(baseline {base_right}/{n})")


_JUDGES = {"golden-errors": _errors, "golden-agreement": _agreement, "golden-max-abs-delta": _max_delta,
           "golden-mean-abs-delta": _mean_delta, "golden-accuracy": _accuracy}


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _text(x: Any) -> str:
    """Values compared as text: JSON for booleans, null and containers, else `str` (1 and "1" agree)."""
    if isinstance(x, (bool, list, dict)) or x is None:
        return json.dumps(x, sort_keys=True)
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def correct(kind: str, threshold: float, out: Any, expected: Any, tol: float) -> bool:
    """Whether an output matches an expected output. Numbers within `tol`; for scores a boolean expected
    output is a decision at `threshold`; for rankings a list must be the same list and a single item the
    top item; for embeddings every coordinate within `tol`; otherwise equal as text."""
    if out is None:
        return False
    if kind == "score" and isinstance(expected, bool):
        return _number(out) and (out >= threshold) == expected
    if _number(out) and _number(expected):
        return abs(float(out) - float(expected)) <= tol
    if kind == "ranking" and isinstance(out, list):
        if isinstance(expected, list):
            return [_text(x) for x in out] == [_text(x) for x in expected]
        return bool(out) and _text(out[0]) == _text(expected)
    if kind == "embedding" and isinstance(out, list) and isinstance(expected, list):
        return len(out) == len(expected) and all(_number(a) and _number(b) and abs(a - b) <= tol
                                                 for a, b in zip(out, expected))
    return _text(out) == _text(expected)


def _correct(spec: RolloutSpec, answer: GoldenAnswer, expected: Any, tol: float) -> bool:
    return answer.ok and correct(spec.output.kind, spec.output.threshold, answer.output, expected, tol)
