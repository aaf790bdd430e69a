"""Synthetic container images as OCI image layouts, usable by skopeo as ``oci:DIR:TAG``.

Layers are real gzip'd tar archives of random (incompressible) files, so every client
can unpack them and their sizes on the wire are what the caller asked for.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob of the image."""

    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        """The OCI descriptor pointing at this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer(Blob):
    """A compressed layer and the digest of its uncompressed tar (the config's diff_id)."""

    diff_id: str


@dataclass(frozen=True)
class OciImage:
    """A generated image on disk and the digests a registry will know it by."""

    path: Path
    tag: str
    manifest: Blob
    config: Blob
    layers: tuple[Layer, ...]

    @property
    def reference(self) -> str:
        """The skopeo transport reference, ``oci:DIR:TAG``."""
        return f"oci:{self.path}:{self.tag}"

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config and layers: what a registry serves from ``/blobs/``."""
        return (self.config, *self.layers)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_blob(layout: Path, data: bytes, media_type: str) -> Blob:
    digest = _sha256(data)
    (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return Blob(digest, len(data), media_type)


def _layer_tar(index: int, size: int) -> bytes:
    """An uncompressed tar holding one file of ``size`` random bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"blobgate/layer-{index}.bin")
        info.size, info.mode, info.mtime = size, 0o644, 0
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


def _write_layer(layout: Path, index: int, size: int) -> Layer:
    tar = _layer_tar(index, size)
    blob = _write_blob(layout, gzip.compress(tar, compresslevel=1, mtime=0), OCI_LAYER)
    return Layer(blob.digest, blob.size, blob.media_type, diff_id=_sha256(tar))


def _config(layers: Sequence[Layer]) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": "blobgate.devstack.image"} for _ in layers],
    }
    return json.dumps(config, separators=(",", ":")).encode()


def build_image(directory: Path, layer_sizes: Sequence[int], tag: str = "latest") -> OciImage:
    """Write an OCI layout with one layer per entry of ``layer_sizes`` (bytes of payload)."""
    (directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    layers = tuple(_write_layer(directory, i, size) for i, size in enumerate(layer_sizes))
    config = _write_blob(directory, _config(layers), OCI_CONFIG)
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest = _write_blob(directory, json.dumps(manifest_doc).encode(), OCI_MANIFEST)
    index = {
        "schemaVersion": 2,
        "manifests": [{**manifest.descriptor(), "annotations": {REF_NAME: tag}}],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return OciImage(directory, tag, manifest, config, layers)


def verified_blobs(blobs_dir: Path) -> dict[str, int]:
    """Digest and size of every ``sha256/<hex>`` file under ``blobs_dir`` whose content
    hashes to its name (the layout of OCI image layouts and containerd's content store)."""
    found = {}
    for path in sorted((blobs_dir / "sha256").iterdir()):
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == path.name:
            found["sha256:" + path.name] = len(data)
    return found
