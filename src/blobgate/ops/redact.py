"""Scrubbing secrets from text before it is logged.

Applied to every formatted log line, blobgate's and its libraries' alike, so that no
token, password, AWS signature or session token reaches a log even inside an error
message or a traceback.
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"

_PATTERNS = re.compile(
    r"(?P<query>(?:X-Amz-Signature|X-Amz-Security-Token|X-Amz-Credential|Signature"
    r"|x-amz-security-token|AWSAccessKeyId|Key-Pair-Id|Policy)=)[^&\s\"']+"
    r"|(?P<scheme>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"
    r"|(?P<jwt>eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    r"|(?P<userinfo>://[^/\s:@]+:)[^@\s/]+(?=@)"
    r"|(?P<keyval>(?:password|passwd|secret|aws_secret_access_key|token|signature)"
    r"[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',&}]+",
    re.IGNORECASE,
)


def _replace(match: re.Match[str]) -> str:
    if match["jwt"]:
        return REDACTED
    prefix = match["query"] or match["scheme"] or match["userinfo"] or match["keyval"] or ""
    return prefix + REDACTED


# Every pattern above needs one of these (case-insensitively): text without any of them is
# returned untouched, sparing the full regular expression on the per-request hot path.
_TRIGGERS = ("=", "bearer", "basic", "eyj", "://", "passw", "secret", "token", "signature")


def redact(text: str) -> str:
    """``text`` with every recognised secret replaced by ``<redacted>``."""
    lowered = text.lower()
    for trigger in _TRIGGERS:  # a loop, not any(): no generator on the hot path
        if trigger in lowered:
            return _PATTERNS.sub(_replace, text)
    return text
