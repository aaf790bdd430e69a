"""Token verification: what grants a pull, and the many things that must not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from blobgate.auth.keys import KeyBundleError, TrustedKeys, libtrust_key_id
from blobgate.auth.tokens import (
    MAX_TOKEN_LENGTH,
    TokenVerifier,
    bearer_token,
    pullable_repositories,
)
from blobgate.config import AuthConfig

from support.tokens import ISSUER, SERVICE, Signer, certificate, new_rsa, pem, x5c

CFG = AuthConfig(issuer=ISSUER, service=SERVICE, certificates="unused", leeway_s=5)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture
def verifier(signer: Signer) -> TokenVerifier:
    return TokenVerifier(CFG, TrustedKeys.from_pem(pem(signer.cert)))


def grants(verifier: TokenVerifier, token: str, name: str = "library/a") -> bool:
    grant = verifier.verify(token)
    return grant is not None and grant.can_pull(name)


def test_valid_token_grants_pull_on_its_repository(verifier: TokenVerifier, signer: Signer) -> None:
    grant = verifier.verify(signer.token("library/a"))
    assert grant is not None
    assert grant.subject == "alice"
    assert grant.can_pull("library/a")


def test_libtrust_key_id_shape(signer: Signer) -> None:
    groups = signer.kid.split(":")
    assert len(groups) == 12
    assert all(len(g) == 4 and g.isalnum() and g.upper() == g for g in groups)


def test_star_action_grants_pull(verifier: TokenVerifier, signer: Signer) -> None:
    access = [{"type": "repository", "name": "library/a", "actions": ["*"]}]
    assert grants(verifier, signer.token(access=access))


@pytest.mark.parametrize(
    ("access", "name"),
    [
        ([{"type": "repository", "name": "library/a", "actions": ["pull"]}], "library/ab"),
        ([{"type": "repository", "name": "library/a", "actions": ["pull"]}], "library/a/b"),
        ([{"type": "repository", "name": "library/A", "actions": ["pull"]}], "library/a"),
        ([{"type": "repository", "name": "library/a", "actions": ["push"]}], "library/a"),
        ([{"type": "registry", "name": "catalog", "actions": ["*"]}], "library/a"),
        ([{"type": "repository", "name": "library/*", "actions": ["pull"]}], "library/a"),
        ([{"type": "repository", "name": "library/a", "actions": "pull"}], "library/a"),
        ({"library/a": ["pull"]}, "library/a"),
    ],
)
def test_scope_must_match_exactly(
    verifier: TokenVerifier, signer: Signer, access: object, name: str
) -> None:
    assert not grants(verifier, signer.token(access=access), name)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": -60},  # times are offsets from now, resolved when the test runs
        {"nbf": 120},
        {"iss": "someone-else"},
        {"aud": "other-service"},
        {"aud": [SERVICE]},
        {"aud": None},
        {"exp": None},
        {"iss": None},
    ],
    ids=["expired", "not-yet-valid", "wrong-iss", "wrong-aud", "array-aud", "no-aud", "no-exp",
         "no-iss"],
)
def test_bad_claims_are_rejected(
    verifier: TokenVerifier, signer: Signer, overrides: dict[str, object]
) -> None:
    now = int(time.time())
    resolved = {k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v
                for k, v in overrides.items()}
    claims = signer.claims("library/a", **resolved)
    token = jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, signer.key, "RS256",
        headers={"kid": signer.kid},
    )
    assert verifier.verify(token) is None


def test_leeway_accepts_slightly_expired_tokens(verifier: TokenVerifier, signer: Signer) -> None:
    assert grants(verifier, signer.token("library/a", exp=int(time.time()) - 2))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_none_is_rejected(verifier: TokenVerifier, signer: Signer) -> None:
    header = _b64(json.dumps({"alg": "none", "kid": signer.kid}).encode())
    body = _b64(json.dumps(signer.claims("library/a")).encode())
    assert verifier.verify(f"{header}.{body}.") is None
    assert verifier.verify(f"{header}.{body}") is None


def test_hmac_signed_with_the_public_key_is_rejected(
    verifier: TokenVerifier, signer: Signer
) -> None:
    public_pem = signer.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": signer.kid, "typ": "JWT"}).encode())
    body = _b64(json.dumps(signer.claims("library/a")).encode())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert verifier.verify(f"{header}.{body}.{_b64(mac)}") is None


def test_unknown_kid_and_missing_kid_are_rejected(verifier: TokenVerifier) -> None:
    stranger = Signer(name="stranger")
    assert verifier.verify(stranger.token("library/a")) is None
    assert verifier.verify(stranger.token("library/a", headers={})) is None


def test_right_kid_wrong_key_is_rejected(verifier: TokenVerifier, signer: Signer) -> None:
    forger = Signer(name="forger")
    assert verifier.verify(forger.token("library/a", headers={"kid": signer.kid})) is None


def test_algorithm_must_fit_the_key_type(signer: Signer) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_signer = Signer(key=ec_key, name="ec")
    keys = TrustedKeys.from_pem(pem(signer.cert, ec_signer.cert))
    verifier = TokenVerifier(CFG, keys)
    assert grants(verifier, ec_signer.token("library/a", algorithm="ES256"))
    # An RSA header claim on an EC key (or the reverse) never verifies.
    assert verifier.verify(signer.token("library/a", algorithm="RS256",
                                        headers={"kid": ec_signer.kid})) is None


def test_x5c_chain_to_a_trusted_root_is_accepted() -> None:
    root_key, mid_key, leaf_key = new_rsa(), new_rsa(), new_rsa()
    root = certificate(root_key, "root")
    mid = certificate(mid_key, "intermediate", issuer=(root_key, "root"))
    leaf = certificate(leaf_key, "leaf", issuer=(mid_key, "intermediate"), ca=False)
    verifier = TokenVerifier(CFG, TrustedKeys.from_pem(pem(root)))
    leaf_signer = Signer(key=leaf_key, name="leaf")
    assert grants(verifier, leaf_signer.token("library/a", headers={"x5c": x5c(leaf, mid)}))
    assert grants(verifier, leaf_signer.token("library/a", headers={"x5c": x5c(leaf, mid, root)}))


def test_untrusted_or_broken_x5c_chains_are_rejected(signer: Signer) -> None:
    root_key, rogue_key, leaf_key = new_rsa(), new_rsa(), new_rsa()
    root = certificate(root_key, "root")
    rogue_root = certificate(rogue_key, "root")  # same name, different key
    leaf = certificate(leaf_key, "leaf", issuer=(rogue_key, "root"), ca=False)
    mid_key = new_rsa()
    not_ca = certificate(mid_key, "mid", issuer=(root_key, "root"), ca=False)
    leaf_of_not_ca = certificate(leaf_key, "leaf", issuer=(mid_key, "mid"), ca=False)
    verifier = TokenVerifier(CFG, TrustedKeys.from_pem(pem(root)))
    leaf_signer = Signer(key=leaf_key, name="leaf")
    for chain in ([leaf], [leaf, rogue_root], [leaf_of_not_ca, not_ca]):
        assert verifier.verify(leaf_signer.token("library/a", headers={"x5c": x5c(*chain)})) is None
    assert verifier.verify(leaf_signer.token("library/a", headers={"x5c": ["not base64!"]})) is None
    assert verifier.verify(leaf_signer.token("library/a", headers={"x5c": "abc"})) is None


def test_rotated_certificate_invalidates_cached_tokens(
    verifier: TokenVerifier, signer: Signer
) -> None:
    header = [f"Bearer {signer.token('library/a')}"]
    assert verifier.grant(header) is not None
    verifier.replace_keys(TrustedKeys.from_pem(pem(Signer(name="new").cert)))
    assert verifier.grant(header) is None


def test_verified_tokens_are_cached_until_expiry(signer: Signer) -> None:
    now = [time.time()]
    verifier = TokenVerifier(CFG, TrustedKeys.from_pem(pem(signer.cert)), clock=lambda: now[0])
    header = [f"Bearer {signer.token('library/a', exp=int(now[0]) + 100)}"]
    first = verifier.grant(header)
    assert first is not None
    assert verifier.grant(header) is first
    assert verifier.grant(header * 2) is None  # two Authorization values: no grant
    now[0] += 101
    # Past its exp the cached grant is gone: the token is verified afresh (a new grant).
    assert verifier.grant(header) is not first


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Bearer eyJh.eyJi.c2ln"], "eyJh.eyJi.c2ln"),
        (["Bearer aGk.aGk.QQ"], "aGk.aGk.QQ"),  # unpadded parts, spare bits zero
        (["bearer eyJh.eyJi.c2ln"], None),  # Harbor core takes "Bearer" only
        (["BEARER eyJh.eyJi.c2ln"], None),
        (["Bearer  eyJh.eyJi.c2ln"], None),  # distribution: exactly one space
        (["Bearer\teyJh.eyJi.c2ln"], None),
        (["Bearer eyJh.eyJi.c2ln "], None),
        (["Bearer eyJh. eyJi.c2ln"], None),
        (["Bearer aGk.aGk.QR"], None),  # decodes as .QQ does: a second spelling
        (["Bearer aGk.aGk.QQ=="], None),  # padding
        (["Bearer aGk.aGk.Q"], None),  # no base64 is 1 mod 4 characters long
        (["Bearer eyJh.eyJi"], None),
        (["Bearer eyJh.eyJi.c2ln", "Bearer eyJh.eyJi.c2ln"], None),
        (["Basic dXNlcjpwYXNz"], None),
        (["Bearer "], None),
        ([], None),
        ([f"Bearer eyJh.eyJi.{'A' * (MAX_TOKEN_LENGTH - 9)}"], None),  # over 16 KiB
    ],
)
def test_bearer_token_extraction(values: list[str], expected: str | None) -> None:
    assert bearer_token(values) == expected


def test_longest_token_fits_a_16_kib_header() -> None:
    token = f"eyJh.eyJi.{'A' * (MAX_TOKEN_LENGTH - 10)}"
    assert len(f"Bearer {token}") == 16 * 1024
    assert bearer_token([f"Bearer {token}"]) == token
    assert bearer_token([f"Bearer {token}A"]) is None


def respellings(token: str) -> list[str]:
    """Ways to write ``Bearer <token>`` that some parser would read as the same token."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = alphabet[alphabet.index(token[-1]) + 1]  # sets a bit decoders ignore
    assert base64.urlsafe_b64decode(f"{token[-2:]}==") == base64.urlsafe_b64decode(
        f"{token[-2]}{spare}==")
    return [f"bearer {token}", f"BEARER {token}", f"bEaReR {token}", f"Bearer  {token}",
            f"Bearer \t {token}", f"Bearer{' ' * 500}{token}", f"Bearer {token[:-1]}{spare}"]


