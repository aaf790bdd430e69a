"""``python -m bench.ab --before-src DIR``: warm blob GETs of another build against this
one, in one run, logs off and with default logging.

``DIR`` is the ``src`` directory of a checkout of the other build (for example
``git worktree add /tmp/before <rev>``, then ``--before-src /tmp/before/src``). Each
build serves with its own code on the server core (``PYTHONPATH``); wrk on the client
core sends the same rotating (token, blob) pairs, 64 connections, interleaved rounds;
the medians and their ratio are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from bench import wrk
from bench.gateway import DEFAULT_LOGGING, QUIET
from bench.tools import SERVER_CPU, pinned
from bench.world import FULL, World
from bench.wrk import Load
from blobgate.devstack.gateway import GatewayProcess, dev_environment, merged
from blobgate.devstack.stack import gateway_config

CONNECTIONS, ROUNDS, SECONDS = 64, 5, 6


def median(loads: list[Load]) -> Load:
    return sorted(loads, key=lambda load: load.rps)[len(loads) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--before-src", type=Path, required=True)
    args = parser.parse_args()
    builds = {"before": str(args.before_src.resolve()),
              "now": str(Path(__file__).resolve().parents[1] / "src")}
    work = Path(tempfile.mkdtemp(prefix="blobgate-ab-"))
    with World(FULL, work) as world, contextlib.ExitStack() as running:
        base = gateway_config(world.stack)
        targets = {
            f"{build}, {logging}": running.enter_context(GatewayProcess(
                work, merged(base, extra), name=f"{build}-{logging.split()[0]}",
                env=dev_environment({"PYTHONPATH": src}), argv_prefix=pinned([], SERVER_CPU)))
            for build, src in builds.items()
            for logging, extra in (("logs off", QUIET), ("default logging", DEFAULT_LOGGING))
        }
        pairs = world.pairs("ab")
        for gateway in targets.values():
            wrk.run(gateway.url, pairs, CONNECTIONS, 3)
        runs: dict[str, list[Load]] = {target: [] for target in targets}
        for _ in range(ROUNDS):
            for target, gateway in targets.items():
                runs[target].append(wrk.run(gateway.url, pairs, CONNECTIONS, SECONDS))
    print(f"| target ({args.before_src} vs this checkout) | req/s | range | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for target, loads in runs.items():
        best = median(loads)
        print(f"| {target} | {best.rps:,.0f} | {min(x.rps for x in loads):,.0f} to "
              f"{max(x.rps for x in loads):,.0f} | {best.p99_ms:.2f} | "
              f"{sum(x.errors for x in loads)} |")
    for logging in ("logs off", "default logging"):
        ratio = median(runs[f"now, {logging}"]).rps / median(runs[f"before, {logging}"]).rps
        print(f"\nnow ÷ before, {logging}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
