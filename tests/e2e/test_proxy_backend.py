"""A real client pull (skopeo) through blobgate with ``storage.backend: proxy`` in front
of the real distribution registry (a second one over the session registry's storage,
with its storage redirects on), whose blob GETs redirect to its S3 (moto, on loopback
under the name ``localhost``).

With that host listed and ``allow_private_redirects`` (a test or dev stack), blobgate
follows the registry's redirect and streams every layer itself, fetched from S3 with the
presigned URL. With the host listed but private addresses not allowed, the name resolves
to loopback, so blobgate connects nowhere: each refusal is counted, and every blob GET
passes through, the client following the registry's 307 itself. skopeo checks every
digest it downloads.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blobgate.devstack.gateway import GatewayProcess
from blobgate.devstack.image import OciImage
from blobgate.devstack.registry import Registry, RegistryOptions
from blobgate.devstack.stack import BUCKET, Stack, gateway_config
from e2e.test_object_stores import blob_gets

pytestmark = pytest.mark.e2e


@contextmanager
def proxying(stack: Stack, directory: Path, allow_private: bool) -> Iterator[GatewayProcess]:
    """A blobgate streaming from a registry that redirects blob GETs to S3, which it may
    follow only when ``allow_private``."""
    options = RegistryOptions(rootdirectory=stack.registry_options.rootdirectory,
                              redirect=True)
    storage = {"backend": "proxy", "proxy": {
        "redirect_hosts": [urlsplit(stack.s3.endpoint_url).netloc],
        "allow_private_redirects": allow_private}}
    directory.mkdir()
    with Registry(directory, stack.s3, BUCKET, stack.token_auth(), options) as registry:
        config = {**gateway_config(stack), "upstream": {"url": registry.url},
                  "storage": storage}
        with GatewayProcess(directory, config, name="blobgate-proxy") as gateway:
            yield gateway


def pull(stack: Stack, gateway: GatewayProcess, repository: str, image: OciImage,
         tmp_path: Path) -> set[tuple[str, int]]:
    """skopeo pull through ``gateway``; the (outcome, status) of its blob GETs."""
    return {(e["outcome"], e["status"])
            for e in blob_gets(gateway, repository, image, tmp_path)}


def refused(gateway: GatewayProcess, reason: str) -> float:
    with urllib.request.urlopen(f"{gateway.metrics_url()}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "blobgate_refused_redirects_total" and (
                    sample.labels == {"reason": reason}):
                return float(sample.value)
    return 0.0


def test_storage_allowed_on_loopback_is_streamed_by_blobgate(
    stack: Stack, image: OciImage, pushed: str, tmp_path: Path,
) -> None:
    with proxying(stack, tmp_path / "gw", allow_private=True) as gateway:
        seen = len(stack.presigned_blob_gets())
        assert pull(stack, gateway, pushed, image, tmp_path) == {("stream", 200)}
        assert refused(gateway, "address") == 0
    # S3 served each layer to a presigned GET: blobgate's, following the registry.
    assert set(stack.presigned_blob_gets()[seen:]) >= {b.digest for b in image.blobs}


def test_storage_resolving_to_loopback_is_refused_and_the_registry_answers(
    stack: Stack, image: OciImage, pushed: str, tmp_path: Path,
) -> None:
    with proxying(stack, tmp_path / "gw", allow_private=False) as gateway:
        assert pull(stack, gateway, pushed, image, tmp_path) == {("passthrough", 307)}
        assert refused(gateway, "address") >= len(image.blobs)
        log: Any = gateway.log_text()
    assert "not following the registry's redirect to http://localhost:" in log
    assert "X-Amz-Signature" not in log
