"""The ModelRollout spec as typed, validated, immutable settings.

Every part (router, controller, local mode, `lint`) reads a rollout through `parse_rollout`, so a spec is
accepted or rejected the same way everywhere, and every rejection names the field path and what was
expected (`spec.analysis.checks[2].max: expected a number, got 'high'`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from policies.api import API_VERSION, KIND, Phase  # noqa: E402  (re-exported)
from policies.errors import InvalidInput
from policies.privacy import CATEGORICAL_METRICS, MODES as PRIVACY_MODES, PrivacySpec

OUTPUT_KINDS = ("score", "class", "ranking", "embedding")
STEP_KINDS = ("shadow", "canary", "pause", "interleave")
ACTIONS = ("rollback", "pause", "warn")
# Metrics a check may name. Drift metrics compare prediction/feature distributions; the rest are
# operational or fairness metrics computed from the per-version counters.
DRIFT_METRICS = ("psi", "kl", "js", "hellinger", "ks", "chi2", "wasserstein", "mmd", "centroid-cosine")
OPERATIONAL_METRICS = (
    "error-rate", "latency-p50", "latency-p90", "latency-p99", "latency-mean", "mann-whitney-latency",
)
OUTCOME_METRICS = ("interleave", "accuracy", "disparate-impact", "equal-opportunity", "shadow-agreement",
                   "shadow-mean-abs-delta")
ATTRIBUTION_METRICS = ("attribution-tau",)
"""Compare why the versions predict: Kendall's tau between their feature-importance rankings."""
PAIRED_METRICS = ("shadow-mcnemar", "shadow-wilcoxon", "shadow-rbo", "shadow-ndcg")
"""Paired tests on the shadow pairs (both versions answered the same request): docs/statistics.md
"Paired tests (shadow)". Their `minPValue` is the level of the test (default `PAIRED_ALPHA`)."""
PAIRED_OUTPUTS = {"shadow-mcnemar": ("score", "class"), "shadow-wilcoxon": ("score",), "shadow-rbo": ("ranking",),
                  "shadow-ndcg": ("ranking",)}
