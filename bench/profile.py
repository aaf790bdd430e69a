"""``python -m bench profile``: where blobgate's warm GET time goes, sampled by py-spy.

blobgate (one worker, core 0, default logging unless ``--logs-off``) serves warm GETs
from wrk (core 1) while py-spy records it; the folded stacks are reduced to the
functions with the most samples on-CPU, by self time and by inclusive time. py-spy is
not installed by this command.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import machine, tools, wrk
from bench.gateway import DEFAULT_LOGGING, Gateway
from bench.runner import say
from bench.tools import SERVER_CPU
from bench.world import FULL, World

TOP = 30
TRUNK = 0.9  # frames on nearly every stack (the event loop) say nothing: left out


def _py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else None


def function(frame: str) -> str:
    """A frame without its line number: ``name (file)``."""
    name, _, location = frame.rpartition(" (")
    return f"{name} ({location.rstrip(')').rsplit(':', 1)[0]})"


def fold(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Self samples per frame, inclusive samples per function (all its lines together),
    and the number of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for name in {function(frame) for frame in frames}:
            inclusive[name] += int(count)
    return own, inclusive, samples


def area(frame: str) -> str:
    """Where a frame's code lives: a package or module for Python, a library or file for
    native code (``write (libc.so.6)`` is in libc, i.e. the system call)."""
    location = frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    return location.split("/", 1)[0]


def table(title: str, counts: Counter[str], samples: int, label: str = "frame") -> str:
    """The top entries as markdown."""
    lines = [f"### {title}", "", f"| % of samples | {label} |", "|---|---|"]
    below = Counter({key: n for key, n in counts.items() if n / samples < TRUNK})
    lines += [f"| {n / samples:.1%} | `{key}` |" for key, n in below.most_common(TOP)]
    return "\n".join(lines) + "\n"


def run(seconds: int, connections: int, keep: Path | None, logs_off: bool = False) -> int:
    """Profile the warm GET path (default logging, or ``logs_off``); print the top frames."""
    py_spy = _py_spy()
    if py_spy is None or tools.missing():
        say(f"needs py-spy ({sys.executable} -m pip install py-spy) and "
            f"{tools.install_hint(list(tools.PACKAGES))}")
        return 2
    with tempfile.TemporaryDirectory(prefix="blobgate-profile-") as tmp:
        workdir = Path(tmp)
        overrides = {} if logs_off else DEFAULT_LOGGING
        with World(FULL, workdir) as world, Gateway(world.stack, workdir, "profile", overrides,
                                                    cpus=SERVER_CPU) as gateway:
            pairs = world.pairs("profile")
            wrk.run(gateway.url, pairs, connections, FULL.warm_s)
            folded = workdir / "profile.folded"
            argv = [py_spy, "record", "--native", "--rate", "250", "--duration", str(seconds),
                    "--format", "raw", "--output", str(folded), "--pid", str(gateway.pid)]
            recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603
            try:
                load = wrk.run(gateway.url, pairs, connections, seconds + 1)
            finally:
                recorder.wait(timeout=seconds + 60)
        own, inclusive, samples = fold(folded)
        if keep is not None:
            keep.write_text(folded.read_text())
    print(f"{machine.source_state()}\n")
    print(f"{load.rps:,.0f} req/s while profiled at {connections} connections "
          f"(py-spy pauses the process to sample: lower than unprofiled); {samples} samples\n")
    areas: Counter[str] = Counter()
    for frame, count in own.items():
        areas[area(frame)] += count
    print(table("Self time by where the code lives", areas, samples, "package, module or library"))
    print(table("Self time", own, samples))
    print(table(f"Inclusive time by function (on more than {TRUNK:.0%} of stacks: left out)",
                inclusive, samples, "function"))
    ours = Counter({name: n for name, n in inclusive.items() if "(blobgate/" in name})
    print(table("Inclusive time of blobgate's own functions", ours, samples, "function"))
    return 0
