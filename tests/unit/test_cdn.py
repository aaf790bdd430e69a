"""CloudFront canned-policy signing, key loading and rotation, and the CIDR bypass."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.signers import CloudFrontSigner as BotocoreCloudFrontSigner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from blobgate.backends.cloudfront import (
    CDNKeyError,
    CloudFrontSigner,
    KeyStore,
    load_private_key,
)

from support.cloudfront import split, verify

BASE = "https://cdn.example.com/registry/"
KEY_ID = "K2JCJMDEHXQW5F"
NOW = 1_700_000_000.0
BLOB = "docker/registry/v2/blobs/sha256/ab/ab" + "0" * 62 + "/data"


def clock() -> float:
    return NOW


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt: str = "pkcs8") -> bytes:
    formats = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
    }
    return key.private_bytes(serialization.Encoding.PEM, formats[fmt], serialization.NoEncryption())


def test_signed_url_verifies_with_the_public_key(key: rsa.RSAPrivateKey) -> None:
    url = CloudFrontSigner(BASE, KEY_ID, key, clock).sign(BLOB, NOW + 600)
    resource, expires, signature, key_id = split(url)
    assert url.startswith(resource + "?Expires=")
    assert resource == "https://cdn.example.com/registry/" + BLOB
    assert (expires, key_id) == (int(NOW) + 600, KEY_ID)
    verify(key.public_key(), resource, expires, signature)


@pytest.mark.parametrize(
    ("resource_edit", "expiry_delta"),
    [
        (lambda r: r.replace("/data", "/date"), 0),
        (lambda r: r.replace("https://", "http://"), 0),
        (lambda r: r.replace("cdn.example", "cdn.exampl3"), 0),
        (lambda r: r + "/", 0),
        (lambda r: r, 1),
        (lambda r: r, -1),
    ],
)
def test_any_change_to_resource_or_expiry_breaks_the_signature(
    key: rsa.RSAPrivateKey, resource_edit: Callable[[str], str], expiry_delta: int
) -> None:
    resource, expires, signature, _ = split(
        CloudFrontSigner(BASE, KEY_ID, key, clock).sign(BLOB, NOW + 600)
    )
    verify(key.public_key(), resource, expires, signature)  # the untouched one is fine
    with pytest.raises(InvalidSignature):
        verify(key.public_key(), resource_edit(resource), expires + expiry_delta, signature)


def test_url_is_byte_identical_to_botocores_cloudfront_signer(key: rsa.RSAPrivateKey) -> None:
    ours = CloudFrontSigner(BASE, KEY_ID, key, clock).sign(BLOB, NOW + 900)
    aws = BotocoreCloudFrontSigner(
        KEY_ID,
        lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA1()),  # noqa: S303
    ).generate_presigned_url(
        "https://cdn.example.com/registry/" + BLOB,
        date_less_than=datetime.fromtimestamp(NOW + 900, UTC),
    )
    assert ours == aws


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("/" + BLOB, BLOB),
        ("a b/c%2F?x=1#frag", "a%20b/c%252F%3Fx%3D1%23frag"),
        ('q"uote\\é*', "q%22uote%5C%C3%A9%2A"),
        ("sha256:abc/x.y_z-~", "sha256:abc/x.y_z-~"),
    ],
)
def test_path_is_encoded_identically_in_url_and_policy(
    key: rsa.RSAPrivateKey, path: str, encoded: str
) -> None:
    url = CloudFrontSigner(BASE, KEY_ID, key, clock).sign(path, NOW + 60)
    resource, expires, signature, _ = split(url)
    assert resource == "https://cdn.example.com/registry/" + encoded
    verify(key.public_key(), resource, expires, signature)


def test_expiry_is_truncated_and_must_be_in_the_future(key: rsa.RSAPrivateKey) -> None:
    signer = CloudFrontSigner(BASE, KEY_ID, key, clock)
    assert split(signer.sign(BLOB, NOW + 10.9))[1] == int(NOW) + 10
    for past in (NOW, NOW - 1, NOW + 0.5):
        with pytest.raises(ValueError, match="not in the future"):
            signer.sign(BLOB, past)


@pytest.mark.parametrize(
    "base",
    [
        "ftp://cdn.example.com",
        "cdn.example.com",
        "https://cdn/?a=b",
        "https://cdn/#x",
        "https://cdn/a b",
        "https://cdné.example.com",
    ],
)
def test_unusable_base_urls_are_refused(key: rsa.RSAPrivateKey, base: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        CloudFrontSigner(base, KEY_ID, key, clock)


def test_empty_key_pair_id_is_refused(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="key pair ID"):
        CloudFrontSigner(BASE, "", key, clock)


@pytest.mark.parametrize("fmt", ["pkcs1", "pkcs8"])
def test_load_private_key_reads_pkcs1_and_pkcs8(
    tmp_path: Path, key: rsa.RSAPrivateKey, fmt: str
) -> None:
    path = tmp_path / "cf.pem"
    path.write_bytes(pem(key, fmt))
    assert load_private_key(path).private_numbers() == key.private_numbers()


def test_load_private_key_errors_name_the_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    cases = {
        "missing.pem": None,
        "garbage.pem": b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "text.pem": b"hello\n",
        "ec.pem": pem(ec.generate_private_key(ec.SECP256R1())),
        "public.pem": key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "encrypted.pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CDNKeyError, match=str(path)) as info:
            load_private_key(path)
        assert isinstance(info.value, ValueError)
        if name == "ec.pem":
            assert "RSA" in str(info.value)


def test_key_rotation_swaps_signer_and_bad_files_keep_the_old_one(
    tmp_path: Path, key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "cf.pem"
    path.write_bytes(pem(key, "pkcs1"))
    store = KeyStore(path, BASE, KEY_ID, clock)
    verify(key.public_key(), *split(store.sign(BLOB, NOW + 60))[:3])

    path.write_bytes(pem(other_key))
    store.reload(key_pair_id="KNEWKEYPAIR")
    resource, expires, signature, key_id = split(store.sign(BLOB, NOW + 60))
    assert key_id == "KNEWKEYPAIR"
    verify(other_key.public_key(), resource, expires, signature)
    with pytest.raises(InvalidSignature):
        verify(key.public_key(), resource, expires, signature)

    in_force = store.signer
    for bad in (b"not a key at all\n", pem(ec.generate_private_key(ec.SECP256R1()))):
        path.write_bytes(bad)
        with pytest.raises(CDNKeyError, match=str(path)):
            store.reload()
        assert store.signer is in_force
    path.unlink()
    with pytest.raises(CDNKeyError, match="cannot read"):
        store.reload()
    assert store.signer is in_force
    resource, expires, signature, key_id = split(store.sign(BLOB, NOW + 60))
    assert key_id == "KNEWKEYPAIR"
    verify(other_key.public_key(), resource, expires, signature)

    path.write_bytes(pem(key))
    store.reload()  # no new ID given: the current one is kept
    resource, expires, signature, key_id = split(store.sign(BLOB, NOW + 60))
    assert key_id == "KNEWKEYPAIR"
    verify(key.public_key(), resource, expires, signature)


def test_key_store_refuses_to_start_without_a_usable_key(tmp_path: Path) -> None:
    with pytest.raises(CDNKeyError, match="cannot read"):
        KeyStore(tmp_path / "absent.pem", BASE, KEY_ID, clock)
