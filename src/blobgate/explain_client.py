"""``blobgate explain``: ask a running blobgate, over its admin listener, what it would
answer a blob request, and print each step (see ``explain``).

The admin token is read from a file (``--admin-token-file``, the mounted Secret), the
client's token, if any, from another (``--token-file``): neither ever sits on a command
line. Exit status: 0 when the answer was printed, 1 when blobgate refused the question,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``blobgate explain``."""
    parser.add_argument("--admin-url", default="http://127.0.0.1:9103",
                        help="blobgate's admin listener (default %(default)s)")
    parser.add_argument("--admin-token-file", type=Path, required=True,
                        help="file holding the admin token (admin.token_file)")
    parser.add_argument("--repository", required=True)
    parser.add_argument("--digest", required=True)
    parser.add_argument("--method", choices=("GET", "HEAD"), default="GET")
    parser.add_argument("--token-file", type=Path,
                        help="file holding the client's Bearer token (none: anonymous)")
    parser.add_argument("--client", help="the client's address, as routing sees it")
    parser.add_argument("--user-agent", default="", help="the client's User-Agent")
    parser.add_argument("--host", help="the host the client used to reach blobgate")


def question(args: argparse.Namespace) -> dict[str, Any]:
    """The body of ``POST /admin/explain`` for the command's arguments."""
    authorization = None
    if args.token_file is not None:
        authorization = f"Bearer {args.token_file.read_text().strip()}"
    return {"repository": args.repository, "digest": args.digest, "method": args.method,
            "authorization": authorization, "client": args.client,
            "user_agent": args.user_agent, "host": args.host}


def render(answer: dict[str, Any]) -> str:
    """The steps, one a line, then the answer."""
    lines = []
    for step in answer["steps"]:
        source = f"  [{step['source']}]" if step["source"] else ""
        lines.append(f"{step['step']:>16}: {step['result']}{source}")
    decided = answer["answer"]
    lines.append(f"{'answer':>16}: {decided['outcome']} ({decided['reason']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Ask, print; the exit status."""
    token = args.admin_token_file.read_text().strip()
    request = urllib.request.Request(  # noqa: S310 (an operator-given http(s) URL)
        args.admin_url.rstrip("/") + "/admin/explain", method="POST",
        data=json.dumps(question(args)).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            print(render(json.load(response)))
    except urllib.error.HTTPError as exc:
        print(f"blobgate explain: {exc.code}: {exc.read().decode(errors='replace')[:500]}")
        return 1
    return 0
