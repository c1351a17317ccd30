"""The ModelRollout spec as typed, validated, immutable settings.

Every part (router, controller, local mode, `lint`) reads a rollout through `parse_rollout`, so a spec is
accepted or rejected the same way everywhere, and every rejection names the field path and what was
expected (`spec.analysis.checks[2].max: expected a number, got 'high'`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Mapping

from policies import check_rules
from policies.api import API_VERSION, KIND, Phase  # noqa: E402  (re-exported)
from policies.check_rules import PAIRED_METRICS
from policies.golden_spec import GOLDEN_METRICS, GoldenSpec, parse_golden
from policies.notifications import (  # noqa: F401  (re-exported)
    NOTIFICATION_SECRET_LABEL, NOTIFY_ON_DEFAULT, NOTIFY_PHASES, PAGERDUTY_URL, Notification, SecretKeyRef,
    parse_notification as _notification,
)
from policies.expectations import INPUT_CHECK, ExpectationsSpec, parse_expectations
from policies.fallback import FallbackSpec, parse_fallback as _fallback
from policies.regret import PostPromotionSpec, parse_post_promotion as _post_promotion
from policies.privacy import PrivacySpec, check_privacy as _check_privacy, parse_privacy as _privacy
from policies.specreader import (  # noqa: F401  (re-exported)
    FIELD_PATH as _FIELD_PATH, Reader as _Reader, SpecError, format_duration, parse_duration, url_field as _url,
)

OUTPUT_KINDS = ("score", "class", "ranking", "embedding")
STEP_KINDS = ("golden", "shadow", "canary", "pause", "interleave")
TRAFFIC_STEPS = ("shadow", "canary", "interleave")
"""Steps that send user traffic (or its mirror) to the candidate: a golden step must come before all of them."""
ACTIONS = ("rollback", "pause", "warn")
# Metrics a check may name. Drift metrics compare prediction/feature distributions; the rest are
# operational or fairness metrics computed from the per-version counters.
DRIFT_METRICS = ("psi", "kl", "js", "hellinger", "ks", "chi2", "wasserstein", "mmd", "centroid-cosine",
                 "outlier-rate")
VECTOR_METRICS = ("mmd", "centroid-cosine")
"""Metrics that compare embeddings (rows of numbers); outlier-rate takes numbers or rows."""
OPERATIONAL_METRICS = (
    "error-rate", "latency-p50", "latency-p90", "latency-p99", "latency-mean", "mann-whitney-latency",
)
OUTCOME_METRICS = ("interleave", "accuracy", "disparate-impact", "equal-opportunity", "shadow-agreement",
                   "shadow-mean-abs-delta", "reward")
ATTRIBUTION_METRICS = ("attribution-tau",)
"""Compare why the versions predict: Kendall's tau between their feature-importance rankings."""
# Paired tests on the shadow pairs (both versions answered the same request): docs/statistics.md "Paired
# tests (shadow)". Their `minPValue` is the level of the test (default `paired_checks.PAIRED_ALPHA`).
METRICS = DRIFT_METRICS + OPERATIONAL_METRICS + OUTCOME_METRICS + ATTRIBUTION_METRICS + PAIRED_METRICS
P_VALUE_METRICS = ("ks", "chi2", "mmd", "mann-whitney-latency", "interleave", "reward") + PAIRED_METRICS
SEQUENTIAL_METRICS = ("error-rate",) + P_VALUE_METRICS
"""Metrics a check may judge sequentially (docs/statistics.md "Sequential decisions")."""
MULTIPLE_TESTING = ("none", "holm")
RATIO_METRICS = OPERATIONAL_METRICS
MIN_RATIO_METRICS = ("disparate-impact", "equal-opportunity")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A Kubernetes Service name: a DNS-1035 label (at most 63 characters)."""
_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)
_CHECK_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


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
    embedding: str | None = None
    """Dotted path of an embedding (a list of numbers) the model returns beside its prediction, for checks
    `on: embedding` (mmd, centroid-cosine, outlier-rate); None when not watched."""


@dataclass(frozen=True)
class ServiceSpec:
    """Transparent mode: the Service the rollout answers as. Its clients keep calling `name` (in the rollout's
    namespace) on `port`; every request to it goes through the router to the version the split picks."""
    name: str
    port: int


@dataclass(frozen=True)
class Step:
    kind: str                       # golden | shadow | canary | pause | interleave
    weight: int = 0                 # candidate share of live traffic, percent (canary)
    duration: float | None = None   # seconds; None = until promoted (pause) / no minimum
    method: str = "team-draft"      # interleave only
    golden: GoldenSpec | None = None  # golden only

    def describe(self) -> str:
        if self.kind == "golden" and self.golden is not None:
            return self.golden.describe()
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
    on: str = "prediction"            # prediction | embedding | feature:NAME
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
    sequential: bool = False
    """Judged by an always-valid sequential test over the windows (its own `sequential`, else
    analysis.sequential where the metric supports it)."""

    @property
    def feature(self) -> str | None:
        return self.on.split(":", 1)[1] if self.on.startswith("feature:") else None

    @property
    def features(self) -> tuple[str, ...]:
        """The features an `on: features:A,B` check joins into rows (outlier-rate); () otherwise."""
        return tuple(self.on.split(":", 1)[1].split(",")) if self.on.startswith("features:") else ()


@dataclass(frozen=True)
class AnalysisSpec:
    interval: float = 60.0
    min_samples: int = 200
    failure_limit: int = 2
    inconclusive_limit: int = 5
    checks: tuple[CheckSpec, ...] = ()
    sequential: bool = False
    """Default of every check's `sequential` where its metric supports it (`SEQUENTIAL_METRICS`)."""
    multiple_testing: str = "none"
    """`holm`: Holm's step-down over the checks judged on a p-value in each window."""


