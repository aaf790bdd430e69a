"""Running the selected scenarios on one shared stack and writing the results."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench import machine, report, tools
from bench.report import Result, Table, Target
from bench.scenarios import SCENARIOS
from bench.world import Mode, World


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _prepare() -> None:
    """Enough file descriptors for 1,000 connections; SIGTERM and SIGINT (even when
    inherited as ignored) unwind like Ctrl-C, so every child process is stopped."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)


def targets_table(targets: list[Target]) -> Table:
    """Every target of the issue this run measured."""
    table = Table("Targets from the issue", ["target", "measured", "verdict"])
    for target in targets:
        table.add(target.name, target.measured, report.verdict(target.met))
    return table


def _run_one(name: str, world: World) -> Result:
    started = time.monotonic()
    say(f"{name}: running")
    try:
        result = SCENARIOS[name](world)
    except Exception as exc:  # one failed scenario must not lose the others' results
        say(f"{name}: FAILED\n{traceback.format_exc()}")
        failed = Table(f"{name}: failed", [], notes=[f"`{type(exc).__name__}: {exc}`"[:2000]])
        return Result([failed], failed=True)
    say(f"{name}: done in {time.monotonic() - started:.0f} s")
    return result


def run(mode: Mode, only: Sequence[str], out: Path, command: str, keep: bool) -> int:
    """Run the scenarios in ``only`` (all when empty); 0 when every one of them ran."""
    missing = tools.missing()
    if missing:
        say(f"missing {', '.join(missing)}; install with: {tools.install_hint(missing)}")
        return 2
    _prepare()
    names = [name for name in SCENARIOS if not only or name in only]
    started, load_before = time.monotonic(), os.getloadavg()[0]
    source = machine.source_state()
    with contextlib.ExitStack() as cleanup:
        if keep:
            workdir = Path(tempfile.mkdtemp(prefix="blobgate-bench-"))
        else:
            scratch = tempfile.TemporaryDirectory(prefix="blobgate-bench-")
            workdir = Path(cleanup.enter_context(scratch))
        say(f"working in {workdir}; starting the stack")
        world = cleanup.enter_context(World(mode, workdir))
        results = [_run_one(name, world) for name in names]
    tables = [table for result in results for table in result.tables]
    targets = [target for result in results for target in result.targets]
    header = "\n".join([
        f"## Results ({mode.name} run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{time.monotonic() - started:.0f} s)",
        "",
        *machine.describe(),
        f"- 1-minute load average at the start {load_before:.2f}, at the end "
        f"{os.getloadavg()[0]:.2f} (the bench itself included)",
        f"- {source}",
        *([] if machine.source_state() == source else [
            f"- **the source changed during the run**; at the end: {machine.source_state()}"]),
        f"- command: `{command}`",
    ])
    print(report.write([targets_table(targets), *tables], header, out))
    say(f"results written to {out} and {out.with_suffix('.json')}")
    return 1 if any(result.failed for result in results) else 0