def test_respelled_tokens_get_no_grant_and_no_cache_entry(
    verifier: TokenVerifier, signer: Signer
) -> None:
    token = signer.token("library/a")
    grant = verifier.grant([f"Bearer {token}"])
    assert grant is not None
    for value in respellings(token):
        assert verifier.grant([value]) is None, value
    assert len(verifier.cache) == 1
    assert grant.key == hashlib.sha256(token.encode()).digest()


def test_overlong_tokens_are_not_verified(verifier: TokenVerifier, signer: Signer) -> None:
    token = signer.token("library/a", padding="x" * MAX_TOKEN_LENGTH)
    assert len(token) > MAX_TOKEN_LENGTH
    assert verifier.verify(token) is None
    assert verifier.verify(signer.token("library/a", padding="x" * 1000)) is not None


def test_pullable_repositories_ignores_malformed_entries() -> None:
    access = [None, 3, {"type": "repository"}, {"type": "repository", "name": 5, "actions": []},
              {"type": "repository", "name": "ok", "actions": ["push", "pull"]}]
    assert pullable_repositories(access) == frozenset({"ok"})


def test_bundle_errors_are_clear() -> None:
    with pytest.raises(KeyBundleError, match="not a PEM certificate bundle"):
        TrustedKeys.from_pem(b"garbage")
    with pytest.raises(KeyBundleError, match="No such file"):
        TrustedKeys.from_file(Path("/nonexistent/token.crt"))


def test_libtrust_key_id_is_stable(signer: Signer) -> None:
    assert libtrust_key_id(signer.cert.public_key()) == signer.kid  # type: ignore[arg-type]