@dataclass(frozen=True)
class RolloutSpec:
    name: str
    namespace: str
    baseline: VersionRef
    candidate: VersionRef | None
    """None: no rollout, the stable serves everything (`policies.stable.resolve` fills it in)."""
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
    spec_baseline: VersionRef | None = None
    """What `spec.baseline` says, when `resolved` replaced the baseline with the stable (else None)."""
    no_candidate: bool = False
    """The spec names no candidate (`resolved` made the stable the candidate)."""
    expectations: ExpectationsSpec | None = None
    """What the live inputs must look like for a window to judge the models (`policies.expectations`)."""
    fallback: FallbackSpec | None = None
    """What the router answers when the chosen version fails (`policies.fallback`); None: the failure."""
    post_promotion: PostPromotionSpec | None = None
    """Judging the promoted version on delayed labels after the promotion (`policies.regret`)."""

    def resolved(self, stable: VersionRef | None) -> "RolloutSpec":
        """The spec as the rollout runs it: the baseline is the stable once a promotion made one (whatever
        `spec.baseline` still says), and without a candidate the candidate is that baseline (steady state).
        Idempotent; router, controller, local mode and replay all run the resolved spec."""
        base = stable or self.baseline
        cand = self.candidate or base
        if base == self.baseline and cand is self.candidate:
            return self
        written = self.spec_baseline or self.baseline
        return replace(self, baseline=base, candidate=cand, spec_baseline=written if written != base else None,
                       no_candidate=self.no_candidate or self.candidate is None)

    @cached_property                # read for every outcome record (a spec is immutable: computed once)
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @cached_property
    def revision(self) -> str:
        """Identifies the candidate under test: a change restarts the analysis from step 0 (without a
        candidate, the baseline's: a steady state)."""
        ref = self.candidate if self.candidate is not None else self.baseline
        return f"{ref.version}@{ref.url}"

    @property
    def steady(self) -> bool:
        """No rollout to run: no candidate, or the candidate is the baseline (after `resolve`: the stable)."""
        c, b = self.candidate, self.baseline
        return c is None or (c.version == b.version and c.url == b.url)

    def segments(self) -> tuple[str, ...]:
        later = self.post_promotion.segments() if self.post_promotion is not None else ()
        return tuple(sorted({c.segment for c in self.analysis.checks if c.segment} | set(later)))

    @property
    def golden(self) -> GoldenSpec | None:
        """The golden step's settings (at most one golden step), or None."""
        return next((s.golden for s in self.steps if s.golden is not None), None)

    @property
    def golden_checks(self) -> tuple[CheckSpec, ...]:
        """The golden step's checks as `CheckSpec`s (for status, metrics, alerts and the report): each
        acts at once (one run of the set decides) and rolls back."""
        g = self.golden
        if g is None:
            return ()
        return tuple(CheckSpec(name, metric=name, min=lo, max=hi, action="rollback", immediate=True)
                     for name, lo, hi in g.thresholds())

    def watched_features(self) -> tuple[str, ...]:
        expected = self.expectations.names() if self.expectations is not None else ()
        joined = {f for c in self.analysis.checks for f in c.features}
        return tuple(sorted({c.feature for c in self.analysis.checks if c.feature} | set(expected) | joined))


