"""VersionWindow: everything one replica observed of one version during one window."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .attribution import AttributionSummary
from .base import check_mergeable, ERROR_KINDS, OUTPUT_KINDS, SummaryError
from .categorical import CategoricalSummary
from .codec import _count, _decoder, _get
from .embedding import EmbeddingSummary
from .latency import LatencyHistogram
from .numeric import NumericSummary
from .reward import RewardSums
from .inputs import InputSummary
from .segments import SegmentCounts

_PREDICTION_TYPES = {"numeric": NumericSummary, "categorical": CategoricalSummary, "embedding": EmbeddingSummary}


def _nested(where: str, decode: Any, d: Any) -> Any:
    """Decode a sub-summary, prefixing any error with its path in the window."""
    try:
        return decode(d)
    except SummaryError as e:
        raise SummaryError(f"{where}: {e}") from e


def _summary_from_dict(d: Any, where: str) -> NumericSummary | CategoricalSummary | EmbeddingSummary:
    if not isinstance(d, Mapping) or not isinstance(d.get("type"), str) or d["type"] not in _PREDICTION_TYPES:
        raise SummaryError(f"{where}: expected a summary object with type in {sorted(_PREDICTION_TYPES)}")
    return _nested(where, _PREDICTION_TYPES[d["type"]].from_dict, d)


class VersionWindow:
    """Everything one replica observed of one version during one window.

    ``requests`` counts every request routed to (or mirrored to) the version, errored or not;
    ``errors`` counts them by kind (`ERROR_KINDS`). The prediction summary depends on the output
    kind: score → NumericSummary, class → CategoricalSummary, embedding → EmbeddingSummary,
    ranking → CategoricalSummary of the top item.
    """

    def __init__(self, output_kind: str, prediction: NumericSummary | CategoricalSummary | EmbeddingSummary,
                 capacity: int = 2048) -> None:
        self.output_kind = output_kind
        self.capacity = capacity
        self.requests = 0
        self.errors: dict[str, int] = {k: 0 for k in ERROR_KINDS}
        self.latency = LatencyHistogram()
        self.latency_excluded: dict[str, int] = {}
        """Calls whose latency the router could not time fairly, by reason (`LATENCY_EXCLUSIONS`): left out
        of `latency`, counted here so a latency check can say the window was not comparable."""
        self.prediction = prediction
        self.features: dict[str, NumericSummary | CategoricalSummary] = {}
        self.segments = SegmentCounts()
        self.attributions: AttributionSummary | None = None
        """Per-feature importance when the model returns attributions (spec.output.attributions), else None."""
        self.reward: RewardSums | None = None
        """The rewards reported through /feedback for this version's answers, once there is one."""
        self.embedding: EmbeddingSummary | None = None
        """The embeddings returned beside the predictions (spec.output.embedding), once there is one."""
        self.inputs: InputSummary | None = None
        """The live inputs checked against spec.expectations (rows, issues per feature), when it has some."""

    @classmethod
    def new(cls, output_kind: str, capacity: int = 2048, embedding_capacity: int = 512) -> "VersionWindow":
        if output_kind == "score":
            pred: Any = NumericSummary(capacity)
        elif output_kind in ("class", "ranking"):
            pred = CategoricalSummary()
        elif output_kind == "embedding":
            pred = EmbeddingSummary(embedding_capacity)
        else:
            raise SummaryError(f"output kind must be one of {', '.join(OUTPUT_KINDS)}, got {output_kind!r}")
        return cls(output_kind, pred, capacity)

    def add_error(self, kind: str) -> None:
        if kind not in self.errors:
            raise SummaryError(f"error kind must be one of {', '.join(ERROR_KINDS)}, got {kind!r}")
        self.errors[kind] += 1

    def observe_prediction(self, output: Any, key: float) -> None:
        """Add one model output: a score, a class label, an embedding, or a ranking (its top item)."""
        if self.output_kind == "ranking":
            top = output[0] if isinstance(output, (list, tuple)) and output else None
            self.prediction.add(top if top is None else str(top))
        elif self.output_kind == "class":
            self.prediction.add(output)
        else:
            self.prediction.add(output, key)

    def observe_predictions(self, outputs: list[Any], keys: Any) -> None:
        """Add model outputs in order, one key each: the same window as `observe_prediction` one at a time."""
        if self.output_kind == "ranking":
            self.prediction.add_many([str(o[0]) if isinstance(o, (list, tuple)) and o and o[0] is not None
                                      else None for o in outputs])
        elif self.output_kind == "class":
            self.prediction.add_many(outputs)
        elif self.output_kind == "score":
            self.prediction.add_many(outputs, keys)
        else:
            for o, k in zip(outputs, keys):
                self.prediction.add(o, k)

    def observe_features(self, name: str, values: list[Any], keys: Any) -> None:
        """Add values of one input feature in order: the same window as `observe_feature` one at a time."""
        if not values:
            return
        s = self.features.get(name)
        if s is None:
            self.observe_feature(name, values[0], keys[0])
            values, keys = values[1:], keys[1:]
            s = self.features[name]
        if isinstance(s, NumericSummary):
            s.add_many(values, keys)
        else:
            s.add_many(values)

    def observe_feature(self, name: str, value: Any, key: float) -> None:
        """Add one input feature value; its summary kind (numeric/categorical) is set by the first value."""
        s = self.features.get(name)
        if s is None:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            s = self.features[name] = NumericSummary(self.capacity) if numeric else CategoricalSummary()
        if isinstance(s, NumericSummary):
            s.add(value, key)
        else:
            s.add(value)

    def observe_attributions(self, attributions: Mapping[str, Any]) -> None:
        """Add one prediction's per-feature attributions (the summary is created by the first one)."""
        if self.attributions is None:
            self.attributions = AttributionSummary()
        self.attributions.add(attributions)

    def observe_embeddings(self, vectors: list[Any], keys: list[float]) -> None:
        """Add the embeddings returned beside the predictions (the summary is created by the first one)."""
        if self.embedding is None:
            self.embedding = EmbeddingSummary(512)
        for v, k in zip(vectors, keys):
            self.embedding.add(v, k)

    def observe_reward(self, reward: Any) -> None:
        if self.reward is None:
            self.reward = RewardSums()
        self.reward.add(reward)

    def error_count(self) -> int:
        return sum(self.errors.values())

    def error_rate(self) -> float | None:
        """errors / requests, None when there were no requests."""
        return self.error_count() / self.requests if self.requests else None

    def merge(self, other: "VersionWindow") -> "VersionWindow":
        check_mergeable(self, other)
        if self.output_kind != other.output_kind:
            raise SummaryError(f"cannot merge windows of output kinds {self.output_kind!r} and {other.output_kind!r}")
        out = VersionWindow(self.output_kind, self.prediction.merge(other.prediction),
                            max(self.capacity, other.capacity))
        out.requests = self.requests + other.requests
        for src in (self.errors, other.errors):
            for k, v in src.items():
                out.errors[k] = out.errors.get(k, 0) + v
        out.latency = self.latency.merge(other.latency)
        for src in (self.latency_excluded, other.latency_excluded):
            for k, v in src.items():
                out.latency_excluded[k] = out.latency_excluded.get(k, 0) + v
        for name in sorted(set(self.features) | set(other.features)):
            a, b = self.features.get(name), other.features.get(name)
            if a is not None and b is not None and type(a) is not type(b):
                raise SummaryError(f"feature {name!r} is numeric in one window and categorical in the other")
            out.features[name] = a.merge(b) if a is not None and b is not None else (a if a is not None else b)
        out.segments = self.segments.merge(other.segments)
        a, b = self.attributions, other.attributions
        out.attributions = a.merge(b) if a is not None and b is not None else (a if a is not None else b)
        ra, rb = self.reward, other.reward
        out.reward = ra.merge(rb) if ra is not None and rb is not None else (ra if ra is not None else rb)
        ea, eb = self.embedding, other.embedding
        out.embedding = ea.merge(eb) if ea is not None and eb is not None else (ea if ea is not None else eb)
        ia, ib = self.inputs, other.inputs
        out.inputs = ia.merge(ib) if ia is not None and ib is not None else (ia if ia is not None else ib)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {"type": "version_window", "output_kind": self.output_kind, "capacity": self.capacity,
                "requests": self.requests, "errors": dict(self.errors), "latency": self.latency.to_dict(),
                "prediction": self.prediction.to_dict(),
                "features": {k: v.to_dict() for k, v in self.features.items()},
                "segments": self.segments.to_dict()}
        if self.attributions is not None:          # absent when unused: older readers see no change
            d["attributions"] = self.attributions.to_dict()
        if self.latency_excluded:                  # absent when every call was timed fairly
            d["latency_excluded"] = dict(self.latency_excluded)
        if self.reward is not None:                # absent without rewards
            d["reward"] = self.reward.to_dict()
        if self.embedding is not None:             # absent without spec.output.embedding
            d["embedding"] = self.embedding.to_dict()
        if self.inputs is not None:                # absent without spec.expectations
            d["inputs"] = self.inputs.to_dict()
        return d

    @_decoder("version window")
    def from_dict(cls, d: Mapping[str, Any]) -> "VersionWindow":
        where = "version window"
        kind = _get(d, "output_kind", str, where)
        if kind not in OUTPUT_KINDS:
            raise SummaryError(f"{where}.output_kind: must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
        w = cls(kind, _summary_from_dict(d.get("prediction"), f"{where}.prediction"),
                _count(d, "capacity", where) or 1)
        w.requests = _count(d, "requests", where)
        errors = _get(d, "errors", dict, where)
        for k, v in errors.items():
            if k not in ERROR_KINDS:
                raise SummaryError(f"{where}.errors: unknown error kind {k!r}; expected {', '.join(ERROR_KINDS)}")
            w.errors[k] = _count(errors, k, f"{where}.errors")
        w.latency = _nested(f"{where}.latency", LatencyHistogram.from_dict, _get(d, "latency", dict, where))
        excluded = d.get("latency_excluded") or {}
        if not isinstance(excluded, Mapping):
            raise SummaryError(f"{where}.latency_excluded: expected an object of counts per reason")
        for k in excluded:
            w.latency_excluded[str(k)] = _count(excluded, k, f"{where}.latency_excluded")
        for name, f in _get(d, "features", dict, where).items():
            s = _summary_from_dict(f, f"{where}.features.{name}")
            if isinstance(s, EmbeddingSummary):
                raise SummaryError(f"{where}.features.{name}: features are numeric or categorical, not embeddings")
            w.features[str(name)] = s
        w.segments = _nested(f"{where}.segments", SegmentCounts.from_dict, _get(d, "segments", dict, where))
        if d.get("attributions") is not None:
            w.attributions = _nested(f"{where}.attributions", AttributionSummary.from_dict, d["attributions"])
        if d.get("reward") is not None:
            w.reward = _nested(f"{where}.reward", RewardSums.from_dict, d["reward"])
        if d.get("embedding") is not None:
            w.embedding = _nested(f"{where}.embedding", EmbeddingSummary.from_dict, d["embedding"])
        if d.get("inputs") is not None:
            w.inputs = _nested(f"{where}.inputs", InputSummary.from_dict, d["inputs"])
        return w
