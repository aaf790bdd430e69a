"""Container clients driven as subprocesses: skopeo copies between OCI layouts and registries.

Tests and the demo push and pull exactly as a user would, so what the gateway sees is
what real clients send.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from blobgate.devstack.image import OciImage


class ClientError(RuntimeError):
    """A client command exited non-zero; the message carries its output."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        super().__init__(f"{' '.join(argv)} exited with {returncode}:\n{output[-4000:]}")
        self.returncode = returncode
        self.output = output


@dataclass(frozen=True)
class Credentials:
    """A user name and password known to the development token issuer."""

    username: str
    password: str

    def __str__(self) -> str:
        return f"{self.username}:{self.password}"


def run(argv: Sequence[str], timeout_s: float = 240.0) -> str:
    """Run a client command; return its combined output or raise ``ClientError``."""
    binary = shutil.which(argv[0])
    if binary is None:
        raise FileNotFoundError(f"{argv[0]} is not installed")
    done = subprocess.run(  # noqa: S603 - fixed client binaries, no shell
        [binary, *argv[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise ClientError(argv, done.returncode, done.stdout)
    return done.stdout


def _creds_flags(side: str, creds: Credentials | None) -> list[str]:
    """``--src-creds u:p`` or, for anonymous access, ``--src-no-creds``."""
    return [f"--{side}-creds", str(creds)] if creds else [f"--{side}-no-creds"]


def skopeo_push(image: OciImage, host: str, repository: str, creds: Credentials | None) -> str:
    """Copy ``image`` to ``docker://host/repository:tag`` over plain HTTP."""
    dest = f"docker://{host}/{repository}:{image.tag}"
    return run(
        [
            "skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
            *_creds_flags("dest", creds), image.reference, dest,
        ]
    )  # fmt: skip


def skopeo_pull(host: str, reference: str, layout: Path, creds: Credentials | None) -> str:
    """Copy ``docker://host/reference`` into the OCI layout ``layout`` (tagged ``pulled``)."""
    return run(
        [
            "skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
            *_creds_flags("src", creds), f"docker://{host}/{reference}", f"oci:{layout}:pulled",
        ]
    )  # fmt: skip