@dataclass(frozen=True)
class Rollout:
    """One ModelRollout document: its typed spec and its raw status (the controller's state)."""
    spec: RolloutSpec
    status: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


# --- parsing ---------------------------------------------------------------------------------------

def _version(r: _Reader) -> VersionRef:
    return VersionRef(version=r.str("version", required=True), url=_url(r, "url"))


def _step(raw: Any, path: str, output_kind: str = "score") -> Step:
    r = _Reader(raw, path)
    kinds = [k for k in r.data if k in STEP_KINDS]
    unknown = [k for k in r.data if k not in STEP_KINDS]
    if unknown or len(kinds) != 1:
        raise SpecError(path, f"expected exactly one of {', '.join(STEP_KINDS)}, "
                              f"got {sorted(map(str, r.data))!r}")
    kind = kinds[0]
    body = r.sub(kind) or _Reader({}, r.at(kind))
    duration = body.duration("duration")
    if kind == "canary":
        return Step(kind, weight=body.num("weight", required=True, lo=0, hi=100, integer=True), duration=duration)
    if kind == "interleave":
        method = body.str("method", "team-draft", choices=("team-draft",))
        return Step(kind, duration=duration, method=method)
    if kind == "golden":
        if duration is not None:
            raise SpecError(body.at("duration"), "a golden step has no duration: it ends when both versions "
                                                 "have answered the golden set")
        return Step(kind, golden=parse_golden(body, output_kind))
    return Step(kind, duration=duration)


