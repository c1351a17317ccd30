"""`kubectl modelrollout ...` run through the real kubectl's plugin mechanism against a real apiserver."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from policies.machine import Command
from tests.e2e.test_crd import example_text, install_crd, patch_status, sample_status

BIN = str(Path(sys.executable).parent)   # holds the kubectl-modelrollout console script


@pytest.fixture(scope="module")
def crd(kubectl):
    install_crd(kubectl)


@pytest.fixture
def plugin(control_plane):
    """`plugin(*args, kubeconfig=None, check=True)`: `kubectl modelrollout ARGS` as a user would run it."""
    def run(*args, kubeconfig=None, check=True, env=None):
        full_env = control_plane.kubectl_env(kubeconfig)
        full_env["PATH"] = BIN + os.pathsep + full_env.get("PATH", "")
        full_env.update(env or {})
        out = subprocess.run([control_plane.kubectl, "modelrollout", *args], capture_output=True, text=True,
                             env=full_env, timeout=120)
        if check:
            assert out.returncode == 0, f"exit {out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
        return out

    return run


@pytest.fixture
def rollout(crd, kubectl, namespace):
    """The DESIGN example applied in a fresh namespace; returns the namespace."""
    kubectl("apply", "-f", "-", input=example_text(namespace))
    return namespace


def annotation(kubectl, namespace) -> Command:
    obj = json.loads(kubectl("get", "mro", "fraud-scorer", "-n", namespace, "-o", "json").stdout)
    return Command.from_annotation(obj["metadata"]["annotations"]["modelrollout.io/command"])


def test_verbs_set_the_command_annotation(plugin, kubectl, rollout):
    """Each verb leaves one JSON command the controller can parse, with a fresh id every time."""
    patch_status(kubectl, rollout, sample_status())            # Progressing at step 2
    ids = set()
    for args, verb, full in ((["pause"], "pause", False), (["promote"], "promote", False),
                             (["promote", "--full"], "promote", True), (["abort"], "abort", False),
                             (["resume", "--force"], "resume", False), (["retry", "--force"], "retry", False)):
        out = plugin(*args, "fraud-scorer", "-n", rollout)
        cmd = annotation(kubectl, rollout)
        assert (cmd.verb, cmd.full) == (verb, full)
        assert cmd.id in out.stdout
        ids.add(cmd.id)
    assert len(ids) == 6


def test_verbs_the_controller_would_ignore_are_refused(plugin, kubectl, rollout):
    """A verb the controller's own decide() would reject exits 1 with the reason and sends nothing."""
    patch_status(kubectl, rollout, sample_status())            # Progressing: neither paused nor rolled back
    for verb, why in (("retry", "retry applies after a rollback or abort; phase is Progressing"),
                      ("resume", "not paused (phase Progressing)")):
        out = plugin(verb, "fraud-scorer", "-n", rollout, check=False)
        assert out.returncode == 1
        assert f"cannot {verb} modelrollout {rollout}/fraud-scorer: {why}" in out.stderr
    obj = json.loads(kubectl("get", "mro", "fraud-scorer", "-n", rollout, "-o", "json").stdout)
    assert "modelrollout.io/command" not in (obj["metadata"].get("annotations") or {})


def test_verb_output_says_what_the_controller_will_do(plugin, kubectl, rollout):
    """promote --full on a progressing rollout announces Promoted with the candidate at 100%."""
    patch_status(kubectl, rollout, sample_status())
    out = plugin("promote", "--full", "fraud-scorer", "-n", rollout).stdout
    assert "now: Progressing, candidate 25%" in out
    assert "expected after the controller's next reconcile: Promoted, candidate 100%" in out


def test_verb_on_a_missing_rollout_is_a_clear_error(plugin, crd, namespace):
    """A verb or status on a rollout that does not exist exits 1 naming the rollout and namespace."""
    for args in (["promote", "nope"], ["status", "nope"], ["history", "nope"]):
        out = plugin(*args, "-n", namespace, check=False)
        assert out.returncode == 1
        assert f"modelrollout 'nope' not found in namespace '{namespace}'" in out.stderr
        assert "Traceback" not in out.stderr


def test_status_renders_steps_checks_conditions_and_history(plugin, kubectl, rollout):
    """status shows the phase, the current step marked, every check with value/threshold/verdict over its recent
    windows (and why it did not pass), and history."""
    status = sample_status()
    status["checks"][1].update({"verdict": "Inconclusive", "reason": "12 samples < minSamples 200"})
    patch_status(kubectl, rollout, status)
    out = plugin("status", "fraud-scorer", "-n", rollout).stdout
    assert "Progressing" in out and "canary 25%: 12m left" in out
    marked = [line for line in out.splitlines() if "▶" in line]
    assert len(marked) == 1 and "canary 25% for 30m" in marked[0]
    psi = next(line for line in out.splitlines() if line.strip().startswith("score-psi"))
    assert psi.split()[:6] == ["score-psi", "psi", "0.04", "0.2", "✔", "Pass"]
    assert "✔✔  0.05 → 0.04" in psi                     # the recent windows, oldest to newest
    latency = next(line for line in out.splitlines() if line.strip().startswith("latency"))
    assert "Inconclusive" in latency and "12 samples < minSamples 200" in latency
    assert "StepStarted" in out and "canary 5% passed" in out
    assert "candidate 25%" in out and "score-psi 0.04/0.2" in out


