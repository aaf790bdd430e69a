"""A development token issuer implementing the Docker token-authentication spec.

The registry (``auth.token``) and the gateway both verify the JWTs it signs, so the
stack exercises the same token path as production without an external auth server.
Run it as ``python -m blobgate.devstack.tokens --port P --key K --cert C --issuer I
--service S --policy policy.json``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from blobgate.auth.keys import libtrust_key_id
from blobgate.devstack.policy import Policy, Scope

ANONYMOUS: str | None = None


class Unauthorized(Exception):
    """The client presented credentials that do not match a user."""


@dataclass(frozen=True)
class TokenIssuer:
    """Signs RS256 access tokens whose ``access`` claim the policy allows."""

    private_key: rsa.RSAPrivateKey
    kid: str
    issuer: str
    service: str
    policy: Policy
    expires_s: int = 300

    @classmethod
    def from_files(
        cls, key_path: Path, cert_path: Path, issuer: str, service: str, policy: Policy
    ) -> TokenIssuer:
        """Load the signing key and name it by the libtrust ID of the certificate's key."""
        key = load_pem_private_key(key_path.read_bytes(), password=None)
        public = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key()
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path}: an RSA private key is required for RS256")
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError(f"{cert_path}: unsupported public key type")
        return cls(key, libtrust_key_id(public), issuer, service, policy)

    def issue(self, account: str | None, scopes: Iterable[Scope]) -> dict[str, Any]:
        """The JSON body of a successful token response."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,
            "exp": now + self.expires_s,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": self.policy.access(account, scopes),
        }
        token = jwt.encode(
            claims, self.private_key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"}
        )
        issued_at = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat()
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_s,
            "issued_at": issued_at.replace("+00:00", "Z"),
        }

    def account(self, username: str | None, password: str | None) -> str | None:
        """The authenticated account, ``ANONYMOUS`` without credentials."""
        if username is None:
            return ANONYMOUS
        if password is None or not self.policy.authenticate(username, password):
            raise Unauthorized(username)
        return username


def _basic_credentials(request: web.Request) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="malformed Basic credentials") from None
    return user, password


def _scopes(values: Iterable[str]) -> list[Scope]:
    try:
        return [Scope.parse(part) for value in values for part in value.split()]
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _oauth_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def _respond(
    issuer: TokenIssuer, service: str | None, account: str | None, scopes: list[Scope]
) -> web.Response:
    if service not in (None, issuer.service):
        return _oauth_error(400, "invalid_request")
    return web.json_response(issuer.issue(account, scopes))


def create_app(issuer: TokenIssuer) -> web.Application:
    """The issuer's HTTP app: ``GET /token`` (Basic auth) and ``POST /token`` (OAuth2 form)."""

    async def get_token(request: web.Request) -> web.Response:
        try:
            account = issuer.account(*_basic_credentials(request))
        except Unauthorized:
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="blobgate-dev"'},
            )
        scopes = _scopes(request.query.getall("scope", []))
        return _respond(issuer, request.query.get("service"), account, scopes)

    async def post_token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "password":
            return _oauth_error(400, "unsupported_grant_type")
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return _oauth_error(400, "invalid_request")
        try:
            account = issuer.account(username, password)
        except Unauthorized:
            return _oauth_error(401, "invalid_grant")
        scopes = _scopes(str(v) for v in form.getall("scope", []))
        service = form.get("service")
        return _respond(issuer, service if isinstance(service, str) else None, account, scopes)

    app = web.Application()
    app.router.add_get("/token", get_token)
    app.router.add_post("/token", post_token)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve tokens on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--policy", type=Path, required=True)
    args = parser.parse_args(argv)
    policy = Policy.read(args.policy)
    issuer = TokenIssuer.from_files(args.key, args.cert, args.issuer, args.service, policy)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    web.run_app(create_app(issuer), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
