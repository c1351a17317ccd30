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
from tests.integration.test_report import census

BIN = str(Path(sys.executable).parent)   # holds the kubectl-modelrollout console script

pytestmark = pytest.mark.usefixtures("mro_crd")


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
    assert f"{windows} of {windows} windows have per-version numbers ({windows} from the routers)" in run.stderr

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
    m = re.search(r"(\d+) of (\d+) windows have per-version numbers \((\d+) from the prediction log\)", run.stderr)
    assert m and int(m.group(2)) == windows and int(m.group(1)) == int(m.group(3)) >= 2, run.stderr
    c = census(logged.read_text()).sections[f"{namespace}/drifty"]
    assert c["baseline_bars"] > 5 and c["candidate_bars"] > 5 and decision in logged.read_text()

    missing = plugin(control_plane, "report", "nope", "-n", namespace, "-o", str(tmp_path / "x.html"))
    assert missing.returncode == 1 and f"modelrollout 'nope' not found in namespace '{namespace}'" in missing.stderr
    assert not (tmp_path / "x.html").exists()
    assert get_rollout(k8s_api, namespace, "drifty")["status"] == st     # the report wrote nothing