def _check(raw: Any, path: str, output: OutputSpec, sequential_default: bool = False) -> CheckSpec:
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
    if on.startswith("features:"):
        names = on.split(":", 1)[1].split(",")
        if metric != "outlier-rate" or len(names) < 2 or not all(names) or len(set(names)) != len(names):
            raise SpecError(r.at("on"), "features:A,B (two or more distinct numeric features, joined per request) "
                                        f"is compared by outlier-rate; got {on!r} with metric {metric}")
    elif on not in ("prediction", "embedding") and not (on.startswith("feature:") and len(on) > len("feature:")):
        raise SpecError(r.at("on"), f"expected 'prediction', 'embedding', 'feature:NAME' or 'features:A,B', "
                                    f"got {on!r}")
    if on == "embedding":
        if metric not in VECTOR_METRICS + ("outlier-rate",):
            raise SpecError(r.at("on"), f"'embedding' is compared by {', '.join(VECTOR_METRICS)} or outlier-rate; "
                                        f"got metric {metric}")
        if output.embedding is None:
            raise SpecError(r.at("on"), "set spec.output.embedding to where the model returns its embedding")
    dyn = r.sub("dynamic")
    dynamic = None
    if dyn is not None:
        dynamic = DynamicThreshold(sigmas=dyn.num("sigmas", 3.0, lo=0.0),
                                   min_windows=dyn.num("minWindows", 5, lo=1, integer=True))
    sequential = check_rules.sequential(r.bool("sequential", None), sequential_default, metric, SEQUENTIAL_METRICS,
                                        r.data.get("max") is not None)
    check = CheckSpec(
        name=name, metric=metric, on=on,
        max=r.num("max"), min=r.num("min"), min_p_value=r.num("minPValue", lo=0.0, hi=1.0),
        max_ratio_to_baseline=r.num("maxRatioToBaseline", lo=0.0),
        min_ratio_to_baseline=r.num("minRatioToBaseline", lo=0.0),
        action=r.str("action", "rollback", choices=ACTIONS), immediate=r.bool("immediate"),
        dynamic=dynamic, prometheus=prometheus, segment=r.str("segment"),
        bins=r.num("bins", 10, lo=2, hi=1000, integer=True),
        failure_limit=r.num("failureLimit", None, lo=1, integer=True),
        k=r.num("k", 10, lo=1, hi=1000, integer=True), p=r.num("p", 0.9, lo=0.0, hi=1.0), sequential=sequential,
    )
    broken = check_rules.problem(r.data, check, output_kind, SEQUENTIAL_METRICS)
    if broken:
        raise SpecError(r.at(broken[0]), broken[1])
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
        if check.min_p_value is not None and metric not in P_VALUE_METRICS and not (
                sequential and metric == "error-rate"):
            raise SpecError(r.at("minPValue"), f"{metric} has no p-value; minPValue applies to "
                                               f"{', '.join(P_VALUE_METRICS)}")
        if dynamic is not None and metric not in DRIFT_METRICS:
            raise SpecError(r.at("dynamic"), f"calibrated thresholds apply to drift metrics "
                                             f"({', '.join(DRIFT_METRICS)}), not {metric}")
        if metric in ("disparate-impact", "equal-opportunity") and not check.segment:
            raise SpecError(r.at("segment"), f"metric {metric} needs the segment field to compare")
        if metric == "outlier-rate":
            extra = [f for f, v in (("min", check.min), ("minPValue", check.min_p_value), ("dynamic", dynamic))
                     if v is not None]
            if extra or check.max is None:
                raise SpecError(r.at(extra[0] if extra else "max"), "outlier-rate takes max: the tolerated rise of "
                                "the outlier fraction over the baseline's own (e.g. 0.05)")
            if on == "prediction" and output_kind not in ("score", "embedding"):
                raise SpecError(r.at("metric"), f"outlier-rate needs numbers or embeddings; spec.output.kind is "
                                                f"{output_kind!r}")
        if metric in VECTOR_METRICS and output_kind != "embedding" and check.feature is None and on != "embedding":
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


def _check_golden_place(steps: tuple[Step, ...], path: str) -> None:
    """At most one golden step, before every step that sends traffic (or its mirror) to the candidate."""
    golden = [i for i, s in enumerate(steps) if s.kind == "golden"]
    if len(golden) > 1:
        raise SpecError(f"{path}[{golden[1]}].golden", f"expected at most one golden step, got {len(golden)}")
    if golden:
        first = next((i for i, s in enumerate(steps) if s.kind in TRAFFIC_STEPS), None)
        if first is not None and first < golden[0]:
            raise SpecError(f"{path}[{golden[0]}].golden", f"a golden step must come before any shadow, canary or "
                            f"interleave step (step {first} is {steps[first].kind}): the golden set is answered "
                            "before the candidate meets any user traffic")


