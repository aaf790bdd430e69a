"""The fleet a chaos run breaks: blobgate replicas behind HAProxy, sharing a private Redis,
auditing to a private PostgreSQL, in front of the stack's registry on moto S3 with the
development token service; and the moves a fault makes on each of them.

Every server is a child process on loopback that can be stopped, killed, frozen and
started again on the same port, so clients and the balancer meet the same addresses
before and after a fault.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.haproxy import Backend, HAProxy
from bench.postgres import Cluster
from bench.procstat import rss_mib
from bench.push import Image
from blobgate.devstack.clients import skopeo_push
from blobgate.devstack.gateway import GatewayProcess, dev_environment, merged
from blobgate.devstack.image import build_image
from blobgate.devstack.procs import Process
from blobgate.devstack.redis import RedisServer, mac_key
from blobgate.devstack.registry import RegistryOptions
from blobgate.devstack.stack import PUSHER, Stack, gateway_config

READY_TIMEOUT_S = 60.0
AUDIT_QUEUE = 10_000  # audit.queue_size's default


def _status(url: str) -> int:
    """The HTTP status ``url`` answers with, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def respawn(process: Process, env: Mapping[str, str] | None = None) -> Process:
    """The same program started again with the same arguments and log file."""
    return Process(process.argv, process.log_path, env)


class Replica:
    """One ``blobgate serve`` whose ports outlive its process: ``terminate`` or ``kill``
    it, then ``start`` a new process on the same ports."""

    def __init__(self, workdir: Path, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.gateway = GatewayProcess(workdir, config, name=name, ready_timeout_s=READY_TIMEOUT_S)

    @property
    def probe_url(self) -> str:
        """The readiness probe, as Kubernetes and the balancer ask it."""
        return f"{self.gateway.metrics_url()}/readyz"

    def ready(self) -> bool:
        """True when the replica's ``/readyz`` answers 200."""
        return _status(self.probe_url) == 200

    def terminate(self) -> int:
        """SIGTERM, as Kubernetes stops a pod, and wait for the exit; the exit code."""
        return self.gateway.stop()

    def kill(self) -> None:
        """SIGKILL the process, whatever it is doing."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.gateway.pid, signal.SIGKILL)
        self.gateway.process.popen.wait()

    def start(self) -> None:
        """A new process on the same ports; returns once it answers ``/healthz``."""
        self.gateway.process = respawn(self.gateway.process, dev_environment())
        self.gateway.process.wait_http(f"{self.gateway.metrics_url()}/healthz",
                                       READY_TIMEOUT_S)

    def wait_ready(self) -> None:
        """Wait until ``/readyz`` answers 200."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready:\n{self.gateway.log_text()[-2000:]}")
            time.sleep(0.1)

    def rss_mib(self) -> float:
        """Resident memory now, 0 while no process runs."""
        try:
            return rss_mib(self.gateway.pid)
        except OSError:
            return 0.0


class Fleet:
    """Starts everything under ``workdir``; closing stops all of it."""

    def __init__(self, workdir: Path, replicas: int) -> None:
        self._exit = contextlib.ExitStack()
        try:
            options = RegistryOptions(log_level="warn")
            self.stack = self._exit.enter_context(Stack(workdir / "stack",
                                                        registry_options=options))
            self.stack.gateway.stop()  # the fleet's replicas replace the stack's blobgate
            self.redis = RedisServer(workdir / "redis")
            self._exit.callback(self.redis.stop)
            self.postgres = self._exit.enter_context(Cluster())
            config = merged(gateway_config(self.stack), {
                "redis": {"url": self.redis.url, "key_prefix": f"chaos-{secrets.token_hex(3)}:",
                          "mac_key_file": str(mac_key(workdir / "redis"))},
                # Every client pulls as one account: its share of the queue is the queue.
                "audit": {"sink": "postgres", "dsn": self.postgres.dsn,
                          "caller_queue_size": AUDIT_QUEUE},
            })
            self.replicas = []
            for i in range(replicas):
                replica = Replica(workdir / "replicas", f"replica-{i}", config)
                self._exit.callback(replica.terminate)
                self.replicas.append(replica)
            self.balancer = self._exit.enter_context(HAProxy(workdir, [
                Backend(r.name, r.gateway.port, r.gateway.metrics_port) for r in self.replicas]))
            for replica in self.replicas:
                replica.wait_ready()
        except BaseException:
            self._exit.close()
            raise

    def restart_registry(self) -> None:
        """Stop the registry (SIGTERM) and start it again on its port."""
        registry = self.stack.registry
        registry.process.stop()
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        registry.process = respawn(registry.process, env)
        registry.process.wait_http(f"{registry.url}/v2/")

    def stop_tokens(self) -> None:
        """Stop the token service."""
        self.stack.tokens.stop()

    def start_tokens(self) -> None:
        """Start the token service again on its port."""
        self.stack.tokens = respawn(self.stack.tokens)
        self._exit.callback(self.stack.tokens.stop)
        self.stack.tokens.wait_http(f"{self.stack.issuer_url}/token")

    def signal_s3(self, signum: signal.Signals) -> None:
        """Send ``signum`` (SIGSTOP, SIGCONT) to the S3 server."""
        os.kill(self.stack.s3.process.popen.pid, signum)

    def kill_redis(self) -> None:
        """SIGKILL Redis (its data is gone: it keeps nothing on disk)."""
        if self.redis.process is not None:
            os.kill(self.redis.process.popen.pid, signal.SIGKILL)
            self.redis.stop()

    def rss_mib(self) -> float:
        """Resident memory of every replica, summed."""
        return sum(replica.rss_mib() for replica in self.replicas)

    def close(self) -> None:
        """Stop everything, newest first."""
        self._exit.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def push_image(fleet: Fleet, workdir: Path, repository: str, layers: int,
               layer_bytes: int) -> Image:
    """Build an image of real gzip'd tar layers and push it to the registry with skopeo
    (blobs a client copies as they are, not recompressed)."""
    built = build_image(workdir / "image", [layer_bytes] * layers)
    skopeo_push(built, fleet.stack.registry.url.removeprefix("http://"), repository, PUSHER)
    return Image(repository, built.tag, tuple(blob.digest for blob in built.blobs))
