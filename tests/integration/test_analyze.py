"""`modelrollout analyze` through a real subprocess: file formats, results, exit codes, errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from policies import stats as S
from modelrollout.analyze import main

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelrollout.analyze", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {
        "b_score": rng.normal(size=800), "c_score": rng.normal(0.6, 1, size=700),
        "b_age": rng.integers(18, 90, size=800).astype(float), "c_age": rng.integers(18, 90, size=700).astype(float),
        "b_country": rng.choice(["de", "fr", "us"], size=800), "c_country": rng.choice(["de", "fr", "us"], size=700),
    }


def _write_csv(path, score, age, country):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["score", "age", "country"])
        w.writerows(zip((x if isinstance(x, str) else repr(float(x)) for x in score), age, country))


def _write_jsonl(path, score, age, country):
    with path.open("w") as f:
        for s, a, c in zip(score, age, country):
            f.write(json.dumps({"score": float(s), "age": float(a), "country": str(c)}) + "\n")


def _write_parquet(path, score, age, country):
    pq.write_table(pa.table({"score": score, "age": age, "country": [str(c) for c in country]}), path)


@pytest.mark.parametrize("fmt, writer", [("csv", _write_csv), ("jsonl", _write_jsonl), ("parquet", _write_parquet)])
def test_json_results_equal_library_values(tmp_path, data, fmt, writer):
    """Every format yields the library's exact values, flags the shifted column and exits 1."""
    b, c = tmp_path / f"b.{fmt}", tmp_path / f"c.{fmt}"
    writer(b, data["b_score"], data["b_age"], data["b_country"])
    writer(c, data["c_score"], data["c_age"], data["c_country"])
    p = run(b, c, "--metric", "psi", "--metric", "ks", "--column", "score", "--column", "age", "--json")
    assert p.returncode == 1, p.stderr
    res = {(r["column"], r["metric"]): r for r in json.loads(p.stdout)["results"]}
    assert res["score", "psi"]["value"] == pytest.approx(S.psi(data["b_score"], data["c_score"]).value, rel=1e-12)
    ks = sps.ks_2samp(data["b_age"], data["c_age"])
    assert res["age", "ks"]["value"] == pytest.approx(ks.statistic, rel=1e-12)
    assert res["age", "ks"]["p_value"] == pytest.approx(ks.pvalue, rel=1e-9)
    assert res["score", "psi"]["drift"] is True and res["age", "psi"]["drift"] is False
    assert res["score", "psi"]["threshold"] == 0.2 and res["age", "ks"]["threshold"] == 0.01
    assert res["score", "psi"]["ci_low"] <= res["score", "psi"]["estimate"] <= res["score", "psi"]["ci_high"]


def test_no_drift_exits_zero_and_prints_table(tmp_path, data):
    """Same-distribution columns exit 0 and the default output is a readable table."""
    b, c = tmp_path / "b.csv", tmp_path / "c.csv"
    _write_csv(b, data["b_age"], data["b_age"], data["b_country"])
    _write_csv(c, data["c_age"], data["c_age"], data["c_country"])
    p = run(b, c, "--column", "age", "--column", "country")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["column", "metric", "value"]
    assert {tuple(line.split()[:2]) for line in lines[1:]} == {("age", "psi"), ("age", "ks"),
                                                               ("country", "psi"), ("country", "chi2")}


def test_thresholds_per_metric_and_global(tmp_path, data):
    """--threshold METRIC=T overrides one metric, a bare T all others."""
    b, c = tmp_path / "b.csv", tmp_path / "c.csv"
    _write_csv(b, data["b_score"], data["b_age"], data["b_country"])
    _write_csv(c, data["c_score"], data["c_age"], data["c_country"])
    p = run(b, c, "--column", "score", "--metric", "psi", "--metric", "wasserstein",
            "--threshold", "psi=5", "--threshold", "100", "--json")
    assert p.returncode == 0, p.stderr
    res = {r["metric"]: r for r in json.loads(p.stdout)["results"]}
    assert res["psi"]["threshold"] == 5 and res["wasserstein"]["threshold"] == 100