def _calls_service(url: str, service: str, namespace: str) -> bool:
    """Whether `url`'s host names the Service `service` of `namespace` (name, name.ns, name.ns.svc...)."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].lower()
    if not host.startswith("["):
        host = host.rsplit(":", 1)[0] if ":" in host else host
    labels = host.rstrip(".").split(".")
    return labels[0] == service and (len(labels) == 1 or (labels[1] == namespace and (
        len(labels) == 2 or labels[2] == "svc")))


def parse_spec(spec: Any, name: str, namespace: str = "default", path: str = "spec",
               generation: int = 0) -> RolloutSpec:
    r = _Reader(spec, path)
    baseline = _version(r.sub("baseline", required=True))
    cand = r.sub("candidate")
    candidate = _version(cand) if cand is not None else None   # none (or the stable): a steady state
    predict_path = r.str("predictPath", "/predict")
    if not predict_path.startswith("/"):
        raise SpecError(r.at("predictPath"), f"expected a path starting with '/', got {predict_path!r}")
    out = r.sub("output") or _Reader({}, r.at("output"))
    output = OutputSpec(kind=out.str("kind", "score", choices=OUTPUT_KINDS), path=out.str("path", "prediction"),
                        positive=out.str("positive"), threshold=out.num("threshold", 0.5),
                        attributions=out.str("attributions", pattern=_FIELD_PATH,
                                             what="a dotted path like 'explanation.shap'"),
                        embedding=out.str("embedding", pattern=_FIELD_PATH, what="a dotted path like 'embedding'"))
    feats = r.sub("features")
    strategy = r.sub("strategy") or _Reader({}, r.at("strategy"))
    sticky = strategy.sub("stickiness")
    steps = tuple(_step(s, f"{strategy.at('steps')}[{i}]", output.kind) for i, s in enumerate(strategy.list("steps")))
    if not steps and (candidate is not None or "strategy" in r.data):
        raise SpecError(strategy.at("steps"), "expected at least one step")
    for i, s in enumerate(steps):
        if s.kind == "interleave" and output.kind != "ranking":
            raise SpecError(f"{strategy.at('steps')}[{i}].interleave",
                            f"interleaving needs spec.output.kind ranking, got {output.kind!r}")
    _check_golden_place(steps, strategy.at("steps"))
    an = r.sub("analysis") or _Reader({}, r.at("analysis"))
    sequential = an.bool("sequential", False)
    checks = tuple(_check(c, f"{an.at('checks')}[{i}]", output, sequential)
                   for i, c in enumerate(an.list("checks")))
    seen: set[str] = set()
    for i, c in enumerate(checks):
        if c.name == INPUT_CHECK:
            raise SpecError(f"{an.at('checks')}[{i}].name", f"{INPUT_CHECK!r} is the name of spec.expectations' "
                                                            "verdict in status; choose another")
        if c.name in seen:
            raise SpecError(f"{an.at('checks')}[{i}].name", f"duplicate check name {c.name!r}")
        if c.name in GOLDEN_METRICS and any(s.kind == "golden" for s in steps):
            raise SpecError(f"{an.at('checks')}[{i}].name", f"{c.name!r} is the name of a golden step's check")
        seen.add(c.name)
    interval = an.duration("interval", 60.0)
    if interval <= 0:
        raise SpecError(an.at("interval"), f"expected a positive duration, got {an.data.get('interval')!r}")
    analysis = AnalysisSpec(
        interval=interval,
        min_samples=an.num("minSamples", 200, lo=1, integer=True),
        failure_limit=an.num("failureLimit", 2, lo=1, integer=True),
        inconclusive_limit=an.num("inconclusiveLimit", 5, lo=1, integer=True),
        checks=checks, sequential=sequential,
        multiple_testing=an.str("multipleTesting", "none", choices=MULTIPLE_TESTING),
    )
    notifications = tuple(_notification(n, f"{r.at('notifications')}[{i}]")
                          for i, n in enumerate(r.list("notifications")))
    privacy = _privacy(r.sub("privacy"))
    expectations = parse_expectations(r.sub("expectations"), feats.str("path", "features") if feats else None)
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
        for key, version in (("baseline", baseline), ("candidate", candidate)):
            if version is not None and _calls_service(version.url, service.name, namespace):
                raise SpecError(f"{r.at(key)}.url", f"{version.url!r} is spec.service {service.name!r} itself: "
                                "the router would send every request back to itself; give each version a "
                                f"Service of its own (e.g. {service.name}-{version.version})")
    return RolloutSpec(
        name=name, namespace=namespace, baseline=baseline, candidate=candidate, predict_path=predict_path,
        output=output, features_path=feats.str("path", "features") if feats else None,
        stickiness_header=sticky.str("header") if sticky else None,
        steps=steps, analysis=analysis, notifications=notifications,
        timeout=r.duration("timeout", 10.0), shadow_timeout=r.duration("shadowTimeout", 10.0),
        generation=generation, privacy=privacy, service=service, expectations=expectations,
        fallback=_fallback(r.sub("fallback"), output.path),
        post_promotion=_post_promotion(r.sub("postPromotion"), analysis.interval, analysis.min_samples,
                                       analysis.failure_limit),
    )


def parse_rollout(doc: Any) -> Rollout:
    """A whole ModelRollout document (as `kubectl apply` takes it) → `Rollout`; raises `SpecError`."""
    r = _Reader(doc, "<document>")            # the path of the whole document, should it not be a mapping
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
