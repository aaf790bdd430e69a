"""The machinery behind ``config``: typed construction of dataclass trees from plain data.

Kept apart from the section definitions so that ``config.py`` reads as the list of
settings it is. Supported field types: ``str``, ``int``, ``float``, ``bool``,
``str | None``, ``tuple[str, ...]``, nested dataclasses and ``tuple[<dataclass>, ...]``
(lists of objects, settable only in the file).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from blobgate.errors import ConfigError

T = TypeVar("T")

ENV_PREFIX = "BLOBGATE_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def check(ok: bool, key: str, why: str) -> None:
    """Raise ``ConfigError(key, why)`` unless ``ok``."""
    if not ok:
        raise ConfigError(key, why)


def check_url(url: str, key: str) -> None:
    """``url`` must be an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    check(parts.scheme in ("http", "https") and bool(parts.hostname), key,
          f"must be an http:// or https:// URL, got {url!r}")


def _fields(cls: type) -> Iterator[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f.name, hints[f.name]


def _describe(hint: Any) -> str:
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if typing.get_origin(hint) is tuple:
        return "a list of strings"
    return "a string" if hint is str else "a string or null"


def _convert(hint: Any, value: Any) -> Any:
    """``value`` as ``hint``, or raise ``TypeError``."""
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif typing.get_origin(hint) is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:  # str | None
        ok = value is None or isinstance(value, str)
    if not ok:
        raise TypeError(_describe(hint))
    return value


def build(cls: type[T], raw: Any, prefix: str) -> T:
    """An instance of dataclass ``cls`` from mapping ``raw``; errors name ``prefix.key``."""
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip("."), "must be a mapping")
    known = dict(_fields(cls))
    for key in raw:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", f"unknown setting; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        hint = known[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(typing.cast(type, hint), value, f"{prefix}{name}.")
            continue
        item = _item_dataclass(hint)
        if item is not None:
            if not isinstance(value, list):
                raise ConfigError(f"{prefix}{name}", f"must be a list, got {value!r}")
            entries = enumerate(value)
            kwargs[name] = tuple(build(item, v, f"{prefix}{name}[{i}].") for i, v in entries)
            continue
        try:
            kwargs[name] = _convert(hint, value)
        except TypeError as exc:
            raise ConfigError(f"{prefix}{name}", f"must be {exc}, got {value!r}") from None
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc.key}", exc.why) from None


def _item_dataclass(hint: Any) -> type | None:
    """The element type of a ``tuple[SomeDataclass, ...]`` field, else ``None``."""
    if typing.get_origin(hint) is not tuple:
        return None
    item = typing.get_args(hint)[0]
    return typing.cast(type, item) if dataclasses.is_dataclass(item) else None


def _leaves(cls: type, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Settings reachable by environment variable (lists of objects are file-only)."""
    for name, hint in _fields(cls):
        if dataclasses.is_dataclass(hint):
            yield from _leaves(typing.cast(type, hint), (*path, name))
        elif _item_dataclass(hint) is None:
            yield (*path, name), hint


def _from_env(hint: Any, text: str) -> Any:
    if hint is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise TypeError(_describe(hint))
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise TypeError(_describe(hint)) from None
    if typing.get_origin(hint) is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(hint, types.UnionType) and text in ("", "null"):
        return None
    return text


def apply_environment(cls: type, raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Overlay ``BLOBGATE_<SECTION>_<KEY>`` variables onto ``raw`` in place."""
    leaves = {ENV_PREFIX + "_".join(p).upper(): (p, h) for p, h in _leaves(cls)}
    sections = {ENV_PREFIX + name.upper() + "_" for name, _ in _fields(cls)}
    for var, text in environ.items():
        if var not in leaves:
            if any(var.startswith(s) for s in sections):
                raise ConfigError(var, "unknown setting in the environment")
            continue
        path, hint = leaves[var]
        try:
            value = _from_env(hint, text)
        except TypeError as exc:
            raise ConfigError(".".join(path), f"{var} must be {exc}, got {text!r}") from None
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(part, "must be a mapping")
            node = child
        node[path[-1]] = value
