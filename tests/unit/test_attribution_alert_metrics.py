"""Controller check gauges: failing/verdict per check, labelled with severity and target, for alert rules."""
from __future__ import annotations

from controller.kube.metrics import ControllerMetrics
from policies.checks import check_severity, check_target
from policies.spec import parse_spec


def make_spec():
    return parse_spec({
        "baseline": {"version": "v1", "url": "http://b:1"},
        "candidate": {"version": "v2", "url": "http://c:1"},
        "output": {"kind": "score", "path": "prediction", "attributions": "attributions"},
        "strategy": {"steps": [{"canary": {"weight": 10, "duration": "5m"}}]},
        "analysis": {"checks": [
            {"name": "score-ks", "metric": "ks", "on": "prediction", "minPValue": 0.01, "action": "pause"},
            {"name": "nan-or-5xx", "metric": "error-rate", "max": 0.01, "immediate": True},
            {"name": "age-drift", "metric": "psi", "on": "feature:age", "max": 0.2},
            {"name": "why-changed", "metric": "attribution-tau", "min": 0.6, "action": "warn"},
            {"name": "latency", "metric": "latency-p99", "maxRatioToBaseline": 1.3},
        ]},
    }, "fraud", "ml")


def status(**verdicts):
    return {"phase": "Progressing", "routing": {"candidateWeight": 10},
            "checks": [{"name": n, "value": v, "threshold": t, "verdict": verdict}
                       for n, (verdict, v, t) in verdicts.items()]}


def sample(m: ControllerMetrics, name: str, **labels):
    return m.registry.get_sample_value(name, {"rollout_namespace": "ml", "rollout": "fraud", **labels})


def test_failing_follows_the_verdict_not_the_direction_of_the_bound():
    """A minPValue check whose value is far above its threshold is not failing while it passes, and is while it fails."""
    m = ControllerMetrics("t")
    spec = make_spec()
    m.observe_status("ml", "fraud", status(**{"score-ks": ("Pass", 0.5, 0.01)}), spec)
    labels = {"check": "score-ks", "severity": "warning", "target": "prediction"}
    assert sample(m, "modelrollout_check_failing", **labels) == 0
    assert sample(m, "modelrollout_check_value", check="score-ks") > sample(m, "modelrollout_check_threshold",
                                                                              check="score-ks")
    m.observe_status("ml", "fraud", status(**{"score-ks": ("Fail", 0.001, 0.01)}), spec)
    assert sample(m, "modelrollout_check_failing", **labels) == 1


def test_verdict_gauge_is_one_hot():
    """Exactly one verdict series of a check is 1, the one of its last window (none before any window)."""
    m = ControllerMetrics("t")
    spec = make_spec()
    labels = {"check": "age-drift", "severity": "warning", "target": "feature"}
    for verdict in ("Inconclusive", "Fail", "Pass", None):
        m.observe_status("ml", "fraud", status(**{"age-drift": (verdict, 0.1, 0.2)}), spec)
        got = {v: sample(m, "modelrollout_check_verdict", verdict=v, **labels)
               for v in ("Pass", "Fail", "Inconclusive")}
        assert got == {v: (1.0 if v == verdict else 0.0) for v in got}
        assert sample(m, "modelrollout_check_failing", **labels) == (1.0 if verdict == "Fail" else 0.0)


def test_severity_and_target_labels_come_from_the_check():
    """Error/immediate checks are critical operational, warn-only attribution checks info, feature checks feature."""
    spec = make_spec()
    by_name = {c.name: (check_severity(c), check_target(c)) for c in spec.analysis.checks}
    assert by_name == {"score-ks": ("warning", "prediction"), "nan-or-5xx": ("critical", "operational"),
                       "age-drift": ("warning", "feature"), "why-changed": ("info", "attribution"),
                       "latency": ("warning", "operational")}
    m = ControllerMetrics("t")
    m.observe_status("ml", "fraud", status(**{n: ("Fail", 1.0, 0.5) for n in by_name}), spec)
    for n, (sev, target) in by_name.items():
        assert sample(m, "modelrollout_check_failing", check=n, severity=sev, target=target) == 1


def test_labels_are_inferred_from_status_when_the_spec_does_not_parse():
    """Without a spec the recorded metric and action still give an error-rate check the critical label."""
    m = ControllerMetrics("t")
    st = {"phase": "Failed", "checks": [
        {"name": "errs", "metric": "error-rate", "verdict": "Fail", "action": "rollback"},
        {"name": "why", "metric": "attribution-tau", "verdict": "Pass", "action": "warn"},
        {"name": "biz", "metric": None, "verdict": "Fail"}]}
    m.observe_status("ml", "fraud", st)
    assert sample(m, "modelrollout_check_failing", check="errs", severity="critical", target="operational") == 1
    assert sample(m, "modelrollout_check_failing", check="why", severity="info", target="attribution") == 0
    assert sample(m, "modelrollout_check_failing", check="biz", severity="warning", target="operational") == 1


def test_removed_checks_and_forgotten_rollouts_leave_no_series():
    """A check dropped from the spec, or a deleted rollout, stops exporting (no alert on a stale series)."""
    m = ControllerMetrics("t")
    spec = make_spec()
    m.observe_status("ml", "fraud", status(**{"score-ks": ("Fail", 0.001, 0.01), "latency": ("Fail", 2, 1)}), spec)
    m.observe_status("ml", "other", status(**{"latency": ("Fail", 2, 1)}), spec)
    m.observe_status("ml", "fraud", status(**{"latency": ("Fail", 2, 1)}), spec)
    assert sample(m, "modelrollout_check_failing", check="score-ks", severity="warning", target="prediction") is None
    assert sample(m, "modelrollout_check_value", check="score-ks") is None
    assert sample(m, "modelrollout_check_failing", check="latency", severity="warning", target="operational") == 1
    m.forget("ml", "fraud")
    assert sample(m, "modelrollout_check_failing", check="latency", severity="warning", target="operational") is None
    assert m.registry.get_sample_value("modelrollout_check_failing", {
        "rollout_namespace": "ml", "rollout": "other", "check": "latency", "severity": "warning", "target": "operational"}) == 1


def test_a_replica_that_stops_leading_exports_no_rollout_series():
    """Prometheus scrapes every controller replica: when one loses the Lease it drops its rollout gauges, so
    only the leader's phase and verdicts exist; its leader gauge says 0."""
    from controller.kube.controller import Controller

    ctl = Controller.__new__(Controller)          # only the metrics side of leadership, no apiserver
    ctl.metrics, ctl.identity = ControllerMetrics("replica-a"), "replica-a"
    ctl.metrics.observe_status("ml", "fraud", status(**{"score-ks": ("Fail", 0.001, 0.01)}), make_spec())
    assert sample(ctl.metrics, "modelrollout_rollout_phase", phase="Progressing") == 1
    ctl._stopped_leading()
    names = {s.name for fam in ctl.metrics.registry.collect() for s in fam.samples if "rollout" in s.labels}
    assert names == set(), names
    assert ctl.metrics.registry.get_sample_value("modelrollout_controller_leader", {"identity": "replica-a"}) == 0
    ctl.metrics.observe_status("ml", "fraud", status(**{"score-ks": ("Pass", 0.5, 0.01)}), make_spec())
    assert sample(ctl.metrics, "modelrollout_rollout_weight") == 10    # leading again: exported again
