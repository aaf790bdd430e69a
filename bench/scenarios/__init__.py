"""The scenarios, by name; each takes the shared ``World`` and returns a ``Result``."""

from __future__ import annotations

from collections.abc import Callable

from bench.report import Result
from bench.scenarios import cold, replicas, stream, warm, warmup, workers
from bench.world import World

SCENARIOS: dict[str, Callable[[World], Result]] = {
    "warm": warm.run,
    "cold": cold.run,
    "workers": workers.run,
    "stream": stream.run,
    "warmup": warmup.run,
    "replicas": replicas.run,
}
