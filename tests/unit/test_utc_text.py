"""The audit lines' ``at``: the moment ``datetime`` makes of the same timestamp."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from blobgate.ops.audit import UTCText

TEXT = UTCText()  # one instance for all examples: its kept second changes between them


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_the_text_reads_back_as_the_same_moment(now: float) -> None:
    text = TEXT(now)
    assert text.endswith("+00:00")
    assert datetime.fromisoformat(text) == datetime.fromtimestamp(now, UTC)


def test_a_fraction_that_rounds_up_carries_into_the_next_second() -> None:
    assert UTCText()(1750000000.9999996) == "2025-06-15T15:06:41.000000+00:00"
