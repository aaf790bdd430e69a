"""What several replicas share, and how each keeps its own caches true to the others'.

Every cache that answers a request lives in-process, with the wing whose answers it
keeps (verified tokens in ``auth``, memberships in ``registry``, presigned URLs in
``backends``), all of one type (``expiring``). Behind them stands this wing: ``shared``,
the optional Redis a local miss asks before the registry or storage; ``sealing``, the
MACs that make Redis unable to lie; ``listener``, which hears the invalidations every
replica publishes; and ``replicas``, which forgets and flushes here and tells the others.
It knows the caches of a replica only as a narrow protocol handed in at wiring time.

May import: ``ops``, ``routing``, and the ground floor.
"""
