"""manifest_blobs: what the registry checked, or nothing (Go's side: test_manifest_go.py)."""

from __future__ import annotations

import json

import pytest

from blobgate.registry.manifests import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Refused,
    go_fold,
    manifest_blobs,
)

from support.manifest_forms import (
    DOCKER_LAYER,
    FOREIGN_LAYER,
    NONDISTRIBUTABLE,
    OCI_LAYER,
    Obj,
    descriptor,
    image,
    render,
)

C, L1, L2, F = (f"sha256:{c * 64}" for c in "c12f")
URL = ("urls", ["https://example.invalid/layer"])


def reason(body: bytes, kind: str = OCI_MANIFEST) -> str:
    with pytest.raises(Refused) as refused:
        manifest_blobs(body, kind, 100)
    return refused.value.reason


def test_config_and_layers_with_sizes_bounded_urls_and_subject_skipped() -> None:
    body = image(OCI_MANIFEST, C, [descriptor(L1), descriptor(L2), descriptor(F, OCI_LAYER, URL)],
                 ("subject", descriptor(f"sha256:{'5' * 64}")))
    assert manifest_blobs(body, OCI_MANIFEST, 10) == {C: 1, L1: 1, L2: 1}
    assert list(manifest_blobs(body, OCI_MANIFEST, 2)) == [C, L1]
    odd = image(OCI_MANIFEST, C, [Obj((("digest", L1), ("size", -1))), Obj((("digest", L2),))])
    assert manifest_blobs(odd, OCI_MANIFEST, 10) == {C: 1, L1: None, L2: None}


def test_foreign_layers_only_with_urls() -> None:
    foreign = descriptor(F, FOREIGN_LAYER, URL)
    body = image(DOCKER_MANIFEST, C, [descriptor(L1, DOCKER_LAYER), foreign])
    assert list(manifest_blobs(body, DOCKER_MANIFEST, 10)) == [C, L1]
    unchecked = image(DOCKER_MANIFEST, C, [descriptor(F, FOREIGN_LAYER)])
    assert reason(unchecked, DOCKER_MANIFEST) == "malformed"  # the registry refuses it
    # Without urls the registry checks a non-distributable OCI layer like any other.
    body = image(OCI_MANIFEST, C, [descriptor(L1, NONDISTRIBUTABLE)])
    assert list(manifest_blobs(body, OCI_MANIFEST, 10)) == [C, L1]


@pytest.mark.parametrize("key", ["Layers", "LAYERS", "layer\u017f", "lAyErS"])
def test_a_key_folding_onto_a_field_is_refused(key: str) -> None:
    body = render(Obj((("schemaVersion", 2), ("config", descriptor(C)),
                       (key, [descriptor(L1)]))))
    assert reason(body.encode()) == "folded_key"


@pytest.mark.parametrize("keys", [("layers", "layers"), ("note", "NOTE"), ("\u017fize", "size")])
def test_keys_equal_under_folding_are_refused_anywhere(keys: tuple[str, str]) -> None:
    layer = Obj((("digest", L1), *((k, 1) for k in keys)))
    expected = "duplicate_key" if go_fold(keys[0]) == keys[0] else "folded_key"
    assert reason(image(OCI_MANIFEST, C, [layer])) == expected


def test_go_fold_is_ascii_case_plus_long_s_and_kelvin() -> None:
    assert go_fold("DIGE\u017fT") == "digest" == go_fold("dige\u017ft")
    assert go_fold("\u212aey") == "key"
    assert go_fold("İı") == "İı"  # Turkish i's fold onto nothing ASCII in Go


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b"null", "{}".encode("utf-16"), b'{"schemaVersion": 2, "x": "\xff"}',
    b'{"schemaVersion": 2, "layers": [{"digest": "sha256:1", "size": NaN}]}',
    b"[" * 100_000 + b"]" * 100_000,
])
def test_what_is_not_a_json_object_in_utf8_teaches_nothing(body: bytes) -> None:
    assert reason(body) == "malformed"


@pytest.mark.parametrize(("field", "value"), [
    ("size", 1.0), ("size", "1"), ("size", 1 << 63), ("digest", 5), ("urls", "x"),
    ("annotations", {"a": 1}), ("data", "not base64!"), ("platform", []),
])
def test_a_value_go_cannot_decode_into_its_field_teaches_nothing(field: str, value: object
                                                                  ) -> None:
    layer = dict(descriptor(L1).pairs) | {field: value}
    assert reason(image(OCI_MANIFEST, C, [Obj(tuple(layer.items()))])) == "malformed"


def test_invalid_or_missing_reference_digests_teach_nothing() -> None:
    assert reason(image(OCI_MANIFEST, C, [descriptor("sha256:abc")])) == "malformed"
    assert reason(image(OCI_MANIFEST, None, [descriptor(L1)])) == "malformed"
    assert reason(image(OCI_MANIFEST, C, [None])) == "malformed"


@pytest.mark.parametrize(("kind", "doc"), [
    (OCI_MANIFEST, {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST}),
    (OCI_MANIFEST, {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}),
    (OCI_MANIFEST, {"schemaVersion": 2, "manifests": []}),
    (DOCKER_MANIFEST, {"schemaVersion": 2}),
    (DOCKER_MANIFEST, {"schemaVersion": 2, "mediaType": OCI_MANIFEST}),
    (OCI_MANIFEST, {"schemaVersion": 1, "mediaType": OCI_MANIFEST}),
])
def test_a_body_that_contradicts_its_content_type_teaches_nothing(kind: str, doc: dict[str, object]
                                                                   ) -> None:
    doc |= {"config": {"digest": C}, "layers": [{"digest": L1}]}
    assert reason(json.dumps(doc).encode(), kind) == "kind_mismatch"


def test_an_oci_manifest_may_omit_its_media_type() -> None:
    body = render(Obj((("schemaVersion", 2), ("config", descriptor(C)),
                       ("layers", [descriptor(L1)]), ("manifests", None))))
    assert list(manifest_blobs(body.encode(), OCI_MANIFEST, 10)) == [C, L1]
