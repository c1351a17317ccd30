"""Bounded, mergeable per-window summaries that router replicas send the controller.

Each router replica keeps one `VersionWindow` per rollout, version and window; the controller
merges the windows of every replica and runs `policies.stats` on the result. Merging is exact
where it can be:

* counts (requests, errors, categories, segments, histogram buckets, interleave outcomes) add;
* sums are kept as exact partial sums (Shewchuk), so every derived mean/correlation is the
  correctly rounded value of the union whatever the merge order;
* samples are *bottom-k by key*: each value arrives with a key ~ U(0, 1) (the caller's RNG, or
  `key_from_request_id`), the summary keeps the ``capacity`` items with the smallest keys, and a
  merge keeps the bottom k of the union. That is a uniform sample of the union, and merge is
  exactly associative and commutative (keys are assumed distinct; ties break on the value).
  Using the request id as key samples the same requests in every version (coordinated samples).

Memory bound per summary at default capacity (numpy buffers hold up to 2× capacity between
compactions; `to_dict()` always holds ≤ capacity):

| summary | bound |
|---|---|
| NumericSummary(2048) | 2 × 2048 × (8 B key + 8 B value) = 64 KiB (+ 8 B per frozen bin) |
| CategoricalSummary(256 categories) | ≈ 256 × 100 B ≈ 25 KiB (beyond the cap new values count as "__other__") |
| EmbeddingSummary(512, d) | 2 × 512 × (8 + 4·d) B = 3 MiB for d = 768 (float32 vectors) |
| PairedSummary(2048) | < 2 KiB of exact sums and counts + 2 × 2048 × 16 B = 64 KiB of paired deltas (score outputs) + ≈ 1 KiB per ranking agreement |
| LatencyHistogram | 119 buckets × 8 B ≈ 1 KiB |
| SegmentCounts(64 values per field) | fields × 64 × 6 ints |
| AttributionSummary(64 features) | ≈ 64 × (name + count + a few exact-sum partials) ≈ 10 KiB (only when used) |
| VersionWindow (score, 10 numeric features) | ≈ 11 × 64 KiB + 1 KiB ≈ 0.7 MiB |

Every summary the router feeds has a batch method (`NumericSummary.add_many`, `CategoricalSummary.add_many`,
`LatencyHistogram.add_many`, `PairedSummary.add_many`, `SegmentCounts.add_counts`,
`VersionWindow.observe_predictions/observe_features`) that builds exactly the summary adding the same
values one at a time in the same order builds (same `to_dict()`), at a fraction of the cost: exact sums
go through integers (`_exact_integers`), samples and bins through numpy.

`to_dict()` is JSON-serialisable (strict JSON: no NaN/inf; arrays are base64 little-endian) and
`from_dict(to_dict(x))` round-trips; `from_dict` raises `SummaryError` naming the bad field.

The package, by concept (every name is importable from `policies.summaries`):

| module | holds |
|---|---|
| `base` | constants, `SummaryError`, the `Summary` protocol and `check_mergeable`, `key_from_request_id` |
| `codec` | helpers of the dict (wire) form |
| `exact` | `ExactSum` and the batched exact additions |
| `sample` | the bottom-k sampler and number/key coercions |
| `numeric`, `categorical`, `embedding` | the prediction and feature summaries |
| `paired`, `latency`, `segments`, `interleave`, `attribution`, `reward`, `inputs` | the other per-window summaries (`inputs`: what the input expectations need) |
| `window` | `VersionWindow`, one version's summaries in one window |
"""
from .base import (
    ERROR_KINDS, LATENCY_EXCLUSIONS, OTHER, OUTPUT_KINDS, Summary, SummaryError, check_mergeable, key_from_request_id,
)
from .exact import ExactSum
from .numeric import NumericSummary
from .categorical import CategoricalSummary
from .embedding import EmbeddingSummary
from .paired import PairedSummary
from .latency import BUCKETS_PER_DECADE, LATENCY_BOUNDS, LATENCY_MAX, LATENCY_MIN, LatencyHistogram
from .segments import SegmentCounts
from .interleave import InterleaveSummary
from .attribution import AttributionSummary
from .reward import RewardSums
from .inputs import ISSUE_KINDS, InputSummary
from .window import VersionWindow

__all__ = [
    "AttributionSummary", "BUCKETS_PER_DECADE", "CategoricalSummary", "ERROR_KINDS", "EmbeddingSummary", "ExactSum",
    "ISSUE_KINDS", "InputSummary", "InterleaveSummary", "LATENCY_BOUNDS", "LATENCY_EXCLUSIONS", "LATENCY_MAX", "LATENCY_MIN", "LatencyHistogram",
    "NumericSummary", "OTHER", "OUTPUT_KINDS", "PairedSummary", "RewardSums", "SegmentCounts", "Summary", "SummaryError",
    "VersionWindow", "check_mergeable", "key_from_request_id",
]
