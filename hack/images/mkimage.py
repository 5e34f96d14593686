"""Write a one-layer container image holding one static binary, as a docker-archive tar.

No registry can be reached here and no base image pulled, so the images of the real node are
written by hand: a layer tar with the binary, an image config naming it as the entrypoint, and a
manifest.json with the tag; ``ctr images import`` reads it. Every timestamp is fixed, so the same
binary always gives the same image digest.

    python3 mkimage.py --tag rightsizer.local/load:v1 --binary bin/load --out load.tar
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path

NOBODY = "65534:65534"
"""Images run as nobody, so pods of them pass the restricted Pod Security level."""


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    archive.addfile(info, io.BytesIO(data))


def layer_tar(binary: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        _add(layer, binary.name, binary.read_bytes(), mode=0o755)
    return buffer.getvalue()


def image_archive(tag: str, binary: Path) -> bytes:
    layer = layer_tar(binary)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Entrypoint": [f"/{binary.name}"], "User": NOBODY, "Env": ["PATH=/"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "hack/images/mkimage.py"}],
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_digest}/layer.tar"]}]
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, f"{layer_digest}/layer.tar", layer)
        _add(archive, config_name, config)
        _add(archive, "manifest.json", manifest)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tag", required=True, help="image reference, e.g. rightsizer.local/load:v1")
    parser.add_argument("--binary", type=Path, required=True, help="static binary: the image's entrypoint")
    parser.add_argument("--out", type=Path, required=True, help="docker-archive tar to write")
    args = parser.parse_args()
    args.out.write_bytes(image_archive(args.tag, args.binary))


if __name__ == "__main__":
    main()
