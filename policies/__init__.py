"""modelrollout's pure core: drift statistics, mergeable summaries, checks and the rollout state machine.

Nothing here does I/O or reads a clock: time is an argument. This module is the public surface; the
`_`-prefixed modules are internals and may change.

    from policies import parse_rollout, evaluate, decide, psi
"""
from policies.checks import Observations, SourceError, check_severity, check_target, evaluate, render_query
from policies.interleaving import credit, interleave_test, team_draft
from policies.errors import ModelRolloutError
from policies.machine import Command, Decision, Emit, Notify, decide, invalid_spec_status
from policies.spec import (
    AnalysisSpec, CheckSpec, Rollout, RolloutSpec, SpecError, Step, load_documents, parse_duration,
    parse_rollout, parse_spec,
)
from policies.stats import (
    METRICS, StatError, StatResult, bin_edges, binned_counts, centroid_cosine, chi2, compare_numeric, compute,
    disparate_impact, equal_opportunity, hellinger, hellinger_from_counts, js, js_from_counts, kendall_tau, kl,
    kl_from_counts, ks, mann_whitney, mmd, psi, psi_from_counts, wasserstein,
)
from policies.status import CheckResult, Phase, RolloutStatus, Verdict
from policies.summaries import (
    AttributionSummary, CategoricalSummary, EmbeddingSummary, InterleaveSummary, LatencyHistogram, NumericSummary,
    PairedSummary, SegmentCounts, SummaryError, VersionWindow, key_from_request_id,
)

__all__ = [
    # spec
    "AnalysisSpec", "CheckSpec", "Rollout", "RolloutSpec", "SpecError", "Step", "load_documents",
    "parse_duration", "parse_rollout", "parse_spec",
    # statistics
    "METRICS", "StatError", "StatResult", "bin_edges", "binned_counts", "centroid_cosine", "chi2", "compare_numeric", "compute",
    "disparate_impact", "equal_opportunity", "hellinger", "js", "kendall_tau", "kl", "ks", "mann_whitney",
    "mmd", "psi", "wasserstein", "psi_from_counts", "kl_from_counts", "js_from_counts", "hellinger_from_counts",
    "credit", "interleave_test", "team_draft",
    # summaries
    "AttributionSummary", "CategoricalSummary", "EmbeddingSummary", "InterleaveSummary", "LatencyHistogram", "NumericSummary",
    "PairedSummary", "SegmentCounts", "SummaryError", "VersionWindow", "key_from_request_id",
    # checks and decisions
    "CheckResult", "Observations", "Phase", "RolloutStatus", "SourceError", "Verdict", "check_severity", "check_target", "evaluate",
    "render_query", "Command", "Decision", "Emit", "Notify", "decide", "invalid_spec_status",
    "ModelRolloutError",
]
