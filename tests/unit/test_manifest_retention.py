"""The router Deployment's log retention fits the volume it is given: the replica's files (at most
--log-max-total, the file being written included, plus one flush) stay well below the emptyDir's sizeLimit,
whose excess would get the pod evicted."""
from __future__ import annotations

from pathlib import Path

import yaml

from router.kube_source import parser

ROOT = Path(__file__).resolve().parents[2]
UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def _quantity(text: str) -> int:
    for suffix, mult in UNITS.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    return int(text)


def test_router_log_retention_fits_its_volume():
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "router.yaml").read_text()) if d]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = parser().parse_args(container["args"][1:])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == args.log_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    limit = _quantity(volume["emptyDir"]["sizeLimit"])
    assert args.log_max_total is not None and args.log_max_age is not None
    assert args.log_max_total + args.log_max_bytes <= 0.9 * limit, (args.log_max_total, args.log_max_bytes, limit)
    assert args.log_max_total >= 4 * args.log_max_bytes, "room for several closed files besides the current one"
    assert args.replica_id == "$(POD_NAME)"
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
