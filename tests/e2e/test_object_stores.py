"""A real client pull (skopeo) through blobgate with Azure Blob and GCS as the storage.

Debian's distribution 2.8 (``docker-registry``) is built without the azure and gcs
storage drivers ("StorageDriver not registered: azure"), and 2.8's azure driver could not
be pointed at an emulator anyway (it only knows ``https://<account>.blob.<realm>``). So
the registry keeps storing into S3, and the session image's blobs are laid out in
Azurite and the GCS emulator exactly where distribution's azure and gcs drivers put
them (under a rootdirectory); a blobgate with ``storage.backend: azure`` or ``gcs``
fronts that registry. Every blob GET of the pull must be a 307 that the client followed
to the store: Azurite checks each SAS and logs what it served; for GCS, whose emulator
checks no signature, the URLs blobgate handed out are verified against the service
account's public key. skopeo checks every digest it downloads.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from blobgate.devstack.clients import skopeo_pull
from blobgate.devstack.gateway import GatewayProcess, dev_environment
from blobgate.devstack.image import OciImage, verified_blobs
from blobgate.devstack.stack import BUCKET, PUSHER, Stack, gateway_config
from blobgate.reference import parse_digest, storage_key

from support.azurite import ACCOUNT, CONTAINER, KEY, Azurite
from support.gcs import Emulator, ServiceAccount, verify

pytestmark = pytest.mark.e2e
ROOT = "registry-root"


def copy_blobs(stack: Stack, image: OciImage, put: Callable[[bytes, str], str]) -> None:
    """Lay the image's blobs out in another store under the drivers' layout."""
    s3 = stack.s3.client()
    for blob in (image.manifest, *image.blobs):
        key = storage_key(stack.registry_options.rootdirectory, parse_digest(blob.digest))
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert put(data, f"/{ROOT}/") == blob.digest


def blob_gets(gateway: GatewayProcess, repository: str, image: OciImage, tmp_path: Path
              ) -> list[dict[str, Any]]:
    """skopeo pull through ``gateway``, every digest checked on disk; the access lines of
    its blob GETs (one per layer)."""
    skopeo_pull(gateway.host, f"{repository}:{image.tag}", tmp_path / "pulled", PUSHER)
    on_disk = verified_blobs(tmp_path / "pulled" / "blobs")
    for blob in (image.manifest, *image.blobs):
        assert on_disk.get(blob.digest) == blob.size
    gets = [e for e in gateway.access_log() if e["method"] == "GET" and e["route"] == "blob"]
    assert {e["digest"] for e in gets} == {b.digest for b in image.blobs}
    return gets


def pull(stack: Stack, gateway: GatewayProcess, repository: str, image: OciImage,
         tmp_path: Path) -> list[dict[str, Any]]:
    """skopeo pull through ``gateway``; returns its blob GETs, checked to be redirects."""
    seen_registry = len(stack.registry.requests())
    gets = blob_gets(gateway, repository, image, tmp_path)
    assert {(e["outcome"], e["status"]) for e in gets} == {("redirect", 307)}
    registry_blob_gets = [r for r in stack.registry.requests()[seen_registry:]
                          if r.method == "GET" and "/blobs/" in r.uri]
    assert registry_blob_gets == []  # the registry never streamed a layer
    return gets


@contextmanager
def fronting(stack: Stack, directory: Path, storage: dict[str, Any], env: dict[str, str],
             python: str = sys.executable) -> Iterator[GatewayProcess]:
    """A blobgate (run by ``python``) in front of the stack's registry, with its blobs in
    another store."""
    config = {**gateway_config(stack), "storage": storage}
    with GatewayProcess(directory, config, name=f"blobgate-{storage['backend']}",
                        env=dev_environment(env), python=python) as gateway:
        yield gateway


@pytest.fixture
def azure_gateway(stack: Stack, image: OciImage, pushed: str, azurite: Azurite,
                  tmp_path: Path) -> Iterator[GatewayProcess]:
    copy_blobs(stack, image, azurite.put_blob)
    storage = {"backend": "azure", "azure": {
        "account_name": ACCOUNT, "container": CONTAINER, "endpoint_url": azurite.endpoint_url,
        "rootdirectory": f"/{ROOT}/"}}
    with fronting(stack, tmp_path / "gw", storage, {"AZURE_STORAGE_KEY": KEY}) as gateway:
        yield gateway


def test_skopeo_pull_downloads_every_layer_from_azure(
    stack: Stack, image: OciImage, pushed: str, azurite: Azurite,
    azure_gateway: GatewayProcess, tmp_path: Path,
) -> None:
    seen = len(azurite.process.log_text())
    pull(stack, azure_gateway, pushed, image, tmp_path)
    # Azurite's access log: each layer fetched with a SAS it accepted.
    served = re.findall(rf'"GET /{ACCOUNT}/{CONTAINER}/{ROOT}/docker/registry/v2/blobs/'
                        r'sha256/[0-9a-f]{2}/([0-9a-f]{64})/data\?[^" ]*sig=[^" ]* '
                        r'HTTP/1.1" 20[06]', azurite.process.log_text()[seen:])
    assert {"sha256:" + hex_digest for hex_digest in served} == {b.digest for b in image.blobs}


@pytest.fixture
def gcs_gateway(stack: Stack, image: OciImage, pushed: str, gcs_emulator: Emulator,
                gcs_account: ServiceAccount, tmp_path: Path) -> Iterator[GatewayProcess]:
    copy_blobs(stack, image, gcs_emulator.put_blob)
    storage = {"backend": "gcs", "gcs": {
        "bucket": "registry", "endpoint_url": gcs_emulator.endpoint_url, "rootdirectory": ROOT}}
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(gcs_account.key_file)}
    with fronting(stack, tmp_path / "gw", storage, env) as gateway:
        yield gateway


def test_skopeo_pull_downloads_every_layer_from_gcs(
    stack: Stack, image: OciImage, pushed: str, gcs_account: ServiceAccount,
    gcs_gateway: GatewayProcess, tmp_path: Path,
) -> None:
    pull(stack, gcs_gateway, pushed, image, tmp_path)
    # The URLs skopeo followed are the gateway's cached ones: ask for them again and
    # check each signature as GCS would.
    token = stack.token(f"repository:{pushed}:pull", creds=PUSHER)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    for blob in image.blobs:
        request = urllib.request.Request(f"{gcs_gateway.url}/v2/{pushed}/blobs/{blob.digest}",
                                         headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=10)
        assert answer.value.code == 307
        location = answer.value.headers["Location"]
        verify(location, gcs_account.public_key)
        assert urlsplit(location).path.startswith(f"/registry/{ROOT}/docker/registry/v2/")
