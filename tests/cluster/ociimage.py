"""Writes a one-layer OCI image archive that `ctr images import` loads, without Docker or a registry.

Used for the pod sandbox (pause) image: `python -m tests.cluster.ociimage OUT.tar NAME FILE:PATH... --
ENTRYPOINT...` puts each FILE at PATH (mode 0755) in the layer and sets the entrypoint.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path


def _blob(tar: tarfile.TarFile, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest.split(':')[1]}")
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def write_image(out: Path, name: str, files: dict[str, Path], entrypoint: list[str]) -> None:
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for path, src in sorted(files.items()):
            data = Path(src).read_bytes()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buf.getvalue()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]}}
    with tarfile.open(out, "w") as tar:
        layer_desc = _blob(tar, layer_bytes, "application/vnd.oci.image.layer.v1.tar")
        config_desc = _blob(tar, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = _blob(tar, json.dumps(manifest).encode(), manifest["mediaType"])
        manifest_desc["annotations"] = {"io.containerd.image.name": name,
                                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}
        manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
        for fname, doc in (("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                           ("index.json", {"schemaVersion": 2, "manifests": [manifest_desc]})):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(fname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def main(argv: list[str]) -> int:
    if len(argv) < 4 or "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    sep = argv.index("--")
    out, name, specs, entrypoint = Path(argv[0]), argv[1], argv[2:sep], argv[sep + 1:]
    files = {}
    for spec in specs:
        src, _, dest = spec.partition(":")
        files[dest] = Path(src)
    write_image(out, name, files, entrypoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
