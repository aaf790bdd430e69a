"""Who may do what in the development token issuer: users, passwords and access rules.

The issuer grants the actions a client asks for only where a rule allows them, so the
stack can model private repositories, pull-only users and anonymous public pulls.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANYONE = "*"


@dataclass(frozen=True)
class Rule:
    """``account`` (a user name, or ``*`` for anyone including anonymous) may do
    ``actions`` on repositories whose name matches the glob ``repository``."""

    account: str
    repository: str
    actions: tuple[str, ...]

    def applies(self, account: str | None, repository: str) -> bool:
        """True when this rule covers ``account`` acting on ``repository``."""
        account_ok = self.account == ANYONE or (account is not None and account == self.account)
        return account_ok and fnmatch.fnmatchcase(repository, self.repository)


@dataclass(frozen=True)
class Scope:
    """One requested ``type:name:actions`` scope from a token request."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse ``repository:name:pull,push``; the name may itself contain colons."""
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            raise ValueError(f"malformed scope {text!r}")
        return cls(kind, name, tuple(a for a in actions.split(",") if a))


@dataclass(frozen=True)
class Policy:
    """Users with their passwords and the rules that grant them access."""

    users: Mapping[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def authenticate(self, username: str, password: str) -> bool:
        """True when ``username`` exists and ``password`` is theirs."""
        return username in self.users and self.users[username] == password

    def grant(self, account: str | None, scope: Scope) -> tuple[str, ...]:
        """The requested actions of ``scope`` that ``account`` may perform, in request order."""
        if scope.type != "repository":
            return ()
        allowed = {
            action
            for rule in self.rules
            if rule.applies(account, scope.name)
            for action in rule.actions
        }
        return tuple(a for a in scope.actions if a in allowed)

    def access(self, account: str | None, scopes: Iterable[Scope]) -> list[dict[str, Any]]:
        """The token's ``access`` claim: one entry per repository with granted actions."""
        merged: dict[str, list[str]] = {}
        for scope in scopes:
            if scope.type != "repository":
                continue
            actions = merged.setdefault(scope.name, [])
            for action in self.grant(account, scope):
                if action not in actions:
                    actions.append(action)
        return [
            {"type": "repository", "name": name, "actions": actions}
            for name, actions in merged.items()
        ]

    def to_json(self) -> dict[str, Any]:
        """The policy-file form of this policy."""
        return {
            "users": dict(self.users),
            "rules": [
                {"account": r.account, "repository": r.repository, "actions": list(r.actions)}
                for r in self.rules
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        """Build a policy from its policy-file form."""
        rules = tuple(
            Rule(str(r["account"]), str(r["repository"]), tuple(str(a) for a in r["actions"]))
            for r in data.get("rules", [])
        )
        users = {str(k): str(v) for k, v in data.get("users", {}).items()}
        return cls(users, rules)

    def write(self, path: Path) -> None:
        """Write the policy file the issuer process reads."""
        path.write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def read(cls, path: Path) -> Policy:
        """Read a policy file."""
        loaded: dict[str, Any] = json.loads(path.read_text())
        return cls.from_json(loaded)
