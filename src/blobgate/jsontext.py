"""JSON that comes from outside blobgate (token headers, URL-API bodies, the token
service's answers), decoded in one place so that every malformed document fails the
same way: a ``ValueError``, which each caller already answers as bad input.

Python's ``json`` raises ``RecursionError`` on deep nesting (3000 ``[``), an error no
caller expects. orjson refuses more than 1024 levels itself (a ``JSONDecodeError``, a
``ValueError``), but a value 1000 levels deep still breaks any later code that walks it
with Python's recursion (``str()`` of a URL-API parameter did: 500). So documents are
decoded with orjson and refused past ``MAX_DEPTH`` levels of arrays and objects: far
more than any document blobgate reads needs, far below the interpreter's recursion limit.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 64


def parse(data: bytes | str) -> Any:
    """The JSON value in ``data``; ``ValueError`` when it is not JSON or nests arrays and
    objects more than ``MAX_DEPTH`` deep."""
    value = orjson.loads(data)
    text = data.encode() if isinstance(data, str) else data
    if text.count(b"[") + text.count(b"{") <= MAX_DEPTH:
        return value  # too few brackets to nest deeper (the usual, small document)
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(MAX_DEPTH):
        level = [child for node in level
                 for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, dict | list)]
        if not level:
            return value
    raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep")
