"""Who is asking, and what the registry lets them have.

``tokens`` verifies a Bearer token locally against the signing keys (``keys``) into a
``Grant``: the repositories it may pull from. A verified token is not yet one the
registry honours: ``confirmations`` keeps the registry's own verdicts on tokens, per
repository. ``pulls`` names a request of the pull kind by such a token. For blobgate's
URL API, ``callers`` turns a caller's Basic credentials into a token at the registry's
token service (its address from ``challenge``, which also builds the API's
``WWW-Authenticate`` answers).

May import: ``registry``, ``caches``, ``ops``, ``routing``, and the ground floor.
"""
