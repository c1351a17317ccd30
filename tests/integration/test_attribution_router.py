"""Attribution drift through a real router and real scorer processes: same scores, other reasons."""
from __future__ import annotations

import random
import signal

from policies.checks import Observations, evaluate
from policies.spec import parse_rollout
from policies.status import Routing, RolloutStatus, Verdict
from policies.summaries import VersionWindow
from policies.outcome import rebuild
from router.predlog import read_records
from tests.router_support import post_many, rollout_doc, summaries, write_config

CHECKS = [{"name": "score-psi", "metric": "psi", "on": "prediction", "max": 0.2},
          {"name": "why-changed", "metric": "attribution-tau", "min": 0.6, "action": "warn"}]


def doc(name, baseline, candidate):
    d = rollout_doc(name, baseline.url, candidate.url, weight=50, checks=CHECKS)
    d["spec"]["output"]["attributions"] = "attributions"
    d["spec"]["analysis"]["minSamples"] = 200
    return d


def traffic(url, n, seed):
    rng = random.Random(seed)
    return post_many([(url, {"features": {"age": round(max(18.0, rng.gauss(40, 12)), 1),
                                          "gender": rng.choice("fm"),
                                          "amount": round(rng.lognormvariate(3.5, 1.0), 2),
                                          "hour": rng.randrange(24)}},
                       {"x-user-id": f"u{i}"}) for i in range(n)])


def judged(router_url, d):
    windows = summaries(router_url, d["metadata"]["name"])["windows"]
    merged = {}
    for arm in ("baseline", "candidate"):
        out = VersionWindow.new("score")
        for w in windows:
            out = out.merge(VersionWindow.from_dict(w[arm]))
        merged[arm] = out
    spec = parse_rollout(d).spec
    obs = Observations(windows[0]["start"], windows[-1]["end"], merged["baseline"], merged["candidate"])
    results = evaluate(spec, obs, RolloutStatus(current_step=0, routing=Routing(50)))
    return {r.name: r for r in results}, merged


def test_reordered_attributions_fail_the_tau_check_while_psi_passes(procs, tmp_path):
    """A candidate scoring like the baseline but for reversed reasons fails attribution-tau and passes the
    prediction PSI; a candidate with the baseline's reasons passes both; the prediction log replays to the
    same attribution summaries."""
    v1 = procs.scorer("v1", "--attributions")
    same = procs.scorer("v2", "--attributions")
    shifted = procs.scorer("v3", "--attributions", "--attribution-shift")
    docs = [doc("control", v1, same), doc("reasons", v1, shifted)]
    logs = tmp_path / "log"
    router = procs.router(write_config(tmp_path / "r.yaml", docs), "--bucket", "5s", "--log-dir", str(logs))
    for i, d in enumerate(docs):
        answers = traffic(f"{router.url}/v1/rollouts/{d['metadata']['name']}/predict", 900, seed=i)
        assert {s for s, _, _ in answers} == {200}

    control, _ = judged(router.url, docs[0])
    assert control["score-psi"].verdict is Verdict.PASS
    assert control["why-changed"].verdict is Verdict.PASS and control["why-changed"].value == 1.0

    reasons, merged = judged(router.url, docs[1])
    assert reasons["score-psi"].verdict is Verdict.PASS, reasons["score-psi"].reason
    tau = reasons["why-changed"]
    assert tau.verdict is Verdict.FAIL and tau.value == -1.0, tau.reason
    assert merged["baseline"].attributions.ranking() == ["age", "amount", "gender", "hour"]
    assert merged["candidate"].attributions.ranking() == ["hour", "gender", "amount", "age"]
    assert tau.samples == merged["candidate"].attributions.n == merged["candidate"].prediction.n

    served = summaries(router.url, "reasons")["windows"]
    assert router.stop(signal.SIGTERM) == 0
    records = list(read_records(logs))
    logged = [r for r in records if r.rollout == "reasons" and r.role == "primary"]
    assert logged and all(set(r.attributions) == {"age", "amount", "gender", "hour"} for r in logged)
    assert [b.to_wire() for b in rebuild(records, parse_rollout(docs[1]).spec, bucket_seconds=5.0)] == served
