"""A pull: a request of the pull kind by a token that grants pull on its repository.

The gate recognises one in every pass-through request and learns the registry's answer
to it; the URL API makes one from its caller's credentials; warm-up reads manifests
only for one. Kept apart from the gate so the wings that build one need not import it.
"""

from __future__ import annotations

from typing import NamedTuple

from blobgate.auth.tokens import Grant


class Pull(NamedTuple):
    """A pass-through request of the pull kind (manifest, blob or tag list), by a token
    that grants pull on its repository."""

    authorization: str
    grant: Grant
    name: str
    kind: str  # "manifests", "blobs" or "tags"
