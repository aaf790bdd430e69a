"""A local stack for tests, benchmarks and ``blobgate demo``: S3, registry, token issuer.

Nothing here is imported by the gateway itself; it exists so that every proof runs
against real servers on loopback rather than fakes.

May import: ``auth``, ``registry``, ``caches``, ``ops``, ``routing``, and the ground
floor (it writes log lines as the gateway does, and signs tokens with its key IDs).
"""
