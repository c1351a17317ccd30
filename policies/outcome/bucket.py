"""Buckets: everything one router replica recorded for one rollout, candidate revision and time bucket.

The one fold from outcome records to a bucket lives here (`fold`), and so does the bucket's wire form
(`Bucket.to_wire` / `Bucket.from_wire`: the items of the `windows` list a router's `/summaries` answers,
`docs/contracts.md`, "Summaries wire form"), the exact `merge` of buckets from every replica and every
bucket of an analysis window, selection by time (`select`, `in_analysis_window`) and `rebuild`, which builds
from a prediction log exactly the buckets a live router built from the same records.

Buckets are aligned to the epoch (`bucket_start`) and keyed by (start, revision): a router that sees a new
candidate revision starts new buckets, and the controller only reads those of the revision under test.

Memory is bounded per bucket: two VersionWindows (a NumericSummary per watched numeric value, 2 x reservoir x
16 B, 64 KiB at the default reservoir of 2,048, plus < 2 KiB of histograms and counts), a PairedSummary and an
InterleaveSummary; an AttributionSummary (at most 64 features, ~10 KiB) per version when the spec names
attributions.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Iterable, Sequence

from policies._paired import ndcg, rbo
from policies._result import StatError
from policies.spec import RolloutSpec
from policies.privacy import REDACTED
from policies.summaries import (
    ISSUE_KINDS, InputSummary, InterleaveSummary, PairedSummary, SummaryError, VersionWindow, key_from_request_id,
)
from policies.summaries.inputs import add_batch as _add_inputs, example_text

from .record import ARMS, Outcome

_WINNER = {"win": "candidate", "loss": "baseline", "tie": "tie"}


def bucket_start(t: float, bucket_seconds: float) -> float:
    """Start of the epoch-aligned bucket holding time `t`."""
    return math.floor(t / bucket_seconds) * bucket_seconds


class Bucket:
    """Summaries of one bucket [start, end) for one candidate revision: per arm a VersionWindow; the shadow
    pairs (`paired`) and the interleaving outcomes (`interleave`) when there were any.

    An arm is None only in a bucket decoded from a wire form that lacks it."""
    __slots__ = ("start", "end", "revision", "baseline", "candidate", "paired", "interleave")

    def __init__(self, start: float, end: float, revision: str | None, baseline: VersionWindow | None,
                 candidate: VersionWindow | None, paired: PairedSummary | None = None,
                 interleave: InterleaveSummary | None = None):
        self.start, self.end, self.revision = start, end, revision
        self.baseline, self.candidate = baseline, candidate
        self.paired, self.interleave = paired, interleave

    @classmethod
    def new(cls, start: float, end: float, revision: str | None, output_kind: str,
            reservoir: int = 2048) -> "Bucket":
        """An empty bucket."""
        return cls(start, end, revision, VersionWindow.new(output_kind, capacity=reservoir),
                   VersionWindow.new(output_kind, capacity=reservoir))

    def to_wire(self) -> dict[str, Any]:
        """The JSON object a router serves for this bucket (strict JSON, see `docs/contracts.md`)."""
        return {"start": self.start, "end": self.end, "revision": self.revision,
                "baseline": self.baseline.to_dict() if self.baseline is not None else None,
                "candidate": self.candidate.to_dict() if self.candidate is not None else None,
                "paired": self.paired.to_dict() if self.paired is not None else None,
                "interleave": self.interleave.to_dict() if self.interleave is not None else None}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> "Bucket":
        """Decode `to_wire`'s form; SummaryError names the bad field. Absent or null summaries decode as None."""
        if not isinstance(d, Mapping):
            raise SummaryError(f"bucket: expected an object, got {type(d).__name__}")
        try:
            start, end = float(d["start"]), float(d.get("end", d["start"]))
        except (KeyError, TypeError, ValueError):
            raise SummaryError(f"bucket.start: expected epoch seconds, got {d.get('start')!r}") from None
        revision = d.get("revision")
        if revision is not None and not isinstance(revision, str):
            raise SummaryError(f"bucket.revision: expected a string or null, got {revision!r}")
        raw = [d.get(k) for k in ("baseline", "candidate", "paired", "interleave")]
        return cls(start, end, revision,
                   VersionWindow.from_dict(raw[0]) if raw[0] else None,
                   VersionWindow.from_dict(raw[1]) if raw[1] else None,
                   PairedSummary.from_dict(raw[2]) if raw[2] else None,
                   InterleaveSummary.from_dict(raw[3]) if raw[3] else None)

    def merge(self, other: "Bucket") -> "Bucket":
        """The exact union of two buckets (a new bucket; neither is changed): it spans both, and keeps the
        revision only when both have it."""
        if not isinstance(other, Bucket):
            raise SummaryError(f"cannot merge Bucket with {type(other).__name__}")
        return Bucket(min(self.start, other.start), max(self.end, other.end),
                      self.revision if self.revision == other.revision else None,
                      _merged(self.baseline, other.baseline), _merged(self.candidate, other.candidate),
                      _merged(self.paired, other.paired), _merged(self.interleave, other.interleave))

    def __repr__(self) -> str:
        n = [w.requests if w is not None else 0 for w in (self.baseline, self.candidate)]
        return f"Bucket({self.start:g}..{self.end:g}, {self.revision!r}, baseline={n[0]}, candidate={n[1]})"


