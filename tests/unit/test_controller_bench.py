"""bench/controller.py reads the numbers it prints correctly: Prometheus text (the controller's and the
apiserver's), a histogram's quantiles between two scrapes, and the table's targets. Pure: no processes."""
from __future__ import annotations

from bench import controller as bench

APISERVER = """# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code="200",component="apiserver",group="modelrollout.io",resource="modelrollouts",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 120
apiserver_request_total{code="409",component="apiserver",group="modelrollout.io",resource="modelrollouts",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 40
apiserver_request_total{code="201",component="apiserver",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",group="modelrollout.io",resource="modelrollouts",scope="namespace",subresource="",verb="LIST",version="v1alpha1"} 500
apiserver_request_total{code="200",component="apiserver",group="modelrollout.io",resource="modelrollouts",scope="namespace",subresource="",verb="WATCH",version="v1alpha1"} 9
"""


def test_apiserver_writes_count_mutating_requests_only():
    m = bench.parse_metrics(APISERVER)
    assert bench.apiserver_writes(m) == (120 + 3 + 40 + 7, 123)


def test_histogram_quantiles_between_two_scrapes():
    def scrape(counts):
        bounds = ("0.05", "0.25", "1.0", "+Inf")
        return bench.parse_metrics("\n".join(
            f'modelrollout_reconcile_duration_seconds_bucket{{le="{b}"}} {c}' for b, c in zip(bounds, counts)))
    before, after = scrape([10, 10, 10, 10]), scrape([10, 100, 109, 110])   # 100 new: 90 <= 0.25, 9 <= 1, 1 more
    q = bench.histogram_quantiles(before, after)
    assert (q["p50"], q["p90"], q["p99"], q["max"]) == (0.25, 0.25, 1.0, float("inf"))


def test_quantiles_and_the_table_mark_a_missed_target():
    assert bench.quantiles([3, 1, 2, 4])["p50"] == 3 and bench.quantiles([])["max"] != bench.quantiles([])["max"]
    row = {k: 0.0 for k in ("reconciles", "writes", "events", "cpu", "ctl_wait", "rss", "hwm", "api_writes",
                            "api_status_writes", "apiserver_cpu", "etcd_cpu", "router_cpu", "windows", "windows_per",
                            "reconciles_per_window", "cpu_per_window_ms", "cores_needed", "conflicts", "errors",
                            "samples_p50", "models_cpu", "traffic_cpu", "bench_cpu", "machine_busy", "others_cpu",
                            "machine_cores", "object_bytes")}
    lag = {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 12.0}
    row.update(seconds=60.0, load=(1.0, 1.0), reconcile_seconds=lag, judged_lag=lag, seen_lag=lag, verdicts={},
               controller_alive=True, traffic="{}", writes=1.5, cpu=0.2,
               inconclusive_reasons={"errors: candidate has N requests < minSamples N": 3})
    text = bench.table(200, {"after": row}, 10.0)
    assert "Inconclusive because {'errors: candidate has N requests < minSamples N': 3}" in text
    assert "status writes / rollout-window" in text and "<= 1.1 MISSED" in text
    assert "<= 0.25 ok" in text and "<= 10 MISSED" in text
