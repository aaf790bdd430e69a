"""``blobgate demo``: the whole stack on loopback, one push and pull, and what it proved.

It starts S3, a token issuer, the registry and blobgate, pushes a small image through
blobgate, pulls it back, and reports from the servers' own logs how many blob bytes
went straight from S3 to the client. Then it keeps serving for manual experiments.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from blobgate.devstack.clients import skopeo_pull, skopeo_push
from blobgate.devstack.image import MiB, OciImage, build_image, verified_blobs
from blobgate.devstack.stack import PUSHER, SERVICE, Stack

REQUIRED = ("docker-registry", "skopeo")
INSTALL = "sudo apt-get install -y docker-registry skopeo"
REPOSITORY = "demo/sample"
LAYER_SIZES = (1 * MiB, 8 * MiB)


@dataclass(frozen=True)
class RoundTrip:
    """What the logs say happened to the sample image's blobs during the pull."""

    blobs: int
    redirected: int
    served_by_s3: int
    registry_blob_gets: int
    offloaded_bytes: int
    verified: int

    @property
    def ok(self) -> bool:
        """Every blob was redirected, served by S3 and verified; none came from the registry."""
        everything = {self.redirected, self.served_by_s3, self.verified}
        return everything == {self.blobs} and self.registry_blob_gets == 0


def round_trip(stack: Stack, image: OciImage, pulled: Path) -> RoundTrip:
    """Push ``image`` through blobgate, pull it back into ``pulled``, read the logs."""
    skopeo_push(image, stack.gateway_host, REPOSITORY, PUSHER)
    seen_access, seen_registry = len(stack.access_log()), len(stack.registry.requests())
    seen_s3 = len(stack.presigned_blob_gets())
    skopeo_pull(stack.gateway_host, f"{REPOSITORY}:{image.tag}", pulled, PUSHER)
    redirected = {
        entry["digest"]
        for entry in stack.access_log()[seen_access:]
        if entry.get("method") == "GET" and entry.get("outcome") == "redirect"
    }
    from_s3 = set(stack.presigned_blob_gets()[seen_s3:])
    registry_gets = [
        r
        for r in stack.registry.requests()[seen_registry:]
        if r.method == "GET" and "/blobs/" in r.uri
    ]
    on_disk = verified_blobs(pulled / "blobs")
    offloaded = [b for b in image.blobs if b.digest in redirected and b.digest in from_s3]
    return RoundTrip(
        blobs=len(image.blobs),
        redirected=len(redirected & {b.digest for b in image.blobs}),
        served_by_s3=len(from_s3 & {b.digest for b in image.blobs}),
        registry_blob_gets=len(registry_gets),
        offloaded_bytes=sum(b.size for b in offloaded),
        verified=sum(on_disk.get(b.digest) == b.size for b in image.blobs),
    )


def report(stack: Stack, result: RoundTrip) -> str:
    """The round trip in plain words."""
    return "\n".join(
        [
            f"Pushed {REPOSITORY} through blobgate ({stack.gateway_url}) and pulled it back.",
            f"{result.redirected} of {result.blobs} blob downloads were answered by blobgate "
            "with a 307 redirect to a presigned S3 URL.",
            f"S3 served {result.served_by_s3} of those blobs directly; the registry served "
            f"{result.registry_blob_gets} blob downloads itself.",
            f"{result.offloaded_bytes / MiB:.1f} MiB reached the client without passing "
            "through the registry or blobgate.",
            f"{result.verified} of {result.blobs} pulled blobs match their sha256 digests.",
        ]
    )


def instructions(stack: Stack, image: OciImage) -> str:
    """Commands for trying the running stack by hand."""
    layer = image.layers[0].digest
    token_url = f"{stack.issuer_url}/token?service={SERVICE}&scope=repository:{REPOSITORY}:pull"
    parse_json = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])'"
    logs = "\n".join(f"  {name}: {path}" for name, path in stack.log_paths().items())
    return f"""
Try it by hand (user {PUSHER.username}, password {PUSHER.password}):
  skopeo copy --src-tls-verify=false --src-creds {PUSHER} \\
      docker://{stack.gateway_host}/{REPOSITORY}:{image.tag} oci:/tmp/blobgate-sample:latest
  TOKEN=$(curl -s -u {PUSHER} '{token_url}' | {parse_json})
  curl -si -H "Authorization: Bearer $TOKEN" {stack.gateway_url}/v2/{REPOSITORY}/blobs/{layer}
  curl -si {stack.gateway_url}/v2/{REPOSITORY}/blobs/{layer}    # no token: the registry's 401
  curl -s {stack.metrics_url}/metrics | grep ^blobgate_
Logs:
{logs}"""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt (even where SIGINT was ignored, as
    in background jobs) so every ``with`` block cleans up."""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(signum, _interrupt) for signum in stop_signals]
    try:
        yield
    finally:
        for signum, handler in zip(stop_signals, previous, strict=True):
            signal.signal(signum, handler)


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="blobgate-demo-") as name:
        yield Path(name)


def _run(workdir: Path, once: bool) -> int:
    image = build_image(workdir / "sample", LAYER_SIZES)
    with Stack(workdir / "stack") as stack:
        result = round_trip(stack, image, workdir / "pulled")
        print(report(stack, result), flush=True)
        if once:
            return 0 if result.ok else 1
        print(instructions(stack, image), flush=True)
        print("\nServing until Ctrl-C.", flush=True)
        while True:
            signal.pause()


def main(argv: list[str]) -> int:
    """Run the demo; returns the exit status (2 when a required binary is missing)."""
    parser = argparse.ArgumentParser(prog="blobgate demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="push, pull, report and exit")
    parser.add_argument("--workdir", type=Path, help="keep files and logs here (default: temp)")
    args = parser.parse_args(argv)
    missing = [binary for binary in REQUIRED if shutil.which(binary) is None]
    if missing:
        print(
            f"blobgate demo needs {' and '.join(missing)}; install with: {INSTALL}", file=sys.stderr
        )
        return 2
    with _stop_signals_interrupt(), _workdir(args.workdir) as workdir:
        try:
            return _run(workdir, args.once)
        except KeyboardInterrupt:
            print("\nStopped; all demo processes have exited.")
            return 0
