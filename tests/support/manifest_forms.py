"""Image manifests written key by key, to spell keys as an attacker would.

``Obj`` keeps an object's keys in order, duplicates and all, which a ``dict`` cannot.
``VARIANTS`` are the confused manifests known to get blobs past the registry's checks
when read with exact-case keys: the registry (Go) reads config ``C`` and layer ``X``,
an exact-case reader also or instead sees ``S``. ``manifests()`` draws manifests of
both image kinds with keys in every case and fold spelling, duplicated before and after,
``urls`` and foreign layers, wrong types and unknown keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from blobgate.registry.manifests import DOCKER_MANIFEST, FOREIGN_LAYER, OCI_MANIFEST

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OTHER = "application/vnd.example.data"
LONG_S, KELVIN = "\u017f", "\u212a"


@dataclass(frozen=True)
class Obj:
    """A JSON object as written: its (key, value) pairs in order."""

    pairs: tuple[tuple[str, Any], ...]


def render(value: Any) -> str:
    """``value`` as JSON text, ``Obj`` keys exactly as given."""
    if isinstance(value, Obj):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{render(v)}"
                              for k, v in value.pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(render, value)) + "]"
    return json.dumps(value)


def descriptor(digest: str, media_type: str = OCI_LAYER, *extra: tuple[str, Any]) -> Obj:
    return Obj((("mediaType", media_type), ("digest", digest), ("size", 1), *extra))


def image(kind: str, config: Any, layers: Any, *extra: tuple[str, Any]) -> bytes:
    """A manifest of ``kind`` with the given config and layers values, then ``extra``."""
    config_type = OCI_CONFIG if kind == OCI_MANIFEST else DOCKER_CONFIG
    if isinstance(config, str):
        config = descriptor(config, config_type)
    return render(Obj((("schemaVersion", 2), ("mediaType", kind), ("config", config),
                       ("layers", layers), *extra))).encode()


Variant = Callable[[str, str, str], tuple[str, bytes]]


def _layer_keys(kind: str, second: str) -> Variant:
    return lambda c, s, x: (kind, image(kind, c, [descriptor(s)], (second, [descriptor(x)])))


def _digest_keys(second: str) -> Variant:
    return lambda c, s, x: (OCI_MANIFEST, image(
        OCI_MANIFEST, c, [descriptor(s, OCI_LAYER, (second, x))]))


def _config_keys(c: str, s: str, x: str) -> tuple[str, bytes]:
    return DOCKER_MANIFEST, image(DOCKER_MANIFEST, s, [descriptor(x, DOCKER_LAYER)],
                                  ("CONFIG", descriptor(c, DOCKER_CONFIG)))


def _foreign_urls(spelling: str) -> Variant:
    """S with ``urls`` only Go sees: distribution 2.8 checks no descriptor with urls, and
    validates the urls only of layer media types (by default it allows none)."""
    return lambda c, s, x: (OCI_MANIFEST, image(OCI_MANIFEST, c, [
        descriptor(x), descriptor(s, OTHER, (spelling, ["https://example.invalid/l"]))]))


VARIANTS: dict[str, Variant] = {
    "layers+Layers": _layer_keys(DOCKER_MANIFEST, "Layers"),
    "layers+LAYERS": _layer_keys(OCI_MANIFEST, "LAYERS"),
    "layers+layer\u017f": _layer_keys(OCI_MANIFEST, "layer" + LONG_S),
    "digest+dige\u017ft": _digest_keys("dige" + LONG_S + "t"),
    "digest+Digest": _digest_keys("Digest"),
    "config+CONFIG": _config_keys,
    "urls as URLS": _foreign_urls("URLS"),
    "urls as url\u017f": _foreign_urls("url" + LONG_S),
}

DIGESTS = tuple(f"sha256:{c * 64}" for c in "0123456")
MEDIA_TYPES = (OCI_LAYER, OCI_LAYER, DOCKER_LAYER, DOCKER_LAYER, NONDISTRIBUTABLE, FOREIGN_LAYER,
               OCI_CONFIG, OTHER, "")
URLS = ([], ["https://example.invalid/layer"], ["http://a.example/x", "https://b.example/y"])


@st.composite
def spelling(draw: st.DrawFn, name: str, honest: bool) -> str:
    """``name``, or (unless ``honest``) any of its case and fold variants."""
    if honest or draw(st.integers(0, 2)) == 0:
        return name
    variants = [[ch, ch.swapcase()] + ([LONG_S] if ch in "sS" else [])
                + ([KELVIN] if ch in "kK" else []) for ch in name]
    return "".join(draw(st.sampled_from(options)) for options in variants)


@st.composite
def fields(draw: st.DrawFn, values: dict[str, st.SearchStrategy[Any]], required: set[str],
           honest: bool) -> Obj:
    """An object with some of ``values``' fields (all of ``required``) in any order;
    unless ``honest``, keys spelled any way, repeated before and after, wrong types
    and unknown keys among them."""
    honest = honest or draw(st.booleans())  # confusion in some objects, not all
    pairs: list[tuple[str, Any]] = []
    for name, value in values.items():
        if name in required or draw(st.booleans()):
            pairs.append((draw(spelling(name, honest)), draw(value)))
        if not honest and draw(st.integers(0, 3)) == 0:
            wrong = st.sampled_from(["7", 1.5, None, [], {}])
            other = draw(wrong if draw(st.integers(0, 3)) == 0 else value)
            pairs.append((draw(spelling(name, False)), other))
    if not honest and draw(st.booleans()):
        pairs.append((draw(st.sampled_from(["note", "Note", "x-layers"])), 1))
    return Obj(tuple(draw(st.permutations(pairs))))


def descriptors(honest: bool, digests: tuple[str, ...]) -> st.SearchStrategy[Obj]:
    platform = fields({"architecture": st.just("amd64"), "os": st.just("linux")}, set(), honest)
    return fields({
        "mediaType": st.sampled_from(MEDIA_TYPES),
        "digest": st.sampled_from(digests),
        "size": st.integers(-1, 1 << 20),
        "urls": st.sampled_from(URLS),
        "annotations": st.just(Obj((("org.example.a", "1"),))),
        "platform": platform,
    }, {"digest"}, honest)


@st.composite
def manifests(draw: st.DrawFn, honest: bool = False, digests: tuple[str, ...] = DIGESTS
              ) -> tuple[str, bytes]:
    """A (Content-Type, body) naming ``digests``; see the module docstring."""
    kind = draw(st.sampled_from([DOCKER_MANIFEST, OCI_MANIFEST]))
    d = descriptors(honest, digests)
    values = {
        "schemaVersion": st.sampled_from([2] * 7 + [1]),
        "mediaType": st.sampled_from([kind] * 7 + [OCI_MANIFEST, DOCKER_MANIFEST]),
        "config": d,
        "layers": st.lists(d, max_size=4),
        "subject": d,
        "annotations": st.just(Obj((("org.example.b", "2"),))),
    }
    if kind == OCI_MANIFEST:
        values["manifests"] = st.sampled_from([None] * 3 + [[]])
    required = {"schemaVersion", "mediaType", "config", "layers"}
    return kind, render(draw(fields(values, required, honest))).encode()


@st.composite
def shadowed(draw: st.DrawFn, c: str, s: str, x: str) -> tuple[str, bytes]:
    """A manifest writing one field (config, layers, a layer's digest or urls) twice: with
    its exact name, naming ``s`` or checking it, and in another spelling Go also reads,
    naming ``c``/``x`` or leaving ``s`` unchecked, in either order (Go reads the last)."""
    kind = draw(st.sampled_from([DOCKER_MANIFEST, OCI_MANIFEST]))
    name = draw(st.sampled_from(["config", "layers", "digest", "urls"]))
    other = draw(spelling(name, False))
    other = other if other != name else name.upper()
    folded_first = draw(st.booleans())

    def twice(exact: Any, folded: Any) -> tuple[tuple[str, Any], ...]:
        pairs = ((name, exact), (other, folded))
        return pairs[::-1] if folded_first else pairs

    layer_type = DOCKER_LAYER if kind == DOCKER_MANIFEST else OCI_LAYER
    config_type = DOCKER_CONFIG if kind == DOCKER_MANIFEST else OCI_CONFIG
    layers: list[Obj] = [descriptor(x, layer_type)]
    top: tuple[tuple[str, Any], ...] = (("config", descriptor(c, config_type)),
                                        ("layers", layers))
    if name == "config":
        top = (*twice(descriptor(s, config_type), descriptor(c, config_type)),
               ("layers", layers))
    elif name == "layers":
        top = (("config", descriptor(c, config_type)),
               *twice([descriptor(s, layer_type)], layers))
    elif name == "digest":
        layers.append(Obj((("mediaType", layer_type), *twice(s, x), ("size", 1))))
    else:
        layers.append(Obj((("mediaType", OTHER), ("digest", s),
                           *twice([], ["https://example.invalid/l"]))))
    return kind, render(Obj((("schemaVersion", 2), ("mediaType", kind), *top))).encode()
