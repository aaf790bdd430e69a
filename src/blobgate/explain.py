"""``POST /admin/explain``: what blobgate would answer a blob GET or HEAD, step by step,
without answering it.

An operator asks why a pull was not offloaded: for a repository, digest, ``Authorization``
value, client address, ``User-Agent`` and ``Host``, each step of the blob path (token
check, registry verdict, membership, routing rule, presign host, location, storage check,
URL) is reported with its result and where the answer came from: ``memory`` (this
replica's cache), or ``registry``/``storage`` when it had to be asked. Nothing learnt is
kept: caches are only peeked at (no hit counted, no entry added or moved), the token is
verified without caching its grant, the registry and storage are asked directly (not
through the caches), a URL signed here is not cached and shown without its signature,
and no audit record is written. No byte of a blob is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from blobgate import decision
from blobgate.auth.tokens import Grant, bearer_token
from blobgate.blobs import BlobService, under_host
from blobgate.config import StorageConfig
from blobgate.decision import Decision, denial
from blobgate.errors import NotInStorage, RegistryError, StorageError
from blobgate.reference import BlobRef, parse_blob, storage_key
from blobgate.registry.membership import UpstreamMembership
from blobgate.routing.policy import parse_address


@dataclass
class Explanation:
    """The steps so far and, once reached, the answer."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    answer: Decision | None = None

    def step(self, name: str, result: str, source: str | None = None) -> None:
        self.steps.append({"step": name, "result": result, "source": source})

    def decide(self, answer: Decision) -> dict[str, Any]:
        self.answer = answer
        return self.body()

    def body(self) -> dict[str, Any]:
        answer = None if self.answer is None else self.answer._asdict()
        return {"answer": answer, "steps": self.steps}


@dataclass(frozen=True)
class Question:
    """What the operator asks about."""

    repository: str
    digest: str
    method: str = "GET"
    authorization: str | None = None
    client: str | None = None
    user_agent: str = ""
    host: str | None = None


