"""Off-policy reward estimates (policies/ipw.py) and the reward check: the IPW and self-normalised IPW
estimates recover a known reward from logs collected under another split, their 95% intervals cover it
about 95% of the time over 600 simulated logs, and `metric: reward` acts on the candidate shown worse than
its tolerance — from feedback records through the one fold."""
from __future__ import annotations

import numpy as np
import pytest

from policies._result import StatError
from policies.checks import Observations, evaluate
from policies.ipw import estimate
from policies.outcome import Bucket, Outcome, fold
from policies.spec import SpecError, parse_spec
from policies.status import Routing, RolloutStatus, Verdict

TRUE = {"baseline": 0.10, "candidate": 0.13}      # conversion rates


def simulated_log(n: int, weight: float, rng):
    """n requests split at `weight` for the candidate; each converts (reward 1) at its version's rate and has
    the revenue-like noise of a purchase value (reward = conversion x lognormal, mean 1)."""
    cand = rng.random(n) < weight
    rate = np.where(cand, TRUE["candidate"], TRUE["baseline"])
    reward = (rng.random(n) < rate) * rng.lognormal(-0.125, 0.5, n)
    arms = np.where(cand, "candidate", "baseline")
    prop = np.where(cand, weight, 1 - weight)
    return reward, list(arms), prop


def test_ipw_equals_the_formula():
    r, arms, p = [1.0, 0.0, 2.0, 1.0], ["candidate", "baseline", "candidate", "baseline"], [0.2, 0.8, 0.2, 0.8]
    e = estimate(r, arms, p, "candidate")
    w = np.array([5.0, 0, 5.0, 0])
    assert e.ipw == pytest.approx(np.mean(w * r)) and e.snipw == pytest.approx(np.sum(w * r) / w.sum())
    assert (e.n, e.matched) == (4, 2)


@pytest.mark.parametrize("arm", ["candidate", "baseline"])
def test_intervals_cover_the_true_reward_over_600_logs(arm):
    """Logs of 4,000 requests at a 20% canary: the estimate of each version's reward had it served everyone
    is unbiased (IPW) and both 95% intervals cover the truth 93-97% of the time."""
    rng = np.random.default_rng(21)
    truth = TRUE[arm]                       # E[conversion x lognormal(mean 1)] = rate
    ipw, cover_ipw, cover_sn = [], 0, 0
    for _ in range(600):
        e = estimate(*simulated_log(4000, 0.2, rng), arm)
        ipw.append(e.ipw)
        cover_ipw += e.ipw_low <= truth <= e.ipw_high
        cover_sn += e.snipw_low <= truth <= e.snipw_high
    assert np.mean(ipw) == pytest.approx(truth, rel=0.02)
    assert 0.93 <= cover_ipw / 600 <= 0.97 and 0.93 <= cover_sn / 600 <= 0.97


def test_the_difference_is_recovered_from_a_log_under_another_weight():
    rng = np.random.default_rng(22)
    diffs = []
    for _ in range(200):
        log = simulated_log(6000, 0.05, rng)
        diffs.append(estimate(*log, "candidate").snipw - estimate(*log, "baseline").snipw)
    assert np.mean(diffs) == pytest.approx(TRUE["candidate"] - TRUE["baseline"], abs=0.004)


@pytest.mark.parametrize("args, message", [
    (([1.0], ["candidate"], [0.0], "candidate"), "propensities must be in"),
    (([1.0], ["baseline"], [1.0], "candidate"), "no logged reward was served by 'candidate'"),
    (([float("nan")], ["candidate"], [1.0], "candidate"), "finite"),
    (([1.0, 2.0], ["candidate"], [1.0], "candidate"), "as many rewards"),
])
def test_bad_logs_are_refused_naming_the_problem(args, message):
    with pytest.raises(StatError, match=message):
        estimate(*args)


# --- metric: reward -----------------------------------------------------------------------------------

def make_spec(**check):
    return parse_spec({"baseline": {"version": "v1", "url": "http://b:1"},
                       "candidate": {"version": "v2", "url": "http://c:1"},
                       "strategy": {"steps": [{"canary": {"weight": 50, "duration": "10m"}}]},
                       "analysis": {"minSamples": 200, "checks": [{"name": "conv", "metric": "reward", **check}]}},
                      "shop", "ml")


