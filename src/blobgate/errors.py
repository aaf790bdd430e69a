"""Errors blobgate answers with, in the OCI distribution error envelope.

Every error a client can see is a ``RegistryError``: its code decides the HTTP status,
and ``response()`` renders ``{"errors": [{"code", "message", "detail"}]}``. Outside
failures (aiohttp client, botocore) are translated into this tree where they happen,
so handlers deal with one family only::

    BlobgateError
    ├── ConfigError              bad configuration; names the key
    ├── StorageError             presigning or stat failed (the request falls back)
    │   ├── NotInStorage         the object is not in storage (yet): no redirect to it
    │   └── StorageUnchecked     storage could not say whether it is: no redirect either
    └── RegistryError            answered to the client as OCI error JSON
        ├── NameInvalid          400 NAME_INVALID
        ├── DigestInvalid        400 DIGEST_INVALID
        ├── InvalidParameter     400 PARAMETER_INVALID (URL API)
        ├── Unauthorized         401 UNAUTHORIZED, with its own challenge (URL API)
        ├── AccessDenied         403 DENIED: known caller, no pull grant (URL API)
        ├── BlobUnknown          404 BLOB_UNKNOWN (URL API)
        ├── ClientBodyTimeout    408 UNKNOWN: the client stopped sending its body
        ├── UpstreamUnavailable  502 UNAVAILABLE
        ├── StorageUnavailable   503 UNAVAILABLE (URL API)
        ├── UpstreamBusy         503 UNAVAILABLE, with Retry-After: no connection freed
        ├── UpstreamTimeout      504 UNAVAILABLE
        └── TargetUnsupported    400 UNSUPPORTED (a request target that is not a path)
"""

from __future__ import annotations

import json
from typing import ClassVar

from aiohttp import web


class BlobgateError(Exception):
    """Root of every error blobgate raises on purpose."""


class ConfigError(BlobgateError):
    """A configuration value is missing or wrong; ``key`` is its dotted path."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why


class StorageError(BlobgateError):
    """The storage backend could not presign or describe a blob; ``reason`` is a short tag."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotInStorage(StorageError):
    """The blob's object is not in storage: a pull-through cache has not fetched it yet,
    or garbage collection removed it. The registry must answer."""


class StorageUnchecked(StorageError):
    """Storage could not be asked whether the blob's object is there."""


class RegistryError(BlobgateError):
    """An error the client receives as OCI error JSON with the status of its code."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500

    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def body(self) -> bytes:
        """The OCI error envelope for this error."""
        entry: dict[str, object] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()

    def headers(self) -> dict[str, str]:
        """Headers this error adds to its response."""
        return {"Docker-Distribution-Api-Version": "registry/2.0"}

    def response(self) -> web.Response:
        """A complete response carrying this error."""
        return web.Response(
            status=self.status, body=self.body(), content_type="application/json",
            headers=self.headers(),
        )


class NameInvalid(RegistryError):
    """The repository name does not match the distribution name grammar."""

    code = "NAME_INVALID"
    status = 400


class DigestInvalid(RegistryError):
    """The digest is not a supported, well-formed content digest."""

    code = "DIGEST_INVALID"
    status = 400


class InvalidParameter(RegistryError):
    """A URL API parameter is missing or out of range; the message says what is allowed."""

    code = "PARAMETER_INVALID"
    status = 400


class Unauthorized(RegistryError):
    """No token, or one without pull on the repository; carries the challenge to answer."""

    code = "UNAUTHORIZED"
    status = 401

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": self.challenge}


class AccessDenied(RegistryError):
    """The caller is known (its credentials are valid) but may not have what it asked for."""

    code = "DENIED"
    status = 403


class BlobUnknown(RegistryError):
    """The blob is not in the repository."""

    code = "BLOB_UNKNOWN"
    status = 404


class ClientBodyTimeout(RegistryError):
    """The client sent no byte of its request body for ``server.client_body_timeout_s``.

    The OCI error codes have none for this; ``UNKNOWN`` is distribution's last resort.
    """

    code = "UNKNOWN"
    status = 408

    def response(self) -> web.Response:
        response = super().response()
        response.force_close()  # the rest of the body is never read: the connection is done
        return response


class UpstreamUnavailable(RegistryError):
    """The upstream registry could not be reached or broke the connection."""

    code = "UNAVAILABLE"
    status = 502


class UpstreamTimeout(RegistryError):
    """The upstream registry did not answer within the configured time."""

    code = "UNAVAILABLE"
    status = 504


class UpstreamBusy(RegistryError):
    """Every relay connection to the registry stayed in use for ``upstream.pool_timeout_s``;
    the client is told when to try again."""

    code = "UNAVAILABLE"
    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after_s)}


class StorageUnavailable(RegistryError):
    """The storage backend failed while the URL API needed it."""

    code = "UNAVAILABLE"
    status = 503


class TargetUnsupported(RegistryError):
    """The request target is neither a path nor an absolute URL (e.g. ``OPTIONS *``)."""

    code = "UNSUPPORTED"
    status = 400
