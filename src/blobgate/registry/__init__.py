"""The registry blobgate fronts: talking to it, relaying to it, and knowing what it holds.

``upstream`` is the one client (bounded pools, timeouts, errors translated once);
``proxy`` relays everything blobgate does not answer itself, with request bodies read
under an idle limit (``bodies``); ``membership`` asks whether a blob belongs to a
repository (a HEAD with the client's own credentials, answers cached) and
``harbordb`` answers that, and Harbor's rule on a token's age, from Harbor's database;
``manifests`` reads a manifest as the registry's Go decoder does, or not at all.
Nothing here decides whether a token is served: ``gate`` does, from these answers.

May import: ``caches``, ``ops``, ``routing``, and the ground floor.
"""