def test_status_before_any_controller(plugin, rollout):
    """A rollout no controller has seen yet is shown as Pending with every step pending."""
    out = plugin("status", "fraud-scorer", "-n", rollout).stdout
    assert "not yet seen by a controller" in out
    assert "running" not in out and "▶" not in out


def test_output_json_and_yaml_are_the_object(plugin, kubectl, rollout):
    """-o json / -o yaml print the stored object, as `kubectl get -o json` does."""
    patch_status(kubectl, rollout, sample_status())
    want = json.loads(kubectl("get", "mro", "fraud-scorer", "-n", rollout, "-o", "json").stdout)
    got = json.loads(plugin("status", "fraud-scorer", "-n", rollout, "-o", "json").stdout)
    assert got["spec"] == want["spec"] and got["status"] == want["status"]
    assert yaml.safe_load(plugin("status", "fraud-scorer", "-n", rollout, "-o", "yaml").stdout)["status"] == \
        want["status"]
    history = json.loads(plugin("history", "fraud-scorer", "-n", rollout, "-o", "json").stdout)
    assert history == want["status"]["history"]


def test_list_and_history(plugin, kubectl, rollout):
    """list shows each rollout with phase, step, weight and drift; -A adds namespaces; history lists transitions."""
    patch_status(kubectl, rollout, sample_status())
    rows = [line.split() for line in plugin("list", "-n", rollout).stdout.splitlines()]
    row = next(r for r in rows if r and r[0] == "fraud-scorer")
    assert row[1:6] == ["Progressing", "2", "25%", "score-psi", "0.04/0.2"]
    everywhere = plugin("list", "-A").stdout
    assert rollout in everywhere
    hist = plugin("history", "fraud-scorer", "-n", rollout).stdout
    assert "StepAdvanced" in hist and "canary 5% passed" in hist


def test_list_empty_namespace(plugin, crd, namespace):
    """list in a namespace with no rollouts says so and exits 0."""
    out = plugin("list", "-n", namespace)
    assert f"No modelrollouts found in namespace '{namespace}'" in out.stderr


def test_kubeconfig_context_and_namespace_flags(plugin, control_plane, rollout, tmp_path):
    """--kubeconfig and --context are honoured, and the context's namespace is the default for -n."""
    cfg = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    base = cfg["contexts"][0]
    cfg["contexts"].append({"name": "ml-team", "context": {**base["context"], "namespace": rollout}})
    cfg["current-context"] = base["name"]
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(cfg))
    out = plugin("list", "--kubeconfig", str(path), "--context", "ml-team", env={"KUBECONFIG": "/nonexistent"})
    assert "fraud-scorer" in out.stdout
    out = plugin("status", "fraud-scorer", "--context", "ml-team", env={"KUBECONFIG": str(path)})
    assert f"{rollout}/fraud-scorer" in out.stdout
    bad = plugin("list", "--kubeconfig", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 1 and "no such file" in bad.stderr


def test_watch_ends_when_the_rollout_finishes(plugin, control_plane, kubectl, rollout):
    """status --watch redraws on changes and returns once the rollout reaches a terminal phase."""
    env = control_plane.kubectl_env()
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen([control_plane.kubectl, "modelrollout", "status", "fraud-scorer", "-n", rollout,
                             "--watch", "--timeout", "90"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        patch_status(kubectl, rollout, sample_status())
        done = {**sample_status(), "phase": "Promoted", "routing": {"candidateWeight": 100, "shadow": False,
                                                                     "interleave": False}}
        patch_status(kubectl, rollout, done)
        out, err = proc.communicate(timeout=100)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "Promoted" in out and "candidate 100%" in out


def test_no_cluster_configuration_is_a_clear_error(plugin, tmp_path):
    """Without any kubeconfig (and outside a cluster) the plugin says what to set instead of a traceback."""
    out = plugin("list", check=False, env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path),
                                           "KUBERNETES_SERVICE_HOST": ""})
    assert out.returncode == 1
    assert "no kubeconfig found" in out.stderr and "--kubeconfig" in out.stderr
    assert "Traceback" not in out.stderr


def _watch(control_plane, namespace, *extra):
    env = control_plane.kubectl_env()
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return subprocess.Popen([control_plane.kubectl, "modelrollout", "status", "fraud-scorer", "-n", namespace,
                             "--watch", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_watch_reports_a_deleted_rollout(control_plane, kubectl, rollout):
    """status --watch stops with exit 1 and says so when the rollout is deleted under it."""
    patch_status(kubectl, rollout, sample_status())
    proc = _watch(control_plane, rollout, "--timeout", "90")
    try:
        proc.stdout.readline()                       # the first frame is drawn: the watch is set up
        kubectl("delete", "mro", "fraud-scorer", "-n", rollout)
        out, err = proc.communicate(timeout=100)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1
    assert "modelrollout 'fraud-scorer' was deleted" in err


def test_watch_stops_at_its_timeout(control_plane, kubectl, rollout):
    """status --watch --timeout N returns 0 after N seconds when the rollout is still running."""
    patch_status(kubectl, rollout, sample_status())
    proc = _watch(control_plane, rollout, "--timeout", "2")
    try:
        out, err = proc.communicate(timeout=100)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "Progressing" in out
