"""Evidently's drift statistics on the bench's data files (run in the peers' venv).

    python bench/peers/evidently_run.py DATA_DIR [--no-preset]

Reads DATA_DIR/baseline.npy and candidate.npy (rows x columns), times DataDriftPreset (its
default method choice) and ValueDrift with psi, ks, jensenshannon and wasserstein on every column,
and prints one JSON line: {"version", "pandas", "times": {...}, "values": {...}, "preset_peak_mib" (process peak RSS after the preset)}.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import evidently
from evidently import Dataset, DataDefinition, Report
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset


def _values(snapshot) -> list[float]:
    out = []
    for m in snapshot.dict()["metrics"]:
        v = m["value"]
        out.append(float(v if not isinstance(v, dict) else v.get("value")))
    return out


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0])
    b, c = np.load(data_dir / "baseline.npy"), np.load(data_dir / "candidate.npy")
    cols = [f"f{j}" for j in range(b.shape[1])]
    defn = DataDefinition(numerical_columns=cols)
    ref = Dataset.from_pandas(pd.DataFrame(b, columns=cols), data_definition=defn)
    cur = Dataset.from_pandas(pd.DataFrame(c, columns=cols), data_definition=defn)
    times: dict[str, float] = {}
    values: dict[str, list[float]] = {}
    peak = None
    if "--no-preset" not in argv:
        t = time.perf_counter()
        Report([DataDriftPreset()]).run(cur, ref)
        times["preset"] = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # process peak RSS, data included
    for method, key in (("psi", "psi"), ("ks", "ks_p"), ("jensenshannon", "js"), ("wasserstein", "wasserstein")):
        t = time.perf_counter()
        snap = Report([ValueDrift(column=col, method=method) for col in cols]).run(cur, ref)
        times[method] = time.perf_counter() - t
        values[key] = _values(snap)
    print(json.dumps({"version": evidently.__version__, "pandas": pd.__version__, "times": times, "values": values,
                      "preset_peak_mib": peak,
                      "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
