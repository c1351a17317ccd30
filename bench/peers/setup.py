"""Create (or reuse) the peers' virtualenv for bench/stats.py.

    python bench/peers/setup.py [--venv DIR]

The venv lives under ~/.cache/modelrollout/bench-venv by default, is separate from the project's
venv (Evidently 0.7.23 needs pandas < 3) and is only rebuilt when the requirement files change.
Prints the venv's python path on success.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = Path.home() / ".cache" / "modelrollout" / "bench-venv"


def python_of(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def ensure(venv_dir: Path = DEFAULT_VENV) -> Path:
    """The peers' python, installing what is missing; raises CalledProcessError if pip fails."""
    files = [HERE / "requirements.txt"]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    marker = venv_dir / f".installed-{digest[:16]}"
    py = python_of(venv_dir)
    if marker.exists() and py.exists():
        return py
    if not py.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    for f in files:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(f)], check=True)
    marker.touch()
    return py


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = p.parse_args(argv)
    print(ensure(args.venv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
