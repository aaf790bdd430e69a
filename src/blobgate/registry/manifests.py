"""Reading an image manifest as the registry reads it, or not at all.

The registry decodes a manifest with Go's ``encoding/json``: an object key matches a
struct field exactly, else case-insensitively under Unicode simple folding (long s
U+017F is ``s``, the Kelvin sign U+212A is ``k``), the last of several matching keys
wins and unknown keys are ignored. It verifies at push time only the blobs of *its* reading.
Python's ``json`` keeps exact-case keys, so ``{"layers": [S], "Layers": [X]}`` is
``[S]`` here and ``[X]`` to the registry, which checked only ``X``.

``manifest_blobs`` therefore refuses a whole document in which any object has two keys
equal under Go's folding (exact duplicates included) or a key that folds to a field
name of distribution's manifest, descriptor or platform types without being exactly
it. Without those, Go's reading of every known field is the exact-case reading. It also
refuses what the registry would not have stored (a type Go cannot decode into the
field, a ``schemaVersion`` other than 2, a ``mediaType`` that contradicts the
``Content-Type`` the registry served it with, an OCI manifest carrying ``manifests``, a
reference whose digest is invalid, a foreign Docker layer without ``urls``) and learns
only references the registry checked: config and layers without ``urls``
(distribution 2.8 checks no descriptor with urls, whatever its media type). ``subject``
is never checked, so never learnt. ``tests/unit/test_manifest_go.py`` compares this
reading with Go's.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from typing import Any

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}")

# Go folds ASCII letters by case and, through unicode.SimpleFold orbits, exactly two
# other runes onto ASCII letters (checked against Go by the test).
GO_FOLD = str.maketrans({**{chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)},
                         "\u212a": "k", "\u017f": "s"})

Check = Callable[[Any], bool]


class Refused(Exception):
    """Nothing may be learnt from this document; ``reason`` is a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def go_fold(key: str) -> str:
    """``key`` as Go's ``encoding/json`` compares it with an (ASCII) field name."""
    return key.translate(GO_FOLD)


def _string(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _int64(v: Any) -> bool:
    return v is None or (type(v) is int and -(1 << 63) <= v < 1 << 63)


def _strings(v: Any) -> bool:
    return v is None or (isinstance(v, list) and all(map(_string, v)))


def _string_map(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and all(map(_string, v.values())))


def _base64(v: Any) -> bool:
    if v is None:
        return True
    try:
        base64.b64decode(v, validate=True)
    except (TypeError, ValueError, binascii.Error):
        return False
    return True


def _struct(fields: dict[str, Check]) -> Check:
    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return v is None
        for key, value in v.items():
            check_field = fields.get(key)
            if check_field is not None and not check_field(value):
                return False
        return True
    return check


def _list_of(item: Check) -> Check:
    return lambda v: v is None or (isinstance(v, list) and all(map(item, v)))


# The field types of distribution's (and the image spec's) Go structs.
PLATFORM: dict[str, Check] = {
    "architecture": _string, "os": _string, "os.version": _string, "os.features": _strings,
    "variant": _string, "features": _strings,
}
DESCRIPTOR: dict[str, Check] = {
    "mediaType": _string, "artifactType": _string, "digest": _string, "size": _int64,
    "urls": _strings, "annotations": _string_map, "data": _base64,
    "platform": _struct(PLATFORM),
}
_descriptor = _struct(DESCRIPTOR)
DOCKER_FIELDS: dict[str, Check] = {
    "schemaVersion": _int64, "mediaType": _string, "config": _descriptor,
    "layers": _list_of(_descriptor),
}
SHAPES: dict[str, Check] = {
    DOCKER_MANIFEST: _struct(DOCKER_FIELDS),
    OCI_MANIFEST: _struct({**DOCKER_FIELDS, "annotations": _string_map}),
}
# Every field name of distribution's schema2/OCI manifest, index, descriptor and
# platform types: a key folding onto one of these must be exactly it.
KNOWN_FIELDS = frozenset({*DOCKER_FIELDS, *DESCRIPTOR, *PLATFORM, "annotations",
                          "manifests", "subject"})
_FOLDED = {go_fold(name): name for name in KNOWN_FIELDS}


@functools.lru_cache(maxsize=4096)  # manifests repeat a few keys many times
def _key(key: str) -> str | None:
    """``key`` folded; ``None`` when it folds onto a known field name it is not."""
    folded = go_fold(key)
    return folded if _FOLDED.get(folded, key) == key else None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """One JSON object, refused unless Go would read its known fields as written."""
    folded = [_key(key) for key, _ in pairs]
    if None in folded:
        raise Refused("folded_key")
    if len(set(folded)) != len(folded):
        raise Refused("duplicate_key")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise Refused("malformed")  # NaN and Infinity are not JSON to Go


def _document(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_object,
                          parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused("malformed") from None


def _checked(kind: str, d: dict[str, Any]) -> bool:
    """Whether the registry made sure the blob ``d`` names is in the repository."""
    if d.get("urls"):
        return False
    if kind == DOCKER_MANIFEST and d.get("mediaType") == FOREIGN_LAYER:
        raise Refused("malformed")  # a foreign layer without urls is refused at push
    return True


def manifest_blobs(body: bytes, kind: str, max_blobs: int) -> dict[str, int | None]:
    """The config and layer digests the registry checked in the image manifest ``body``
    it served as ``kind`` (its ``Content-Type``), with their declared sizes (a negative
    one as ``None``), at most ``max_blobs``; raises ``Refused`` when Go's reading of
    ``body`` might differ from this one or the registry would not have stored it."""
    doc = _document(body)
    if not isinstance(doc, dict) or not SHAPES[kind](doc):
        raise Refused("malformed")
    # The registry picks a stored manifest's kind from its own mediaType (none: an OCI
    # manifest unless it has ``manifests``); the Content-Type it serves must agree.
    media_type = doc.get("mediaType") or (None if kind == DOCKER_MANIFEST else kind)
    if doc.get("schemaVersion") != 2 or media_type != kind:
        raise Refused("kind_mismatch")
    if kind == OCI_MANIFEST and doc.get("manifests") is not None:
        raise Refused("kind_mismatch")
    found: dict[str, int | None] = {}
    for d in [doc.get("config"), *(doc.get("layers") or [])]:
        if d is None or not DIGEST.fullmatch(d.get("digest") or ""):
            raise Refused("malformed")  # the registry refuses an invalid reference
        if _checked(kind, d):
            size = d.get("size")
            found.setdefault(d["digest"], size if size is not None and size >= 0 else None)
    return dict(list(found.items())[:max_blobs])
