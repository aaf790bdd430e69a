"""``python -m bench signing``: the cold-path cost of one signed URL, per backend, in-process.

Each backend's own ``presign_blob`` (what ``URLCache`` calls on a miss) signs ``count``
URLs for distinct digests on one event loop; no network is involved: S3 after botocore
learnt the URL shape (``sigv4.QuerySigner``), Azure with an account key and with a user
delegation key already fetched, GCS with a service-account key held in the process,
CloudFront with its RSA key. botocore's own presigner is measured too, for reference.
Results are µs per URL and the ratio to S3's local SigV4 signer measured in the same run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from aiobotocore.session import AioSession
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import UserDelegationKey
from azure.storage.blob.aio import BlobServiceClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from blobgate.backends.azure import AzureStorage, DelegationKeys
from blobgate.backends.cloudfront import CDNPresigner, KeyStore
from blobgate.backends.contract import Presigner
from blobgate.backends.gcs import open_gcs
from blobgate.backends.s3 import open_s3
from blobgate.config import AzureConfig, GCSConfig, S3Config
from blobgate.reference import Digest

Sign = Callable[[Digest], Awaitable[object]]


def _digests(count: int) -> list[Digest]:
    return [Digest("sha256:" + os.urandom(32).hex()) for _ in range(count)]


async def _time(sign: Sign, count: int) -> float:
    """µs per call of ``sign`` over ``count`` distinct digests (after a warm-up call)."""
    await sign(Digest("sha256:" + "0" * 64))
    digests = _digests(count)
    started = time.perf_counter()
    for digest in digests:
        await sign(digest)
    return (time.perf_counter() - started) / count * 1e6


def _rsa_pem() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key, pem


async def _measure(count: int, workdir: Path) -> dict[str, float]:
    results: dict[str, float] = {}
    session = AioSession()
    session.set_credentials("AKIAEXAMPLE", "secret-key-example")
    async with open_s3(S3Config(bucket="registry", region="eu-west-1", path_style=False),
                       session) as s3:
        results["s3 (local SigV4, blobgate)"] = await _time(s3.presign_blob, count)
        client = s3._presigner

        async def botocore(digest: Digest) -> object:
            return await client.generate_presigned_url(
                "get_object", Params={"Bucket": "registry", "Key": digest.hex}, ExpiresIn=1200)

        results["s3 (botocore's presigner, reference)"] = await _time(botocore, count)
    key = base64.b64encode(os.urandom(64)).decode()
    cfg = AzureConfig(account_name="harborstore", container="registry")
    async with BlobServiceClient("https://harborstore.blob.core.windows.net",
                                 credential=AzureNamedKeyCredential("harborstore", key)) as service:
        results["azure (account-key SAS)"] = await _time(
            AzureStorage(cfg, service, key, None).presign_blob, count)
        keys = DelegationKeys(service)
        delegation = UserDelegationKey()
        now = datetime.now(UTC)
        delegation.signed_oid, delegation.signed_tid = "oid", "tid"
        delegation.signed_start = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        delegation.signed_expiry = (now + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        delegation.signed_service, delegation.signed_version = "b", "2025-01-05"
        delegation.value = key
        keys._key, keys.expires_at = delegation, time.time() + 7 * 86400  # as if fetched
        results["azure (user delegation SAS, key cached)"] = await _time(
            AzureStorage(cfg, service, None, keys).presign_blob, count)
    _, pem = _rsa_pem()
    credentials = service_account.Credentials.from_service_account_info({
        "type": "service_account", "client_email": "blobgate@example.iam.gserviceaccount.com",
        "private_key": pem, "private_key_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    })
    async with open_gcs(GCSConfig(bucket="registry"), credentials=credentials) as gcs:
        results["gcs (V4, service-account key in process)"] = await _time(
            gcs.presign_blob, count)
    pem_path = workdir / "cloudfront.pem"
    pem_path.write_text(pem)
    cdn: Presigner = CDNPresigner(KeyStore(pem_path, "https://d111111abcdef8.cloudfront.net",
                                           "K2JCJMDEHXQW5F"), "", 1200)
    results["cloudfront (canned policy, RSA-SHA1)"] = await _time(cdn.presign_blob, count)
    return results


def run(count: int) -> int:
    """Measure and print a markdown table."""
    with TemporaryDirectory(prefix="blobgate-signing-") as tmp:
        results = asyncio.run(_measure(count, Path(tmp)))
    base = results["s3 (local SigV4, blobgate)"]
    print(f"| backend | µs per URL ({count} URLs) | ratio to S3 local SigV4 |")
    print("|---|---|---|")
    for name, micros in results.items():
        print(f"| {name} | {micros:.1f} | {micros / base:.1f} |")
    return 0
