"""``blobgate explain`` against a blobgate on the real stack: a redirect, a stream by a
routing rule, a token the registry refuses and a blob of another repository, each
printed step by step, and afterwards no cache holds or has counted anything more and no
request line or audit record was written."""

from __future__ import annotations

import re
import secrets
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from blobgate.devstack.clients import ClientError, run
from blobgate.devstack.gateway import GatewayProcess, dev_environment, merged
from blobgate.devstack.image import OciImage
from blobgate.devstack.stack import ISSUER, PUSHER, SERVICE, TEAM_B_READER, Stack, gateway_config

from support.tokens import Signer

pytestmark = pytest.mark.e2e

CACHE_LINE = re.compile(r"^blobgate_cache_(requests_total|entries|evictions_total)\{.*$", re.M)


@pytest.fixture
def explained(stack: Stack, tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path, Signer]]:
    """A blobgate that also trusts a key the registry does not, with an admin token and a
    rule streaming to old docker clients; its admin token file; the untrusted signer."""
    signer = Signer()
    bundle = tmp_path / "bundle.pem"
    (tmp_path / "extra").mkdir()
    extra = signer.write_bundle(tmp_path / "extra").read_text()
    bundle.write_text(stack.signing.cert_path.read_text() + extra)
    token_file = tmp_path / "admin-token"
    token_file.write_text(secrets.token_hex(16))
    config = merged(gateway_config(stack), {
        "auth": {"certificates": str(bundle)},
        "admin": {"token_file": str(token_file)},
        "routing": {"rules": [{"action": "stream", "user_agents": ["^old-docker/"]}]},
    })
    with GatewayProcess(tmp_path / "gw", config, env=dev_environment()) as gateway:
        yield gateway, token_file, signer


def cache_lines(gateway: GatewayProcess) -> list[str]:
    """Every cache's entries, lookups and evictions, from the gateway's /metrics."""
    return sorted(match[0] for match in CACHE_LINE.finditer(metrics_text(gateway)))


def metrics_text(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(f"{gateway.metrics_url()}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


def explain(gateway: GatewayProcess, admin_token: Path, tmp_path: Path, repository: str,
            digest: str, token: str | None, *extra: str) -> str:
    argv = [sys.executable, "-m", "blobgate", "explain", "--admin-url", gateway.admin_url(),
            "--admin-token-file", str(admin_token), "--repository", repository,
            "--digest", digest, *extra]
    if token is not None:
        token_file = tmp_path / f"token-{secrets.token_hex(4)}"
        token_file.write_text(token)
        argv += ["--token-file", str(token_file)]
    return run(argv)


def test_explain_tells_each_answer_and_changes_nothing(
    stack: Stack, image: OciImage, pushed: str, tmp_path: Path,
    explained: tuple[GatewayProcess, Path, Signer],
) -> None:
    gateway, admin_token, untrusted = explained
    digest = image.blobs[0].digest
    token = stack.token(f"repository:{pushed}:pull", creds=PUSHER)
    before, lines_before = cache_lines(gateway), len(gateway.access_log())

    redirect = explain(gateway, admin_token, tmp_path, pushed, digest, token)
    assert redirect.splitlines()[-1].split() == ["answer:", "redirect", "(signed)"]
    assert "registry verdict: accepted" in redirect
    assert "membership: in team-a/app  [registry]" in redirect
    assert "storage check: there" in redirect
    assert "X-Amz-Signature" not in redirect  # the URL without its signature

    streamed = explain(gateway, admin_token, tmp_path, pushed, digest, token,
                       "--user-agent", "old-docker/20.10")
    assert "routing rule: policy:rules[0]" in streamed
    assert streamed.splitlines()[-1].split() == ["answer:", "stream", "(policy:rules[0])"]

    forged = untrusted.token(pushed, iss=ISSUER, aud=SERVICE)  # blobgate trusts its key
    refused = explain(gateway, admin_token, tmp_path, pushed, digest, forged)
    assert "token: valid" in refused
    assert refused.splitlines()[-1].split() == ["answer:", "refused", "(refused)"]

    other = stack.token("repository:team-b/tools:pull", creds=TEAM_B_READER)
    elsewhere = explain(gateway, admin_token, tmp_path, "team-b/tools", digest, other)
    assert elsewhere.splitlines()[-1].split() == ["answer:", "not_found", "(not_member)"]

    assert cache_lines(gateway) == before  # nothing kept, nothing even counted
    assert len(gateway.access_log()) == lines_before  # no line, no audit record


def test_explain_needs_the_admin_token(
    explained: tuple[GatewayProcess, Path, Signer], image: OciImage, tmp_path: Path,
) -> None:
    gateway, _, _ = explained
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-admin-token-at-all")
    with pytest.raises(ClientError) as refused:
        explain(gateway, wrong, tmp_path, "team-a/app", image.blobs[0].digest, None)
    assert refused.value.returncode == 1
    assert refused.value.output.startswith("blobgate explain: 403")