METRICS = DRIFT_METRICS + OPERATIONAL_METRICS + OUTCOME_METRICS + ATTRIBUTION_METRICS + PAIRED_METRICS
P_VALUE_METRICS = ("ks", "chi2", "mmd", "mann-whitney-latency", "interleave") + PAIRED_METRICS
RATIO_METRICS = OPERATIONAL_METRICS
MIN_RATIO_METRICS = ("disparate-impact", "equal-opportunity")
NOTIFY_PHASES = tuple(p.value for p in Phase if p is not Phase.PENDING)
NOTIFY_ON_DEFAULT = (Phase.ROLLED_BACK.value, Phase.PAUSED.value, Phase.FAILED.value)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A Kubernetes Service name: a DNS-1035 label (at most 63 characters)."""
_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)
_FIELD_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_CHECK_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(InvalidInput, ValueError):
    """A spec that can never work as written: permanent, reported as the `InvalidSpec` condition."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def parse_duration(value: Any, path: str = "duration") -> float:
    """Seconds from `500ms`, `30s`, `5m`, `1h`, `1h30m` (or a bare number of seconds)."""
    if isinstance(value, bool):
        raise SpecError(path, f"expected a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise SpecError(path, f"expected a non-negative duration, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"expected a duration like 30s, 5m or 1h, got {value!r}")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value):
        raise SpecError(path, f"expected a duration like 30s, 5m or 1h, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest of `1h`, `5m`, `30s`, `1.5s` that says `seconds`."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class VersionRef:
    version: str
    url: str


@dataclass(frozen=True)
class OutputSpec:
    kind: str = "score"
    path: str = "prediction"
    positive: str | None = None
    """For fairness: the class counted as positive (class outputs); scores count >= `threshold`."""
    threshold: float = 0.5
    attributions: str | None = None
    """Dotted path of per-feature attributions in the response (`{"age": 0.12, "amount": -0.4}`, e.g. SHAP
    values); None when the model returns none. Needed by `attribution-tau` checks."""


@dataclass(frozen=True)
class ServiceSpec:
    """Transparent mode: the Service the rollout answers as. Its clients keep calling `name` (in the rollout's
    namespace) on `port`; every request to it goes through the router to the version the split picks."""
    name: str
    port: int


@dataclass(frozen=True)
class Step:
    kind: str                       # shadow | canary | pause | interleave
    weight: int = 0                 # candidate share of live traffic, percent (canary)
    duration: float | None = None   # seconds; None = until promoted (pause) / no minimum
    method: str = "team-draft"      # interleave only

    def describe(self) -> str:
        if self.kind == "canary":
            text = f"canary {self.weight}%"
        elif self.kind == "pause":
            text = "pause"
        else:
            text = self.kind
        if self.duration is not None:
            text += f" for {format_duration(self.duration)}"
        return text


@dataclass(frozen=True)
class DynamicThreshold:
    sigmas: float = 3.0
    min_windows: int = 5
    """A/A windows needed from the shadow step before the learned threshold is used."""


@dataclass(frozen=True)
class PrometheusQuery:
    query: str
    min: float | None = None
    max: float | None = None
    address: str | None = None


@dataclass(frozen=True)
class CheckSpec:
    name: str
    metric: str | None = None         # None for a pure prometheus check
    on: str = "prediction"            # prediction | feature:NAME
    max: float | None = None
    min: float | None = None
    min_p_value: float | None = None
    max_ratio_to_baseline: float | None = None
    min_ratio_to_baseline: float | None = None   # fairness: candidate >= this x baseline
    action: str = "rollback"
    immediate: bool = False
    dynamic: DynamicThreshold | None = None
    prometheus: PrometheusQuery | None = None
    segment: str | None = None
    bins: int = 10
    failure_limit: int | None = None   # overrides analysis.failureLimit
    k: int = 10                        # shadow-ndcg: depth
    p: float = 0.9                     # shadow-rbo: persistence

    @property
    def feature(self) -> str | None:
        return self.on.split(":", 1)[1] if self.on.startswith("feature:") else None


@dataclass(frozen=True)
class AnalysisSpec:
    interval: float = 60.0
    min_samples: int = 200
    failure_limit: int = 2
    inconclusive_limit: int = 5
    checks: tuple[CheckSpec, ...] = ()


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the rollout's namespace (`{secretKeyRef: {name, key}}`), read by the controller."""
    name: str
    key: str

    def describe(self, namespace: str) -> str:
        return f"Secret {namespace}/{self.name} key {self.key!r}"


PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
NOTIFICATION_SECRET_LABEL = "modelrollout.io/notifications"
"""A Secret a notification reads must carry this label with the value "true" (see `controller/notify.py`)."""


@dataclass(frozen=True)
class Notification:
    kind: str                      # webhook | slack | pagerduty
    url: str | None = None
    """The endpoint, when not a credential (webhook, pagerduty); else `url_from`."""
    on: tuple[str, ...] = NOTIFY_ON_DEFAULT
    url_from: SecretKeyRef | None = None
    """The endpoint read from a Secret (a Slack webhook URL always: it is a credential)."""
    routing_key_from: SecretKeyRef | None = None
    """PagerDuty's routing key, read from a Secret (required for pagerduty)."""


@dataclass(frozen=True)
class RolloutSpec:
    name: str
    namespace: str
    baseline: VersionRef
    candidate: VersionRef
    predict_path: str = "/predict"
    output: OutputSpec = OutputSpec()
    features_path: str | None = None
    stickiness_header: str | None = None
    steps: tuple[Step, ...] = ()
    analysis: AnalysisSpec = AnalysisSpec()
    notifications: tuple[Notification, ...] = ()
    timeout: float = 10.0
    """Seconds the router waits for a model before answering 504."""
    shadow_timeout: float = 10.0
    generation: int = 0
    privacy: PrivacySpec = PrivacySpec()
    """What the prediction log may hold of each request (`policies.privacy`)."""
    service: ServiceSpec | None = None
    """Transparent mode (`spec.service`): None when clients call only the router's API."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def revision(self) -> str:
        """Identifies the candidate under test: a change restarts the analysis from step 0."""
        return f"{self.candidate.version}@{self.candidate.url}"

    def segments(self) -> tuple[str, ...]:
        return tuple(sorted({c.segment for c in self.analysis.checks if c.segment}))

    def watched_features(self) -> tuple[str, ...]:
        return tuple(sorted({c.feature for c in self.analysis.checks if c.feature}))


@dataclass(frozen=True)
class Rollout:
    """One ModelRollout document: its typed spec and its raw status (the controller's state)."""
    spec: RolloutSpec
    status: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


# --- parsing ---------------------------------------------------------------------------------------

class _Reader:
    """Typed access to one mapping that names the path of whatever it rejects."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, Mapping):
            raise SpecError(path, f"expected a mapping, got {type(data).__name__} {data!r}")
        self.data, self.path = data, path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def _get(self, key, required):
        if key == "on" and key not in self.data:
            # YAML 1.1 reads a bare `on:` key as the boolean true (PyYAML), and kubectl's YAML→JSON step
            # turns that into the string "true"; `on` is the public spelling, so accept all three.
            for alias in (True, "true"):
                if alias in self.data:
                    key = alias
                    break
        if key not in self.data or self.data[key] is None:
            if required:
                raise SpecError(self.at(key), "required field is missing")
            return None
        return self.data[key]

    def str(self, key, default=None, required=False, pattern=None, choices=None, what=None):
        v = self._get(key, required)
        if v is None:
            return default
        if not isinstance(v, str) or not v:
            raise SpecError(self.at(key), f"expected a non-empty string, got {v!r}")
        if choices is not None and v not in choices:
            raise SpecError(self.at(key), f"expected one of {', '.join(choices)}, got {v!r}")
        if pattern is not None and not pattern.match(v):
            raise SpecError(self.at(key), f"expected {what or pattern.pattern}, got {v!r}")
        return v

    def num(self, key, default=None, required=False, lo=None, hi=None, integer=False):
        v = self._get(key, required)
        if v is None:
            return default
        kind = "an integer" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            raise SpecError(self.at(key), f"expected {kind}, got {v!r}")
        if v != v:
            raise SpecError(self.at(key), f"expected {kind}, got NaN")
        if lo is not None and v < lo:
            raise SpecError(self.at(key), f"expected {kind} >= {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise SpecError(self.at(key), f"expected {kind} <= {hi}, got {v!r}")
        return int(v) if integer else float(v)

    def bool(self, key, default=False):
        v = self._get(key, False)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise SpecError(self.at(key), f"expected true or false, got {v!r}")
        return v

    def duration(self, key, default=None, required=False):
        v = self._get(key, required)
        return default if v is None else parse_duration(v, self.at(key))

    def sub(self, key, required=False) -> "_Reader | None":
        v = self._get(key, required)
        return None if v is None else _Reader(v, self.at(key))

    def list(self, key) -> list:
        v = self._get(key, False)
        if v is None:
            return []
        if not isinstance(v, list):
            raise SpecError(self.at(key), f"expected a list, got {type(v).__name__}")
        return v


def _url(r: _Reader, key: str) -> str:
    u = r.str(key, required=True)
    if not (u.startswith("http://") or u.startswith("https://")):
        raise SpecError(r.at(key), f"expected an http:// or https:// URL, got {u!r}")
    return u.rstrip("/")


def _version(r: _Reader) -> VersionRef:
    return VersionRef(version=r.str("version", required=True), url=_url(r, "url"))


def _step(raw: Any, path: str) -> Step:
    r = _Reader(raw, path)
    kinds = [k for k in r.data if k in STEP_KINDS]
    unknown = [k for k in r.data if k not in STEP_KINDS]
    if unknown or len(kinds) != 1:
        raise SpecError(path, f"expected exactly one of {', '.join(STEP_KINDS)}, got {sorted(r.data)!r}")
    kind = kinds[0]
    body = r.sub(kind) or _Reader({}, r.at(kind))
    duration = body.duration("duration")
    if kind == "canary":
        return Step(kind, weight=body.num("weight", required=True, lo=0, hi=100, integer=True), duration=duration)
    if kind == "interleave":
        method = body.str("method", "team-draft", choices=("team-draft",))
        return Step(kind, duration=duration, method=method)
    return Step(kind, duration=duration)


def _check(raw: Any, path: str, output: OutputSpec) -> CheckSpec:
    output_kind = output.kind
    r = _Reader(raw, path)
    name = r.str("name", required=True, pattern=_CHECK_NAME, what="a name of letters, digits, '-', '_' or '.'")
    prom = r.sub("prometheus")
    prometheus = None
    if prom is not None:
        prometheus = PrometheusQuery(query=prom.str("query", required=True), min=prom.num("min"),
                                     max=prom.num("max"), address=prom.str("address"))
        if prometheus.min is None and prometheus.max is None:
            raise SpecError(prom.path, "expected a bound: min or max")
    metric = r.str("metric", choices=METRICS)
    if metric is None and prometheus is None:
        raise SpecError(path, "expected either metric or prometheus")
    if metric is not None and prometheus is not None:
        raise SpecError(path, "expected either metric or prometheus, not both")
    on = r.str("on", "prediction")
    if on != "prediction" and not (on.startswith("feature:") and len(on) > len("feature:")):
        raise SpecError(r.at("on"), f"expected 'prediction' or 'feature:NAME', got {on!r}")
    dyn = r.sub("dynamic")
    dynamic = None
    if dyn is not None:
        dynamic = DynamicThreshold(sigmas=dyn.num("sigmas", 3.0, lo=0.0),
                                   min_windows=dyn.num("minWindows", 5, lo=1, integer=True))
    if metric in ("shadow-ndcg", "shadow-rbo"):
        _paired_params(r, metric)
    elif "k" in r.data or "p" in r.data:
        raise SpecError(r.at("k" if "k" in r.data else "p"), f"k applies to shadow-ndcg and p to shadow-rbo; got "
                                                             f"metric {metric}")
    check = CheckSpec(
        name=name, metric=metric, on=on,
        max=r.num("max"), min=r.num("min"), min_p_value=r.num("minPValue", lo=0.0, hi=1.0),
        max_ratio_to_baseline=r.num("maxRatioToBaseline", lo=0.0),
        min_ratio_to_baseline=r.num("minRatioToBaseline", lo=0.0),
        action=r.str("action", "rollback", choices=ACTIONS), immediate=r.bool("immediate"),
        dynamic=dynamic, prometheus=prometheus, segment=r.str("segment"),
        bins=r.num("bins", 10, lo=2, hi=1000, integer=True),
        failure_limit=r.num("failureLimit", None, lo=1, integer=True),
        k=r.num("k", 10, lo=1, hi=1000, integer=True), p=_rbo_p(r),
    )
    if metric in PAIRED_METRICS:
        _paired_check(r, check, output_kind)
    if metric is not None:
        bounds = [check.max, check.min, check.min_p_value, check.max_ratio_to_baseline,
                  check.min_ratio_to_baseline, dynamic]
        if all(b is None for b in bounds):
            raise SpecError(path, f"check {name!r} needs a threshold: max, min, minPValue, "
                                  f"maxRatioToBaseline, minRatioToBaseline or dynamic")
        if check.min_ratio_to_baseline is not None and metric not in MIN_RATIO_METRICS:
            raise SpecError(r.at("minRatioToBaseline"), f"applies to {', '.join(MIN_RATIO_METRICS)}; "
                                                        f"got metric {metric}")
        if check.max_ratio_to_baseline is not None and metric not in RATIO_METRICS:
            raise SpecError(r.at("maxRatioToBaseline"), f"applies to {', '.join(RATIO_METRICS)}; "
                                                        f"{metric} compares the versions already: use max or dynamic")
        if check.min_p_value is not None and metric not in P_VALUE_METRICS:
            raise SpecError(r.at("minPValue"), f"{metric} has no p-value; minPValue applies to "
                                               f"{', '.join(P_VALUE_METRICS)}")
        if dynamic is not None and metric not in DRIFT_METRICS:
            raise SpecError(r.at("dynamic"), f"calibrated thresholds apply to drift metrics "
                                             f"({', '.join(DRIFT_METRICS)}), not {metric}")
        if metric in ("disparate-impact", "equal-opportunity") and not check.segment:
            raise SpecError(r.at("segment"), f"metric {metric} needs the segment field to compare")
        if metric in ("mmd", "centroid-cosine") and output_kind != "embedding" and check.feature is None:
            raise SpecError(r.at("metric"), f"{metric} compares embeddings; spec.output.kind is {output_kind!r}")
        if metric == "chi2" and output_kind not in ("class", "ranking") and check.feature is None:
            raise SpecError(r.at("metric"), f"chi2 compares categories; spec.output.kind is {output_kind!r}")
        if metric == "interleave" and output_kind != "ranking":
            raise SpecError(r.at("metric"), f"interleave needs spec.output.kind ranking, got {output_kind!r}")
        if metric in ATTRIBUTION_METRICS:
            if output.attributions is None:
                raise SpecError(r.at("metric"), f"{metric} compares feature attributions; set "
                                                f"spec.output.attributions to their dotted path in the response")
            if check.feature is not None:
                raise SpecError(r.at("on"), f"{metric} ranks the attributions of the prediction; "
                                            f"expected 'prediction', got {on!r}")
    return check


def _rbo_p(r: _Reader) -> float:
    p = r.num("p", 0.9, lo=0.0, hi=1.0)
    if not 0.0 < p < 1.0:
        raise SpecError(r.at("p"), f"expected a number strictly between 0 and 1, got {p!r}")
    return p


def _paired_params(r: _Reader, metric: str) -> None:
    wrong = "p" if metric == "shadow-ndcg" else "k"
    if wrong in r.data:
        raise SpecError(r.at(wrong), f"{wrong} does not apply to {metric} (k: shadow-ndcg depth, p: shadow-rbo "
                                     f"persistence)")


def _paired_check(r: _Reader, check: CheckSpec, output_kind: str) -> None:
    """The rules of the paired metrics (docs/statistics.md "Paired tests (shadow)")."""
    metric = check.metric
    kinds = PAIRED_OUTPUTS[metric]
    if output_kind not in kinds:
        raise SpecError(r.at("metric"), f"{metric} needs spec.output.kind {' or '.join(kinds)}, got {output_kind!r}")
    if check.feature is not None:
        raise SpecError(r.at("on"), f"{metric} compares the versions' outputs on the same request; expected "
                                    f"'prediction', got {check.on!r}")
    extra = [(f, v) for f, v in (("maxRatioToBaseline", check.max_ratio_to_baseline),
                                 ("minRatioToBaseline", check.min_ratio_to_baseline), ("dynamic", check.dynamic))
             if v is not None]
    bound, other = ("min", "max") if metric in ("shadow-rbo", "shadow-ndcg") else ("max", "min")
    if getattr(check, other) is not None:
        extra.append((other, getattr(check, other)))
    if extra:
        raise SpecError(r.at(extra[0][0]), f"{metric} takes {bound} (the tolerance) and minPValue (the test's level), "
                                           f"not {extra[0][0]}")
    if bound == "min" and check.min is None:
        raise SpecError(r.at("min"), f"{metric} needs min: the lowest tolerated mean agreement in [0, 1]")
    value = getattr(check, bound)
    if value is not None and (value < 0 or (bound == "min" and value > 1)):
        raise SpecError(r.at(bound), f"expected a number in {'[0, 1]' if bound == 'min' else '>= 0'}, got {value!r}")


_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_CREDENTIAL = ("is a credential, and anyone who can read rollouts could read it; put it in a Secret labelled "
               f"{NOTIFICATION_SECRET_LABEL}=true and use")


def _secret_ref(r: "_Reader | None") -> SecretKeyRef | None:
    if r is None:
        return None
    unknown = [k for k in r.data if k != "secretKeyRef"]
    if unknown:
        raise SpecError(r.at(str(unknown[0])), "unknown field; expected secretKeyRef: {name, key}")
    ref = r.sub("secretKeyRef", required=True)
    for k in ref.data:
        if k not in ("name", "key"):
            raise SpecError(ref.at(str(k)), "unknown field; expected name and key")
    return SecretKeyRef(name=ref.str("name", required=True, pattern=_SECRET_NAME, what="a Secret name"),
                        key=ref.str("key", required=True, pattern=_SECRET_KEY, what="a Secret data key"))


def _notification(raw: Any, path: str) -> Notification:
    r = _Reader(raw, path)
    kinds = [k for k in ("webhook", "slack", "pagerduty") if k in r.data]
    unknown = [k for k in r.data if k not in ("webhook", "slack", "pagerduty", "on", True, "true")]
    if len(kinds) != 1 or unknown:
        raise SpecError(path, "expected exactly one of webhook, slack, pagerduty")
    kind = kinds[0]
    body = r.sub(kind, required=True)
    for k in body.data:
        if k not in ("url", "urlFrom", "routingKey", "routingKeyFrom"):
            raise SpecError(body.at(str(k)), "unknown field; expected url or urlFrom"
                            + (", routingKeyFrom" if kind == "pagerduty" else ""))
    if kind == "slack" and "url" in body.data:
        raise SpecError(body.at("url"), f"a Slack webhook URL {_CREDENTIAL} urlFrom: {{secretKeyRef: {{name, key}}}}")
    if "routingKey" in body.data:
        raise SpecError(body.at("routingKey"), f"a PagerDuty routing key {_CREDENTIAL} "
                                               "routingKeyFrom: {secretKeyRef: {name, key}}")
    url = _url(body, "url") if body.data.get("url") is not None else None
    url_from = _secret_ref(body.sub("urlFrom"))
    if url is not None and url_from is not None:
        raise SpecError(body.path, "expected one of url, urlFrom, not both")
    if url is None and url_from is None:
        if kind != "pagerduty":
            raise SpecError(body.at("urlFrom" if kind == "slack" else "url"), "required field is missing")
        url = PAGERDUTY_URL
    routing_key_from = _secret_ref(body.sub("routingKeyFrom", required=kind == "pagerduty"))
    if routing_key_from is not None and kind != "pagerduty":
        raise SpecError(body.at("routingKeyFrom"), f"applies to pagerduty only, not {kind}")
    on = r.list("on") or list(NOTIFY_ON_DEFAULT)
    for i, phase in enumerate(on):
        if phase not in NOTIFY_PHASES:
            raise SpecError(f"{r.at('on')}[{i}]", f"expected one of {', '.join(NOTIFY_PHASES)}, got {phase!r}")
    return Notification(kind=kind, url=url, on=tuple(on), url_from=url_from, routing_key_from=routing_key_from)


_PRIVACY_FIELDS = ("stickyKey", "inputs", "redact", "features", "segments", "fields")


def _privacy(r: "_Reader | None") -> PrivacySpec:
    if r is None:
        return PrivacySpec()
    for k in r.data:
        if k not in _PRIVACY_FIELDS:
            raise SpecError(r.at(str(k)), f"unknown field; expected one of {', '.join(_PRIVACY_FIELDS)}")
    redact = []
    for i, p in enumerate(r.list("redact")):
        if not isinstance(p, str) or not _FIELD_PATH.match(p):
            raise SpecError(f"{r.at('redact')}[{i}]", f"expected a dotted path like 'features.ssn', got {p!r}")
        redact.append(p)
    fields: dict[str, str] = {}
    per_field = r.sub("fields")
    if per_field is not None:
        for name, mode in per_field.data.items():
            if not isinstance(name, str) or not name:
                raise SpecError(per_field.path, f"expected field names as keys, got {name!r}")
            if mode not in PRIVACY_MODES:
                raise SpecError(per_field.at(name), f"expected one of {', '.join(PRIVACY_MODES)}, got {mode!r}")
            fields[name] = mode
    modes = {k: r.str(k, default, choices=PRIVACY_MODES) for k, default in
             (("stickyKey", "hash"), ("inputs", "drop"), ("features", "keep"), ("segments", "keep"))}
    if redact and modes["inputs"] != "keep":
        raise SpecError(r.at("redact"), f"redacts kept inputs; spec.privacy.inputs is {modes['inputs']!r}")
    return PrivacySpec(sticky_key=modes["stickyKey"], inputs=modes["inputs"], redact=tuple(redact),
                       features=modes["features"], segments=modes["segments"], fields=fields)


def _check_privacy(privacy: PrivacySpec, checks: tuple[CheckSpec, ...], path: str) -> None:
    """A check cannot watch a value the privacy settings drop, nor compare numbers they hash."""
    for i, c in enumerate(checks):
        for name, mode, kind in ((c.feature, privacy.feature_mode(c.feature or ""), "features"),
                                 (c.segment, privacy.segment_mode(c.segment or ""), "segments")):
            if name is None:
                continue
            where = f"spec.privacy.fields.{name}" if name in privacy.fields else f"spec.privacy.{kind}"
            at = f"{path}[{i}].{'on' if kind == 'features' else 'segment'}"
            if mode == "drop":
                raise SpecError(at, f"{name!r} is dropped by {where}, so no check can compare it; hash it to "
                                    "compare without logging its values")
            if mode == "hash" and kind == "features" and c.metric not in CATEGORICAL_METRICS:
                raise SpecError(f"{path}[{i}].metric", f"feature {name!r} is hashed by {where}, which keeps only "
                                f"equality; expected one of {', '.join(CATEGORICAL_METRICS)}, got {c.metric!r}")


def parse_spec(spec: Any, name: str, namespace: str = "default", path: str = "spec",
               generation: int = 0) -> RolloutSpec:
    r = _Reader(spec, path)
    baseline = _version(r.sub("baseline", required=True))
    candidate = _version(r.sub("candidate", required=True))
    if baseline.version == candidate.version and baseline.url == candidate.url:
        raise SpecError(r.at("candidate"), "candidate is the same version and url as the baseline")
    predict_path = r.str("predictPath", "/predict")
    if not predict_path.startswith("/"):
        raise SpecError(r.at("predictPath"), f"expected a path starting with '/', got {predict_path!r}")
    out = r.sub("output") or _Reader({}, r.at("output"))
    output = OutputSpec(kind=out.str("kind", "score", choices=OUTPUT_KINDS), path=out.str("path", "prediction"),
                        positive=out.str("positive"), threshold=out.num("threshold", 0.5),
                        attributions=out.str("attributions", pattern=_FIELD_PATH,
                                             what="a dotted path like 'explanation.shap'"))
    feats = r.sub("features")
    strategy = r.sub("strategy") or _Reader({}, r.at("strategy"))
    sticky = strategy.sub("stickiness")
    steps = tuple(_step(s, f"{strategy.at('steps')}[{i}]") for i, s in enumerate(strategy.list("steps")))
    if not steps:
        raise SpecError(strategy.at("steps"), "expected at least one step")
    for i, s in enumerate(steps):
        if s.kind == "interleave" and output.kind != "ranking":
            raise SpecError(f"{strategy.at('steps')}[{i}].interleave",
                            f"interleaving needs spec.output.kind ranking, got {output.kind!r}")
    an = r.sub("analysis") or _Reader({}, r.at("analysis"))
    checks = tuple(_check(c, f"{an.at('checks')}[{i}]", output) for i, c in enumerate(an.list("checks")))
    seen: set[str] = set()
    for i, c in enumerate(checks):
        if c.name in seen:
            raise SpecError(f"{an.at('checks')}[{i}].name", f"duplicate check name {c.name!r}")
        seen.add(c.name)
    interval = an.duration("interval", 60.0)
    if interval <= 0:
        raise SpecError(an.at("interval"), f"expected a positive duration, got {an.data.get('interval')!r}")
    analysis = AnalysisSpec(
        interval=interval,
        min_samples=an.num("minSamples", 200, lo=1, integer=True),
        failure_limit=an.num("failureLimit", 2, lo=1, integer=True),
        inconclusive_limit=an.num("inconclusiveLimit", 5, lo=1, integer=True),
        checks=checks,
    )
    notifications = tuple(_notification(n, f"{r.at('notifications')}[{i}]")
                          for i, n in enumerate(r.list("notifications")))
    privacy = _privacy(r.sub("privacy"))
    _check_privacy(privacy, checks, an.at("checks"))
    svc = r.sub("service")
    service = None
    if svc is not None:
        service = ServiceSpec(name=svc.str("name", required=True, pattern=_SERVICE_NAME,
                                           what="a Service name (lowercase letters, digits and '-', starting "
                                                "with a letter)"),
                              port=svc.num("port", required=True, lo=1, hi=65535, integer=True))
        if len(service.name) > 63:
            raise SpecError(svc.at("name"), f"expected at most 63 characters, got {len(service.name)}")
    return RolloutSpec(
        name=name, namespace=namespace, baseline=baseline, candidate=candidate, predict_path=predict_path,
        output=output, features_path=feats.str("path", "features") if feats else None,
        stickiness_header=sticky.str("header") if sticky else None,
        steps=steps, analysis=analysis, notifications=notifications,
        timeout=r.duration("timeout", 10.0), shadow_timeout=r.duration("shadowTimeout", 10.0),
        generation=generation, privacy=privacy, service=service,
    )


def parse_rollout(doc: Any) -> Rollout:
    """A whole ModelRollout document (as `kubectl apply` takes it) → `Rollout`; raises `SpecError`."""
    r = _Reader(doc, "")
    api = r.data.get("apiVersion")
    if api != API_VERSION:
        raise SpecError("apiVersion", f"expected {API_VERSION}, got {api!r}")
    if r.data.get("kind") != KIND:
        raise SpecError("kind", f"expected {KIND}, got {r.data.get('kind')!r}")
    meta = _Reader(r.data.get("metadata") or {}, "metadata")
    name = meta.str("name", required=True, pattern=_NAME, what="a lowercase DNS-1123 name")
    namespace = meta.str("namespace", "default", pattern=_NAME, what="a lowercase DNS-1123 name")
    generation = meta.num("generation", 0, integer=True)
    spec = parse_spec(r.data.get("spec"), name, namespace, "spec", generation)
    status = r.data.get("status") or {}
    if not isinstance(status, Mapping):
        raise SpecError("status", f"expected a mapping, got {type(status).__name__}")
    return Rollout(spec=spec, status=dict(status), metadata=dict(meta.data))


def load_documents(text: str, source: str = "<input>") -> list[dict]:
    """ModelRollout documents from YAML text (several separated by ---); other kinds are skipped."""
    import yaml  # local: policies stays importable without YAML for pure users

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise SpecError(source, f"not valid YAML: {e}") from e
    out = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise SpecError(f"{source}[{i}]", f"expected a mapping, got {type(d).__name__}")
        if d.get("kind") == KIND:
            out.append(d)
    if not out:
        raise SpecError(source, f"no {KIND} document found")
    return out
