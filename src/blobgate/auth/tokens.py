"""Bearer token verification: is this client allowed to pull from this repository?

Tokens are Docker-token-spec JWTs issued by the registry's token service (Harbor core,
or any issuer the CNCF registry trusts). They are verified locally against the
configured certificate bundle, exactly as the registry would: the signing key is found
by libtrust ``kid`` or by an ``x5c`` chain ending in a trusted certificate; algorithms are
pinned to asymmetric ones and must match the key type; ``iss``, ``aud`` (a string),
``exp`` and ``nbf`` are enforced with leeway. Anything that does not verify yields
``None`` and the request goes to the registry, which owns the challenge.

Only one spelling of a token is served: ``Bearer <header>.<payload>.<signature>``, each
part canonical unpadded base64url, the whole header at most 16 KiB. distribution takes the
scheme case-insensitively but then exactly one space and no whitespace in the token;
Harbor core takes ``Bearer`` in that case only; the spelling every real client sends is
the one both accept. Any other spelling (``bEaReR``, padding spaces or tabs, non-zero
spare bits in a part's last character) is passed through untouched, never verified nor
cached, so respelling one token cannot make new cache entries or upstream checks.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from blobgate.auth.keys import PublicKey, TrustedKeys
from blobgate.config import AuthConfig
from blobgate.expiring import ExpiringCache
from blobgate.jsontext import parse
from blobgate.ops.tracing import step

log = logging.getLogger(__name__)

MAX_AUTHORIZATION_LENGTH = 16 * 1024
SCHEME = "Bearer "
MAX_TOKEN_LENGTH = MAX_AUTHORIZATION_LENGTH - len(SCHEME)
MAX_CHAIN_LENGTH = 5

_COMPACT_JWS = re.compile(r"Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SPARE_BITS = {0: 0, 2: 0b1111, 3: 0b11}  # by length % 4: the last character's unused bits


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows: the repositories it may pull from, and when it was
    issued (``None`` without an ``iat`` claim; Harbor refuses such tokens). ``key`` is the
    token's SHA-256: what the registry's verdicts on the token are kept under (32 bytes
    whatever the token's length, and never the token itself)."""

    subject: str
    expires_at: float
    pullable: frozenset[str]
    key: bytes
    issued_at: float | None = None

    def can_pull(self, name: str) -> bool:
        """True when the token grants ``pull`` (or ``*``) on exactly ``name``."""
        return name in self.pullable


def bearer_token(authorization: list[str]) -> str | None:
    """The token from the request's ``Authorization`` values when exactly one is sent and
    it is spelt canonically (see the module's docstring), else ``None``."""
    if len(authorization) != 1 or len(authorization[0]) > MAX_AUTHORIZATION_LENGTH:
        return None
    match = _COMPACT_JWS.fullmatch(authorization[0])
    if match is None or not all(_canonical(part) for part in match[1].split(".")):
        return None
    return match[1]


def _canonical(part: str) -> bool:
    """True when ``part`` is the one base64url spelling of its bytes (no spare bits set:
    decoders ignore them, so up to 16 spellings would decode alike)."""
    spare = _SPARE_BITS.get(len(part) % 4)
    return spare is not None and _BASE64URL.index(part[-1]) & spare == 0


def pullable_repositories(access: Any) -> frozenset[str]:
    """Repository names the ``access`` claim grants ``pull`` or ``*`` on."""
    if not isinstance(access, list):
        return frozenset()
    names = set()
    for entry in access:
        if not isinstance(entry, dict) or entry.get("type") != "repository":
            continue
        name, actions = entry.get("name"), entry.get("actions")
        pulls = isinstance(actions, list) and ("pull" in actions or "*" in actions)
        if isinstance(name, str) and pulls:
            names.add(name)
    return frozenset(names)


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to choose the key: ``jwt.decode`` then checks the whole
    token (reading it twice with PyJWT cost ~50 µs of a ~90 µs verification). A header
    nested too deep for ``jsontext`` is a ``ValueError``, like any malformed one."""
    segment = token.partition(".")[0]
    header = parse(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    if not isinstance(header, dict):
        raise TypeError("the JOSE header is not an object")
    return header


def _not_integer(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool)


def _key_fits(key: PublicKey, alg: str) -> bool:
    if alg.startswith("RS"):
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey)


def _chain_key(x5c: Any, trusted: TrustedKeys, now: datetime) -> PublicKey | None:
    """The leaf key of an ``x5c`` chain that ends in a trusted certificate, else ``None``."""
    if not isinstance(x5c, list) or not 0 < len(x5c) <= MAX_CHAIN_LENGTH:
        return None
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
    except (ValueError, TypeError):
        return None
    roots = trusted.certificates
    if chain[-1] not in roots:
        chain.extend(r for r in roots if r.subject == chain[-1].issuer)
    for cert, issuer in zip(chain, [*chain[1:], None], strict=True):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return None
        if cert in roots:
            key = chain[0].public_key()
            return key if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else None
        if issuer is None or not _issued_by(cert, issuer):
            return None
    return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` is a CA certificate that signed ``cert``."""
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        cert.verify_directly_issued_by(issuer)
    except (x509.ExtensionNotFound, InvalidSignature, ValueError, TypeError):
        return False
    return constraints.ca


