"""Input grammar: hostile names, digests and request targets, on the wire and as properties.

Through a running gateway every odd path is answered with OCI error JSON (400
``NAME_INVALID`` / ``DIGEST_INVALID``) or passed through to the registry, never with a
5xx. Property-based tests (hypothesis, derandomized) pin down the parsers that decide
which repository and which storage key a request touches.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import string
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blobgate.auth.tokens import MAX_TOKEN_LENGTH, Grant, bearer_token, pullable_repositories
from blobgate.errors import DigestInvalid, NameInvalid
from blobgate.reference import (
    MAX_NAME_LENGTH,
    BlobRef,
    Digest,
    blob_path,
    parse_blob,
    parse_digest,
    parse_name,
    storage_key,
)
from hardening.wire import Answer, bearer, exchange, send

from support.gateway import GatewayFactory
from support.lines import Lines
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
PROPERTIES = settings(max_examples=200, derandomize=True, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
HEX64 = "0123456789abcdef" * 4

NAMES: dict[str, str] = {
    "dot-dot": "library/../a",
    "dot": "library/./a",
    "leading-dot-dot": "../library/a",
    "double-slash": "library//a",
    "encoded-slash": "library%2Fa",
    "encoded-slash-lower": "library%2fa",
    "encoded-dot-dot": "library/%2E%2E/a",
    "encoded-nul": "library/a%00",
    "encoded-unicode": "library/%C3%A9",
    "upper-case": "Library/a",
    "all-upper": "LIBRARY/A",
    "leading-separator": "_library/a",
    "trailing-separator": "library-/a",
    "triple-underscore": "library___a",
    "double-dot-in-component": "library..a",
    "backslash": "library\\a",
    "semicolon": "library;a",
    "too-long-256": "a" * 256,
    "too-long-components": "/".join(["abc"] * 86),
    "colon": "library:a",
    "at-sign": "library@a",
}

DIGESTS: dict[str, str] = {
    "md5": "md5:" + "a" * 32,
    "sha1": "sha1:" + "a" * 40,
    "sha256-b64u": "sha256+b64u:" + "a" * 43,
    "short": "sha256:" + HEX64[:63],
    "long": "sha256:" + HEX64 + "0",
    "upper-hex": "sha256:" + HEX64.upper(),
    "upper-algorithm": "SHA256:" + HEX64,
    "sha512-with-256-length": "sha512:" + HEX64,
    "sha384-with-256-length": "sha384:" + HEX64,
    "trailing-junk": "sha256:" + HEX64 + "junk",
    "trailing-encoded-nul": "sha256:" + HEX64 + "%00",
    "trailing-semicolon": "sha256:" + HEX64 + ";x",
    "trailing-encoded-space": "sha256:" + HEX64 + "%20",
    "encoded-colon": "sha256%3A" + HEX64,
    "no-hex": "sha256:",
    "no-algorithm": ":" + HEX64,
    "bare-hex": HEX64,
    "huge": "sha256:" + "a" * 6000,
    "uploads": "uploads",
}

# Paths the blob route does not claim: they go to the registry untouched.
PASSED_THROUGH: dict[str, str] = {
    "empty-name": "/v2//blobs/sha256:" + HEX64,
    "digest-with-slash": "/v2/library/a/blobs/sha256:" + HEX64 + "/",
    "upload-status": "/v2/library/a/blobs/uploads/0d5e-41c7",
    "no-v2": "/v1/library/a/blobs/sha256:" + HEX64,
    "valid-unknown-sha384": "/v2/library/a/blobs/sha384:" + "ab" * 48,
    "valid-unknown-sha512": "/v2/library/a/blobs/sha512:" + "cd" * 64,
    "longest-name-255": "/v2/" + "a" * 255 + "/blobs/sha256:" + HEX64,
}


@pytest.fixture
async def client(gateway: GatewayFactory) -> TestClient[Any, Any]:
    return await gateway()


def assert_oci_error(answer: Answer, code: str, method: str) -> None:
    assert answer.status == 400
    assert answer.header("Location") is None
    assert (answer.header("Content-Type") or "").startswith("application/json")
    if method == "GET":
        assert json.loads(answer.body)["errors"][0]["code"] == code


@pytest.mark.parametrize("case", list(NAMES))
async def test_invalid_names_get_name_invalid(
    client: TestClient[Any, Any], signer: Signer, standin: Standin, case: str
) -> None:
    for method in ("GET", "HEAD"):
        answer = await exchange(client.port, method, f"/v2/{NAMES[case]}/blobs/sha256:{HEX64}",
                                bearer(signer.token("library/a")))
        assert_oci_error(answer, "NAME_INVALID", method)
    assert standin[0].requests == []


@pytest.mark.parametrize("case", list(DIGESTS))
async def test_invalid_digests_get_digest_invalid(
    client: TestClient[Any, Any], signer: Signer, standin: Standin, case: str
) -> None:
    for method in ("GET", "HEAD"):
        answer = await exchange(client.port, method, f"/v2/library/a/blobs/{DIGESTS[case]}",
                                bearer(signer.token("library/a")))
        assert_oci_error(answer, "DIGEST_INVALID", method)
        if method == "GET":
            detail = json.loads(answer.body)["errors"][0]["detail"]
            assert len(json.dumps(detail)) < 400  # the echo of hostile input is bounded
    assert standin[0].requests == []


@pytest.mark.parametrize("case", list(PASSED_THROUGH))
async def test_paths_outside_the_blob_grammar_pass_through(
    client: TestClient[Any, Any], signer: Signer, standin: Standin, case: str
) -> None:
    path = PASSED_THROUGH[case]
    answer = await exchange(client.port, "GET", path, bearer(signer.token("library/a")))
    assert answer.status < 500
    assert answer.header("Location") is None
    assert standin[0].count("GET", path) == 1


async def test_query_is_ignored_by_the_blob_route(
    client: TestClient[Any, Any], signer: Signer, blob: tuple[str, bytes]
) -> None:
    answer = await exchange(client.port, "GET", f"/v2/library/a/blobs/{blob[0]}?digest=x&n=..",
                            bearer(signer.token("library/a")))
    assert answer.status == 307
    assert f"/{blob[0].split(':')[1]}/data" in (answer.header("Location") or "")


MALFORMED: dict[str, bytes] = {
    "target-without-slash": b"GET x HTTP/1.1\r\nHost: a\r\n\r\n",
    "unknown-version": b"GET /v2/ HTTP/9.9\r\nHost: a\r\n\r\n",
    "space-in-header-name": b"GET /v2/ HTTP/1.1\r\nHost: a\r\nBad Header: v\r\n\r\n",
    "nul-in-target": b"GET /v2/a\x00b HTTP/1.1\r\nHost: a\r\n\r\n",
    "header-line-9k": b"GET /v2/ HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    "bad-content-length": b"POST /v2/ HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
    "content-length-and-chunked": b"POST /v2/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_requests_are_refused_with_400(
    client: TestClient[Any, Any], standin: Standin, case: str
) -> None:
    data = await send(client.port, MALFORMED[case])
    assert data.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    assert standin[0].requests == []


@pytest.mark.parametrize("case", ["target-without-slash", "header-line-9k"])
async def test_malformed_requests_are_logged_and_counted_without_an_exception(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture, lines: Lines, case: str
) -> None:
    with caplog.at_level(logging.INFO):
        await send(client.port, MALFORMED[case])
    crashes = [r for r in caplog.records if r.exc_info and r.exc_info[0] is AssertionError]
    assert crashes == []
    access = lines.entries("blobgate.access")
    assert [(e["status"], e["outcome"]) for e in access] == [(400, "invalid")]


@pytest.mark.parametrize("target", ["/v2/", "/v2/library/a/blobs/{digest}"])
async def test_absolute_form_targets_are_not_a_server_error(
    client: TestClient[Any, Any], signer: Signer, blob: tuple[str, bytes], target: str
) -> None:
    absolute = f"http://127.0.0.1:{client.port}" + target.format(digest=blob[0])
    answer = await exchange(client.port, "GET", absolute, bearer(signer.token("library/a")))
    assert answer.status < 500


# -- properties ------------------------------------------------------------------------------

ALNUM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
SEPARATOR = st.sampled_from([".", "_", "__", "-", "--", "---"])
COMPONENT = st.builds(lambda first, rest: first + "".join(sep + run for sep, run in rest),
                      ALNUM, st.lists(st.tuples(SEPARATOR, ALNUM), max_size=3))
VALID_NAMES = st.lists(COMPONENT, min_size=1, max_size=6).map("/".join).filter(
    lambda name: len(name) <= MAX_NAME_LENGTH)
HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from(list(string.ascii_letters + string.digits + "./_-%:@\\ ;?#\x00é")),
    max_size=300)
ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
VALID_DIGESTS = st.sampled_from(sorted(ALGORITHMS)).flatmap(
    lambda alg: st.text(alphabet="0123456789abcdef", min_size=ALGORITHMS[alg],
                        max_size=ALGORITHMS[alg]).map(lambda hex_: f"{alg}:{hex_}"))
DIGEST_LIKE = st.one_of(
    VALID_DIGESTS,
    st.builds(lambda a, h: f"{a}:{h}",
              st.sampled_from(["sha256", "sha384", "sha512", "md5", "SHA256", "sha256+b64u", ""]),
              st.text(alphabet="0123456789abcdefABCDEF./%g", max_size=140)),
    HOSTILE_TEXT,
)
NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)"
                     r"[a-z0-9]+)*)*")


@PROPERTIES
@given(st.one_of(VALID_NAMES, HOSTILE_TEXT))
def test_parse_name_accepts_only_the_distribution_grammar(text: str) -> None:
    try:
        name = parse_name(text)
    except NameInvalid as exc:
        refused: NameInvalid | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.status == 400
        assert len(refused.body()) < 1024
        return
    assert name == text
    assert NAME_RE.fullmatch(name)
    assert len(name) <= MAX_NAME_LENGTH
    for forbidden in ("..", "//", "%"):
        assert forbidden not in name
    assert name == name.lower()


@PROPERTIES
@given(VALID_NAMES)
def test_every_grammatical_name_is_accepted(name: str) -> None:
    assert parse_name(name) == name


@PROPERTIES
@given(DIGEST_LIKE)
def test_parse_digest_accepts_exactly_the_supported_forms(text: str) -> None:
    try:
        digest = parse_digest(text)
    except DigestInvalid as exc:
        refused: DigestInvalid | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.status == 400
        assert len(refused.body()) < 1024
        return
    assert str(digest) == text
    assert digest.algorithm in ALGORITHMS
    assert len(digest.hex) == ALGORITHMS[digest.algorithm]
    assert set(digest.hex) <= set("0123456789abcdef")


@PROPERTIES
@given(VALID_DIGESTS)
def test_every_supported_digest_is_accepted(text: str) -> None:
    assert str(parse_digest(text)) == text


@PROPERTIES
@given(st.one_of(
    HOSTILE_TEXT.map(lambda text: "/v2/" + text),
    st.builds(lambda n, d, q: f"/v2/{n}/blobs/{d}{q}", st.one_of(VALID_NAMES, HOSTILE_TEXT),
              DIGEST_LIKE, st.sampled_from(["", "?", "?a=b", "?x=/blobs/sha256:1"])),
))
def test_blob_path_agrees_with_split_then_validate(path: str) -> None:
    """The one-expression fast path answers exactly as splitting the path and validating
    each part would: the same blob, the same error, or not a blob path."""
    split = re.fullmatch(r"/v2/(.+)/blobs/([^/]+)", path.partition("?")[0])
    expected: BlobRef | type[Exception] | None
    try:
        expected = None if split is None else parse_blob(split[1], split[2])
    except (NameInvalid, DigestInvalid) as exc:
        expected = type(exc)
    try:
        got: BlobRef | type[Exception] | None = blob_path(path)
    except (NameInvalid, DigestInvalid) as exc:
        got = type(exc)
    assert got == expected
    if isinstance(got, BlobRef):
        assert f"/v2/{got.name}/blobs/{got.digest}" == path.partition("?")[0]


@PROPERTIES
@given(VALID_NAMES, VALID_DIGESTS, st.sampled_from(["", "?ns=docker.io", "?a=/v2/x/blobs/y"]))
def test_blob_path_round_trips_valid_paths(name: str, digest: str, query: str) -> None:
    assert blob_path(f"/v2/{name}/blobs/{digest}{query}") == BlobRef(name, Digest(digest))


ROOTS = st.one_of(
    st.just(""),
    st.lists(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,15}", fullmatch=True)
             .filter(lambda seg: ".." not in seg), min_size=1, max_size=4)
    .flatmap(lambda segs: st.sampled_from(["", "/"]).map(
        lambda lead: lead + "/".join(segs))).flatmap(
        lambda root: st.sampled_from([root, root + "/", "/" + root])),
)


@PROPERTIES
@given(ROOTS, DIGEST_LIKE)
def test_storage_key_stays_inside_the_blob_tree(root: str, text: str) -> None:
    try:
        digest = parse_digest(text)
    except DigestInvalid:
        return
    key = storage_key(root, digest)
    prefix = re.escape(root.strip("/") + "/") if root.strip("/") else ""
    pattern = (rf"^({prefix})?docker/registry/v2/blobs/(sha256|sha384|sha512)/"
               r"[0-9a-f]{2}/[0-9a-f]+/data$")
    assert re.fullmatch(pattern, key)
    assert ".." not in key
    assert "//" not in key
    assert key.endswith(f"/{digest.hex[:2]}/{digest.hex}/data")


@PROPERTIES
@given(st.text(max_size=200))
def test_storage_key_never_escapes_below_the_root_for_any_digest_object(hex_: str) -> None:
    """Even a hand-built ``Digest`` only contributes below ``blobs/``; this pins today's
    behaviour that the key is pure string formatting (parse_digest is the only gate)."""
    key = storage_key("root", Digest("sha256:" + hex_))
    assert key.startswith("root/docker/registry/v2/blobs/sha256/")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["repository", "Repository", "registry", ""]) | JSON,
        "name": st.sampled_from(["library/a", "library/ab", "library/a/b", "Library/A", "*"])
        | JSON,
        "actions": st.lists(st.sampled_from(["pull", "push", "*", "PULL", "delete", ""]),
                            max_size=4) | JSON,
    },
)
ACCESS = st.one_of(JSON, st.lists(st.one_of(ENTRY, JSON), max_size=6))


def granted_by(access: Any) -> set[str]:
    """What a Docker-token-spec reading of ``access`` grants pull on, exactly."""
    names: set[str] = set()
    if not isinstance(access, list):
        return names
    for entry in access:
        if (isinstance(entry, dict) and entry.get("type") == "repository"
                and isinstance(entry.get("name"), str) and isinstance(entry.get("actions"), list)
                and any(a in ("pull", "*") for a in entry["actions"])):
            names.add(entry["name"])
    return names


@PROPERTIES
@given(ACCESS)
def test_pullable_repositories_grants_only_exact_listed_names(access: Any) -> None:
    pullable = pullable_repositories(access)
    assert pullable == granted_by(access)
    grant = Grant(subject="s", expires_at=0.0, pullable=pullable, key=b"k")
    for probe in ("library/a", "library/ab", "library/a/b", "library", "Library/A", "*", ""):
        assert grant.can_pull(probe) == (probe in granted_by(access))


@PROPERTIES
@given(st.lists(st.one_of(
    st.text(max_size=50),
    st.builds(lambda scheme, gap, token: f"{scheme}{gap}{token}",
              st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Bearerx", ""]),
              st.sampled_from([" ", "  ", "\t", ""]),
              st.one_of(st.text(max_size=40), st.lists(
                  st.binary(min_size=1, max_size=30).map(
                      lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()),
                  min_size=3, max_size=3).map(".".join))),
    st.just("Bearer " + "t" * (MAX_TOKEN_LENGTH + 1)),
), max_size=3))
def test_bearer_token_takes_one_well_formed_bearer_only(values: list[str]) -> None:
    token = bearer_token(values)
    if token is None:
        return
    assert values == [f"Bearer {token}"]  # the one spelling every registry accepts
    assert token
    assert len(token) <= MAX_TOKEN_LENGTH
