"""`kubectl modelrollout report NAME`: the report of a rollout that ran in a cluster, from its status
history (kept by the controller in etcd) and, when reachable, the routers' summaries."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelrollout.models.proc import start
from modelrollout.report.svg import fmt
from tests.e2e.conftest import apply, get_rollout, logs, rollout_doc, wait_event, wait_phase
from tests.e2e.test_internal_auth import bound  # noqa: F401 - the fixture: rbac.yaml bound, tokens
from tests.integration.test_report import census

BIN = str(Path(sys.executable).parent)   # holds the kubectl-modelrollout console script

pytestmark = pytest.mark.usefixtures("mro_crd")


def with_data(status: dict) -> int:
    """Windows in which the controller saw traffic (some check counted samples): the routers held buckets
    for those; a window before the first request may have none."""
    return len({w["time"] for c in status["checks"] for w in c["recent"] if (w.get("samples") or 0) > 0})


def filled(stderr: str, source: str) -> tuple[int, int]:
    """(windows given per-version numbers, windows) as the report says on stderr."""
    m = re.search(rf"(\d+) of (\d+) windows have per-version numbers \((\d+) from the {source}\)", stderr)
    assert m and m.group(1) == m.group(3), stderr
    return int(m.group(1)), int(m.group(2))


def plugin(control_plane, *args: str) -> subprocess.CompletedProcess:
    env = control_plane.kubectl_env()
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return subprocess.run([control_plane.kubectl, "modelrollout", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_report_of_a_rolled_back_rollout_names_the_deciding_check_and_draws_it(
        procs, kubeconfig, kubectl, k8s_api, namespace, control_plane, tmp_path):
    """A drifting candidate rolled back by a real controller; with the controller stopped (the status in
    etcd is all there is), `report NAME` writes one self-contained page that states the deciding check, its
    value and threshold, draws every window of every check against its threshold with Fail marked, the
    phases, the transitions and the Events; with `--router` (or, once the router is gone, `--log` on its
    prediction log) the per-version numbers and distributions too."""
    v1 = procs.scorer("v1", seed=7)
    v2 = procs.scorer("v2", seed=7, shift=0.35)
    logdir = tmp_path / "predictions"
    router = procs._keep(start("router.kube_source", ["--kube", "--kubeconfig", kubeconfig, "--namespace", namespace,
                                                      "--bucket", "1s", "--log-dir", str(logdir)],
                               ready="/healthz", log_dir=tmp_path / "logs"))
    ctl = procs.controller(kubeconfig, namespace, "--router-url", router.url)
    apply(kubectl, rollout_doc("drifty", namespace, v1, v2, steps=[{"shadow": {"duration": "30s"}},
                                                                  {"canary": {"weight": 50, "duration": "30s"}}]))
    procs.traffic(router, "drifty", namespace, rps=60)
    obj = wait_phase(k8s_api, namespace, "drifty", {"RolledBack"}, 90, forbid={"Promoted"},
                     diagnose=lambda: logs(ctl, router))
    wait_event(k8s_api, namespace, "drifty", "RolledBack")
    ctl.stop()
    st = obj["status"]
    psi = next(c for c in st["checks"] if c["name"] == "score-psi")
    windows = len(psi["recent"])

    out = tmp_path / "report.html"
    run = plugin(control_plane, "report", "drifty", "-n", namespace, "-o", str(out), "--router", router.url)
    assert run.returncode == 0, run.stderr
    decision = f"check score-psi: value {fmt(psi['value'])}, threshold 0.5"
    assert f"{namespace}/drifty: RolledBack ({decision})" in run.stdout
    assert str(out.resolve()) in run.stdout
    got, total = filled(run.stderr, "routers")
    assert total == windows and with_data(st) <= got <= windows and with_data(st) >= 2

    page = out.read_text()
    c = census(page)
    assert c.scripts == 0 and c.external == []
    section = c.sections[f"{namespace}/drifty"]
    assert section["outcome"] == "RolledBack"
    assert decision in page
    assert section["checks"] == {"score-psi", "errors"} and section["threshold_lines"] == 2
    assert section["points"] == 2 * windows                       # every kept window of both checks
    assert page.count('data-verdict="Fail"') >= 2                  # failureLimit 2
    assert '<figure class="check-chart deciding" data-check="score-psi"' in page
    assert {"Shadowing", "RolledBack"} <= section["phases"]
    assert section["baseline_bars"] > 5 and section["candidate_bars"] > 5     # from the router's summaries
    events = page.split("<table class='events'>", 1)[1].split("</table>", 1)[0]
    assert "RolledBack" in events and "Started" in events

    # without routers: the same page from the status alone, the versions' charts empty
    bare = tmp_path / "bare.html"
    run = plugin(control_plane, "report", "drifty", "-n", namespace, "-o", str(bare))
    assert run.returncode == 0, run.stderr
    c = census(bare.read_text()).sections[f"{namespace}/drifty"]
    assert c["points"] == 2 * windows and c["baseline_bars"] == 0 and decision in bare.read_text()

    # the router gone (SIGTERM: its log written and synced): the same numbers from its prediction log
    router.stop()
    logged = tmp_path / "logged.html"
    run = plugin(control_plane, "report", "drifty", "-n", namespace, "-o", str(logged), "--log", str(logdir))
    assert run.returncode == 0, run.stderr
    got, total = filled(run.stderr, "prediction log")
    assert total == windows and got >= 2
    c = census(logged.read_text()).sections[f"{namespace}/drifty"]
    assert c["baseline_bars"] > 5 and c["candidate_bars"] > 5 and decision in logged.read_text()

    missing = plugin(control_plane, "report", "nope", "-n", namespace, "-o", str(tmp_path / "x.html"))
    assert missing.returncode == 1 and f"modelrollout 'nope' not found in namespace '{namespace}'" in missing.stderr
    assert not (tmp_path / "x.html").exists()
    assert get_rollout(k8s_api, namespace, "drifty")["status"] == st     # the report wrote nothing


def test_report_reads_guarded_routers_with_a_token(procs, kubectl, k8s_api, namespace, bound, control_plane,
                                                   tmp_path):
    """Routers running with --internal-auth kubernetes (as the manifests run them) refuse the report's
    summaries request without a token, and the report says what to pass; with `--router-token-file` holding a
    token for their audience it reads them."""
    controller_kubeconfig, router_kubeconfig, token = bound
    v1, v2 = procs.scorer("v1", seed=3), procs.scorer("v2", seed=3)
    router = procs._keep(start("router.kube_source", [
        "--kube", "--kubeconfig", router_kubeconfig, "--namespace", namespace, "--bucket", "1s",
        "--internal-auth", "kubernetes"], ready="/healthz", log_dir=tmp_path / "logs"))
    token_file = tmp_path / "router-token"
    token_file.write_text(token("modelrollout-controller") + "\n")
    ctl = procs.controller(controller_kubeconfig, namespace, "--router-url", router.url,
                           "--router-token-file", str(token_file))
    apply(kubectl, rollout_doc("guarded", namespace, v1, v2))
    procs.traffic(router, "guarded", namespace, rps=60)
    obj = wait_phase(k8s_api, namespace, "guarded", {"Promoted"}, 120, forbid={"RolledBack", "Failed", "Paused"},
                     diagnose=lambda: logs(ctl, router))
    windows = max(len(c["recent"]) for c in obj["status"]["checks"])

    out = tmp_path / "r.html"
    refused = plugin(control_plane, "report", "guarded", "-n", namespace, "-o", str(out), "--router", router.url)
    assert refused.returncode == 0, refused.stderr
    assert f"router {router.url}: HTTP 401" in refused.stderr and "--router-token-file" in refused.stderr
    assert f"0 of {windows} windows have per-version numbers" in refused.stderr
    read = plugin(control_plane, "report", "guarded", "-n", namespace, "-o", str(out), "--router", router.url,
                  "--router-token-file", str(token_file))
    assert read.returncode == 0, read.stderr
    got, total = filled(read.stderr, "routers")
    assert total == windows and with_data(obj["status"]) <= got <= windows and got >= 1
    assert f"{namespace}/guarded: Promoted" in read.stdout
    assert census(out.read_text()).sections[f"{namespace}/guarded"]["candidate_bars"] > 5
