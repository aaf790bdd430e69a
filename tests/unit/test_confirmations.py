"""A refusal heard from another replica is held here, not merely an acceptance dropped."""

from __future__ import annotations

from blobgate.auth.confirmations import Confirmations

TOKEN = b"\x01" * 32


def test_a_refusal_heard_is_held_for_the_refusal_ttl() -> None:
    now = [1000.0]
    confirmations = Confirmations(300, 10, 100, clock=lambda: now[0])
    confirmations.accept(TOKEN, "team-a/app", token_expires_at=now[0] + 600)
    confirmations.heard_refusal(TOKEN, "team-a/app")
    # False, not "unknown": an acceptance written back into Redis is not looked for.
    assert confirmations.verdict(TOKEN, "team-a/app") is False
    now[0] += 11
    assert confirmations.verdict(TOKEN, "team-a/app") is None


def test_a_refusal_heard_for_an_unknown_token_is_held_too() -> None:
    confirmations = Confirmations(300, 10, 100, clock=lambda: 1000.0)
    confirmations.heard_refusal(TOKEN, "team-a/app")
    assert confirmations.verdict(TOKEN, "team-a/app") is False
    confirmations.heard_refusal(TOKEN, "team-a/app")  # a held refusal stays as it is
    assert confirmations.verdict(TOKEN, "team-a/app") is False
