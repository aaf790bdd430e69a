"""Every storage backend starts and answers from the image's own dependency set.

The test environment holds more than blobgate needs (moto, google-cloud-storage, …),
so a package the code imports but the project does not declare goes unnoticed there:
``storage.backend: gcs`` once needed ``packaging``, which only the test tools brought.
Here ``blobgate serve`` runs from the replayed image build (``runtime_image``:
``requirements/runtime.txt`` installed by hash, nothing else) in front of the real
registry, with each backend against the emulators the suite already runs, and a real
client pulls through it (or, for CloudFront, a blob GET is answered with a verified URL).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from blobgate.devstack.gateway import GatewayProcess
from blobgate.devstack.image import OciImage
from blobgate.devstack.stack import PUSHER, Stack, gateway_config
from e2e.test_object_stores import ROOT, blob_gets, copy_blobs, fronting, pull

from support import cloudfront
from support.azurite import ACCOUNT, CONTAINER, KEY, Azurite
from support.gcs import Emulator, ServiceAccount
from support.image import Image

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def python(runtime_image: Image) -> str:
    """The image's interpreter: only the locked runtime set is importable there."""
    return str(runtime_image.venv / "bin" / "python")


def test_the_image_environment_lacks_the_test_tools(python: str, runtime_image: Image) -> None:
    site = next(runtime_image.venv.glob("lib/python3*/site-packages"))
    assert (site / "blobgate").is_dir()
    for test_only in ("moto", "pytest", "google/cloud/storage", "mypy"):
        assert not (site / test_only).exists(), test_only


def test_s3(stack: Stack, image: OciImage, pushed: str, python: str, tmp_path: Path) -> None:
    storage = {"backend": "s3", "s3": gateway_config(stack)["storage"]["s3"]}
    with fronting(stack, tmp_path / "gw", storage, {}, python) as gateway:
        pull(stack, gateway, pushed, image, tmp_path)


def test_azure(stack: Stack, image: OciImage, pushed: str, azurite: Azurite, python: str,
               tmp_path: Path) -> None:
    copy_blobs(stack, image, azurite.put_blob)
    storage = {"backend": "azure", "azure": {
        "account_name": ACCOUNT, "container": CONTAINER, "endpoint_url": azurite.endpoint_url,
        "rootdirectory": f"/{ROOT}/"}}
    with fronting(stack, tmp_path / "gw", storage, {"AZURE_STORAGE_KEY": KEY}, python) as gw:
        pull(stack, gw, pushed, image, tmp_path)


def test_gcs(stack: Stack, image: OciImage, pushed: str, gcs_emulator: Emulator,
             gcs_account: ServiceAccount, python: str, tmp_path: Path) -> None:
    copy_blobs(stack, image, gcs_emulator.put_blob)
    storage = {"backend": "gcs", "gcs": {
        "bucket": "registry", "endpoint_url": gcs_emulator.endpoint_url, "rootdirectory": ROOT}}
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(gcs_account.key_file)}
    with fronting(stack, tmp_path / "gw", storage, env, python) as gateway:
        pull(stack, gateway, pushed, image, tmp_path)


def test_proxy(stack: Stack, image: OciImage, pushed: str, python: str, tmp_path: Path) -> None:
    storage = {"backend": "proxy", "proxy": {  # the stack's S3 is on loopback
        "redirect_hosts": [urlsplit(stack.s3.endpoint_url).netloc],
        "allow_private_redirects": True}}
    with fronting(stack, tmp_path / "gw", storage, {}, python) as gateway:
        gets = blob_gets(gateway, pushed, image, tmp_path)
        assert {(e["outcome"], e["status"]) for e in gets} == {("stream", 200)}


@pytest.fixture
def cdn_gateway(stack: Stack, python: str, tmp_path: Path
                ) -> Iterator[tuple[GatewayProcess, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "cdn.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    storage = {"backend": "s3", "s3": gateway_config(stack)["storage"]["s3"], "cdn": {
        "base_url": "https://cdn.example.com", "key_pair_id": "KEXAMPLE",
        "private_key_file": str(pem)}}
    with fronting(stack, tmp_path / "gw", storage, {}, python) as gateway:
        yield gateway, key


def test_cloudfront(stack: Stack, image: OciImage, pushed: str,
                    cdn_gateway: tuple[GatewayProcess, rsa.RSAPrivateKey]) -> None:
    gateway, key = cdn_gateway
    token = stack.token(f"repository:{pushed}:pull", creds=PUSHER)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    blob = image.blobs[0]
    request = urllib.request.Request(f"{gateway.url}/v2/{pushed}/blobs/{blob.digest}",
                                     headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.build_opener(NoRedirect).open(request, timeout=10)
    assert answer.value.code == 307
    resource, expires, signature, key_pair_id = cloudfront.split(answer.value.headers["Location"])
    assert resource.startswith("https://cdn.example.com/")
    assert resource.endswith(f"/{blob.digest.split(':')[1]}/data")
    assert key_pair_id == "KEXAMPLE"
    cloudfront.verify(key.public_key(), resource, expires, signature)
