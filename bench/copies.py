"""``python -m bench copies``: what the nearest copy costs a warm blob GET, in one run.

Two gateways in front of the same stack: the default configuration (one location, no
feeds), and three locations (two copies tried before the primary) chosen by a rule
naming ``aws:eu-west-1`` in a 10,000-prefix AWS ``ip-ranges.json`` whose eu-west-1
holds the bench client's 127.0.0.0/8. The copies are the stack's bucket again (the
same bytes under the same keys, as replication makes them), so every warm GET is
answered from the first copy's URL cache: route lookup, then one cache hit. Reported:
instructions per warm GET (callgrind, the same GETs to each) and req/s (wrk, 64
connections, each gateway pinned to the server CPU), with the ratios.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import instructions, machine, wrk
from bench.gateway import DEFAULT_LOGGING, Gateway
from bench.runner import say
from bench.tools import SERVER_CPU
from bench.world import FULL, QUICK, World
from blobgate.devstack.gateway import GatewayProcess, dev_environment, merged
from blobgate.devstack.stack import gateway_config

PREFIXES = 10_000
CONNECTIONS = 64


def write_feed(path: Path) -> Path:
    """An AWS ``ip-ranges.json`` with ``PREFIXES`` prefixes over 20 regions, eu-west-1
    holding loopback (the bench client) among its own."""
    rng = random.Random(29)  # noqa: S311 - repeatable bench data
    regions = [f"region-{i}" for i in range(19)] + ["eu-west-1"]
    prefixes = [{"ip_prefix": "127.0.0.0/8", "region": "eu-west-1", "service": "AMAZON",
                 "network_border_group": "eu-west-1"}]
    while len(prefixes) < PREFIXES:
        first = rng.choice([3, 13, 15, 18, 34, 35, 44, 52, 54, 99])
        prefixes.append({"ip_prefix": f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.0/24",
                         "region": rng.choice(regions), "service": "EC2",
                         "network_border_group": "x"})
    path.write_text(json.dumps({"syncToken": "1", "createDate": "2026-12-01-00-00-00",
                                "prefixes": prefixes, "ipv6_prefixes": []}))
    return path


def copies_config(base: dict[str, Any], feed: Path) -> dict[str, Any]:
    """``base`` with two copies of its store and the rule that sends loopback to them."""
    s3 = base["storage"]["s3"]
    return {**DEFAULT_LOGGING,
            "storage": {"copies": [{"name": name, "backend": "s3", "s3": s3}
                                   for name in ("eu", "site")]},
            "routing": {"ip_ranges": [{"provider": "aws", "source": str(feed)}],
                        "rules": [{"name": "eu", "networks": ["aws:eu-west-1"],
                                   "locations": ["eu", "site", "primary"]}]}}


def run(quick: bool = False, keep: Path | None = None) -> int:
    """Count and time both targets; print the table; with ``keep``, leave the callgrind
    dumps there (for ``callgrind_annotate``)."""
    if shutil.which("valgrind") is None:
        say("needs valgrind: apt-get install -y valgrind")
        return 2
    counts: dict[str, float] = {}
    speeds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="blobgate-copies-") as tmp, \
            World(QUICK if quick else FULL, Path(tmp)) as world:
        work = Path(tmp)
        base = gateway_config(world.stack)
        targets = {"one location, no feeds": DEFAULT_LOGGING,
                   f"three locations, {PREFIXES:,}-prefix feed":
                       copies_config(base, write_feed(work / "ip-ranges.json"))}
        lines = world.pairs("copies-instructions").read_text().splitlines()
        pairs = [(path, token) for path, token in (ln.split("\t") for ln in lines)]
        wrk_pairs = world.pairs("copies-wrk")
        for i, (name, extra) in enumerate(targets.items()):
            out = work / f"{i}.callgrind"
            with GatewayProcess(work, merged(base, extra), name=f"counted-{i}",
                                env=dev_environment(instructions.SEEDED),
                                argv_prefix=instructions._callgrind(out),
                                ready_timeout_s=instructions.READY_S) as counted:
                counts[name] = instructions.count(counted.pid, counted.url, pairs, out)
            with contextlib.ExitStack() as running:
                gateway = running.enter_context(
                    Gateway(world.stack, work, f"timed-{i}", extra, cpus=SERVER_CPU))
                wrk.run(gateway.url, wrk_pairs, CONNECTIONS, world.mode.warm_s)
                loads = [wrk.run(gateway.url, wrk_pairs, CONNECTIONS, world.mode.duration_s)
                         for _ in range(world.mode.rounds)]
                speeds[name] = sorted(load.requests / load.duration_s for load in loads)[
                    len(loads) // 2]
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for dump in work.glob("*.callgrind.*"):
                shutil.copy(dump, keep / dump.name)
    (one, three), (one_s, three_s) = counts.values(), speeds.values()
    print(f"{machine.source_state()}\n")
    print(f"| target | instructions per warm GET ({len(pairs)} GETs) | req/s "
          f"({CONNECTIONS} conns, median of {len(loads)}) |")
    print("|---|---|---|")
    for name in counts:
        print(f"| {name} | {counts[name]:,.0f} | {speeds[name]:,.0f} |")
    print(f"| ratio (three ÷ one) | {three / one:.3f}x | {three_s / one_s:.3f}x |")
    return 0