def token_weight(token: str, _grant: Grant) -> int:
    """An entry's bytes, from its token's length: measured with tracemalloc, a grant with
    its token costs 2.0 to 2.2 times the token plus under 1 KiB (1.6 KB for an 800-byte
    token, 36.7 KB for a 16 KiB one full of repository grants)."""
    return (9 * len(token)) // 4 + 1024


class TokenVerifier:
    """Verifies Bearer tokens and caches the grants of valid ones until they expire."""

    def __init__(
        self, cfg: AuthConfig, keys: TrustedKeys, clock: Callable[[], float] = time.time
    ) -> None:
        self._cfg = cfg
        self._keys = keys
        self._clock = clock
        self.cache: ExpiringCache[str, Grant] = ExpiringCache(
            cfg.token_cache_size, lambda grant: grant.expires_at, clock,
            weigh=token_weight, max_weight=cfg.token_cache_bytes,
        )

    @property
    def keys(self) -> TrustedKeys:
        """The certificates currently trusted."""
        return self._keys

    def replace_keys(self, keys: TrustedKeys) -> None:
        """Trust ``keys`` from now on and forget every grant verified with the old ones."""
        self._keys = keys
        self.cache.clear()

    def grant(self, authorization: list[str]) -> Grant | None:
        """The grant of the request's Bearer token, else ``None``.

        ``authorization`` holds the request's ``Authorization`` values; grants are cached
        by the header value itself, so a repeat request costs one lookup, no parsing. Only
        canonical values are ever stored (``bearer_token``), so each token has one entry.
        """
        if len(authorization) != 1:
            return None
        grant = self.cache.get(authorization[0])
        if grant is None:
            token = bearer_token(authorization)
            with step("blobgate.token"):
                grant = self.verify(token) if token is not None else None
            if grant is not None:
                self.cache.put(authorization[0], grant)
        return grant

    def verify(self, token: str) -> Grant | None:
        """The grant of a valid token, else ``None`` (the reason is logged at debug level).

        Not cached: ``grant`` is the request path's entry. A token longer than
        ``MAX_TOKEN_LENGTH`` is not looked at.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            return self._decode(token)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.debug("token rejected: %s", type(exc).__name__)
            return None

    def _decode(self, token: str) -> Grant | None:
        header = _header(token)
        alg = header.get("alg")
        if alg not in self._cfg.algorithms:
            return None
        key = self._signing_key(header)
        if key is None or not _key_fits(key, alg):
            return None
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=self._cfg.service,
            issuer=self._cfg.issuer,
            leeway=self._cfg.leeway_s,
            options={"require": ["exp", "iss", "aud"], "strict_aud": True},
        )
        if any(_not_integer(claims.get(c)) for c in ("exp", "nbf", "iat") if c in claims):
            return None  # the registry only accepts integer NumericDates
        subject = claims.get("sub")
        issued_at = claims.get("iat")
        return Grant(
            subject=subject if isinstance(subject, str) else "",
            expires_at=float(claims["exp"]),
            pullable=pullable_repositories(claims.get("access")),
            issued_at=None if issued_at is None else float(issued_at),
            key=hashlib.sha256(token.encode()).digest(),
        )

    def _signing_key(self, header: Mapping[str, Any]) -> PublicKey | None:
        if "x5c" in header:
            return _chain_key(header["x5c"], self._keys, datetime.fromtimestamp(self._clock(), UTC))
        kid = header.get("kid")
        return self._keys.by_kid.get(kid) if isinstance(kid, str) else None
