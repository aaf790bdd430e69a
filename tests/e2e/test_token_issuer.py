"""The development token issuer speaks the Docker token spec the registry and blobgate verify."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from blobgate.auth.keys import libtrust_key_id
from blobgate.devstack.clients import Credentials
from blobgate.devstack.stack import ISSUER, SERVICE, TEAM_B_READER, Stack

pytestmark = pytest.mark.e2e


def ask(stack: Stack, creds: Credentials | None, form: dict[str, str] | None = None) -> Any:
    """GET (or POST ``form`` to) the issuer; returns the decoded JSON or raises HTTPError."""
    query = urllib.parse.urlencode(
        [("service", SERVICE), ("scope", "repository:team-b/app:pull,push"),
         ("scope", "repository:team-a/app:pull")]
    )  # fmt: skip
    data = urllib.parse.urlencode(form).encode() if form else None
    url = f"{stack.issuer_url}/token" + ("" if form else f"?{query}")
    request = urllib.request.Request(url, data=data)
    if creds:
        basic = base64.b64encode(str(creds).encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_token_claims_follow_the_spec_and_the_policy(stack: Stack) -> None:
    answer = ask(stack, TEAM_B_READER)

    cert = x509.load_pem_x509_certificate(stack.signing.cert_path.read_bytes())
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    header = jwt.get_unverified_header(answer["token"])
    claims = jwt.decode(answer["token"], public_key, algorithms=["RS256"], audience=SERVICE)
    assert answer["access_token"] == answer["token"]
    assert header == {"alg": "RS256", "typ": "JWT", "kid": libtrust_key_id(public_key)}
    assert (claims["iss"], claims["aud"]) == (ISSUER, SERVICE)
    assert claims["sub"] == TEAM_B_READER.username
    assert all(isinstance(claims[key], int) for key in ("exp", "nbf", "iat"))
    assert claims["access"] == [
        {"type": "repository", "name": "team-b/app", "actions": ["pull"]},
        {"type": "repository", "name": "team-a/app", "actions": []},
    ]


def test_oauth2_password_grant_is_accepted_and_other_grants_refused(stack: Stack) -> None:
    form = {"grant_type": "password", "service": SERVICE, "client_id": "e2e",
            "username": TEAM_B_READER.username, "password": TEAM_B_READER.password,
            "scope": "repository:team-b/app:pull repository:team-b/app:push"}  # fmt: skip
    answer = ask(stack, None, form)

    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team-b/app", "actions": ["pull"]}]
    with pytest.raises(urllib.error.HTTPError) as refused:
        ask(stack, None, {"grant_type": "refresh_token", "refresh_token": "x"})
    assert refused.value.code == 400


def test_wrong_password_is_rejected(stack: Stack) -> None:
    wrong = Credentials(TEAM_B_READER.username, "not-the-password")
    with pytest.raises(urllib.error.HTTPError) as by_get:
        ask(stack, wrong)
    with pytest.raises(urllib.error.HTTPError) as by_post:
        ask(stack, None, {"grant_type": "password", "username": wrong.username,
                          "password": wrong.password})  # fmt: skip
    assert (by_get.value.code, by_post.value.code) == (401, 401)
