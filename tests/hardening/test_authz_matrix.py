"""Authorization matrix through a running gateway, observed on the wire.

Every forged, foreign, stale or malformed credential must end in the registry's own
answer: never a 307, never a ``Location``, and the stand-in's request log shows that
the registry (not blobgate) answered the blob GET. Each case runs next to positive
controls in the same gateway configuration, so the matrix cannot pass vacuously.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from blobgate.config import ApiConfig, AuthConfig
from blobgate.devstack.pki import PrivateKey, certificate
from hardening.wire import Answer, exchange

from support.gateway import GatewayFactory
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer, new_rsa, pem, x5c

Standin = tuple[StandIn, Any]
Headers = list[tuple[str, str]]
REPO = "library/a"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with any header, claims and signature bytes."""
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                     b64url(signature)])


def sign_rs256(key: PrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """RS256 over any header and claims (PyJWT refuses to encode some malformed ones)."""
    assert isinstance(key, rsa.RSAPrivateKey)
    signing_input = ".".join([b64url(json.dumps(header).encode()),
                              b64url(json.dumps(claims).encode())])
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def hmac_forgery(signer: Signer, secret: bytes, alg: str) -> str:
    """An HS* token keyed with public material, naming the trusted key by its kid."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "typ": "JWT", "kid": signer.kid}
    signing_input = ".".join([b64url(json.dumps(header).encode()),
                              b64url(json.dumps(signer.claims(REPO)).encode())])
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(mac)}"


def expired_certificate(key: PrivateKey, name: str, issuer: Signer) -> x509.Certificate:
    """A leaf issued by ``issuer`` whose validity ended yesterday."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer.key, hashes.SHA256())
    )


class Keys:
    """The trusted signers (RSA and EC) plus material an attacker could hold."""

    def __init__(self, rsa_signer: Signer, directory: Path) -> None:
        self.rsa = rsa_signer
        self.ec = Signer(key=ec.generate_private_key(ec.SECP256R1()), name="ec-signer")
        self.stranger = Signer(name="stranger")
        self.ec_stranger = Signer(key=ec.generate_private_key(ec.SECP256R1()), name="ec-stranger")
        self.bundle = directory / "matrix.crt"
        self.bundle.write_bytes(pem(self.rsa.cert, self.ec.cert))
        # A leaf legitimately issued by the trusted signer (positive control for x5c).
        self.leaf_key = new_rsa()
        self.leaf = certificate(self.leaf_key, "leaf", issuer=(self.rsa.key, self.rsa.name),
                                ca=False)
        # A CA that merely copies the trusted signer's name, and a leaf it issued.
        self.impostor_key = new_rsa()
        self.impostor = certificate(self.impostor_key, self.rsa.name)
        self.impostor_leaf = certificate(self.leaf_key, "leaf",
                                         issuer=(self.impostor_key, self.rsa.name), ca=False)
        self.expired_leaf = expired_certificate(self.leaf_key, "old-leaf", self.rsa)
        # A compact, correctly linked EC chain of six certificates ending at the trusted
        # signer: five of them are within MAX_CHAIN_LENGTH, all six are not.
        self.chain_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(6)]
        self.chain: list[x509.Certificate] = []
        issuer: tuple[PrivateKey, str] = (self.rsa.key, self.rsa.name)
        for depth in range(5, -1, -1):
            cert = certificate(self.chain_keys[depth], f"c{depth}", issuer=issuer, ca=True)
            self.chain.insert(0, cert)
            issuer = (self.chain_keys[depth], f"c{depth}")

    def leaf_token(self, chain: list[x509.Certificate], **claims: Any) -> str:
        leaf_signer = Signer(key=self.leaf_key, name="leaf")
        return leaf_signer.token(REPO, headers={"x5c": x5c(*chain)}, **claims)

    def chain_token(self, start: int) -> str:
        """A token signed by the key of ``chain[start]``, carrying ``chain[start:]``."""
        signer = Signer(key=self.chain_keys[start], name=f"c{start}")
        return signer.token(REPO, headers={"x5c": x5c(*self.chain[start:])}, algorithm="ES256")


def spki(signer: Signer, encoding: serialization.Encoding) -> bytes:
    return signer.key.public_key().public_bytes(encoding,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)


