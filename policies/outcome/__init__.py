"""The outcome data: the outcome record (`record`), and the buckets of summaries folded from it (`bucket`).

One owner for what the router records, the prediction log holds, the controller merges and replay rebuilds:

    Outcome            one request's (or mirror's, or feedback's) outcome; its JSON form is the log line
    fold               records -> a Bucket (the only fold; the router, replay and rebuild use it)
    Bucket             one replica's summaries of one rollout, revision and time bucket; to_wire / from_wire
    merge, select      the exact union of buckets; buckets inside a time range
    window_buckets     one revision's buckets an analysis window reads (a router merges them for the controller)
    rebuild            the buckets a router built, from its prediction log records

`docs/contracts.md` describes the record, the log and the wire form.
"""
from .bucket import (
    Bucket, Buckets, bucket_start, fold, in_analysis_window, label_positive, merge, positive,
    rebuild, select, window_buckets,
)
from .record import ARMS, LOG_VERSION, ROLES, Outcome, OutcomeError, parse_line

__all__ = ["ARMS", "LOG_VERSION", "ROLES", "Bucket", "Buckets", "Outcome", "OutcomeError",
           "bucket_start", "fold", "in_analysis_window", "label_positive", "merge", "parse_line", "positive",
           "rebuild", "select", "window_buckets"]
