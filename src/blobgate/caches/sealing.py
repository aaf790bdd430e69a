"""Sealing everything blobgate keeps in, and sends through, a shared Redis.

Redis is trusted to be there (or not), never with what it holds: it is often shared with
the registry itself, without a password, and a database index is no boundary (pub/sub
spans them all). Whoever reads it must learn nothing usable (a cached presigned URL is a
bearer credential for a private layer) and whoever writes it must make no replica
believe anything. So every value written and every invalidation published is sealed with
AES-256-GCM under a key derived (HKDF-SHA256) from a secret every replica reads from a
file (a mounted Secret), with where it lives (the full key, or the channel) as associated
data: it is unreadable without the secret, and a value that does not open, or was sealed
for another key, is not believed. Messages also carry when and by whom they were sent
(``fresh``), so a captured one cannot be replayed.

Rotation without downtime: the new key goes into ``mac_key_file`` and the old one into
``mac_previous_key_file``; the old key then still verifies (never signs) for
``mac_previous_key_grace_s`` seconds from when this replica first read it, so entries
the others wrote with it stay usable while every replica picks up the new key. Both
files are re-read when they change (``watch.FileWatcher``); a bad new file keeps the
keys in force.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from blobgate.config import RedisConfig
from blobgate.errors import ConfigError
from blobgate.ops.metrics import Stats
from blobgate.ops.watch import FileWatcher

MIN_KEY_BYTES = 32
ENTRY, MESSAGE = b"entry", b"message"  # what was sealed: a stored value or a message
FORMAT = b"s1."  # in front of every sealed value: base64url(nonce + ciphertext + tag)
NONCE_BYTES, TAG_BYTES = 12, 16


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


def _cipher(secret: bytes) -> AESGCM:
    """The AEAD for ``secret`` (the file's bytes, stretched to a 256-bit key)."""
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"blobgate shared state").derive(secret)
    return AESGCM(key)


class Keyring:
    """Seals with the current key; opens with it, or with the previous one while its grace
    lasts."""

    def __init__(
        self, current: bytes, previous: bytes | None = None, grace_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grace_s = grace_s
        self._clock = clock
        self._previous: bytes | None = None
        self._previous_until = 0.0
        self.replace(current, previous)

    def replace(self, current: bytes, previous: bytes | None) -> None:
        """Use new keys; a previous key not seen before starts its grace now."""
        if previous != self._previous:
            self._previous_until = self._clock() + self._grace_s
        self._current = _cipher(current)
        self._previous, self._old = previous, None if previous is None else _cipher(previous)

    def seal(self, kind: bytes, place: str, value: bytes) -> bytes:
        """``value`` encrypted and authenticated for ``kind`` at ``place``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._current.encrypt(nonce, value, _context(kind, place))
        return FORMAT + base64.urlsafe_b64encode(sealed)

    def open(self, kind: bytes, place: str, sealed: bytes) -> bytes:
        """The value ``sealed`` carries, if it was sealed for ``kind`` at ``place`` with a
        key in force; raises ``Rejected`` (``unsigned``: not sealed at all, ``bad_mac``,
        ``expired_key``) otherwise."""
        try:
            if not sealed.startswith(FORMAT):
                raise ValueError("not sealed")
            raw = base64.urlsafe_b64decode(sealed[len(FORMAT):])
        except (ValueError, binascii.Error):
            raise Rejected("unsigned") from None
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise Rejected("unsigned")
        nonce, body, context = raw[:NONCE_BYTES], raw[NONCE_BYTES:], _context(kind, place)
        try:
            return self._current.decrypt(nonce, body, context)
        except InvalidTag:
            pass
        if self._old is None:
            raise Rejected("bad_mac")
        try:
            value = self._old.decrypt(nonce, body, context)
        except InvalidTag:
            raise Rejected("bad_mac") from None
        if self._clock() < self._previous_until:
            return value
        raise Rejected("expired_key")


def _context(kind: bytes, place: str) -> bytes:
    """What a sealed value is bound to: its kind and where it lives (no NUL in either)."""
    return kind + b"\0" + place.encode()


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
