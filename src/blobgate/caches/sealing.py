"""Signatures on everything blobgate keeps in, and sends through, a shared Redis.

Redis is trusted to be there (or not), never with the integrity of what it holds: it is
often shared with the registry itself, without a password, and a database index is no
boundary (pub/sub spans them all). So every value written and every invalidation
published carries an HMAC-SHA256 over where it lives (the full key, or the channel) and
what it says, keyed with a secret every replica reads from a file (a mounted Secret).
A value that lacks a valid MAC, or whose MAC was made for another key, is not believed.

Rotation without downtime: the new key goes into ``mac_key_file`` and the old one into
``mac_previous_key_file``; the old key then still verifies (never signs) for
``mac_previous_key_grace_s`` seconds from when this replica first read it, so entries
the others wrote with it stay usable while every replica picks up the new key. Both
files are re-read when they change (``watch.FileWatcher``); a bad new file keeps the
keys in force.
"""

from __future__ import annotations

import hashlib
import hmac
import string
import time
from collections.abc import Callable
from pathlib import Path

from blobgate.config import RedisConfig
from blobgate.errors import ConfigError
from blobgate.ops.metrics import Stats
from blobgate.ops.watch import FileWatcher

MAC_CHARS = 64  # hex of an HMAC-SHA256, in front of every sealed value
MIN_KEY_BYTES = 32
ENTRY, MESSAGE = b"entry", b"message"  # what was sealed: a stored value or a message
HEX = frozenset(string.hexdigits.lower().encode())


class Rejected(Exception):
    """A sealed value that is not to be believed; ``reason`` says why (a metric label)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_key(path: str, key: str, missing_ok: bool = False) -> bytes | None:
    """The key in file ``path`` (surrounding whitespace dropped), or ``ConfigError`` naming
    setting ``key`` when it cannot be read or is too short; ``None`` for an absent file
    when ``missing_ok``."""
    try:
        secret = Path(path).read_bytes().strip()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(key, f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigError(key, f"{path} must hold at least {MIN_KEY_BYTES} bytes"
                               " (e.g. openssl rand -hex 32)")
    return secret


class Keyring:
    """Seals with the current key; opens with it, or with the previous one while its grace
    lasts."""

    def __init__(
        self, current: bytes, previous: bytes | None = None, grace_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grace_s = grace_s
        self._clock = clock
        self._current = current
        self._previous: bytes | None = None
        self._previous_until = 0.0
        self.replace(current, previous)

    def replace(self, current: bytes, previous: bytes | None) -> None:
        """Use new keys; a previous key not seen before starts its grace now."""
        if previous != self._previous:
            self._previous_until = self._clock() + self._grace_s
        self._current, self._previous = current, previous

    def seal(self, kind: bytes, place: str, value: bytes) -> bytes:
        """``value`` with the MAC of (``kind``, ``place``, ``value``) in front."""
        return _mac(self._current, kind, place, value) + value

    def open(self, kind: bytes, place: str, sealed: bytes) -> bytes:
        """The value ``sealed`` carries, if its MAC is right for ``kind`` at ``place``;
        raises ``Rejected`` (``unsigned``, ``bad_mac``, ``expired_key``) otherwise."""
        mac, value = sealed[:MAC_CHARS], sealed[MAC_CHARS:]
        if len(mac) < MAC_CHARS or not HEX.issuperset(mac):
            raise Rejected("unsigned")
        if hmac.compare_digest(mac, _mac(self._current, kind, place, value)):
            return value
        previous = self._previous
        if previous is not None and hmac.compare_digest(mac, _mac(previous, kind, place, value)):
            if self._clock() < self._previous_until:
                return value
            raise Rejected("expired_key")
        raise Rejected("bad_mac")


def _mac(key: bytes, kind: bytes, place: str, value: bytes) -> bytes:
    signed = b"\0".join((kind, place.encode(), value))
    return hmac.new(key, signed, hashlib.sha256).hexdigest().encode()


def _keys(cfg: RedisConfig) -> tuple[bytes, bytes | None]:
    current = read_key(cfg.mac_key_file or "", "redis.mac_key_file")
    assert current is not None
    previous = None
    if cfg.mac_previous_key_file is not None:
        previous = read_key(cfg.mac_previous_key_file, "redis.mac_previous_key_file",
                            missing_ok=True)
    return current, previous


def open_keyring(cfg: RedisConfig) -> Keyring:
    """The keys ``cfg`` names, read now (``ConfigError`` naming the file's setting)."""
    return Keyring(*_keys(cfg), grace_s=cfg.mac_previous_key_grace_s)


def key_watcher(cfg: RedisConfig, keys: Keyring, stats: Stats) -> FileWatcher | None:
    """Re-reads the key files into ``keys`` when they change (``None``: reloading is off)."""
    if cfg.mac_reload_interval_s <= 0 or cfg.mac_key_file is None:
        return None
    optional = [Path(cfg.mac_previous_key_file)] if cfg.mac_previous_key_file else []
    return FileWatcher("redis_mac_key", [Path(cfg.mac_key_file)],
                       lambda: keys.replace(*_keys(cfg)), stats, cfg.mac_reload_interval_s,
                       optional=optional)