def _merged(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a.merge(b)


def merge(buckets: Iterable[Bucket], output_kind: str) -> Bucket:
    """Every bucket merged into one (exact: any order and grouping gives the same summaries). Both arms are
    present even when no bucket had data (empty VersionWindows of `output_kind`); with no bucket at all,
    start = end = 0. A single bucket is returned as it is (buckets are not changed by merging or reading)."""
    out: Bucket | None = None
    for b in buckets:
        out = b if out is None else out.merge(b)
    if out is None:
        return Bucket.new(0.0, 0.0, None, output_kind)
    if out.baseline is None or out.candidate is None:
        out = Bucket(out.start, out.end, out.revision, out.baseline or VersionWindow.new(output_kind),
                     out.candidate or VersionWindow.new(output_kind), out.paired, out.interleave)
    return out


def select(buckets: Iterable[Bucket], start: float | None = None, end: float | None = None) -> list[Bucket]:
    """The buckets inside [start, end] (start <= bucket.start, bucket.end <= end), oldest first."""
    return sorted((b for b in buckets if (start is None or start <= b.start) and (end is None or b.end <= end)),
                  key=lambda b: (b.start, b.revision or ""))


def in_analysis_window(wire: Iterable[Any], spec: RolloutSpec, window_start: float,
                       bucket_seconds: float) -> list[Bucket]:
    """The buckets of a router's answer that belong to the analysis window starting at `window_start` and to
    the candidate under test, decoded.

    Buckets are aligned to the epoch, so the window starts at the bucket holding `window_start`: the previous
    analysis saw only the buckets that had ended by then, never that one. Items that are not buckets, or of
    another revision (an older candidate's data must not judge the new one), are skipped; a bucket of this
    revision whose summaries do not decode raises SummaryError."""
    first = bucket_start(window_start, bucket_seconds)
    out = []
    for w in wire:
        if not isinstance(w, Mapping) or w.get("revision") not in (None, spec.revision):
            continue
        try:
            if float(w["start"]) + 1e-6 < first:
                continue
        except (KeyError, TypeError, ValueError):
            continue
        out.append(Bucket.from_wire(w))
    return out


def window_buckets(buckets: Iterable[Bucket], revision: str, window_start: float, end: float,
                   bucket_seconds: float) -> list[Bucket]:
    """The buckets of `revision` an analysis window from `window_start` to `end` reads, oldest first: those
    starting at or after the bucket holding `window_start` (as `in_analysis_window`) and ended by `end`."""
    first = bucket_start(window_start, bucket_seconds)
    return select((b for b in buckets if b.revision == revision and b.start + 1e-6 >= first), None, end)


# --- the fold ----------------------------------------------------------------------------------------

def positive(spec: RolloutSpec, output: Any) -> bool:
    """Whether a prediction counts as a positive outcome (`spec.output.threshold` / `.positive`)."""
    if spec.output.kind == "score":
        return isinstance(output, (int, float)) and output >= spec.output.threshold
    if spec.output.positive is not None:
        return str(output) == spec.output.positive
    return bool(output) and str(output).lower() not in ("0", "false", "no", "negative")


def label_positive(label: Any, spec: RolloutSpec) -> bool:
    """Whether a feedback label is positive: booleans as they are, numbers in (0, 1) against the score
    threshold and others against 1, anything else as a prediction."""
    if isinstance(label, bool):
        return label
    if isinstance(label, (int, float)):
        return label >= (spec.output.threshold if spec.output.kind == "score" and 0 < label < 1 else 1)
    return positive(spec, label)


class _ArmBatch:
    """The values of one arm's records in a batch, per summary, in record order."""
    __slots__ = ("requests", "errors", "latencies", "excluded", "outputs", "output_keys", "segment_ops", "features",
                 "attributions", "rewards", "input_rows", "input_issues", "embeddings", "embedding_keys")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.excluded: list[str] = []
        self.outputs: list[Any] = []
        self.output_keys: list[float] = []
        self.segment_ops: list[tuple] = []      # predictions and labels share per-field value caps: keep order
        self.features: dict[str, tuple[list[Any], list[float]]] = {}
        self.attributions: list[Mapping] = []
        self.rewards: list[Any] = []
        self.input_rows = 0
        self.input_issues: list[tuple[str, str, str | None]] = []
        self.embeddings: list[Any] = []
        self.embedding_keys: list[float] = []

    def apply(self, vw: VersionWindow) -> None:
        vw.requests += self.requests
        for e in self.errors:
            vw.add_error(e)
        if self.latencies:
            vw.latency.add_many(self.latencies)
        for reason in self.excluded:
            vw.latency_excluded[reason] = vw.latency_excluded.get(reason, 0) + 1
        if self.outputs:
            vw.observe_predictions(self.outputs, self.output_keys)
        if self.segment_ops:
            _add_segment_ops(vw, self.segment_ops)
        for name, (values, keys) in self.features.items():
            vw.observe_features(name, values, keys)
        for a in self.attributions:
            vw.observe_attributions(a)
        for r in self.rewards:
            vw.observe_reward(r)
        if self.embeddings:
            vw.observe_embeddings(self.embeddings, self.embedding_keys)
        if self.input_rows:
            if vw.inputs is None:
                vw.inputs = InputSummary()
            _add_inputs(vw.inputs, self.input_rows, self.input_issues)


def _input_row(a: _ArmBatch, rec: Outcome, features: Mapping[str, Any] | None) -> None:
    """One live request's inputs, checked against spec.expectations by the router (`rec.input_issues`); each
    example as the privacy settings left the value in the record ("[redacted]" when they dropped it)."""
    a.input_rows += 1
    issues = rec.input_issues
    if not issues:
        return
    for name, kind in issues.items():
        if kind not in ISSUE_KINDS or not isinstance(name, str):
            continue            # a hand-written log line: not an issue this version knows
        if kind == "null":
            example = None
        elif features is not None and name in features:
            example = example_text(features[name])
        else:
            example = REDACTED
        a.input_issues.append((name, kind, example))


def _add_segment_ops(vw: VersionWindow, ops: list[tuple]) -> None:
    """Predictions (segments, positive) and labels (segments, correct, actual, predicted), summed per
    distinct segments in order of first appearance (what per-field value caps depend on)."""
    tally: dict[tuple, list] = {}
    for op in ops:
        try:
            key = tuple(op[0].items())
            row = tally.get(key)
        except TypeError:                      # unhashable segment values (from a hand-written log)
            key, row = (id(op),), None
        if row is None:
            row = tally[key] = [op[0], 0, 0, 0, 0, 0, 0]
        if len(op) == 2:
            row[1] += 1
            row[2] += bool(op[1])
        else:
            row[3] += 1
            row[4] += bool(op[1])
            row[5] += bool(op[2])
            row[6] += bool(op[2] and op[3])
    for row in tally.values():
        vw.segments.add_counts(row[0], row[1:])


def fold(b: Bucket, records: Sequence[Outcome], spec: RolloutSpec) -> None:
    """Add outcome records, in order, to their bucket (every record belongs to `b`: same rollout, revision and
    bucket).

    Records of overridden requests (`override`: the caller picked the version) and golden answers (role
    `golden`) are skipped. Answers count a
    request for their arm and add its error kind, its latency (when there was an HTTP
    answer), its prediction and features (sampled by `key_from_request_id`, so every version samples the same
    requests), its segments and attributions; a shadow answer with both outputs adds a shadow pair. Feedback
    adds a label (correct or not, per segment) to its arm, or an interleaving outcome (and the reward it credits
    to the teams, when it carries one), and a reward to its arm.

    Each summary receives its values in record order through one batch call, which builds exactly what adding
    them one at a time builds; summaries are independent of each other, so only that order matters. The
    router, replay and `rebuild` all fold through this one function.
    """
    kind = spec.output.kind
    base, cand = _ArmBatch(), _ArmBatch()
    primaries: list[Any] = []
    shadows: list[Any] = []
    pair_keys: list[float] = []
    agreements = ranking_agreements(spec) if kind == "ranking" else ()
    expect = spec.expectations is not None
    for rec in records:
        if rec.override or rec.role == "golden":   # logged, never analysed: the caller picked the version;
            continue                                # a golden step's answer (policies.golden judges those)
        arm = rec.arm
        if arm == "baseline":
            a = base
        elif arm == "candidate":
            a = cand
        else:
            a = None
        if rec.role == "feedback":
            if rec.reward is not None and a is not None:
                a.rewards.append(rec.reward)
            if rec.clicks is not None:
                if rec.outcome is not None:     # interleaving credit: a summary of its own
                    if b.interleave is None:
                        b.interleave = InterleaveSummary()
                    b.interleave.add(_WINNER[rec.outcome])
                    if rec.reward_delta is not None:
                        b.interleave.add_reward_delta(rec.reward_delta)
            elif a is not None and rec.label is not None:
                output = rec.output
                predicted, actual = positive(spec, output), label_positive(rec.label, spec)
                correct = predicted == actual if kind == "score" else str(output) == str(rec.label)
                a.segment_ops.append((rec.segments or {"all": "all"}, correct, actual, predicted))
            continue
        if a is None:
            continue
        a.requests += 1
        if expect and (rec.role == "primary" or (rec.role == "interleave" and arm == "baseline")):
            _input_row(a, rec, rec.features)
        error = rec.error
        if error:
            a.errors.append(error)
        excluded = rec.latency_excluded
        if excluded:            # the router could not time this call fairly: counted, not in the latency
            a.excluded.append(excluded)
        elif rec.status is not None:
            a.latencies.append((rec.latency_ms or 0.0) / 1000.0)
        output = rec.output
        features = rec.features
        key = key_from_request_id(rec.request_id) if output is not None or features else 0.0
        if output is not None:
            a.outputs.append(output)
            a.output_keys.append(key)
            attributions = rec.attributions
            if attributions:
                a.attributions.append(attributions)
            embedding = rec.embedding
            if embedding is not None:
                a.embeddings.append(embedding)
                a.embedding_keys.append(key)
            segments = rec.segments
            if segments:
                a.segment_ops.append((segments, positive(spec, output)))
        if features:
            cols = a.features
            for name, value in features.items():
                if value is not None:
                    col = cols.get(name)
                    if col is None:
                        col = cols[name] = ([], [])
                    col[0].append(value)
                    col[1].append(key)
        primary = rec.primary_output
        if rec.role == "shadow" and output is not None and primary is not None:
            if b.paired is None:
                b.paired = PairedSummary(b.candidate.capacity if b.candidate is not None else 2048)
            if kind == "score":
                primaries.append(primary)
                shadows.append(output)
                pair_keys.append(key)
            elif kind == "ranking":
                b.paired.add_categorical(str(primary[0]) if primary else "", str(output[0]) if output else "")
                if isinstance(primary, (list, tuple)) and isinstance(output, (list, tuple)):
                    _add_agreements(b.paired, agreements, primary, output)
            elif kind == "class":
                b.paired.add_categorical(str(primary), str(output), (positive(spec, primary), positive(spec, output)))
    base.apply(b.baseline)
    cand.apply(b.candidate)
    if primaries:
        b.paired.add_many(primaries, shadows, pair_keys, spec.output.threshold)


def ranking_agreements(spec: RolloutSpec) -> tuple[tuple[str, str, float], ...]:
    """(summary name, kind, parameter) of every ranking agreement the spec's checks read: `rbo:P` for
    shadow-rbo checks (persistence P), `ndcg:K` for shadow-ndcg (depth K)."""
    out: dict[str, tuple[str, str, float]] = {}
    for c in spec.analysis.checks:
        if c.metric == "shadow-rbo":
            name = agreement_name(c.metric, c.p)
            out[name] = (name, "rbo", c.p)
        elif c.metric == "shadow-ndcg":
            name = agreement_name(c.metric, c.k)
            out[name] = (name, "ndcg", c.k)
    return tuple(out.values())


def agreement_name(metric: str, param: float) -> str:
    """The PairedSummary name of a ranking agreement: `rbo:0.9`, `ndcg:10`."""
    return f"rbo:{param:g}" if metric == "shadow-rbo" else f"ndcg:{int(param)}"


def _add_agreements(paired: PairedSummary, agreements, primary, output) -> None:
    for name, kind, param in agreements:
        try:
            v = rbo(primary, output, param) if kind == "rbo" else ndcg(primary, output, int(param))
        except StatError:                   # an empty baseline ranking has no NDCG: no information
            continue
        paired.add_agreement(name, v)


class Buckets:
    """The buckets of one rollout, keyed by (start, revision), filled by `add` (pure: no clock; the caller
    drops old ones with `prune`)."""

    def __init__(self, spec: RolloutSpec, bucket_seconds: float = 5.0, reservoir: int = 2048):
        self.spec = spec
        self.bucket_seconds = bucket_seconds
        self.reservoir = reservoir
        self.by_key: dict[tuple[float, str], Bucket] = {}

    def add(self, records: Iterable[Outcome], spec: RolloutSpec | None = None) -> None:
        """Fold records (of this rollout, in time order within each bucket) into their buckets; `spec` is the
        rollout's current spec when it changed since (the revision of a record without one)."""
        spec = spec or self.spec
        self.spec = spec
        groups: dict[tuple[float, str], list[Outcome]] = {}
        size, floor = self.bucket_seconds, math.floor
        for rec in records:
            g = (floor(rec.time / size) * size, rec.revision or spec.revision)
            recs = groups.get(g)
            if recs is None:
                groups[g] = [rec]
            else:
                recs.append(rec)
        for (start, revision), recs in groups.items():
            fold(self.bucket(start, revision), recs, spec)

    def bucket(self, start: float, revision: str) -> Bucket:
        """The bucket starting at `start` for `revision` (created empty when new)."""
        b = self.by_key.get((start, revision))
        if b is None:
            b = self.by_key[(start, revision)] = Bucket.new(start, start + self.bucket_seconds, revision,
                                                            self.spec.output.kind, self.reservoir)
        return b

    def prune(self, before: float) -> None:
        """Drop the buckets that ended before `before`."""
        for k in [k for k, b in self.by_key.items() if b.end < before]:
            del self.by_key[k]

    def select(self, start: float | None = None, end: float | None = None) -> list[Bucket]:
        """The buckets inside [start, end], oldest first."""
        return select(self.by_key.values(), start, end)


def rebuild(records: Iterable[Outcome], spec: RolloutSpec, bucket_seconds: float = 5.0,
            reservoir: int = 2048) -> list[Bucket]:
    """The buckets a router serving `spec` built from these records (those of other rollouts are skipped),
    oldest first: the same summaries as the live fold, whatever batches the router folded them in."""
    buckets = Buckets(spec, bucket_seconds, reservoir)
    buckets.add(r for r in records if r.rollout == spec.name and r.namespace == spec.namespace)
    return buckets.select()
