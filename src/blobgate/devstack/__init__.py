"""A local stack for tests, benchmarks and ``blobgate demo``: S3, registry, token issuer.

Nothing here is imported by the gateway itself; it exists so that every proof runs
against real servers on loopback rather than fakes.
"""
