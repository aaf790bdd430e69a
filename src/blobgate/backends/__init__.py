"""Storage backends: where blob bytes live, and how clients are sent to them.

``contract`` is what each backend promises (a URL signer, a byte source, an existence
check); ``s3`` (with its local ``sigv4`` signer), ``azure``, ``gcs`` (with its ``goog4``
V4 signer), ``cloudfront`` and ``registry`` (the ``proxy`` backend: the registry
streams) implement it; ``choice`` is
the one place that turns ``storage.backend`` into one of them. Nothing outside this
package imports an SDK of a storage service, and nothing outside ``choice`` names a
backend. ``redirects`` is the policy on where the ``proxy`` backend may be sent; ``urls``
keeps what storage said (the presigned URL of a digest, whether its object is there)
in front of whichever backend ``choice`` opened.

May import: ``registry``, ``caches``, ``ops``, ``routing``, and the ground floor.
"""
