"""Pushing test content straight into the registry over its HTTP API.

Blobs are random (incompressible) bytes; images are an OCI manifest over a small config
and random layers. The registry links every blob to its repository on upload, which is
what blobgate's membership check asks about.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlencode

from blobgate.devstack.image import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from blobgate.devstack.stack import PUSHER, Stack

TOKEN_REUSE_S = 120.0


@dataclass(frozen=True)
class Image:
    """A pushed image: repository, tag, and its blob digests (config first)."""

    repository: str
    tag: str
    blobs: tuple[str, ...]


def _send(method: str, url: str, token: str, body: bytes, content_type: str) -> str:
    """Send one request; return its ``Location`` header."""
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - loopback
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
        return str(response.headers.get("Location", ""))


def digest_of(data: bytes) -> str:
    """The sha256 digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pusher:
    """Uploads blobs and manifests to the stack's registry as the development pusher."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._tokens: dict[str, tuple[str, float]] = {}

    def _token(self, repository: str) -> str:
        """A push token, re-minted after two minutes (the issuer's tokens live five)."""
        token, minted = self._tokens.get(repository, ("", 0.0))
        if time.monotonic() - minted > TOKEN_REUSE_S:
            token = self.stack.token(f"repository:{repository}:pull,push", creds=PUSHER)
            self._tokens[repository] = (token, time.monotonic())
        return token

    def blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` monolithically (POST, then PUT with the digest); its digest."""
        base, token = self.stack.registry.url, self._token(repository)
        digest = digest_of(data)
        location = _send("POST", f"{base}/v2/{repository}/blobs/uploads/", token, b"",
                         "application/octet-stream")
        joiner = "&" if "?" in location else "?"
        target = location if location.startswith("http") else base + location
        _send("PUT", f"{target}{joiner}{urlencode({'digest': digest})}", token, data,
              "application/octet-stream")
        return digest

    def random_blobs(self, repository: str, count: int, size: int) -> list[str]:
        """Upload ``count`` random blobs of ``size`` bytes; their digests."""
        return [self.blob(repository, os.urandom(size)) for _ in range(count)]

    def image(self, repository: str, layers: int, layer_size: int, tag: str = "v1") -> Image:
        """Upload an image of ``layers`` random layers under ``tag``."""
        layer_digests = self.random_blobs(repository, layers, layer_size)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": layer_digests}}).encode()
        config_digest = self.blob(repository, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": layer_size}
                       for d in layer_digests],
        }).encode()
        url = f"{self.stack.registry.url}/v2/{repository}/manifests/{tag}"
        _send("PUT", url, self._token(repository), manifest, OCI_MANIFEST)
        return Image(repository, tag, (config_digest, *layer_digests))