def access(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return list(entries)


def now() -> int:
    return int(time.time())


def without(signer: Signer, claim: str) -> str:
    """A correctly signed token granting pull on ``REPO`` that lacks ``claim`` entirely."""
    claims = signer.claims(REPO)
    del claims[claim]
    return jwt.encode(claims, signer.key, "RS256", headers={"kid": signer.kid})


Case = Callable[[Keys], Headers]


def auth(token: str) -> Headers:
    return [("Authorization", f"Bearer {token}")]


POSITIVE: dict[str, Case] = {
    "rs256-kid": lambda k: auth(k.rsa.token(REPO)),
    "rs384-kid": lambda k: auth(k.rsa.token(REPO, algorithm="RS384")),
    "rs512-kid": lambda k: auth(k.rsa.token(REPO, algorithm="RS512")),
    "es256-kid": lambda k: auth(k.ec.token(REPO, algorithm="ES256")),
    "x5c-leaf-of-trusted": lambda k: auth(k.leaf_token([k.leaf, k.rsa.cert])),
    "x5c-leaf-only": lambda k: auth(k.leaf_token([k.leaf])),
    "x5c-five-deep": lambda k: auth(k.chain_token(1)),
    "wildcard-action": lambda k: auth(k.rsa.token(access=access(
        {"type": "repository", "name": REPO, "actions": ["*"]}))),
}

NEGATIVE: dict[str, Case] = {
    # -- no signature, or a signature blobgate must not accept
    "no-authorization": lambda k: [],
    "unsigned-rs256": lambda k: auth(forge({"alg": "RS256", "kid": k.rsa.kid},
                                           k.rsa.claims(REPO))),
    "alg-none": lambda k: auth(forge({"alg": "none", "kid": k.rsa.kid}, k.rsa.claims(REPO))),
    "alg-None": lambda k: auth(forge({"alg": "None"}, k.rsa.claims(REPO))),
    "alg-NONE-with-sig": lambda k: auth(forge({"alg": "NONE", "kid": k.rsa.kid},
                                              k.rsa.claims(REPO), b"x" * 256)),
    "signature-stripped": lambda k: auth(k.rsa.token(REPO).rsplit(".", 1)[0] + "."),
    "signature-of-other-token": lambda k: auth(
        ".".join([*k.rsa.token(REPO).split(".")[:2], k.rsa.token("library/b").split(".")[2]])),
    "claims-swapped-after-signing": lambda k: auth(".".join([
        k.rsa.token("library/b").split(".")[0],
        b64url(json.dumps(k.rsa.claims(REPO)).encode()),
        k.rsa.token("library/b").split(".")[2]])),
    "hs256-public-pem": lambda k: auth(hmac_forgery(k.rsa, spki(k.rsa, serialization.Encoding.PEM),
                                                    "HS256")),
    "hs384-public-pem": lambda k: auth(hmac_forgery(k.rsa, spki(k.rsa, serialization.Encoding.PEM),
                                                    "HS384")),
    "hs512-public-pem": lambda k: auth(hmac_forgery(k.rsa, spki(k.rsa, serialization.Encoding.PEM),
                                                    "HS512")),
    "hs256-public-der": lambda k: auth(hmac_forgery(k.rsa, spki(k.rsa, serialization.Encoding.DER),
                                                    "HS256")),
    "hs512-public-der": lambda k: auth(hmac_forgery(k.rsa, spki(k.rsa, serialization.Encoding.DER),
                                                    "HS512")),
    "hs256-certificate-pem": lambda k: auth(hmac_forgery(k.rsa, pem(k.rsa.cert), "HS256")),
    "hs256-certificate-der": lambda k: auth(hmac_forgery(
        k.rsa, k.rsa.cert.public_bytes(serialization.Encoding.DER), "HS256")),
    "ps256-trusted-key": lambda k: auth(k.rsa.token(REPO, algorithm="PS256")),
    # -- keys blobgate does not trust
    "unknown-kid": lambda k: auth(k.stranger.token(REPO)),
    "stranger-key-trusted-kid": lambda k: auth(k.stranger.token(REPO, headers={"kid": k.rsa.kid})),
    "trusted-key-bogus-kid": lambda k: auth(k.rsa.token(REPO, headers={"kid": "AAAA:BBBB"})),
    "no-kid-no-x5c": lambda k: auth(k.rsa.token(REPO, headers={})),
    "kid-not-a-string": lambda k: auth(sign_rs256(k.rsa.key, {"alg": "RS256", "kid": [k.rsa.kid]},
                                                  k.rsa.claims(REPO))),
    "embedded-jwk": lambda k: auth(k.stranger.token(REPO, headers={"jwk": {
        "kty": "RSA", "n": b64url(k.stranger.key.public_key().public_numbers().n.to_bytes(
            256, "big")), "e": "AQAB"}})),
    "jku-header": lambda k: auth(k.stranger.token(REPO, headers={
        "jku": "http://127.0.0.1:9/keys.json"})),
    "es256-under-rsa-kid": lambda k: auth(k.ec_stranger.token(
        REPO, headers={"kid": k.rsa.kid}, algorithm="ES256")),
    "rs256-under-ec-kid": lambda k: auth(k.stranger.token(REPO, headers={"kid": k.ec.kid})),
    "x5c-self-signed-stranger": lambda k: auth(k.stranger.token(
        REPO, headers={"x5c": x5c(k.stranger.cert)})),
    "x5c-impostor-ca-same-name": lambda k: auth(k.leaf_token([k.impostor_leaf, k.impostor])),
    "x5c-impostor-leaf-only": lambda k: auth(k.leaf_token([k.impostor_leaf])),
    "x5c-expired-leaf": lambda k: auth(k.leaf_token([k.expired_leaf, k.rsa.cert])),
    "x5c-trusted-root-but-leaf-key": lambda k: auth(k.leaf_token([k.rsa.cert])),
    "x5c-garbage": lambda k: auth(k.rsa.token(REPO, headers={"x5c": ["!!notbase64!!"]})),
    "x5c-not-a-list": lambda k: auth(k.rsa.token(REPO, headers={"x5c": "abc"})),
    "x5c-six-deep": lambda k: auth(k.chain_token(0)),
    "x5c-wins-over-trusted-kid": lambda k: auth(k.stranger.token(
        REPO, headers={"kid": k.rsa.kid, "x5c": x5c(k.stranger.cert)})),
    # -- claims
    "expired": lambda k: auth(k.rsa.token(REPO, exp=now() - 600)),
    "expired-x5c": lambda k: auth(k.leaf_token([k.leaf, k.rsa.cert], exp=now() - 600)),
    "not-yet-valid": lambda k: auth(k.rsa.token(REPO, nbf=now() + 600)),
    "no-exp": lambda k: auth(without(k.rsa, "exp")),
    "exp-null": lambda k: auth(k.rsa.token(REPO, exp=None)),
    "wrong-iss": lambda k: auth(k.rsa.token(REPO, iss="someone-else")),
    "iss-as-list": lambda k: auth(sign_rs256(k.rsa.key, {"alg": "RS256", "kid": k.rsa.kid},
                                             k.rsa.claims(REPO, iss=[ISSUER]))),
    "no-iss": lambda k: auth(without(k.rsa, "iss")),
    "wrong-aud": lambda k: auth(k.rsa.token(REPO, aud="other-registry")),
    "array-aud": lambda k: auth(k.rsa.token(REPO, aud=[SERVICE])),
    "array-aud-two": lambda k: auth(k.rsa.token(REPO, aud=[SERVICE, "other"])),
    "no-aud": lambda k: auth(without(k.rsa, "aud")),
    # -- scope
    "other-repository": lambda k: auth(k.rsa.token("library/b")),
    "prefix-longer-name": lambda k: auth(k.rsa.token("library/ab")),
    "prefix-child-name": lambda k: auth(k.rsa.token("library/a/b")),
    "prefix-parent-name": lambda k: auth(k.rsa.token("library")),
    "different-case": lambda k: auth(k.rsa.token("Library/A")),
    "trailing-slash": lambda k: auth(k.rsa.token("library/a/")),
    "glob-name": lambda k: auth(k.rsa.token("library/*")),
    "star-name": lambda k: auth(k.rsa.token("*")),
    "push-only": lambda k: auth(k.rsa.token(access=access(
        {"type": "repository", "name": REPO, "actions": ["push"]}))),
    "delete-only": lambda k: auth(k.rsa.token(access=access(
        {"type": "repository", "name": REPO, "actions": ["delete"]}))),
    "upper-case-PULL": lambda k: auth(k.rsa.token(access=access(
        {"type": "repository", "name": REPO, "actions": ["PULL"]}))),
    "actions-as-string": lambda k: auth(k.rsa.token(access=access(
        {"type": "repository", "name": REPO, "actions": "pull"}))),
    "registry-catalog-star": lambda k: auth(k.rsa.token(access=access(
        {"type": "registry", "name": "catalog", "actions": ["*"]}))),
    "type-Repository": lambda k: auth(k.rsa.token(access=access(
        {"type": "Repository", "name": REPO, "actions": ["pull"]}))),
    "no-type": lambda k: auth(k.rsa.token(access=access({"name": REPO, "actions": ["pull"]}))),
    "access-as-object": lambda k: auth(k.rsa.token(
        access={"type": "repository", "name": REPO, "actions": ["pull"]})),
    "empty-access": lambda k: auth(k.rsa.token()),
    # -- the Authorization header itself
    "two-authorization-headers": lambda k: auth(k.rsa.token(REPO)) + auth(k.rsa.token(REPO)),
    "bearer-then-basic": lambda k: [*auth(k.rsa.token(REPO)),
                                    ("Authorization", "Basic YWxpY2U6cHc=")],
    "basic-then-bearer": lambda k: [("Authorization", "Basic YWxpY2U6cHc="),
                                    *auth(k.rsa.token(REPO))],
    "two-tokens-one-header": lambda k: [("Authorization",
                                         f"Bearer {k.rsa.token('library/b')}, Bearer "
                                         f"{k.rsa.token(REPO)}")],
    "token-in-query-only": lambda k: [],
    "basic": lambda k: [("Authorization", "Basic YWxpY2U6cHc=")],
    "bearer-empty": lambda k: [("Authorization", "Bearer ")],
    "bearer-garbage": lambda k: [("Authorization", "Bearer not.a.jwt")],
}


@pytest.fixture(scope="module")
def keys(signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(signer, tmp_path_factory.mktemp("matrix"))


@pytest.fixture
async def matrix_gateway(gateway: GatewayFactory, keys: Keys) -> TestClient[Any, Any]:
    return await gateway(auth=AuthConfig(issuer=ISSUER, service=SERVICE,
                                         certificates=str(keys.bundle)))


async def blob_get(client: TestClient[Any, Any], digest: str, headers: Headers,
                   name: str = REPO, query: str = "") -> Answer:
    return await exchange(client.port, "GET", f"/v2/{name}/blobs/{digest}{query}", headers)


async def api_url(client: TestClient[Any, Any], digest: str, headers: Headers,
                  name: str = REPO) -> Answer:
    """blobgate's own URL API: ``GET /api/v1/blobs/<digest>/url?repository=<name>``."""
    return await exchange(client.port, "GET", f"/api/v1/blobs/{digest}/url?repository={name}",
                          headers)


def assert_no_url(answer: Answer) -> None:
    assert answer.status != 200
    assert answer.header("Location") is None
    assert b"X-Amz-Signature" not in answer.body
    assert b'"url"' not in answer.body


@pytest.mark.parametrize("case", list(POSITIVE))
async def test_valid_tokens_are_redirected(
    matrix_gateway: TestClient[Any, Any], keys: Keys, blob: tuple[str, bytes], case: str
) -> None:
    """The controls: each accepted form really yields a 307 in this configuration."""
    answer = await blob_get(matrix_gateway, blob[0], POSITIVE[case](keys))
    assert answer.status == 307, answer.body
    assert answer.header("Location")
    listed = await api_url(matrix_gateway, blob[0], POSITIVE[case](keys))
    assert listed.status == 200, listed.body
    assert "X-Amz-Signature=" in json.loads(listed.body)["url"]


@pytest.mark.parametrize("case", list(NEGATIVE))
async def test_rejected_credentials_reach_the_registry_not_s3(
    matrix_gateway: TestClient[Any, Any], keys: Keys, blob: tuple[str, bytes],
    standin: Standin, case: str,
) -> None:
    digest, data = blob
    query = f"?token={keys.rsa.token(REPO)}" if case == "token-in-query-only" else ""
    answer = await blob_get(matrix_gateway, digest, NEGATIVE[case](keys), query=query)
    assert answer.status != 307
    assert answer.header("Location") is None
    assert b"X-Amz-Signature" not in answer.body
    path = f"/v2/{REPO}/blobs/{digest}{query}"
    # The registry answered the GET itself, and blobgate never asked it about membership.
    assert standin[0].count("GET", path) == 1
    assert standin[0].count("HEAD", f"/v2/{REPO}/blobs/{digest}") == 0
    # The stand-in does not verify tokens: without "Bearer " it challenges, else it serves.
    if answer.status == 200:
        assert answer.body == data
    # blobgate's own URL API refuses the same credentials, with its own challenge.
    listed = await api_url(matrix_gateway, digest, NEGATIVE[case](keys))
    assert_no_url(listed)
    if case == "basic":  # exchanged at the token service the registry names, unreachable here
        assert listed.status == 502
        return
    assert listed.status == 401
    assert (listed.header("WWW-Authenticate") or "").startswith("Bearer ")


@pytest.mark.parametrize("name", ["library/ab", "library/a/b", "library"])
async def test_token_for_a_opens_no_name_sharing_its_prefix(
    matrix_gateway: TestClient[Any, Any], keys: Keys, blob: tuple[str, bytes],
    standin: Standin, name: str,
) -> None:
    digest, data = blob
    standin[0].blobs[(name, digest)] = data
    answer = await blob_get(matrix_gateway, digest, auth(keys.rsa.token(REPO)), name=name)
    assert answer.status == 200  # the registry's answer, not a redirect
    assert answer.header("Location") is None
    assert standin[0].count("GET", f"/v2/{name}/blobs/{digest}") == 1


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("authorization-100k", [("Authorization", "Bearer " + "a" * 100_000)]),
        ("authorization-9k", [("Authorization", "Bearer " + "a" * 9_000)]),
        ("one-header-1m", [("X-Filler", "b" * 1_000_000)]),
        ("200-headers", [(f"X-H{i}", "v") for i in range(200)]),
        ("10000-headers", [(f"X-H{i}", "v") for i in range(10_000)]),
        ("header-name-9k", [("X" * 9_000, "v")]),
    ],
)
async def test_enormous_headers_are_refused_and_the_gateway_keeps_serving(
    matrix_gateway: TestClient[Any, Any], keys: Keys, blob: tuple[str, bytes],
    standin: Standin, case: str, headers: Headers,
) -> None:
    digest, _ = blob
    answer = await blob_get(matrix_gateway, digest, headers)
    assert answer.status in (400, 413, 431)
    assert answer.header("Location") is None
    assert standin[0].requests == []  # refused before anything reached the registry
    after = await blob_get(matrix_gateway, digest, auth(keys.rsa.token(REPO)))
    assert after.status == 307


