"""``python -m bench run [--quick] [--only NAME ...] [--out FILE]``, ``python -m bench
profile``, ``python -m bench instructions``, ``python -m bench copies``, ``python -m
bench signing`` and ``python -m bench storm``: see BENCHMARKS.md; ``python -m bench
chaos``: see RELIABILITY.md."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench import chaos, copies, instructions, profile, runner, signing, storm
from bench.faults import FAULTS
from bench.scenarios import SCENARIOS
from bench.world import FULL, QUICK


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run scenarios and write a results table")
    run.add_argument("--quick", action="store_true", help="seconds, small blobs, few connections")
    run.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=[],
                     help="run only this scenario (repeatable)")
    run.add_argument("--out", type=Path, default=Path("bench/results.md"),
                     help="markdown output (a .json twin is written next to it)")
    run.add_argument("--keep", action="store_true", help="keep the working directory and logs")
    prof = commands.add_parser("profile", help="py-spy profile of blobgate's warm GET path")
    prof.add_argument("--seconds", type=int, default=20)
    prof.add_argument("--connections", type=int, default=64)
    prof.add_argument("--folded", type=Path, help="also keep py-spy's folded stacks here")
    prof.add_argument("--logs-off", action="store_true",
                      help="log.level warning, access log off (default: blobgate's defaults)")
    counted = commands.add_parser("instructions", help="callgrind's instructions per warm "
                                  "GET: default configuration, logs off, the floor")
    counted.add_argument("--keep", type=Path, help="leave the callgrind dumps in this folder")
    counted.add_argument("--quick", action="store_true", help="50 GETs instead of 500")
    counted.add_argument("--tracing", action="store_true",
                         help="also count blobgate tracing at sampling ratios 1.0 and 0.01")
    near = commands.add_parser("copies", help="warm GETs with three locations and a "
                               "10,000-prefix feed vs one location: instructions and req/s")
    near.add_argument("--quick", action="store_true", help="fewer GETs and shorter runs")
    near.add_argument("--keep", type=Path, help="leave the callgrind dumps in this folder")
    sign = commands.add_parser("signing", help="in-process cost of one signed URL per backend")
    sign.add_argument("--count", type=int, default=2000, help="URLs signed per backend")
    broken = commands.add_parser("chaos", help="real clients through replicas behind "
                                 "HAProxy while one part after another fails (minutes)")
    broken.add_argument("--fault", action="append", choices=list(FAULTS), default=[],
                        help="run only this fault window (repeatable; default: all)")
    broken.add_argument("--out", type=Path, default=Path("bench/chaos.md"))
    broken.add_argument("--workdir", type=Path,
                        help="work (and leave the logs) here instead of a temporary folder")
    broken.add_argument("--replicas", type=int, default=chaos.Plan.replicas)
    broken.add_argument("--skopeo-loops", type=int, default=chaos.Plan.skopeo_loops)
    broken.add_argument("--ctr-loops", type=int, default=chaos.Plan.ctr_loops)
    stormy = commands.add_parser("storm", help="500 new tokens pulling a 10-layer image at "
                                 "once: blobgate vs the registry's own redirect")
    stormy.add_argument("--tokens", type=int, default=storm.TOKENS)
    stormy.add_argument("--out", type=Path, default=Path("bench/storm.md"))
    args = parser.parse_args(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.command == "profile":
        return profile.run(args.seconds, args.connections, args.folded, args.logs_off)
    if args.command == "copies":
        return copies.run(args.quick, args.keep)
    if args.command == "instructions":
        return instructions.run(args.keep, args.quick, args.tracing)
    if args.command == "signing":
        return signing.run(args.count)
    if args.command == "chaos":
        plan = chaos.Plan(args.fault or list(FAULTS), args.replicas, args.skopeo_loops,
                          args.ctr_loops)
        return chaos.run(plan, args.out, command, args.workdir)
    if args.command == "storm":
        return storm.run(args.tokens, args.out, command)
    mode = QUICK if args.quick else FULL
    try:
        return runner.run(mode, args.only, args.out, command, args.keep)
    except KeyboardInterrupt:
        runner.say("interrupted; every process it started is stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
