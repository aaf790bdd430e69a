"""What every scenario shares: run sizes, the stack, pushed blobs, tokens and baselines.

One stack per run: moto S3, the token issuer and the registry blobgate fronts (redirects
disabled, as in front of Harbor). Scenarios start their own blobgate processes, and the
baselines they need (a second registry with redirects enabled, the aiohttp floor).
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench.push import Pusher
from bench.tools import SERVER_CPU, pin_threads, pinned
from bench.wrk import write_pairs
from blobgate.devstack.procs import Process, free_port
from blobgate.devstack.redis import mac_key, redis_url
from blobgate.devstack.registry import Registry, RegistryOptions, TokenAuth
from blobgate.devstack.stack import BUCKET, ISSUER, PUSHER, SERVICE, Stack

MiB = 1 << 20


@dataclass(frozen=True)
class Mode:
    """How big and how long a run is."""

    name: str
    levels: tuple[int, ...]  # connection counts of the warm-GET scenario
    duration_s: int  # one measured wrk run
    rounds: int  # measured runs per cell, interleaved between targets; the median is kept
    warm_s: int  # wrk warm-up before measuring
    tokens: int
    repositories: int
    blobs_per_repository: int
    blob_bytes: int
    cold_requests: int
    stream_bytes: int
    stream_rounds: int
    streams: int  # concurrent streams
    pulls: int  # first pulls per configuration in the warm-up scenario


FULL = Mode("full", (1, 64, 1000), 6, 3, 3, 500, 5, 10, 4096, 100, 1 << 30, 3, 10, 10)
QUICK = Mode("quick", (1, 16), 1, 1, 1, 50, 2, 5, 4096, 5, 32 * MiB, 1, 2, 2)


class World:
    """The stack and the content every scenario uses; closing stops everything."""

    def __init__(self, mode: Mode, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self._exit = contextlib.ExitStack()
        try:
            options = RegistryOptions(log_level="warn")
            stack = Stack(workdir / "stack", registry_options=options)
            self.stack = self._exit.enter_context(stack)
            self.stack.gateway.stop()  # each scenario starts the blobgate it measures
            self.pusher = Pusher(self.stack)
            self.blobs = {
                f"bench/repo-{i}": self.pusher.random_blobs(
                    f"bench/repo-{i}", mode.blobs_per_repository, mode.blob_bytes
                )
                for i in range(mode.repositories)
            }
        except BaseException:
            self._exit.close()
            raise

    def pull_tokens(self, repository: str, count: int) -> list[str]:
        """``count`` distinct fresh pull tokens for ``repository`` (the issuer's live 5 min)."""
        scope = f"repository:{repository}:pull"
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: self.stack.token(scope, creds=PUSHER), range(count)))

    def pairs(self, name: str) -> Path:
        """A wrk pairs file: ``mode.tokens`` fresh tokens, each with a blob of its repository,
        so consecutive requests differ in token and digest and every blob is used."""
        repositories = list(self.blobs)
        per_repository = self.mode.tokens // len(repositories)
        tokens = {repo: self.pull_tokens(repo, per_repository) for repo in repositories}
        pairs = []
        for i in range(per_repository):
            for repo in repositories:
                digests = self.blobs[repo]
                pairs.append((f"/v2/{repo}/blobs/{digests[i % len(digests)]}", tokens[repo][i]))
        return write_pairs(self.workdir / f"{name}.pairs", pairs)

    @contextlib.contextmanager
    def redirecting_registry(self) -> Iterator[Registry]:
        """A second registry on the same bucket with its own redirects enabled, on the
        server core: in-memory blob descriptor cache, log level warn."""
        stack = self.stack
        auth = TokenAuth(f"{stack.issuer_url}/token", SERVICE, ISSUER, stack.signing.cert_path)
        workdir = self.workdir / "registry-redirect"
        workdir.mkdir(exist_ok=True)
        options = RegistryOptions(redirect=True, log_level="warn")
        with Registry(workdir, stack.s3, BUCKET, auth, options) as registry:
            pin_threads(registry.process.popen.pid, SERVER_CPU)
            yield registry

    @contextlib.contextmanager
    def redis(self, name: str) -> Iterator[dict[str, str]]:
        """A ``redis`` configuration section: the machine's Redis, or a private one for the
        run; keys under a prefix of their own (``name``), signed with a key made for it."""
        url, server = redis_url(self.workdir / f"redis-{name}")
        try:
            yield {"url": url, "key_prefix": f"bench-{name}-{secrets.token_hex(3)}:",
                   "mac_key_file": str(mac_key(self.workdir / f"redis-{name}"))}
        finally:
            if server is not None:
                server.stop()

    @contextlib.contextmanager
    def floor(self, name: str, *args: str) -> Iterator[str]:
        """A bare-aiohttp floor (``bench.floor`` with arguments ``args``) on the server core,
        logging to ``floor-<name>.log``; yields its base URL."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.floor", "--port", str(port), *args]
        process = Process(pinned(argv, SERVER_CPU), self.workdir / f"floor-{name}.log",
                          cwd=Path(__file__).parent.parent)
        try:
            url = f"http://127.0.0.1:{port}"
            process.wait_http(url)
            yield url
        finally:
            process.stop()

    def close(self) -> None:
        """Stop the stack."""
        self._exit.close()

    def __enter__(self) -> World:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
