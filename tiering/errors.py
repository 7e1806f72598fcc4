"""Typed errors shared by every part of pipecache.

Each error carries a stable ``code`` (sent on the wire) and the HTTP status it
maps to. The client turns a wire error back into the same class through
``error_from_code``, so callers catch one hierarchy wherever the fault arose.
"""

from __future__ import annotations

from typing import ClassVar

_REGISTRY: dict[str, type[CacheError]] = {}


class CacheError(Exception):
    """Base of all pipecache errors."""

    code: ClassVar[str] = "InternalError"
    http_status: ClassVar[int] = 500

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.code] = cls

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


_REGISTRY[CacheError.code] = CacheError


class InterfaceError(CacheError):
    """The caller misused the API (bad arguments); not a fault of the cluster."""

    code = "InvalidArgument"
    http_status = 400


class BadRequest(CacheError):
    """A peer sent a malformed message."""

    code = "BadRequest"
    http_status = 400


class Unauthorized(CacheError):
    code = "Unauthorized"
    http_status = 401


class NoSuchBucket(CacheError):
    code = "NoSuchBucket"
    http_status = 404


class NoSuchKey(CacheError):
    code = "NoSuchKey"
    http_status = 404


class BlockNotFound(CacheError):
    """The block is not resident where it was asked for."""

    code = "BlockNotFound"
    http_status = 404


class UnknownWorker(CacheError):
    """The master does not know this worker (it was dropped): register again."""

    code = "UnknownWorker"
    http_status = 404


class ObjectChanged(CacheError):
    """The object's ETag no longer matches the version being read."""

    code = "PreconditionFailed"
    http_status = 412


class InvalidRange(CacheError):
    code = "InvalidRange"
    http_status = 416


class ChecksumMismatch(CacheError):
    """Stored or received bytes do not match their checksum or length."""

    code = "ChecksumMismatch"
    http_status = 500


class NoCapacity(CacheError):
    """No tier can take the block."""

    code = "NoCapacity"
    http_status = 507


class UnderStoreError(CacheError):
    """The under-store failed or answered something unexpected."""

    code = "UnderStoreError"
    http_status = 502


class SlowDown(CacheError):
    """The under-store asked us to slow down, or is unavailable."""

    code = "SlowDown"
    http_status = 503


class NoWorkers(CacheError):
    """No live worker can serve the request."""

    code = "ServiceUnavailable"
    http_status = 503


def error_from_code(code: str, message: str = "") -> CacheError:
    """Rebuild the typed error named by a wire ``code`` (unknown codes: CacheError)."""
    cls = _REGISTRY.get(code, CacheError)
    return cls(message or code)


class BucketNotEmpty(CacheError):
    """DeleteBucket on a bucket that still holds objects."""

    code = "BucketNotEmpty"
    http_status = 409


class BucketAlreadyOwnedByYou(CacheError):
    """CreateBucket of a bucket that already exists (and is ours)."""

    code = "BucketAlreadyOwnedByYou"
    http_status = 409


class NoSuchUpload(CacheError):
    """The multipart upload does not exist (never created, completed or aborted)."""

    code = "NoSuchUpload"
    http_status = 404


class InvalidPart(CacheError):
    """A part named to complete an upload is missing or its ETag does not match."""

    code = "InvalidPart"
    http_status = 400


class NoSuchJob(CacheError):
    """A load job id the master does not know."""

    code = "NoSuchJob"
    http_status = 404


class NoSuchHold(CacheError):
    """No pin, protection or TTL entry of that name."""

    code = "NoSuchHold"
    http_status = 404
