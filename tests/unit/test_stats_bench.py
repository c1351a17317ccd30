"""The statistics benchmark keeps running (quick mode, no peers), so it cannot rot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_runs_and_agrees_with_scipy(tmp_path):
    """bench/stats.py --quick exits 0 and reports zero-difference agreement with scipy for every metric."""
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "stats.py"), "--quick", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = {line.split()[0]: line.split() for line in p.stdout.splitlines()
            if len(line.split()) == 4 and line.split()[0] in {"psi", "js", "ks_d", "ks_p", "wasserstein", "chi2"}}
    assert set(rows) == {"psi", "js", "ks_d", "ks_p", "wasserstein", "chi2"}
    assert all(float(r[3]) < 1e-9 for r in rows.values())
    assert "rff vs exact" in p.stdout and "summary" in p.stdout
