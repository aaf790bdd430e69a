"""The faults of a chaos run, one at a time: each breaks one part of the fleet, holds the
fault for a while, and undoes it (a new process, a resumed one). Each returns once its
recovery action is done; how long the fleet then takes to serve again is measured
by the caller.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.fleet import Fleet

HOLD_S = 10.0
BALANCER_S = 1.0  # a few of HAProxy's 300 ms checks: a started replica is back in rotation


@dataclass(frozen=True)
class Fault:
    """A named fault and what it does to the fleet."""

    name: str
    what: str
    act: Callable[[Fleet], None]


def _none(fleet: Fleet) -> None:
    time.sleep(HOLD_S)


def _rolling_restart(fleet: Fleet) -> None:
    for replica in fleet.replicas:
        replica.terminate()
        replica.start()
        replica.wait_ready()
        time.sleep(BALANCER_S)


def _kill(fleet: Fleet) -> None:
    replica = fleet.replicas[0]
    replica.kill()
    time.sleep(HOLD_S / 2)
    replica.start()


def _redis(fleet: Fleet) -> None:
    fleet.kill_redis()
    time.sleep(HOLD_S)
    fleet.redis.start()


def _registry(fleet: Fleet) -> None:
    fleet.restart_registry()


def _s3(fleet: Fleet) -> None:
    fleet.signal_s3(signal.SIGSTOP)
    try:
        time.sleep(HOLD_S)
    finally:
        fleet.signal_s3(signal.SIGCONT)


def _postgres(fleet: Fleet) -> None:
    fleet.postgres.stop()
    time.sleep(1.5 * HOLD_S)
    fleet.postgres.start()


def _tokens(fleet: Fleet) -> None:
    fleet.stop_tokens()
    time.sleep(1.5 * HOLD_S)
    fleet.start_tokens()


FAULTS = {fault.name: fault for fault in (
    Fault("none", f"no fault for {HOLD_S:.0f} s (the reference window)", _none),
    Fault("rolling restart", "each replica in turn: SIGTERM, wait for its exit, a new "
          "process on the same ports, wait for /readyz", _rolling_restart),
    Fault("kill -9", f"SIGKILL one replica under load, a new process {HOLD_S / 2:.0f} s "
          "later", _kill),
    Fault("redis killed", f"SIGKILL Redis, start it again (empty) {HOLD_S:.0f} s later",
          _redis),
    Fault("registry restarted", "SIGTERM the registry, start it again at once", _registry),
    Fault("S3 frozen", f"SIGSTOP moto for {HOLD_S:.0f} s, then SIGCONT", _s3),
    Fault("PostgreSQL stopped", f"pg_ctl stop (fast), start {1.5 * HOLD_S:.0f} s later",
          _postgres),
    Fault("token service down", f"stop the token service, start it {1.5 * HOLD_S:.0f} s "
          "later; clients pull with tokens they hold", _tokens),
)}
