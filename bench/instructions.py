"""``python -m bench instructions``: instructions executed per warm blob GET, counted by
valgrind's callgrind: a count, not a time, so a busy or throttled machine gives the
same answer as a quiet one (req/s on a shared machine moved by ±30% between runs).

Each target runs under callgrind with instrumentation off until it is warm: blobgate
with its default configuration, with its logs off, and with ``redis.url`` set, and the
bare-aiohttp floor (a constant 307). One client then sends the same warm (token, blob) GETs to each,
one after another on one connection, between a zeroing and a dump of the counters.
Sequential requests pay more event-loop turns each than requests under load do; the
work a request itself causes is the same, and that is what the ratios compare.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import machine
from bench.client import Client
from bench.gateway import DEFAULT_LOGGING, QUIET
from bench.runner import say
from bench.scenarios.warm import sample_redirect
from bench.tools import SERVER_CPU, pinned
from bench.world import FULL, QUICK, World
from blobgate.devstack.gateway import GatewayProcess, dev_environment, merged
from blobgate.devstack.procs import Process, free_port
from blobgate.devstack.stack import gateway_config

READY_S = 300.0  # start-up under valgrind
SEEDED = {"PYTHONHASHSEED": "0"}  # the same dict probes, so the same count, every run


def _callgrind(out: Path) -> list[str]:
    return pinned(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out}"], SERVER_CPU)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,  # noqa: S603, S607
                   capture_output=True, timeout=120)


def _totals(out: Path) -> int:
    """The instruction total of the newest dump of ``out``."""
    dumps = sorted(out.parent.glob(f"{out.name}.*"), key=lambda p: int(p.suffix[1:]))
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def count(pid: int, url: str, pairs: list[tuple[str, str]], out: Path) -> float:
    """Instructions per request for ``pairs`` sent to ``url`` (served by ``pid``)."""
    with Client(url) as client:
        for path, token in pairs:  # warm, uninstrumented
            client.get(path, token)
        _control(pid, "--instr=on")
        for path, token in pairs[:50]:  # warm again, instrumented (fresh translations)
            client.get(path, token)
        _control(pid, "--zero")
        for path, token in pairs:
            status, _, _ = client.get(path, token)
            if status != 307:
                raise RuntimeError(f"{url} answered {status} for {path}")
        _control(pid, "--dump")
    return _totals(out) / len(pairs)


@contextlib.contextmanager
def _floor(work: Path, location: str, digest: str) -> Iterator[tuple[int, str]]:
    port = free_port()
    argv = [*_callgrind(work / "floor.callgrind"), sys.executable, "-m", "bench.floor",
            "--port", str(port), "redirect", "--location", location, "--digest", digest]
    process = Process(argv, work / "floor.log", dev_environment(SEEDED),
                      cwd=Path(__file__).parent.parent)
    try:
        process.wait_http(f"http://127.0.0.1:{port}", READY_S)
        yield process.popen.pid, f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def _traced(ratio: str, sink: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Configuration and environment of blobgate tracing every request it starts a
    trace for with probability ``ratio``, exporting to ``sink``."""
    return merged(DEFAULT_LOGGING, {"tracing": {"enabled": True}}), {
        **SEEDED, "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}


@contextlib.contextmanager
def _sink(work: Path) -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts and drops every export."""
    port = free_port()
    process = Process([sys.executable, "-m", "bench.otlp_sink", "--port", str(port)],
                      work / "sink.log", dev_environment(), cwd=Path(__file__).parent.parent)
    try:
        process.wait_http(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def run(keep: Path | None = None, quick: bool = False, tracing: bool = False) -> int:
    """Count instructions per warm GET for each target; print the table; with ``keep``,
    leave the callgrind dumps there (for ``callgrind_annotate``); ``quick``: 50 GETs;
    ``tracing``: also blobgate tracing at sampling ratios 1.0 and 0.01."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        say("needs valgrind: apt-get install -y valgrind")
        return 2
    counts: dict[str, float] = {}
    location = digest = ""
    with tempfile.TemporaryDirectory(prefix="blobgate-instructions-") as tmp:
        work = Path(tmp)
        with World(QUICK if quick else FULL, work) as world, contextlib.ExitStack() as stack:
            lines = world.pairs("instructions").read_text().splitlines()
            pairs = [(path, token) for path, token in (ln.split("\t") for ln in lines)]
            base = gateway_config(world.stack)
            redis = {**DEFAULT_LOGGING, "redis": dict(stack.enter_context(world.redis("cg")))}
            targets: list[tuple[str, dict[str, Any], dict[str, str]]] = [
                ("blobgate (default configuration)", DEFAULT_LOGGING, SEEDED),
                       ("blobgate, logs off", QUIET, SEEDED), ("blobgate, redis", redis, SEEDED)]
            if tracing:
                sink = stack.enter_context(_sink(work))
                for ratio in ("1.0", "0.01"):
                    config, env = _traced(ratio, sink)
                    targets.append((f"blobgate, tracing at ratio {ratio}", config, env))
            for name, extra, env in targets:
                out = work / f"{len(counts)}.callgrind"
                with GatewayProcess(work, merged(base, extra), name=f"gateway-{len(counts)}",
                                    env=dev_environment(env), argv_prefix=_callgrind(out),
                                    ready_timeout_s=READY_S) as gateway:
                    if not counts:
                        location, digest = sample_redirect(gateway.url, world.pairs("sample"))
                    counts[name] = count(gateway.pid, gateway.url, pairs, out)
            with _floor(work, location, digest) as (pid, url):
                counts["floor"] = count(pid, url, pairs, work / "floor.callgrind")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for dump in work.glob("*.callgrind.*"):
                shutil.copy(dump, keep / dump.name)
    ours, quiet, shared = (counts[name] for name, *_ in targets[:3])
    floor = counts["floor"]
    print(f"{machine.source_state()}\n")
    print(f"| target | instructions per warm GET ({len(pairs)} GETs) | ratio |")
    print("|---|---|---|")
    print(f"| blobgate (default configuration) | {ours:,.0f} | — |")
    print(f"| blobgate, logs off | {quiet:,.0f} | default ÷ logs off: {ours / quiet:.3f}x |")
    print(f"| blobgate, redis | {shared:,.0f} | redis ÷ default: {shared / ours:.3f}x |")
    for name, *_ in targets[3:]:
        print(f"| {name} | {counts[name]:,.0f} | traced ÷ default: {counts[name] / ours:.3f}x |")
    print(f"| floor (constant 307) | {floor:,.0f} | floor ÷ default: {floor / ours:.2f}x "
          "(the share of the floor's speed blobgate can reach) |")
    return 0
