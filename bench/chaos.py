"""``python -m bench chaos``: real clients pull through blobgate replicas behind HAProxy
while one part after another fails, next to the same clients pulling from the registry
directly (the control); what each fault window cost is written as tables.

Order of a window: the clients keep pulling; a few seconds in, the fault acts (and
undoes itself); the run then waits until every replica is ready and blobgate redirects
a blob GET again (the seconds to recover), and a few seconds more.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine, report
from bench.chaos_report import Windows, tables_and_targets
from bench.faults import FAULTS
from bench.fleet import Fleet, push_image
from bench.loops import Attempt, Loop, Slice, Steady, Tokens
from bench.push import Image
from bench.report import Result
from bench.runner import say, targets_table

LEAD_S = 3.0
TAIL_S = 4.0
RECOVER_TIMEOUT_S = 120.0
REPOSITORY = "chaos/app"


@dataclass(frozen=True)
class Plan:
    """How big a chaos run is."""

    faults: Sequence[str]
    replicas: int = 2
    skopeo_loops: int = 2
    ctr_loops: int = 1
    layers: int = 4
    layer_bytes: int = 256 << 10


@dataclass
class Run:
    """What the loops recorded, and when each window was."""

    attempts: list[Attempt] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    windows: Windows = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)


def _redirects(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=2):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code == 307
    except OSError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def recover(fleet: Fleet, image: Image, tokens: Tokens) -> float:
    """Seconds until every replica is ready and a blob GET through the balancer is
    redirected again."""
    started = time.monotonic()
    url = f"{fleet.balancer.url}/v2/{image.repository}/blobs/{image.blobs[-1]}"
    while time.monotonic() - started < RECOVER_TIMEOUT_S:
        if all(r.ready() for r in fleet.replicas) and _redirects(url, tokens.take()):
            return time.monotonic() - started
        time.sleep(0.1)
    return float("inf")


def _sample_rss(fleet: Fleet, run: Run, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        run.rss.append((time.time(), fleet.rss_mib()))


def _clients(fleet: Fleet, plan: Plan, image: Image, tokens: Tokens, workdir: Path, run: Run,
             stop: threading.Event) -> list[threading.Thread]:
    targets = {"blobgate": fleet.balancer.host,
               "registry": fleet.stack.registry.url.removeprefix("http://")}
    clients = ["skopeo"] * plan.skopeo_loops + ["ctr"] * plan.ctr_loops
    threads: list[threading.Thread] = [
        Loop(client, target, host, image, tokens, workdir / f"{client}-{i}-{target}",
             run.attempts, stop)
        for target, host in targets.items() for i, client in enumerate(clients)]
    threads.append(Steady("blobgate", fleet.balancer.url, image, tokens, workdir, 307,
                          run.slices, stop))
    threads.append(Steady("registry", fleet.stack.registry.url, image, tokens, workdir, 200,
                          run.slices, stop))
    threading.Thread(target=_sample_rss, args=(fleet, run, stop), daemon=True).start()
    return threads


def chaos(plan: Plan, workdir: Path, say: Callable[[str], None]) -> Result:
    """Run ``plan`` in ``workdir``; the tables and targets."""
    run = Run()
    with Fleet(workdir, plan.replicas) as fleet:
        image = push_image(fleet, workdir, REPOSITORY, plan.layers, plan.layer_bytes)
        tokens = Tokens(fleet.stack, image.repository)
        stop = threading.Event()
        threads = _clients(fleet, plan, image, tokens, workdir, run, stop)
        try:
            for thread in threads:
                thread.start()
            for name in plan.faults:
                _window(fleet, name, image, tokens, run, say)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
                if isinstance(thread, Loop):
                    thread.close()
            tokens.close()
        for replica in fleet.replicas:  # SIGTERM: queued audit records are written
            replica.terminate()
        return tables_and_targets(fleet, run.windows, run.attempts, run.slices, run.rss)


def _window(fleet: Fleet, name: str, image: Image, tokens: Tokens, run: Run,
            say: Callable[[str], None]) -> None:
    started = time.time()
    say(f"{name}: {FAULTS[name].what}")
    time.sleep(LEAD_S)
    FAULTS[name].act(fleet)
    recover_s = recover(fleet, image, tokens)
    time.sleep(TAIL_S)
    run.windows.append((name, started, time.time(), recover_s))
    say(f"{name}: recovered in {recover_s:.1f} s")


def run(plan: Plan, out: Path, command: str, workdir: Path | None) -> int:
    """``python -m bench chaos``: the whole run, its tables written to ``out``; 0 when
    every goal was met. The run works in ``workdir`` (kept), else in a temporary folder."""
    started, load_before = time.monotonic(), os.getloadavg()[0]
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(
                prefix="blobgate-chaos-")))
        say(f"working in {workdir}; starting the fleet")
        result = chaos(plan, workdir, say)
    header = "\n".join([
        f"## Chaos run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{time.monotonic() - started:.0f} s)", "", *machine.describe(),
        f"- 1-minute load average at the start {load_before:.2f}, at the end "
        f"{os.getloadavg()[0]:.2f}", f"- {machine.source_state()}", f"- command: `{command}`"])
    print(report.write([targets_table(result.targets), *result.tables], header, out))
    say(f"results written to {out} and {out.with_suffix('.json')}")
    return 0 if all(target.met for target in result.targets) else 1
