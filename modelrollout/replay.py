"""`modelrollout replay FILE --log PREDICTIONS`: backtest a rollout policy on a recorded prediction log.

The router's log holds every outcome, so the per-bucket summaries the controller saw can be rebuilt exactly
(`policies.outcome.rebuild`, the same fold the live router runs), straight from the log's records. Replay then
runs the same reconcile step as the
controller (`controller.core.reconcile_step`: evaluate + decide) on a clock that ticks at the router's bucket
boundaries over the log's time span, and reports what the policy in FILE would have decided and when —
tune thresholds on yesterday's traffic before they page anyone.

Limits: the traffic split in the log is the one that was live; if the replayed policy moves traffic at other
times, the candidate's share of later windows still follows the live run. Prometheus checks cannot be
re-queried for the past and count as Inconclusive.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from policies.api import Phase
from policies.outcome import Bucket, Outcome, bucket_start, merge, rebuild
from policies.spec import Rollout, RolloutSpec, SpecError
from router.predlog import LogError, read_log

log = logging.getLogger("modelrollout.replay")

TERMINAL = tuple(p for p in Phase if p.is_terminal)

__all__ = ["LogError", "LogGatherer", "Replayed", "main", "read_log", "record_from_log", "replay_rollout"]


class LogGatherer:
    """`gatherer(spec, start, end)` for `reconcile_step` reading buckets rebuilt from the log: those of the
    revision under test from the bucket holding `start` (as the controller reads a router's) to `end`."""

    def __init__(self, buckets: Sequence[Bucket], bucket: float):
        self.buckets = list(buckets)
        self.bucket = bucket
        self.last = None

    def __call__(self, spec: RolloutSpec, start: float, end: float):
        from policies.checks import Observations, SourceError

        first = bucket_start(start, self.bucket)
        m = merge((b for b in self.buckets if b.revision in (None, spec.revision)
                   and b.start + 1e-6 >= first and b.end <= end + 1e-6), spec.output.kind)
        prom = {c.name: SourceError(f"check {c.name}: Prometheus is not queried in a replay")
                for c in spec.analysis.checks if c.prometheus is not None}
        self.last = Observations(window_start=start, window_end=end, baseline=m.baseline, candidate=m.candidate,
                                 paired=m.paired, interleave=m.interleave, prometheus=prom)
        return self.last


@dataclass
class Replayed:
    """What the policy decided on one rollout's log, in order."""
    spec: RolloutSpec
    started: float
    status: dict = field(default_factory=dict)
    transitions: list[dict] = field(default_factory=list)
    windows: int = 0
    records: int = 0

    @property
    def phase(self) -> str:
        return self.status.get("phase", Phase.PENDING)

    def outcome(self) -> dict[str, Any]:
        from modelrollout.local import deciding_check

        check = deciding_check(self.spec, self.status) if self.phase in (Phase.ROLLED_BACK, Phase.PAUSED, Phase.FAILED) else None
        last = self.transitions[-1] if self.transitions else {}
        return {"rollout": self.spec.key, "phase": self.phase, "time": last.get("time"),
                "after_seconds": (last["time"] - self.started) if last else None,
                "message": self.status.get("message", ""),
                "check": check.name if check else None, "value": check.value if check else None,
                "threshold": check.threshold if check else None,
                "records": self.records, "windows": self.windows, "transitions": self.transitions}


def replay_rollout(spec: RolloutSpec, records: Iterable[Outcome], bucket: float | None = None,
                   start: float | None = None, recorder=None, config_maps=None) -> Replayed:
    """Run the controller's reconcile step over `spec`'s records (in time order) on a bucket-boundary clock."""
    from controller.core import reconcile_step
    from modelrollout.local import bucket_seconds, deciding_check

    from modelrollout.local_golden import LoggedGolden

    everything = [r for r in records if r.rollout == spec.name and r.namespace in ("", spec.namespace)]
    golden = LoggedGolden(everything, config_maps)
    mine = [r for r in everything if r.role != "golden"]
    if not mine:
        raise LogError(f"the log has no records of rollout {spec.key}")
    bucket = bucket or bucket_seconds([spec])
    buckets = rebuild(mine, spec, bucket)
    gatherer = LogGatherer(buckets, bucket)
    # as local mode: a rollout starts at the first bucket boundary after its first request
    t = start if start is not None else (math.floor(mine[0].time / bucket) + 1) * bucket
    end = math.ceil(mine[-1].time / bucket) * bucket
    out = Replayed(spec, t, records=len(mine))
    while True:
        old = out.status
        gatherer.last = None
        new = reconcile_step(Rollout(spec, old), t, gatherer, golden=golden).status.to_status()
        out.status = new
        if new.get("lastAnalysisAt") != old.get("lastAnalysisAt") and gatherer.last is not None:
            out.windows += 1
            if recorder is not None:
                from policies.status import RolloutStatus

                recorder.window(spec.key, start=gatherer.last.window_start, end=t, now=t,
                                results=RolloutStatus.from_status(new).checks, status=new,
                                baseline=gatherer.last.baseline, candidate=gatherer.last.candidate)
        if (old.get("phase"), old.get("currentStep"), old.get("routing")) != \
                (new.get("phase"), new.get("currentStep"), new.get("routing")):
            check = deciding_check(spec, new) if new.get("phase") in (Phase.ROLLED_BACK, Phase.PAUSED, Phase.FAILED) else None
            out.transitions.append({"time": t, "phase": new.get("phase"), "step": new.get("currentStep"),
                                    "routing": new.get("routing"), "message": new.get("message", ""),
                                    "check": check.name if check else None})
            if recorder is not None:
                recorder.transition(spec.key, t, new, new.get("message", ""), check)
        if new.get("phase") in TERMINAL or t >= end:
            break
        t += bucket
    return out


# --- a run record from a log (for `modelrollout report PREDICTIONS.jsonl`) -----------------------------

def _guess_spec(name: str, namespace: str, recs: list[Outcome]) -> RolloutSpec:
    """A spec that only names the versions, for reporting a log's traffic without a policy."""
    from policies.spec import AnalysisSpec, OutputSpec, Step, VersionRef

    versions = {r.arm: r.version for r in recs if r.arm in ("baseline", "candidate")}
    outputs = [r.output for r in recs if r.output is not None]
    first = outputs[0] if outputs else 0.0
    kind = "score" if isinstance(first, (int, float)) else "ranking" if isinstance(first, list) else "class"
    revision = next((r.revision for r in recs if r.arm == "candidate"), None)
    cand_version = versions.get("candidate") or "candidate"
    cand_url = "http://log"
    if revision and "@" in revision:
        cand_version, cand_url = revision.split("@", 1)
    return RolloutSpec(name=name, namespace=namespace,
                       baseline=VersionRef(versions.get("baseline") or "baseline", "http://log"),
                       candidate=VersionRef(cand_version, cand_url), output=OutputSpec(kind=kind),
                       steps=(Step("canary", 0),), analysis=AnalysisSpec(interval=5.0, checks=()))


def record_from_log(path: Path, spec_path: Path | None = None) -> dict[str, Any]:
    """A run record (modelrollout.report format) rebuilt from a prediction log; with a spec, by replaying."""
    from modelrollout.local import load_rollouts
    from modelrollout.report.run import RunRecorder

    records = read_log([path])
    if not records:
        raise LogError(f"{path}: the log is empty")
    recorder = RunRecorder(str(path), records[0].time)
    recorder.finished = records[-1].time
    if spec_path is not None:
        from modelrollout.local_golden import config_maps

        maps = config_maps(spec_path)
        for rollout in load_rollouts(spec_path):
            recorder.add_rollout(rollout.spec)
            result = replay_rollout(rollout.spec, records, recorder=recorder, config_maps=maps)
            recorder.finish(rollout.spec.key, result.status)
        return recorder.to_dict()
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for r in records:
        if r.role not in ("feedback", "golden"):
            groups.setdefault((r.rollout, r.namespace or "default"), []).append(r)
    rebuilt = []
    for (name, ns), recs in sorted(groups.items()):
        spec = _guess_spec(name, ns, recs)
        rebuilt.append((spec, rebuild(recs, spec, 5.0)))
    # Windows are stamped at their end, so a log alone ends when its last bucket does: otherwise that bucket
    # would fall after the "outcome" and a short run would show none of its candidate's data.
    recorder.finished = max([recorder.finished, *(b.end for _, bs in rebuilt for b in bs)])
    for spec, buckets in rebuilt:
        recorder.add_rollout(spec)
        for b in buckets:
            recorder.window(spec.key, start=b.start, end=b.end, now=b.end, results=(), status={"phase": None},
                            baseline=b.baseline, candidate=b.candidate)
        recorder.finish(spec.key, {"phase": "Unknown", "message": "prediction log only (pass --spec to replay a policy)"})
    return recorder.to_dict()


# --- command line -------------------------------------------------------------------------------------

def _line(r: Replayed, tr: dict) -> str:
    route = tr.get("routing") or {}
    share = "shadow" if route.get("shadow") else f"{route.get('candidateWeight', 0)}%"
    return (f"[{tr['time'] - r.started:6.1f}s] {r.spec.key}  {tr['phase']}  step {int(tr['step'] or 0) + 1}"
            f"  candidate {share}  — {tr['message']}")


def live_starts(logs: list[str]) -> dict[str, float]:
    """When each rollout started in the live local run whose log directory is among `logs` (its run record,
    `run.json`, written beside the log by `modelrollout run --local --log-dir`): replay starts them then."""
    from modelrollout.report.run import RecordError, read_record

    starts: dict[str, float] = {}
    for path in logs:
        record = Path(path) / "run.json"
        if not record.is_file():
            continue
        try:
            rollouts = read_record(record)["rollouts"]
        except RecordError as e:
            log.warning("%s; rollouts start at their first record's bucket end", e)
            continue
        for r in rollouts:
            trans = r.get("transitions") if isinstance(r, dict) else None
            first = trans[0].get("time") if isinstance(trans, list) and trans and isinstance(trans[0], dict) else None
            if isinstance(r.get("key"), str) and isinstance(first, (int, float)):
                starts.setdefault(r["key"], float(first))
    return starts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modelrollout replay",
                                description="Backtest the rollout policy of FILE on a recorded prediction log.")
    p.add_argument("file", help="YAML with the ModelRollout(s) whose policy to replay")
    p.add_argument("--log", action="append", required=True,
                   help="prediction log: a JSONL file or a directory of predictions-*.jsonl (repeatable)")
    p.add_argument("--bucket", type=float, default=None,
                   help="router summary bucket, seconds (default: as local mode, min(interval, 5))")
    p.add_argument("--start", type=float, default=None,
                   help="epoch second the rollout started (default: when the live local run started it, "
                        "read from the run record run.json in a --log directory; else the end of its first "
                        "record's bucket)")
    p.add_argument("--json", action="store_true", help="print the decisions as one JSON object last")
    p.add_argument("--estimate", choices=["reward"], default=None,
                   help="reward: also the IPW and self-normalised IPW estimates of each version's mean reward had "
                        "it served every request, from the logged rewards and propensities")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    from modelrollout.local import load_rollouts

    if args.bucket is not None and not (args.bucket > 0 and math.isfinite(args.bucket)):
        print(f"modelrollout replay: --bucket: expected a positive number of seconds, got {args.bucket}",
              file=sys.stderr)
        return 2
    try:
        from modelrollout.local_golden import config_maps

        rollouts = load_rollouts(args.file)
        maps = config_maps(args.file)
        records = read_log(args.log)
        starts = live_starts(args.log)
        results = [replay_rollout(r.spec, records, args.bucket,
                                  args.start if args.start is not None else starts.get(r.spec.key), config_maps=maps)
                   for r in rollouts]
    except (SpecError, LogError) as e:
        print(f"modelrollout replay: {e}", file=sys.stderr)
        return 2
    for r in results:
        for tr in r.transitions:
            print(_line(r, tr))
        o = r.outcome()
        verdict = {Phase.PROMOTED: "would have promoted", Phase.ROLLED_BACK: "would have rolled back",
                   Phase.PAUSED: "would have paused", Phase.FAILED: "would have failed"}.get(
            r.phase, f"would still be {r.phase} at the end of the log")
        when = f" after {o['after_seconds']:.0f}s" if r.phase in TERMINAL + (Phase.PAUSED,) and o["after_seconds"] is not None else ""
        why = f" — check {o['check']}: value {o['value']}, threshold {o['threshold']}" if o["check"] else ""
        print(f"{r.spec.key}: {verdict}{when} ({r.windows} windows, {r.records} records){why}")
    estimates = {}
    if args.estimate == "reward":
        for r in rollouts:
            estimates[r.spec.key] = reward_estimates(r.spec, records)
            for arm, e in estimates[r.spec.key].items():
                print(f"{r.spec.key}: {arm} reward " + (e if isinstance(e, str) else
                      f"IPW {e['ipw']:.4g} (95% CI {e['ipw_low']:.4g} to {e['ipw_high']:.4g}), self-normalised "
                      f"{e['snipw']:.4g} ({e['snipw_low']:.4g} to {e['snipw_high']:.4g}); {e['matched']} of "
                      f"{e['n']} logged rewards"))
    if args.json:
        out = {"rollouts": {r.spec.key: r.outcome() for r in results}}
        if estimates:
            out["estimates"] = estimates
        print(json.dumps(out, default=str))
    return 0


def reward_estimates(spec: RolloutSpec, records: Iterable[Outcome]) -> dict[str, dict | str]:
    """Per version (baseline, candidate): `policies.ipw.estimate` from the rollout's feedback records with a
    reward and a propensity (those of the candidate under test), or why there is none."""
    from policies._result import StatError
    from policies.ipw import estimate
    rows = [(r.reward, r.arm, r.propensity) for r in records
            if r.role == "feedback" and r.rollout == spec.name and r.namespace == spec.namespace
            and r.revision in (spec.revision, "") and r.arm in ("baseline", "candidate")
            and isinstance(r.reward, (int, float)) and isinstance(r.propensity, (int, float)) and r.propensity > 0]
    out: dict[str, dict | str] = {}
    for arm in ("baseline", "candidate"):
        try:
            out[arm] = estimate([x[0] for x in rows], [x[1] for x in rows], [x[2] for x in rows], arm).to_dict()
        except StatError as e:
            out[arm] = f"no estimate: {e}"
    return out


if __name__ == "__main__":
    sys.exit(main())
