"""blobgate reads a manifest as the registry (Go's ``encoding/json``) does, or learns nothing.

A session fixture builds ``support/manifest_decoder.go`` (stdlib only) with the system
``go``: struct types shaped like distribution's, decoded as the registry decodes them,
printing the references distribution checks. Manifests go through it and through
``manifest_blobs``; blobgate's set must be Go's, or nothing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blobgate.registry.manifests import GO_FOLD, Refused, manifest_blobs

from support.manifest_forms import VARIANTS, manifests

SOURCE = Path(__file__).parent.parent / "support" / "manifest_decoder.go"
C, S, X = (f"sha256:{c * 64}" for c in "cdf")
Reading = list[str] | None  # the checked digests, or None: refused / rejected


@pytest.fixture(scope="session")
def go_decoder() -> Iterator[Path]:
    """The compiled decoder; without ``go``, a failure in CI and a skip elsewhere."""
    go = shutil.which("go")
    if go is None:
        message = "go not installed (apt-get install golang-go)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with tempfile.TemporaryDirectory(prefix="blobgate-go-") as tmp:
        env = {**os.environ, "GOCACHE": f"{tmp}/cache", "GOPATH": f"{tmp}/gopath",
               "GO111MODULE": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        binary = Path(tmp) / "manifest_decoder"
        subprocess.run([go, "build", "-o", str(binary), str(SOURCE)],
                       env=env, check=True, capture_output=True, timeout=300)
        yield binary


def go_readings(binary: Path, documents: list[tuple[str, bytes]]) -> list[Reading]:
    """Go's reading of each (Content-Type, body), all in one run."""
    lines = "".join(f"{kind}\t{base64.b64encode(body).decode()}\n" for kind, body in documents)
    done = subprocess.run([str(binary)], input=lines, capture_output=True, text=True,
                          check=True, timeout=60)
    return [None if line == "rejected" else json.loads(line)
            for line in done.stdout.splitlines()]


def blobgate_reading(kind: str, body: bytes) -> Reading:
    try:
        return list(manifest_blobs(body, kind, 1000))
    except Refused:
        return None


def exact_case_reading(body: bytes) -> list[str]:
    """Config and layer digests without ``urls``, read with Python's exact-case keys."""
    doc = json.loads(body)
    return [d["digest"] for d in [doc.get("config"), *doc.get("layers", [])]
            if "digest" in d and not d.get("urls")]


def test_only_long_s_and_kelvin_fold_onto_ascii_letters(go_decoder: Path) -> None:
    done = subprocess.run([str(go_decoder), "-orbits"], capture_output=True, text=True,
                          check=True, timeout=60)
    go = {(int(point, 16), letter.lower()) for point, letter in
          (line.split() for line in done.stdout.splitlines())}
    ours = {(point, target) for point, target in GO_FOLD.items() if point >= 0x80}
    assert ours == go == {(0x17F, "s"), (0x212A, "k")}


def test_known_confusions_go_reads_x_and_blobgate_learns_nothing(go_decoder: Path) -> None:
    documents = [variant(C, S, X) for variant in VARIANTS.values()]
    for (name, _), go, (kind, body) in zip(VARIANTS.items(), go_readings(go_decoder, documents),
                                           documents, strict=True):
        assert go == [C, X], name  # the registry checked C and X only ...
        assert S in exact_case_reading(body), name  # what the old reader learnt
        with pytest.raises(Refused) as refused:  # ... so S must not be learnt
            manifest_blobs(body, kind, 1000)
        assert refused.value.reason in ("duplicate_key", "folded_key"), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(manifests(), min_size=1, max_size=25))
def test_blobgate_learns_what_go_checked_or_nothing(
    go_decoder: Path, documents: list[tuple[str, bytes]]
) -> None:
    for (kind, body), go in zip(documents, go_readings(go_decoder, documents), strict=True):
        ours = blobgate_reading(kind, body)
        assert ours is None or ours == go, body.decode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(manifests(honest=True), min_size=1, max_size=25))
def test_honest_manifests_are_read_exactly_as_go_reads_them(
    go_decoder: Path, documents: list[tuple[str, bytes]]
) -> None:
    for (kind, body), go in zip(documents, go_readings(go_decoder, documents), strict=True):
        assert blobgate_reading(kind, body) == go, body.decode()
