"""Fixtures for the end-to-end suite: one real stack per session, one pushed test image.

Every server and client runs for real on loopback; a fixture skips only when a binary
is missing, naming the package to install. All files live in one temporary directory
that is removed when the session ends; on failure the servers' log tails are attached
to the report instead.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from blobgate.devstack.clients import run, skopeo_push
from blobgate.devstack.containerd import Containerd
from blobgate.devstack.image import MiB, OciImage, build_image
from blobgate.devstack.stack import PUSHER, Stack

INSTALL = "apt-get install -y docker-registry skopeo containerd podman"
STACK_KEY = pytest.StashKey[Stack]()
LOG_TAIL_CHARS = 2000


def require(*binaries: str) -> None:
    """Skip the requesting test unless every binary is on PATH."""
    missing = [binary for binary in binaries if shutil.which(binary) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; install with: {INSTALL}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every server log to a failed test's report."""
    report: pytest.TestReport = yield
    stack = item.config.stash.get(STACK_KEY, None)
    if report.failed and stack is not None and "stack" in getattr(item, "fixturenames", ()):
        for name, path in stack.log_paths().items():
            tail = path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            report.sections.append((f"{name} log (tail)", tail))
    return report


@pytest.fixture
def demo_tools() -> None:
    """Skip unless the binaries ``blobgate demo`` needs are installed."""
    require("docker-registry", "skopeo")


@pytest.fixture(scope="session")
def e2e_dir() -> Iterator[Path]:
    """The session's scratch directory (short, for containerd's socket path limit)."""
    with tempfile.TemporaryDirectory(prefix="blobgate-e2e-") as name:
        yield Path(name)


@pytest.fixture(scope="session")
def stack(e2e_dir: Path, pytestconfig: pytest.Config) -> Iterator[Stack]:
    """S3, token issuer, registry and blobgate, shared by the whole session."""
    require("docker-registry")
    with Stack(e2e_dir / "stack") as started:
        pytestconfig.stash[STACK_KEY] = started
        yield started
        del pytestconfig.stash[STACK_KEY]


@pytest.fixture(scope="session")
def image(e2e_dir: Path) -> OciImage:
    """An image with ~1, 10 and 50 MiB layers, generated once per session."""
    return build_image(e2e_dir / "image", [1 * MiB, 10 * MiB, 50 * MiB])


@pytest.fixture(scope="session")
def pushed(stack: Stack, image: OciImage) -> str:
    """The session image pushed through blobgate as ``team-a/app``; returns the repository."""
    require("skopeo")
    skopeo_push(image, stack.gateway_host, "team-a/app", PUSHER)
    return "team-a/app"


@pytest.fixture
def containerd(e2e_dir: Path) -> Iterator[Containerd]:
    """A private containerd daemon, stopped after the test."""
    require("containerd", "ctr")
    with Containerd(Path(tempfile.mkdtemp(prefix="ctrd-", dir=e2e_dir))) as daemon:
        yield daemon


@pytest.fixture
def podman(e2e_dir: Path) -> Callable[..., str]:
    """Runs podman against a throw-away vfs store under the session directory."""
    require("podman")
    root = Path(tempfile.mkdtemp(prefix="podman-", dir=e2e_dir))
    global_flags = [
        f"--root={root / 'root'}", f"--runroot={root / 'run'}", f"--tmpdir={root / 'tmp'}",
        f"--network-config-dir={root / 'networks'}", "--storage-driver=vfs",
        "--events-backend=none", "--cgroup-manager=cgroupfs",
    ]  # fmt: skip

    def podman_run(*args: str) -> str:
        return run(["podman", *global_flags, *args])

    return podman_run