def test_npy_embeddings(tmp_path):
    """A 2-D .npy is embeddings: mmd and centroid-cosine run on it; a shift is detected."""
    rng = np.random.default_rng(1)
    B, C = rng.normal(size=(200, 8)), rng.normal(0.5, 1, size=(150, 8))
    np.save(tmp_path / "b.npy", B)
    np.save(tmp_path / "c.npy", C)
    p = run(tmp_path / "b.npy", tmp_path / "c.npy", "--metric", "mmd", "--metric", "centroid-cosine", "--json")
    assert p.returncode == 1, p.stderr
    res = {r["metric"]: r for r in json.loads(p.stdout)["results"]}
    assert res["mmd"]["value"] == pytest.approx(S.mmd(B, C).value, rel=1e-12)
    assert res["mmd"]["drift"] is True
    assert res["centroid-cosine"]["baseline_value"] == pytest.approx(S.centroid_cosine(B, C).detail["baseline"])


@pytest.mark.parametrize("setup, args, message", [
    ("csv", ["--column", "nope"], "b.csv: no column 'nope'"),
    ("csv", ["--metric", "psy"], "--metric 'psy': unknown"),
    ("csv", ["--column", "country", "--metric", "ks"], "--metric ks does not apply to categorical column 'country'"),
    ("nan", ["--column", "score"], "c.csv: column 'score' has 2 missing/NaN values"),
    ("kinds", ["--column", "score"], "column 'score' is numeric in"),
    ("missing", [], "no such file"),
    ("csv", ["--threshold", "psi=abc"], "--threshold 'psi=abc'"),
    ("csv", ["--bins", "0"], "--bins must be a positive integer"),
    ("badjson", [], "line 2 is not valid JSON"),
])
def test_bad_input_exits_2_naming_file_and_column(tmp_path, data, capsys, setup, args, message):
    """Bad files, columns, metrics and options exit 2 with a message naming what is wrong (in-process main)."""
    b, c = tmp_path / "b.csv", tmp_path / "c.csv"
    _write_csv(b, data["b_score"][:50], data["b_age"][:50], data["b_country"][:50])
    score = list(map(str, data["c_score"][:50]))
    if setup == "nan":
        score[3], score[7] = "", "nan"
    if setup == "kinds":
        score[0] = "high"
    _write_csv(c, score, data["c_age"][:50], data["c_country"][:50])
    if setup == "missing":
        c = tmp_path / "absent.csv"
    if setup == "badjson":
        b, c = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
        b.write_text('{"x": 1}\n{"x": 2}\n')
        c.write_text('{"x": 1}\n{x: 2}\n')
    assert main([str(b), str(c), *args]) == 2
    err = capsys.readouterr().err
    assert message in err


def test_bad_input_subprocess_has_no_traceback(tmp_path):
    """Through the real entry point, bad input exits 2 with one message and no traceback."""
    (tmp_path / "b.csv").write_text("x\n1\n2\n")
    (tmp_path / "c.csv").write_text("x\n1\nnan\n")
    p = run(tmp_path / "b.csv", tmp_path / "c.csv")
    assert p.returncode == 2
    assert "c.csv: column 'x' has 1 missing/NaN values" in p.stderr
    assert "Traceback" not in p.stderr


