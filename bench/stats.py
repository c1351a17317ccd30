"""Benchmark of policies.stats against scipy/numpy and Evidently.

    python bench/stats.py            # 1M rows x 10 columns, 10k x 768 embeddings, peers in their venv
    python bench/stats.py --quick    # small smoke run, no peers (what the test suite runs)

One command, one data set: the arrays are generated once (fixed seed), written to a data
directory, and every contender reads the same files: ours and scipy in this process, Evidently
in the peers' venv (bench/peers/setup.py) through a subprocess. alibi-detect's MMDDrift is not
run (it needs a PyTorch or TensorFlow backend); the exact blocked MMD stands in as the reference. Prints each
contender's values side by side, where definitions agree the largest difference, and time ratios.
Timings are wall clock on whatever else the machine is doing: compare ratios, not seconds. Ours
and scipy are timed as the best of --repeat runs; Evidently runs once.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies import stats as S  # noqa: E402
from policies import _mmd  # noqa: E402

SEED = 20240601


REPEAT = 1


def timed(fn: Callable[[], Any], memory: bool = False) -> tuple[Any, float, float | None]:
    """(result, best of REPEAT wall-clock seconds, peak MiB of numpy/Python allocations if memory)."""
    if not memory and REPEAT > 1:
        best = float("inf")
        for _ in range(REPEAT):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        return out, best, None
    if memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    peak = None
    if memory:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out, dt, peak


def make_data(data_dir: Path, rows: int, cols: int, emb_rows: int, dim: int) -> dict[str, Path]:
    """Tabular: column j ~ N(j, 1 + j/10), candidate shifted by 0.1σ. Embeddings: candidate
    shifted by 0.05 in the first 64 dimensions (a drift MMD must detect)."""
    rng = np.random.default_rng(SEED)
    scale = 1 + np.arange(cols) / 10
    # column-major, like a DataFrame's columns: each statistic reads one contiguous column
    b = np.asfortranarray(rng.normal(np.arange(cols), scale, size=(rows, cols)))
    c = np.asfortranarray(rng.normal(np.arange(cols) + 0.1 * scale, scale, size=(rows, cols)))
    eb = rng.normal(size=(emb_rows, dim)).astype(np.float64)
    ec = rng.normal(size=(emb_rows, dim)).astype(np.float64)
    ec[:, : min(64, dim)] += 0.05
    paths = {"baseline": data_dir / "baseline.npy", "candidate": data_dir / "candidate.npy",
             "emb_baseline": data_dir / "emb_baseline.npy", "emb_candidate": data_dir / "emb_candidate.npy"}
    for key, arr in (("baseline", b), ("candidate", c), ("emb_baseline", eb), ("emb_candidate", ec)):
        np.save(paths[key], arr)
    return paths


# --- tabular ----------------------------------------------------------------------------------

def ours_tabular(b: np.ndarray, c: np.ndarray) -> tuple[dict[str, list[float]], float, float]:
    """psi/ks/js/wasserstein per column with one sort per column; chi2 separately."""
    def run():
        out: dict[str, list[float]] = {"psi": [], "ks_d": [], "ks_p": [], "js": [], "wasserstein": []}
        for j in range(b.shape[1]):
            r = S.compare_numeric(b[:, j], c[:, j], ("psi", "ks", "js", "wasserstein"))
            out["psi"].append(r["psi"].value)
            out["ks_d"].append(r["ks"].value)
            out["ks_p"].append(r["ks"].p_value)
            out["js"].append(r["js"].value)
            out["wasserstein"].append(r["wasserstein"].value)
        return out
    vals, dt, _ = timed(run)
    chi, dt_chi, _ = timed(lambda: [S.chi2(b[:, j], c[:, j]).value for j in range(b.shape[1])])
    vals["chi2"] = chi
    return vals, dt, dt_chi


def scipy_tabular(b: np.ndarray, c: np.ndarray) -> tuple[dict[str, list[float]], dict[str, float]]:
    """The docs/statistics.md definitions written directly with numpy/scipy, each metric timed alone."""
    out: dict[str, list[float]] = {}
    times: dict[str, float] = {}

    def props(j):
        interior = np.unique(np.quantile(b[:, j], np.linspace(0, 1, 11)))[1:-1]
        cb = np.bincount(np.searchsorted(interior, b[:, j], side="right"), minlength=interior.size + 1)
        cc = np.bincount(np.searchsorted(interior, c[:, j], side="right"), minlength=interior.size + 1)
        return cb, cc

    def psi():
        res = []
        for j in range(b.shape[1]):
            cb, cc = props(j)
            pb, pc = cb / cb.sum(), cc / cc.sum()
            pb, pc = np.where(pb == 0, 1e-4, pb), np.where(pc == 0, 1e-4, pc)
            res.append(float(np.sum((pc - pb) * np.log(pc / pb))))
        return res

    def js():
        res = []
        for j in range(b.shape[1]):
            cb, cc = props(j)
            res.append(float(jensenshannon(cb / cb.sum(), cc / cc.sum(), base=2)))
        return res

    def chi2():
        res = []
        for j in range(b.shape[1]):
            cb, cc = props(j)
            keep = (cb + cc) > 0
            res.append(float(sps.chi2_contingency(np.vstack((cb[keep], cc[keep])), correction=False).statistic))
        return res

    ks_res: list[Any] = []
    for name, fn in (("psi", psi), ("js", js), ("chi2", chi2),
                     ("ks", lambda: [sps.ks_2samp(b[:, j], c[:, j]) for j in range(b.shape[1])]),
                     ("wasserstein", lambda: [sps.wasserstein_distance(b[:, j], c[:, j]) / np.std(b[:, j])
                                              for j in range(b.shape[1])])):
        res, times[name], _ = timed(fn)
        if name == "ks":
            ks_res = res
        else:
            out[name] = res
    out["ks_d"] = [float(r.statistic) for r in ks_res]
    out["ks_p"] = [float(r.pvalue) for r in ks_res]
    return out, times


def max_rel_diff(a: list[float], b: list[float]) -> float:
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    denom = np.maximum(np.abs(b_), 1e-300)
    return float(np.max(np.abs(a_ - b_) / denom))


# --- embeddings --------------------------------------------------------------------------------

def ours_mmd(eb: np.ndarray, ec: np.ndarray, permutations: int, features: int) -> tuple[Any, float, float]:
    return timed(lambda: S.mmd(eb, ec, permutations=permutations, method="rff", features=features), memory=True)


def exact_mmd(eb: np.ndarray, ec: np.ndarray, sigma2: float, permutations: int) -> tuple[Any, float, float]:
    """Exact unbiased MMD² (blocked kernel matrix) with the same σ² and P permutations."""
    return timed(lambda: S.mmd(eb, ec, sigma2=sigma2, permutations=permutations, method="exact"), memory=True)


# --- peers -------------------------------------------------------------------------------------

def run_peer(script: str, python: Path, args: list[str], timeout: float) -> dict[str, Any] | None:
    cmd = [str(python), str(ROOT / "bench" / "peers" / script), *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  {script}: timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    if p.returncode != 0:
        print(f"  {script} failed (exit {p.returncode}):\n{p.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def peers_python() -> Path | None:
    sys.path.insert(0, str(ROOT / "bench" / "peers"))
    import setup as peers_setup  # bench/peers/setup.py
    try:
        return peers_setup.ensure()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"peers' venv could not be set up ({e}); running without peers", file=sys.stderr)
        return None


# --- report ------------------------------------------------------------------------------------

def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (20k x 3, 600 x 32), no peers")
    p.add_argument("--no-peers", action="store_true", help="skip Evidently")
    p.add_argument("--rows", type=int)
    p.add_argument("--cols", type=int)
    p.add_argument("--emb-rows", type=int)
    p.add_argument("--dim", type=int)
    p.add_argument("--permutations", type=int, default=100)
    p.add_argument("--features", type=int, default=_mmd.RFF_FEATURES, help="random Fourier features for MMD")
    p.add_argument("--mmd-seeds", type=int, default=5, help="feature draws to measure the rff error over")
    p.add_argument("--no-exact-mmd", action="store_true", help="skip the exact MMD (slow on 10k x 768)")
    p.add_argument("--data-dir", type=Path, help="where to write the data files (default: a temp dir)")
    p.add_argument("--repeat", type=int, default=3,
                   help="time ours and scipy as the best of this many runs (Evidently runs once: minutes)")
    args = p.parse_args(argv)
    global REPEAT
    REPEAT = max(1, args.repeat)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    cols = args.cols or (3 if args.quick else 10)
    emb_rows = args.emb_rows or (600 if args.quick else 10_000)
    dim = args.dim or (32 if args.quick else 768)
    use_peers = not (args.quick or args.no_peers)

    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="modelrollout-bench-")
        data_dir = Path(tmp.name)
    else:
        data_dir = args.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, data_dir, rows, cols, emb_rows, dim, use_peers)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(args: argparse.Namespace, data_dir: Path, rows: int, cols: int, emb_rows: int, dim: int,
         use_peers: bool) -> int:
    print(f"data: {rows:,} rows x {cols} columns (shift 0.1 sd); embeddings {emb_rows:,} x {dim} per side; "
          f"files in {data_dir}")
    paths = make_data(data_dir, rows, cols, emb_rows, dim)
    b, c = np.load(paths["baseline"]), np.load(paths["candidate"])
    eb, ec = np.load(paths["emb_baseline"]), np.load(paths["emb_candidate"])
    table: list[tuple[str, str, str, str, str]] = []   # task, ours, peer, peer time, ratio

    # tabular: ours vs numpy/scipy
    ours, t_ours, t_chi = ours_tabular(b, c)
    ref, t_ref = scipy_tabular(b, c)
    t_ref_core = sum(t_ref[k] for k in ("psi", "ks", "js", "wasserstein"))
    print("\n== tabular: policies.stats vs numpy/scipy (same definitions) ==")
    print(f"{'metric':<12} {'ours col0':>14} {'scipy col0':>14} {'max rel diff':>13}")
    for key in ("psi", "js", "ks_d", "ks_p", "wasserstein", "chi2"):
        print(f"{key:<12} {ours[key][0]:>14.8g} {ref[key][0]:>14.8g} {max_rel_diff(ours[key], ref[key]):>13.2e}")
    table.append((f"psi+ks+js+wasserstein, {cols} cols", fmt_s(t_ours), "numpy/scipy (separate)",
                  fmt_s(t_ref_core), f"{t_ref_core / t_ours:.1f}x"))
    for k in ("psi", "ks", "wasserstein", "js"):
        table.append((f"  scipy/numpy {k} alone", "", f"numpy/scipy {k}", fmt_s(t_ref[k]), ""))
    table.append((f"chi2 (decile bins), {cols} cols", fmt_s(t_chi), "scipy chi2_contingency", fmt_s(t_ref["chi2"]),
                  f"{t_ref['chi2'] / t_chi:.1f}x"))

    # embeddings: ours (rff) vs exact
    r_rff, t_rff, mem_rff = ours_mmd(eb, ec, args.permutations, args.features)
    sigma2 = r_rff.detail["sigma2"]
    print("\n== embeddings: MMD² ==")
    print(f"ours rff ({args.features} features, {args.permutations} perms): MMD²={r_rff.value:.6g} "
          f"p={r_rff.p_value:.4g} sigma2={sigma2:.6g} time={fmt_s(t_rff)} peak={mem_rff:.0f} MiB")
    if not args.no_exact_mmd:
        r_ex, t_ex, mem_ex = exact_mmd(eb, ec, sigma2, args.permutations)
        rel = abs(r_rff.value - r_ex.value) / abs(r_ex.value)
        print(f"exact (blocked kernel, same sigma2, {args.permutations} perms): MMD²={r_ex.value:.6g} "
              f"p={r_ex.p_value:.4g} time={fmt_s(t_ex)} peak={mem_ex:.0f} MiB")
        print(f"rff vs exact: relative error of MMD² {rel:.2%}; both p-values "
              f"{'agree on drift at 0.01' if (r_ex.p_value < 0.01) == (r_rff.p_value < 0.01) else 'DISAGREE'}")
        errs = [rel]
        for seed in range(1, args.mmd_seeds):
            r = S.mmd(eb, ec, sigma2=sigma2, permutations=args.permutations, method="rff",
                      features=args.features, seed=seed)
            errs.append(abs(r.value - r_ex.value) / abs(r_ex.value))
            print(f"  rff seed {seed}: MMD²={r.value:.6g} p={r.p_value:.4g} relative error {errs[-1]:.2%}")
        print(f"rff relative error over {len(errs)} feature draws: mean {np.mean(errs):.2%}, max {np.max(errs):.2%}")
        table.append((f"MMD² {emb_rows//1000 or emb_rows}{'k' if emb_rows >= 1000 else ''}x{dim}, "
                      f"{args.permutations} perms", f"{fmt_s(t_rff)} / {mem_rff:.0f} MiB",
                      "exact numpy (blocked)", f"{fmt_s(t_ex)} / {mem_ex:.0f} MiB", f"{t_ex / t_rff:.1f}x"))

    # peers
    if use_peers:
        py = peers_python()
        if py is not None:
            ev = run_peer("evidently_run.py", py, [str(data_dir)], timeout=1800)
            if ev is not None:
                _report_evidently(ev, ours, t_ours, table)

    print("\n== summary (ratio = peer time / our time) ==")
    head = ("task", "ours", "peer", "peer time", "ratio")
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(5)]
    for r in [head, *table]:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    print(f"\nprocess peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


def _report_evidently(ev: dict[str, Any], ours: dict[str, list[float]], t_ours: float,
                      table: list[tuple[str, str, str, str, str]]) -> None:
    print(f"\n== Evidently {ev['version']} (pandas {ev['pandas']}) on the same files ==")
    print(f"{'metric':<12} {'ours col0':>14} {'evidently col0':>15} {'max rel diff':>13}  note")
    notes = {"psi": "Evidently bins equal-width over ref ∪ cur (definitions differ)",
             "js": "Evidently bins equal-width over ref ∪ cur (definitions differ)",
             "ks_p": "same test (scipy ks_2samp)", "wasserstein": "same definition (W1 / std(ref))"}
    for key, note in notes.items():
        vals = ev["values"].get(key)
        if vals:
            print(f"{key:<12} {ours[key][0]:>14.8g} {vals[0]:>15.8g} {max_rel_diff(ours[key], vals):>13.2e}  {note}")
    t = ev["times"]
    if "preset" in t:
        table.append(("psi+ks+js+wasserstein (ours) vs DataDriftPreset", fmt_s(t_ours),
                      f"Evidently DataDriftPreset (peak RSS {ev.get('preset_peak_mib') or 0:.0f} MiB)",
                      fmt_s(t["preset"]), f"{t['preset'] / t_ours:.1f}x"))
    for k in ("psi", "ks", "jensenshannon", "wasserstein"):
        if k in t:
            table.append((f"  Evidently {k} alone", "", f"Evidently {k}", fmt_s(t[k]), f"{t[k] / t_ours:.1f}x"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
