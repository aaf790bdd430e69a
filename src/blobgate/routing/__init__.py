"""Routing: which clients go where.

``policy`` decides, per blob request, whether its bytes are streamed or which locations
a redirect tries (the first rule matching the client's network, the repository and the
User-Agent); ``feeds`` reads the clouds' published IP ranges rules name as
``aws:<region>``, ``gcp:<region>``, ``azure:<region>``; ``prefixes`` finds a client among
tens of thousands of networks by binary search. The client address comes only through
``routing.trusted_proxies``.

May import: the ground floor only (``config``, ``errors``, ``reference``, ``decision``, …);
metrics reach it as a narrow protocol handed down at wiring time.
"""
