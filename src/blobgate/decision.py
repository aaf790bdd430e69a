"""What blobgate decided for a blob or URL-API request, and why: an outcome and a reason.

Handlers return a ``Decision`` with their answer; the access line, the audit record, the
metrics and the request's span all read that one value. ``outcome`` is the coarse result
the metrics count (``redirect``, ``stream``, ``local``, ``url``, or a pass-through:
``denied``, ``refused``, ``not_found``, ``passthrough``); ``reason`` says why:

===============  ==========================================================================
outcome          reasons
===============  ==========================================================================
``denied``       ``no_token`` (no Bearer token: the registry owns the challenge),
                 ``invalid_token`` (signature, claims or key do not check out),
                 ``no_grant`` (valid, but no pull on exactly this repository)
``refused``      ``refused`` (the registry refused this token for the repository)
``not_found``    ``not_member`` (the blob is not in this repository)
``passthrough``  ``check_failed`` (the registry could not be asked), ``not_in_storage``,
                 ``storage_unchecked``, ``size_unknown``, ``stream_failed``
``redirect``     the tier of the URL cache that answered: ``memory`` (this replica),
                 ``redis`` (another replica signed it), ``signed`` (signed now)
``stream``       ``policy:default``, ``policy:<name>`` or ``policy:rules[<i>]`` (the rule
                 that chose streaming), ``gateway_host`` (presigned URLs would go to the
                 gateway's own host), ``presign_failed``, ``no_presigner`` (the backend
                 cannot presign)
``local``        ``head`` (a HEAD of an admitted blob, answered by blobgate)
``url``          ``signed`` (the URL API handed out a URL)
===============  ==========================================================================

A request blobgate answers with an error gets the error's code in lower case as its
reason (``digest_invalid``, ``unavailable``, ...), unless its handler named one. Every
decision except a routing rule's is a constant here, so deciding allocates nothing.
"""

from __future__ import annotations

from typing import NamedTuple


class Decision(NamedTuple):
    """An outcome and the reason for it."""

    outcome: str
    reason: str


NO_TOKEN = Decision("denied", "no_token")
INVALID_TOKEN = Decision("denied", "invalid_token")
NO_GRANT = Decision("denied", "no_grant")
REFUSED = Decision("refused", "refused")
NOT_MEMBER = Decision("not_found", "not_member")
CHECK_FAILED = Decision("passthrough", "check_failed")
NOT_IN_STORAGE = Decision("passthrough", "not_in_storage")
STORAGE_UNCHECKED = Decision("passthrough", "storage_unchecked")
SIZE_UNKNOWN = Decision("passthrough", "size_unknown")
STREAM_FAILED = Decision("passthrough", "stream_failed")
GATEWAY_HOST = Decision("stream", "gateway_host")
PRESIGN_FAILED = Decision("stream", "presign_failed")
NO_PRESIGNER = Decision("stream", "no_presigner")
LOCAL_HEAD = Decision("local", "head")
URL_SIGNED = Decision("url", "signed")

MEMORY, REDIS, SIGNED = "memory", "redis", "signed"  # the URL cache's tiers
REDIRECTS = {tier: Decision("redirect", tier) for tier in (MEMORY, REDIS, SIGNED)}


def policy(rule: str) -> Decision:
    """Streaming chosen by routing rule ``rule`` (its ``name``, else ``rules[<i>]``), or by
    ``routing.default`` (``default``)."""
    return Decision("stream", f"policy:{rule}")


def denial(authorization: list[str], grant: object | None) -> Decision:
    """Why a request without a pull grant on its repository passes through (``grant``:
    the token's verified grant, if any)."""
    if grant is not None:
        return NO_GRANT
    bearer = any(value[:7].lower() == "bearer " for value in authorization)
    return INVALID_TOKEN if bearer else NO_TOKEN