def test_parquet_without_pyarrow_names_the_extra(tmp_path, data):
    """pyarrow is the optional extra `parquet` (the image leaves it out): without it, a .parquet input exits 2
    with a message naming the extra to install, and CSV keeps working in the same environment."""
    b, c = tmp_path / "b.parquet", tmp_path / "c.parquet"
    _write_parquet(b, data["b_score"], data["b_age"], data["b_country"])
    _write_parquet(c, data["c_score"], data["c_age"], data["c_country"])
    # `sys.modules[name] = None` makes every `import name` raise ImportError, as in an install without it
    no_pyarrow = ("import sys; sys.modules['pyarrow'] = sys.modules['pyarrow.parquet'] = None; "
                  "from modelrollout.cli import main; sys.exit(main())")

    def analyze(*files):
        return subprocess.run([sys.executable, "-c", no_pyarrow, "analyze", *map(str, files), "--column", "score"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    p = analyze(b, c)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "b.parquet: reading Parquet needs pyarrow" in p.stderr
    assert "pip install 'modelrollout[parquet]'" in p.stderr
    assert "Traceback" not in p.stderr
    (tmp_path / "b.csv").write_text("score\n" + "\n".join(map(str, data["b_score"])) + "\n")
    (tmp_path / "c.csv").write_text("score\n" + "\n".join(map(str, data["c_score"])) + "\n")
    assert analyze(tmp_path / "b.csv", tmp_path / "c.csv").returncode == 1


# --- --paired -----------------------------------------------------------------------------------------

def _paired_files(tmp_path, shift, n=600, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.beta(2, 5, n)
    y = x + shift + rng.normal(0, 0.02, n)
    items = [f"d{i}" for i in range(15)]
    b, c = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    order = rng.permutation(n)           # the candidate file in another order: --id pairs the rows
    ranks = [list(rng.permutation(items)[:8]) for _ in range(n)]
    with b.open("w") as fb:
        for i in range(n):
            fb.write(json.dumps({"id": f"r{i}", "score": x[i], "ranking": ranks[i]}) + "\n")
    with c.open("w") as fc:
        for i in order:
            fc.write(json.dumps({"id": f"r{i}", "score": y[i], "ranking": ranks[i][::-1] if i % 2 else ranks[i]})
                     + "\n")
    return b, c, x, y, ranks


def test_paired_results_equal_scipy_and_exit_codes(tmp_path):
    """--paired --id: the Wilcoxon shift test against the tolerance is scipy's on the joined rows; a shift of
    1.5x the tolerance exits 1, one of half of it exits 0."""
    b, c, x, y, _ = _paired_files(tmp_path, 0.03)
    p = run(b, c, "--paired", "--id", "id", "--tolerance", "0.02", "--column", "score", "--json")
    assert p.returncode == 1, p.stderr
    rows = {r["metric"]: r for r in json.loads(p.stdout)["results"]}
    d = y - x
    ref = min(1.0, 2 * min(sps.wilcoxon(d - 0.02, alternative="greater").pvalue,
                           sps.wilcoxon(d + 0.02, alternative="less").pvalue))
    assert rows["shadow-wilcoxon"]["p_value"] == pytest.approx(ref, rel=1e-9, abs=1e-300)
    assert rows["shadow-wilcoxon"]["change"] and rows["shadow-wilcoxon"]["pairs"] == 600
    b, c, *_ = _paired_files(tmp_path, 0.01)
    ok = run(b, c, "--paired", "--id", "id", "--tolerance", "0.02", "--column", "score")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "shadow-wilcoxon" in ok.stdout and "CHANGE" not in ok.stdout


def test_paired_rankings_report_rbo_and_ndcg(tmp_path):
    """Half the rankings reversed: mean RBO and NDCG are the per-row means, below min 0.9: a change."""
    b, c, _, _, ranks = _paired_files(tmp_path, 0.0)
    p = run(b, c, "--paired", "--id", "id", "--column", "ranking", "--json")
    assert p.returncode == 1
    rows = {r["metric"]: r for r in json.loads(p.stdout)["results"]}
    expected = np.mean([S.rbo(r, r[::-1] if i % 2 else r) for i, r in enumerate(ranks)])
    assert rows["shadow-rbo"]["value"] == pytest.approx(expected)
    assert rows["shadow-ndcg"]["change"] and rows["shadow-rbo"]["change"]


def test_paired_bad_input_names_the_problem(tmp_path):
    b, c, *_ = _paired_files(tmp_path, 0.0)
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join(c.read_text().splitlines()[:10]) + "\n")
    p = run(b, short, "--paired")
    assert p.returncode == 2 and "has 600 rows but" in p.stderr and "--id" in p.stderr
    p = run(b, c, "--paired", "--metric", "psi")
    assert p.returncode == 2 and "with --paired expected one of" in p.stderr
