"""What manifests/ promises about secrets and who may reach what, checked from the files themselves."""
from __future__ import annotations

from pathlib import Path

import yaml

from router.kube_source import parser

ROOT = Path(__file__).resolve().parents[2]


def _router_pod() -> dict:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "router.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def test_router_reads_its_hash_key_from_an_optional_secret_only_it_can_read():
    pod = _router_pod()
    container = pod["containers"][0]
    args = parser().parse_args(container["args"][1:])
    mount = next(m for m in container["volumeMounts"] if args.hash_key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = volume["secret"]
    assert secret["secretName"] == "modelrollout-log-key" and secret["optional"] is True
    assert secret["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
