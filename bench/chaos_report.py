"""The chaos run's tables: per fault window, what the clients saw through blobgate and
directly at the registry (the control), what blobgate answered, what it audited.

A failed pull through blobgate is blobgate's own when a control pull by the same kind
of client, running at an overlapping time, succeeded: the fault did not stop pulls
from the registry itself then, so it should not have stopped them through blobgate.
Blob answers come from the replicas' access logs; audit rows from PostgreSQL, after
the replicas stopped (so their queues were written).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bench.fleet import Fleet
from bench.loops import Attempt, Slice
from bench.report import Result, Table, Target
from blobgate.devstack.logs import json_objects

Window = tuple[str, float, float, float]  # name, start, end, seconds to recover
Windows = list[Window]


def blamed(attempt: Attempt, attempts: Sequence[Attempt]) -> bool:
    """True when ``attempt`` failed through blobgate while an overlapping control pull
    by the same client succeeded."""
    return not attempt.ok and any(
        other.target == "registry" and other.client == attempt.client and other.ok
        and other.started < attempt.ended and other.ended > attempt.started
        for other in attempts)


def _within(window: Window, at: float) -> bool:
    return window[1] <= at < window[2]


def _blob_answers(fleet: Fleet) -> list[tuple[float, str]]:
    """(time, outcome) of every blob request the replicas logged."""
    return [(float(e["ts"]), str(e.get("outcome")))
            for replica in fleet.replicas
            for e in json_objects(replica.gateway.log_text())
            if e.get("logger") == "blobgate.access" and e.get("route") == "blob"]


def _pulls(attempts: Sequence[Attempt], target: str) -> str:
    mine = [a for a in attempts if a.target == target]
    return f"{len(mine)} / {sum(a.ok for a in mine)} / {sum(not a.ok for a in mine)}"


def _wrk(slices: Sequence[Slice], target: str) -> str:
    mine = [s for s in slices if s.target == target]
    done = sum(s.load.requests for s in mine if s.load is not None)
    bad = sum(s.load.errors for s in mine if s.load is not None)
    failed = sum(s.load is None for s in mine)
    return f"{done - bad:,} / {bad:,}" + (f" ({failed} wrk runs failed)" if failed else "")


def _audit_rows(fleet: Fleet, window: Window) -> int:
    return fleet.postgres.count("SELECT count(*) FROM blobgate_audit WHERE "
                                "at >= to_timestamp($1) AND at < to_timestamp($2)",
                                window[1], window[2])


def tables_and_targets(fleet: Fleet, windows: Windows, attempts: Sequence[Attempt],
                       slices: Sequence[Slice], rss: Sequence[tuple[float, float]]
                       ) -> Result:
    """The per-window tables and the issue's goals."""
    pulls = Table("Chaos run: pulls per fault window", [
        "fault", "s", "pulls via blobgate (tried / ok / failed)",
        "control pulls (tried / ok / failed)", "blobgate failures the control did not share",
        "wrong blobs", "s to recover", "peak RSS of the replicas, MiB"])
    answers = Table("Chaos run: blob requests and audit per fault window", [
        "fault", "wrk blob GETs via blobgate (307 / other)", "wrk control (200 / other)",
        "blob answers (redirect / other)", "audit rows / blob requests"])
    logged = _blob_answers(fleet)
    failures: list[str] = []
    goals = {"wrong": 0, "restart": 0, "blamed": 0, "audit": 0}
    for window in windows:
        name = window[0]
        mine = [a for a in attempts if _within(window, a.started)]
        own = [a for a in mine if a.target == "blobgate" and blamed(a, attempts)]
        wrong = sum(a.wrong_blobs for a in mine if a.ok)
        peak = max((mib for at, mib in rss if _within(window, at)), default=0.0)
        pulls.add(name, f"{window[2] - window[1]:.0f}", _pulls(mine, "blobgate"),
                  _pulls(mine, "registry"), len(own), wrong, f"{window[3]:.1f}",
                  f"{peak:.0f}")
        outcomes = Counter(outcome for at, outcome in logged if _within(window, at))
        requests = sum(outcomes.values())
        rows = _audit_rows(fleet, window)
        answers.add(name, _wrk([s for s in slices if _within(window, s.started)], "blobgate"),
                    _wrk([s for s in slices if _within(window, s.started)], "registry"),
                    f"{outcomes['redirect']:,} / {requests - outcomes['redirect']:,}",
                    f"{rows:,} / {requests:,}")
        goals["wrong"] += wrong
        goals["blamed"] += len(own)
        goals["audit"] += max(0, requests - rows) if name != "kill -9" else 0
        if name == "rolling restart":
            goals["restart"] += sum(not a.ok for a in mine if a.target == "blobgate")
        failures += [f"{name}, {a.client} via blobgate: `{a.error.strip().splitlines()[-1]}`"
                     for a in mine if a.target == "blobgate" and not a.ok][:5]
    pulls.notes += failures
    return Result([pulls, answers], [
        Target("0 wrong bytes ever", f"{goals['wrong']} wrong blobs", goals["wrong"] == 0),
        Target("0 pulls failed by a rolling restart", f"{goals['restart']} failed",
               goals["restart"] == 0),
        Target("in every window blobgate fails no pull the control completed",
               f"{goals['blamed']} such failures", goals["blamed"] == 0),
        Target("0 audit records lost within the queue (kill -9 aside: its memory is gone)",
               f"{goals['audit']} blob requests without a row", goals["audit"] == 0),
    ])
