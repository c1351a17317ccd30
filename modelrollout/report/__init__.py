"""The run record of a rollout run and its one-file HTML report (`modelrollout report`).

Local mode and replay write a run record (RUN.json) holding every analysis window's check results, the
per-version error/latency numbers and prediction histograms; this package renders it as one self-contained
HTML page of inline SVG charts (no scripts, no downloads), so a report opens anywhere, offline.

    run     the RUN.json schema and RunRecorder, which builds a record
    svg     the charts
    page    the HTML page of a record (render_html, write_report)
    cli     `modelrollout report`: load a record, or rebuild one from a prediction log, and write its page

`modelrollout report RUN.json -o report.html` renders a record; `modelrollout report PREDICTIONS.jsonl
[--spec FILE] -o report.html` first rebuilds one from a router prediction log (with a spec, by replaying the
policy on it; without, from the log's traffic alone).

Local mode imports `run` and `page` (not this package's `cli`, which imports replay, which imports local).
"""
from .cli import load_record, main
from .page import render_html, write_report
from .run import FORMAT, HIST_BINS, RecordError, RunRecorder

__all__ = ["FORMAT", "HIST_BINS", "RecordError", "RunRecorder", "load_record", "main", "render_html", "write_report"]
