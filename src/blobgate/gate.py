"""May this verified token be served this blob? The one decision behind every redirect,
local HEAD, streamed blob and URL-API answer.

blobgate must never be more permissive than the registry it fronts, so a token whose
grant covers ``<name>`` is served only when, besides:

1. the registry accepts that very token for ``<name>``: with
   ``membership.source: harbor_db``, Harbor's own rule decides from its database
   (``iat`` present, not before the project's creation); otherwise (and while that
   database is down) the registry's verdict in ``Confirmations``, learnt from its
   answers to the pull's own manifest requests, or from one HEAD of the blob sent with
   the token, which also answers 2.; a refusal the registry gave always stands;
2. the blob is in ``<name>`` (``CachedMembership``).

A warm pull of a confirmed token costs two dictionary lookups (three with harbor_db); a
new token costs at most one upstream request (none with harbor_db).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from aiohttp import web

from blobgate import decision
from blobgate.auth.confirmations import Confirmations
from blobgate.auth.pulls import Pull
from blobgate.auth.tokens import Grant, TokenVerifier
from blobgate.decision import Decision
from blobgate.ops.tracing import note, step
from blobgate.reference import BlobRef
from blobgate.registry.harbordb import HarborTokenRule
from blobgate.registry.membership import CachedMembership, Member, UpstreamMembership

PULL_PATH = re.compile(r"/v2/(.+)/(?:(manifests|blobs)/[^/]+|tags/list)")


class Denied(NamedTuple):
    """Why a token is not served: the request passes through with this decision."""

    decision: Decision


REFUSED = Denied(decision.REFUSED)
NOT_FOUND = Denied(decision.NOT_MEMBER)


class Gate:
    """Admits (token, blob) pairs; learns the registry's verdicts on tokens."""

    def __init__(
        self,
        verifier: TokenVerifier,
        membership: CachedMembership,
        registry: UpstreamMembership,
        confirmations: Confirmations,
        rule: HarborTokenRule | None = None,
    ) -> None:
        self.verifier = verifier
        self.membership = membership
        self.confirmations = confirmations
        self._registry = registry
        self._rule = rule

    def known(self, ref: BlobRef, grant: Grant) -> Member | None:
        """The blob when this replica already knows both answers (the token accepted for
        the repository, the blob in it), else ``None``: then ``admit`` decides. The warm
        path: two lookups, nothing awaited (each cache counts one hit; a miss is counted
        by ``admit``'s own lookup)."""
        if self._rule is not None:
            return None
        accepted = self.confirmations.cache.found((grant.key, ref.name))
        if accepted is None or not accepted[0]:
            return None
        cached = self.membership.cache.found(ref)
        return None if cached is None else cached[0]

    async def admit(self, ref: BlobRef, authorization: str, grant: Grant) -> Member | Denied:
        """The blob when ``grant`` (already checked to pull ``ref.name``) may be served
        it, else why not. Raises ``RegistryError`` when the registry could not be asked."""
        verdict = self.confirmations.verdict(grant.key, ref.name)
        if verdict is None:  # not known here: perhaps another replica knows
            verdict = await self.confirmations.recall(grant.key, ref.name)
            note("blobgate.verdict.source", "unknown" if verdict is None else "redis")
        if verdict is not False and self._rule is not None:
            with step("blobgate.harbor.token_rule"):
                ruled = await self._rule.verdict(grant, ref.name)
            verdict = verdict if ruled is None else ruled
        if verdict is None:
            with step("blobgate.registry.verdict"):
                return await self._ask(ref, authorization, grant)
        if verdict is False:
            return REFUSED
        member = await self.membership.check(ref, authorization)
        return NOT_FOUND if member is None else member

    async def _ask(self, ref: BlobRef, authorization: str, grant: Grant) -> Member | Denied:
        """One HEAD of the blob with the token: the registry's verdict on the token and,
        when it has the blob, a membership answer (remembered as the upstream source's)."""
        answer = await self._registry.ask(ref, authorization)
        if answer.member is not None:
            self.confirmations.accept(grant.key, ref.name, grant.expires_at)
            self.membership.remember(ref, answer.member)
            return answer.member
        verdict = self.confirmations.record(grant.key, ref.name, answer.status,
                                            grant.expires_at)
        return REFUSED if verdict is False else NOT_FOUND

    def pull_of(self, request: web.BaseRequest, target: str) -> Pull | None:
        """The request as a ``Pull``, if it is one (GET or HEAD of a pull-kind path by a
        token that grants pull on that repository)."""
        if request.method not in ("GET", "HEAD"):
            return None
        match = PULL_PATH.fullmatch(target.partition("?")[0])
        if match is None:
            return None
        values = request.headers.getall("Authorization", [])
        grant = self.verifier.grant(values)
        if grant is None or not grant.can_pull(match[1]):
            return None
        return Pull(values[0], grant, match[1], match[2] or "tags")

    def learn(self, pull: Pull, status: int) -> None:
        """Take the registry's answer to a passed-through ``pull`` as its verdict."""
        self.confirmations.record(pull.grant.key, pull.name, status, pull.grant.expires_at)
