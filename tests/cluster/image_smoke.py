"""Run inside the product image by build-images.sh (`docker run -i ... python - < this file`): the parts the
controller and the router run work in the slimmed image, and what the image leaves out (docs/install.md
"The image") is absent and fails the documented way. Exits non-zero, naming the failure, otherwise."""
from __future__ import annotations

import importlib.util
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# left out of the image
for absent in ("pyarrow", "pip", "setuptools", "kubernetes.aio"):
    assert importlib.util.find_spec(absent) is None, f"{absent} is in the image"

# what the long-running parts and the example model servers import
import controller.kube.controller  # noqa: E402,F401
import modelrollout.models.scorer  # noqa: E402,F401
import router.kube_source  # noqa: E402,F401
import router.server  # noqa: E402,F401
from policies import stats  # noqa: E402
from policies.thresholds import effective_sigmas  # noqa: E402

# every statistic, on small samples (exact p-values) and large ones (asymptotic), through the same code the
# controller runs: the stripped extension modules of numpy and scipy are exercised, not only imported
rng = np.random.default_rng(7)
for n in (40, 12000):
    b, c = rng.normal(size=n), rng.normal(0.3, 1.0, size=n)
    for metric in sorted(stats.METRICS - {"mmd", "centroid-cosine"}):
        r = stats.compute(metric, b, c)
        assert math.isfinite(r.value), (metric, n, r)
emb_b, emb_c = rng.normal(size=(200, 8)), rng.normal(0.5, 1.0, size=(200, 8))
for metric in ("mmd", "centroid-cosine"):
    assert math.isfinite(stats.compute(metric, emb_b, emb_c).value), metric
# the outlier-rate check's Isolation Forest (scikit-learn, its stripped extension modules)
from policies.outlier import outlier_rate  # noqa: E402
assert outlier_rate(emb_b, emb_c).value > 0
assert math.isfinite(stats.kendall_tau(list("abcdefgh"), list("abcdefhg")).value)
assert 0 <= stats.interleave_test(30, 12, 5).p_value <= 1
assert effective_sigmas(3.0, 5) > 3.0
teams = stats.team_draft(list("abcd"), list("dcba"), random.Random(1))
assert teams

# `modelrollout analyze`, as a user runs it: CSV works, Parquet names the extra it needs
with tempfile.TemporaryDirectory() as d:
    bf, cf = Path(d, "b.csv"), Path(d, "c.csv")
    bf.write_text("score\n" + "\n".join(map(repr, rng.normal(size=500).tolist())) + "\n")
    cf.write_text("score\n" + "\n".join(map(repr, rng.normal(1.0, 1.0, size=500).tolist())) + "\n")
    p = subprocess.run(["modelrollout", "analyze", str(bf), str(cf), "--metric", "psi", "--metric", "ks",
                        "--metric", "mann-whitney", "--metric", "chi2"], capture_output=True, text=True)
    assert p.returncode == 1, ("analyze on shifted CSV columns should exit 1", p.returncode, p.stdout, p.stderr)
    pq = Path(d, "b.parquet")
    pq.write_bytes(b"PAR1")
    p = subprocess.run(["modelrollout", "analyze", str(pq), str(pq)], capture_output=True, text=True)
    assert p.returncode == 2 and "pip install 'modelrollout[parquet]'" in p.stderr, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr

print("image smoke: ok", file=sys.stderr)