class Explainer:
    """Walks the blob path of ``blobs`` for a ``Question`` without side effects."""

    def __init__(self, blobs: BlobService, rootdirectory: str) -> None:
        self._blobs = blobs
        self._registry = UpstreamMembership(blobs.upstream)
        self._root = rootdirectory

    async def explain(self, question: Question) -> dict[str, Any]:
        """The steps and the answer blobgate would give."""
        out = Explanation()
        try:
            ref = parse_blob(question.repository, question.digest)
        except RegistryError as exc:
            out.step("parse", exc.message)
            return out.decide(Decision("invalid", exc.code.lower()))
        out.step("parse", f"{ref.name} {ref.digest}")
        authorization = [] if question.authorization is None else [question.authorization]
        grant = self._token(authorization, out)
        if grant is None or not grant.can_pull(ref.name):
            return out.decide(denial(authorization, grant))
        admitted = await self._admit(ref, authorization[0], grant, out)
        if admitted is not None:
            return out.decide(admitted)
        if question.method == "HEAD":
            out.step("answer", "a HEAD is answered by blobgate")
            return out.decide(decision.LOCAL_HEAD)
        return out.decide(await self._route(ref, question, out))

    def _token(self, authorization: list[str], out: Explanation) -> Grant | None:
        verifier = self._blobs.gate.verifier
        cached = verifier.cache.peek(authorization[0]) if authorization else None
        token = bearer_token(authorization)
        grant = cached or (verifier.verify(token) if token is not None else None)
        if grant is None:
            out.step("token", "no Bearer token" if token is None else "not valid")
        else:
            pulls = ", ".join(sorted(grant.pullable)) or "nothing"
            out.step("token", f"valid, subject {grant.subject!r}, pull on {pulls}",
                     "memory" if cached else None)
        return grant

    async def _admit(self, ref: BlobRef, authorization: str, grant: Grant, out: Explanation
                     ) -> Decision | None:
        """The pass-through decision when the token may not be served the blob."""
        gate = self._blobs.gate
        known = gate.confirmations.cache.peek((grant.key, ref.name))
        member = gate.membership.cache.peek(ref)
        if known is not None:
            out.step("registry verdict", "accepted" if known[0] else "refused", "memory")
            if not known[0]:
                return decision.REFUSED
        if member is not None and known is not None:
            out.step("membership", f"in {ref.name}", "memory")
            return None
        try:
            answer = await self._registry.ask(ref, authorization)
        except RegistryError as exc:
            out.step("registry verdict", f"could not ask: {exc.message}", "registry")
            return decision.CHECK_FAILED
        if answer.member is not None:
            if known is None:
                out.step("registry verdict", f"accepted (HEAD {answer.status})", "registry")
            out.step("membership", f"in {ref.name}", "registry")
            return None
        refused = answer.status in (401, 403)
        out.step("registry verdict" if refused else "membership",
                 f"HEAD answered {answer.status}", "registry")
        return decision.REFUSED if refused else decision.NOT_MEMBER

    async def _route(self, ref: BlobRef, question: Question, out: Explanation) -> Decision:
        blobs = self._blobs
        route = blobs.policy.route_for(parse_address(question.client), ref.name,
                                       question.user_agent)
        streams = route.stream
        out.step("routing rule", streams.reason if streams is not None else
                 f"redirect ({route.reason}) to {', '.join((*route.copies, 'primary'))}")
        urls = blobs.urls
        if urls is None:
            out.step("location", "the backend cannot presign: the bytes are streamed")
            return decision.NO_PRESIGNER
        out.step("location", storage_key(self._root, ref.digest))
        if streams is not None:
            return streams
        if question.host is not None and not blobs.allow_gateway_host and under_host(
                blobs.presign_host, question.host):
            out.step("presign host", f"{blobs.presign_host} is {question.host} or under it")
            return decision.GATEWAY_HOST
        cached = urls.cache.peek(ref.digest)
        if cached is not None:
            out.step("storage check", f"there, {cached.size} bytes", "memory")
            out.step("url", _shown(cached.url), "memory")
            return decision.REDIRECTS[decision.MEMORY]
        if urls.presence.missing.peek(ref.digest) is not None:
            out.step("storage check", "not there (seen moments ago)", "memory")
            return decision.NOT_IN_STORAGE
        try:
            size = await urls.presence.look(ref.digest)
        except NotInStorage:
            out.step("storage check", "not there", "storage")
            return decision.NOT_IN_STORAGE
        except StorageError as exc:
            out.step("storage check", f"could not look: {exc}", "storage")
            return decision.STORAGE_UNCHECKED
        out.step("storage check", f"there, {size} bytes", "storage")
        try:
            signed = await urls.presigner.presign_blob(ref.digest)
        except StorageError as exc:
            out.step("url", f"signing failed: {exc}")
            return decision.PRESIGN_FAILED
        out.step("url", _shown(signed.url), "signed")
        return decision.REDIRECTS[decision.SIGNED]


def rootdirectory(storage: StorageConfig) -> str:
    """The configured object store's root directory (none for the registry as source)."""
    roots = {"s3": storage.s3.rootdirectory, "azure": storage.azure.rootdirectory,
             "gcs": storage.gcs.rootdirectory}
    return roots.get(storage.backend, "")


def _shown(url: str) -> str:
    """A presigned URL without its query (the signature): where the client would go."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def question_of(body: Any) -> Question:
    """The ``Question`` in a request body; ``ValueError`` naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    known = set(Question.__dataclass_fields__)
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    for key in ("repository", "digest"):
        if not isinstance(body.get(key), str):
            raise ValueError(f"{key} must be a string")
    for key, value in body.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
    if body.get("method", "GET") not in ("GET", "HEAD"):
        raise ValueError("method must be GET or HEAD")
    return Question(**{k: v for k, v in body.items() if v is not None})