async def test_headers_just_under_the_limits_pass_through_intact(
    matrix_gateway: TestClient[Any, Any], standin: Standin,
) -> None:
    """Large but legal requests are relayed, not mangled (0.8 MB of headers in total)."""
    headers = [(f"X-Big-{i}", "c" * 8000) for i in range(100)]
    answer = await exchange(matrix_gateway.port, "GET", "/v2/_catalog", headers)
    assert answer.status == 200
    seen = {k.lower(): v for k, v in json.loads(answer.body)["headers"]}
    assert all(seen[f"x-big-{i}"] == "c" * 8000 for i in range(100))


async def eventually(check: Callable[[], Any], attempts: int = 250) -> None:
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_tokens_of_a_rotated_certificate_stop_working(
    gateway: GatewayFactory, blob: tuple[str, bytes], standin: Standin, tmp_path: Path,
) -> None:
    digest, _ = blob
    old, new = Signer(name="old"), Signer(name="new")
    old_leaf_key = new_rsa()
    old_leaf = certificate(old_leaf_key, "old-leaf", issuer=(old.key, old.name), ca=False)
    bundle = tmp_path / "rotating.crt"
    bundle.write_bytes(pem(old.cert))
    client = await gateway(auth=AuthConfig(issuer=ISSUER, service=SERVICE,
                                           certificates=str(bundle), reload_interval_s=0.02))
    old_kid_token = old.token(REPO)
    old_x5c_token = Signer(key=old_leaf_key, name="old-leaf").token(
        REPO, headers={"x5c": x5c(old_leaf, old.cert)})
    for token in (old_kid_token, old_x5c_token):  # verified and cached before the rotation
        assert (await blob_get(client, digest, auth(token))).status == 307

    bundle.write_bytes(pem(new.cert))

    async def new_accepted() -> bool:
        return (await blob_get(client, digest, auth(new.token(REPO)))).status == 307

    await eventually(new_accepted)
    standin[0].requests.clear()
    fresh_old = old.token(REPO)  # minted after the rotation by the retired key
    for token in (old_kid_token, old_x5c_token, fresh_old):
        answer = await blob_get(client, digest, auth(token))
        assert answer.status != 307
        assert answer.header("Location") is None
    assert standin[0].count("GET", f"/v2/{REPO}/blobs/{digest}") == 3


async def test_url_api_life_is_capped_by_the_operator(
    gateway: GatewayFactory, keys: Keys, blob: tuple[str, bytes]
) -> None:
    """api.max_expires_s caps what any token may ask for (7 days by default, SigV4's limit)."""
    client = await gateway(auth=AuthConfig(issuer=ISSUER, service=SERVICE,
                                           certificates=str(keys.bundle)),
                           api=ApiConfig(max_expires_s=1200))
    token = keys.rsa.token(REPO, exp=now() + 300)
    path = f"/api/v1/blobs/{blob[0]}/url?repository={REPO}&expires_in="
    refused = await exchange(client.port, "GET", path + "604800", auth(token))
    assert refused.status == 400
    assert b"from 1 to 1200" in refused.body
    allowed = await exchange(client.port, "GET", path + "1200", auth(token))
    url = json.loads(allowed.body)["url"]
    assert int(dict(parse_qsl(urlsplit(url).query))["X-Amz-Expires"]) == 1200
