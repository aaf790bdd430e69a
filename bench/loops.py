"""Real clients pulling in loops, as CI jobs do: each pull with a token of its own, every
blob of the image checked against its digest on disk afterwards.

``skopeo copy`` into a fresh OCI layout (``--src-registry-token``), and ``ctr content
fetch`` into a private containerd whose hosts file carries the pull's token; the pulled
content is removed after each check so the next pull downloads it again. Tokens come
from a pool minted ahead, so pulls go on while the token service is down. Next to them,
a steady blob GET load from wrk, in short slices so each fault window gets its own.
"""

from __future__ import annotations

import collections
import hashlib
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench import wrk
from bench.push import Image
from bench.wrk import Load, write_pairs
from blobgate.devstack.containerd import Containerd
from blobgate.devstack.stack import PUSHER, Stack

TOKEN_LIFE_S = 240.0  # the issuer's tokens live 300 s
PULL_TIMEOUT_S = 120.0
PAUSE_S = 0.2
SLICE_S = 3
PACED = Path(__file__).with_name("paced.lua")


@dataclass(frozen=True)
class Attempt:
    """One pull: by which client, through which target, when, and how it ended."""

    client: str
    target: str
    started: float
    ended: float
    ok: bool
    wrong_blobs: int  # blobs missing or not matching their digest after a successful pull
    error: str


class Tokens:
    """Fresh pull tokens for one repository, minted ahead in the background whenever the
    token service answers; the newest is handed out first."""

    def __init__(self, stack: Stack, repository: str, ahead: int = 40) -> None:
        self._stack, self._scope, self._ahead = stack, f"repository:{repository}:pull", ahead
        self._pool: collections.deque[tuple[float, str]] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = (0.0, "")
        self._refill()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _mint(self, _: int = 0) -> tuple[float, str]:
        return time.monotonic(), self._stack.token(self._scope, creds=PUSHER)

    def _refill(self) -> None:
        with ThreadPoolExecutor(4) as pool:
            minted = list(pool.map(self._mint, range(self._ahead - len(self._pool))))
        with self._lock:
            self._pool.extend(minted)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._refill()
            except OSError:
                continue  # the token service is down: the pool lasts

    def take(self) -> str:
        """A token no pull used before, minted less than ``TOKEN_LIFE_S`` ago; when none
        is left and the token service is down, the last one handed out (a job holding a
        token pulls with it)."""
        with self._lock:
            while self._pool:
                self._last = self._pool.pop()
                if time.monotonic() - self._last[0] < TOKEN_LIFE_S:
                    return self._last[1]
        try:
            self._last = self._mint()
        except OSError:
            if time.monotonic() - self._last[0] >= TOKEN_LIFE_S:
                raise
        return self._last[1]

    def close(self) -> None:
        """Stop minting."""
        self._stop.set()
        self._thread.join()


def _digest_ok(path: Path, digest: str) -> bool:
    if not path.is_file():
        return False
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest() == digest


def _wrong(blobs_dir: Path, image: Image) -> int:
    """Blobs of ``image`` absent from ``blobs_dir/sha256`` or not hashing to their name."""
    return sum(not _digest_ok(blobs_dir / "sha256" / d.removeprefix("sha256:"), d)
               for d in image.blobs)


class Loop(threading.Thread):
    """Pulls ``image`` from ``host`` with ``client`` until stopped, recording each pull."""

    def __init__(self, client: str, target: str, host: str, image: Image, tokens: Tokens,
                 workdir: Path, attempts: list[Attempt], stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"{client}-{target}")
        self.client, self.target, self.host, self.image = client, target, host, image
        self.tokens, self.workdir, self.attempts, self.stop = tokens, workdir, attempts, stop
        workdir.mkdir(parents=True, exist_ok=True)
        self.containerd = Containerd(workdir / "ctrd") if client == "ctr" else None

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.time()
            try:
                wrong, error = self._pull(self.tokens.take())
            except (OSError, subprocess.TimeoutExpired) as exc:
                wrong, error = 0, f"{type(exc).__name__}: {exc}"
            self.attempts.append(Attempt(self.client, self.target, started, time.time(),
                                         not error, wrong, error[-300:]))
            self.stop.wait(PAUSE_S)

    def _pull(self, token: str) -> tuple[int, str]:
        """Pull once; (wrong blobs, error output or "")."""
        reference = f"{self.host}/{self.image.repository}:{self.image.tag}"
        if self.containerd is None:
            return self._skopeo(reference, token)
        return self._ctr(self.containerd, reference, token)

    def _skopeo(self, reference: str, token: str) -> tuple[int, str]:
        layout = self.workdir / "layout"
        shutil.rmtree(layout, ignore_errors=True)
        done = subprocess.run(  # noqa: S603 - fixed binary, no shell
            ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",  # noqa: S607
             "--src-registry-token", token, f"docker://{reference}", f"oci:{layout}:pulled"],
            capture_output=True, text=True, timeout=PULL_TIMEOUT_S, check=False)
        if done.returncode != 0:
            return 0, done.stderr or done.stdout or f"exit {done.returncode}"
        return _wrong(layout / "blobs", self.image), ""

    def _ctr(self, containerd: Containerd, reference: str, token: str) -> tuple[int, str]:
        hosts = self.workdir / "hosts" / self.host
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{self.host}"\n[host."http://{self.host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n'
            f'  [host."http://{self.host}".header]\n    Authorization = "Bearer {token}"\n')
        done = containerd.ctr("content", "fetch", "--plain-http", "--hosts-dir",
                              str(self.workdir / "hosts"), reference, timeout_s=PULL_TIMEOUT_S)
        if done.returncode != 0:
            return 0, done.stderr or done.stdout or f"exit {done.returncode}"
        wrong = _wrong(containerd.content_dir, self.image)
        listed = containerd.ctr("content", "ls", "-q").stdout.split()
        containerd.ctr("content", "rm", *listed)
        return wrong, ""

    def close(self) -> None:
        """Wait for the current pull to end; stop the private containerd."""
        self.join()
        if self.containerd is not None:
            self.containerd.close()


@dataclass(frozen=True)
class Slice:
    """One short wrk run of the steady load."""

    target: str
    started: float
    load: Load | None  # None: wrk itself failed (its error is in ``error``)
    error: str


class Steady(threading.Thread):
    """A steady, paced blob GET load (wrk, ``paced.lua``) on ``url`` in slices of
    ``SLICE_S``, each with tokens taken from the pool then, until stopped."""

    def __init__(self, target: str, url: str, image: Image, tokens: Tokens, workdir: Path,
                 expected: int, slices: list[Slice], stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"wrk-{target}")
        self.target, self.url, self.image, self.tokens = target, url, image, tokens
        self.pairs, self.expected = workdir / f"wrk-{target}.pairs", expected
        self.slices, self.stop = slices, stop

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                tokens = [self.tokens.take() for _ in range(4)]
                write_pairs(self.pairs, [(f"/v2/{self.image.repository}/blobs/{d}", token)
                                         for token in tokens for d in self.image.blobs])
            except OSError:
                pass  # the token service is down: the last pairs (their tokens held) again
            started = time.time()
            try:
                load = wrk.run(self.url, self.pairs, 4, SLICE_S, self.expected, None, PACED)
            except RuntimeError as exc:
                self.slices.append(Slice(self.target, started, None, str(exc)[-300:]))
                continue
            self.slices.append(Slice(self.target, started, load, ""))