def window(spec, rates, n=3000, seed=0):
    """Answers and their reward feedback for both arms, folded as the router folds them."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        arm = "candidate" if i % 2 else "baseline"
        recs.append(Outcome(1000.0 + i * 0.001, f"q{i}", "shop", "ml", spec.revision, arm[:2], arm, "primary",
                            status=200, latency_ms=2.0, output=0.5))
        recs.append(Outcome(1000.5 + i * 0.001, f"q{i}", "shop", "ml", spec.revision, arm[:2], arm, "feedback",
                            output=0.5, reward=float(rng.random() < rates[arm]), propensity=0.5))
    b = Bucket.new(1000.0, 1010.0, spec.revision, "score")
    fold(b, recs, spec)
    return Observations(1000.0, 1060.0, b.baseline, b.candidate)


CANARY = RolloutStatus(current_step=0, routing=Routing(50))


def test_reward_fails_a_candidate_shown_worse_than_tolerated():
    spec = make_spec(min=-0.02)
    (r,) = evaluate(spec, window(spec, {"baseline": 0.30, "candidate": 0.22}), CANARY)
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(-0.08, abs=0.03) and "shown below min" in r.reason
    (ok,) = evaluate(spec, window(spec, {"baseline": 0.30, "candidate": 0.31}, seed=1), CANARY)
    assert ok.verdict is Verdict.PASS, ok.reason
    assert ok.evidence["plan"]["mde"] > 0          # the smallest difference this window detects
    skipped = evaluate(spec, window(spec, {"baseline": 0.3, "candidate": 0.3}),
                       RolloutStatus(routing=Routing(0, shadow=True)))[0]
    assert skipped.skipped


def test_reward_takes_min_and_minpvalue_only():
    with pytest.raises(SpecError) as e:
        make_spec(max=0.1)
    assert e.value.path == "spec.analysis.checks[0].max" and "reward takes min" in e.value.message


def test_replay_estimate_reward_from_a_log(tmp_path, capsys):
    """`modelrollout replay --estimate reward` on a log of rewards collected at a 10% canary: each version's
    self-normalised estimate within its interval of the truth, the candidate's from its 10% of the log."""
    import json

    import yaml

    from modelrollout.replay import main
    doc = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout", "metadata": {"name": "shop",
                                                                                          "namespace": "ml"},
           "spec": {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
                    "strategy": {"steps": [{"canary": {"weight": 10, "duration": "10m"}}]}}}
    spec = parse_spec(doc["spec"], "shop", "ml")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    rng = np.random.default_rng(23)
    reward, arms, prop = simulated_log(20000, 0.1, rng)
    with (tmp_path / "log.jsonl").open("wb") as f:
        for i, (r, a, p) in enumerate(zip(reward, arms, prop)):
            f.write(Outcome(1000.0 + i * 0.01, f"q{i}", "shop", "ml", spec.revision, a[:2], a, "feedback", output=0.5,
                            reward=float(r), propensity=float(p)).to_json() + b"\n")
    assert main([str(tmp_path / "r.yaml"), "--log", str(tmp_path / "log.jsonl"), "--estimate", "reward", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("ml/shop: candidate reward IPW") for line in out)
    est = json.loads(out[-1])["estimates"]["ml/shop"]
    for arm in ("baseline", "candidate"):
        assert est[arm]["snipw_low"] <= TRUE[arm] <= est[arm]["snipw_high"]
    assert est["candidate"]["matched"] == sum(a == "candidate" for a in arms)


def interleaved_window(spec, p_candidate: float, n=2000, seed=0):
    """Feedback on n interleaved impressions: one clicked item each, placed by the candidate's team with
    probability `p_candidate`, worth a lognormal reward credited to that team (a reward_delta of ±reward, as
    the router computes it), folded as the router folds them."""
    from policies.interleaving import reward_delta
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        team = "b" if rng.random() < p_candidate else "a"
        reward = float(rng.lognormal(0.0, 0.5))
        recs.append(Outcome(1000.0 + i * 0.001, f"q{i}", "shop", "ml", spec.revision, "v1+v2", "interleave",
                            "feedback", output=["x", "y"], clicks=["x"], outcome="win" if team == "b" else "loss",
                            reward=reward, propensity=1.0,
                            reward_delta=reward_delta({"x": team, "y": "a" if team == "b" else "b"}, ["x"], reward)))
    b = Bucket.new(1000.0, 1010.0, spec.revision, "score")
    fold(b, recs, spec)
    return Observations(1000.0, 1060.0, b.baseline, b.candidate, interleave=b.interleave)


def test_reward_delta_credits_the_teams_by_their_clicked_items():
    from policies.interleaving import reward_delta
    teams = {"x": "a", "y": "b", "z": "b"}
    assert reward_delta(teams, ["y", "z", "x"], 3.0) == pytest.approx(3.0 * (2 - 1) / 3)
    assert reward_delta(teams, ["x"], 5.0) == -5.0
    assert reward_delta(teams, ["unshown"], 5.0) is None and reward_delta(teams, [], 5.0) is None


def test_reward_in_an_interleave_step_judges_the_credited_difference():
    spec = make_spec(min=0.0)
    interleaving = RolloutStatus(current_step=0, routing=Routing(0, interleave=True))
    obs = interleaved_window(spec, 0.35)
    d = obs.interleave.reward_deltas
    assert d.n == 2000 and obs.baseline.reward is None and obs.candidate.reward is None
    (r,) = evaluate(spec, obs, interleaving)
    mean, se = d.mean(), (d.variance() / d.n) ** 0.5
    assert r.verdict is Verdict.FAIL and r.value == pytest.approx(mean) and "credited to the candidate" in r.reason
    low, high = mean - 1.959963984540054 * se, mean + 1.959963984540054 * se
    assert f"95% CI {low:.3g} to {high:.3g}" in r.reason and r.evidence["plan"]["mde"] > 0
    (ok,) = evaluate(spec, interleaved_window(spec, 0.6, seed=1), interleaving)
    assert ok.verdict is Verdict.PASS and ok.value > 0, ok.reason
    few = evaluate(spec, interleaved_window(spec, 0.6, n=50), interleaving)[0]
    assert few.verdict is Verdict.INCONCLUSIVE and "rewarded interleaved impressions" in few.reason


def test_interleave_summary_keeps_its_credited_rewards_over_the_wire():
    from policies.summaries import InterleaveSummary
    spec = make_spec(min=0.0)
    s = interleaved_window(spec, 0.5, n=30).interleave
    back = InterleaveSummary.from_dict(s.to_dict())
    assert back.reward_deltas.n == 30 and back.reward_deltas.sum == s.reward_deltas.sum
    assert back.merge(back).reward_deltas.n == 60 and "reward_deltas" not in InterleaveSummary(1, 2, 3).to_dict()
