"""Name and digest grammar, blob path matching and the storage layout."""

import pytest

from blobgate import reference
from blobgate.errors import DigestInvalid, NameInvalid
from blobgate.reference import (
    MAX_CACHED_TARGET,
    BlobRef,
    Digest,
    blob_path,
    parse_blob,
    parse_digest,
    parse_name,
    storage_key,
)

HEX = "a" * 64


@pytest.mark.parametrize(
    "name", ["library/alpine", "a", "a/b/c", "my-org/app_x.y", "a__b", "a--b/c.d", "x" * 255]
)
def test_valid_names(name: str) -> None:
    assert parse_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "library/Alpine", "a//b", "a/../b", "..", "a/./b", "/a", "a/", "a%2Fb",
     "a b", "-a", "a-", "a___b", "a..b", "x" * 256, "a/b\n"],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        parse_name(name)


def test_digests_of_each_algorithm() -> None:
    assert parse_digest(f"sha256:{HEX}") == Digest("sha256:" + HEX)
    assert parse_digest("sha384:" + "b" * 96).algorithm == "sha384"
    assert str(parse_digest("sha512:" + "c" * 128)) == "sha512:" + "c" * 128


@pytest.mark.parametrize(
    "text",
    [f"sha256:{HEX[:-1]}", f"sha256:{HEX}0", f"sha256:{HEX.upper()}", f"md5:{HEX[:32]}",
     f"sha256:{HEX}\n", f"SHA256:{HEX}", HEX, f"sha256:{HEX[:63]}g", "sha512:" + "c" * 64, ""],
)
def test_invalid_digests(text: str) -> None:
    with pytest.raises(DigestInvalid):
        parse_digest(text)


def test_blob_path_matching_uses_the_raw_path() -> None:
    assert blob_path(f"/v2/a/b/blobs/sha256:{HEX}") == BlobRef("a/b", Digest(f"sha256:{HEX}"))
    assert blob_path(f"/v2/a/blobs/sha256:{HEX}?x=1") == BlobRef("a", Digest(f"sha256:{HEX}"))
    sha384 = "sha384:" + "b" * 96
    assert blob_path(f"/v2/a/blobs/b/blobs/{sha384}") == ("a/blobs/b", sha384)
    assert blob_path("/v2/a/blobs/uploads/") is None
    assert blob_path("/v2/a/blobs/uploads/123") is None
    assert blob_path("/v2/a/manifests/latest") is None
    assert blob_path("/v2/") is None


@pytest.mark.parametrize(
    ("target", "error"),
    [("/v2/a%2Fb/blobs/sha256:" + HEX, NameInvalid), ("/v2/A/blobs/sha256:" + HEX, NameInvalid),
     (f"/v2/{'x' * 256}/blobs/sha256:{HEX}", NameInvalid), ("/v2/a/blobs/x", DigestInvalid),
     (f"/v2/a/blobs/sha256:{HEX}0", DigestInvalid), (f"/v2/a/blobs/sha512:{HEX}", DigestInvalid),
     (f"/v2/a/blobs/sha256:{HEX.upper()}?q", DigestInvalid)],
)
def test_blob_paths_with_bad_parts_are_errors(target: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        blob_path(target)


def test_percent_encoded_name_is_rejected_not_decoded() -> None:
    with pytest.raises(NameInvalid):
        parse_blob("a%2Fb", f"sha256:{HEX}")


@pytest.mark.parametrize(
    ("root", "prefix"), [("", ""), ("/", ""), ("/registry", "registry/"), ("a/b/", "a/b/")]
)
def test_storage_key_follows_distribution_layout(root: str, prefix: str) -> None:
    key = storage_key(root, Digest("sha256:" + HEX))
    assert key == f"{prefix}docker/registry/v2/blobs/sha256/aa/{HEX}/data"


def test_only_targets_a_valid_blob_path_fits_in_are_remembered() -> None:
    """Clients choose targets (8 KB of query each): the parse cache keeps short ones only."""
    remembered = reference._remembered_blob_path
    remembered.cache_clear()
    ref = BlobRef("a", Digest(f"sha256:{HEX}"))
    long_query = f"/v2/a/blobs/sha256:{HEX}?{'x' * 8000}"
    for i in range(50):
        assert blob_path(f"{long_query}{i}") == ref
        assert blob_path(f"/v2/{'b' * 8000}{i}/manifests/x") is None
    assert remembered.cache_info().currsize == 0
    assert blob_path(f"/v2/a/blobs/sha256:{HEX}") == ref
    assert blob_path(f"/v2/{'a' * 255}/blobs/sha512:{'f' * 128}") is not None
    assert remembered.cache_info().currsize == 2
    assert len(f"/v2/{'a' * 255}/blobs/sha512:{'f' * 128}") < MAX_CACHED_TARGET
