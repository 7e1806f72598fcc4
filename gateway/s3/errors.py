"""S3 error responses as exceptions, and the mapping from pipecache's own errors.

An :class:`S3Error` *is* an S3 error response, the way aiohttp's
``HTTPNotFound`` is a response: the class fixes the wire ``code`` and HTTP
``status``; the instance carries the message, the ``Resource`` and any extra
elements S3 puts in its ``<Error>`` body (``Key``, ``Condition``,
``StringToSign``...). ``xml.error_xml`` renders one; ``headers`` holds
response headers the error implies (``Content-Range`` for a 416).

Codes are registered by class, as asyncpg does with ``sqlstate``, so
``error_class(code)`` finds the class for a code read back from the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ...tiering import errors as cache

_REGISTRY: dict[str, type[S3Error]] = {}


class S3Error(Exception):
    """Base of every S3 error answer; also the fallback ``InternalError``."""

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.code] = cls

    def __init__(
        self,
        message: str | None = None,
        *,
        resource: str | None = None,
        extra: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message: str = message or self.default_message
        self.resource: str | None = resource
        #: Extra ``<Error>`` child elements, in order (e.g. ``{"Key": "a/b"}``).
        self.extra: dict[str, str] = dict(extra or {})
        #: Response headers that go with this error.
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class NotModified(S3Error):
    """Not an error: a conditional GET/HEAD answers 304 with no body."""

    code = "NotModified"
    status = 304
    default_message = "Not Modified"


class AccessDenied(S3Error):
    code = "AccessDenied"
    status = 403
    default_message = "Access Denied"


class SignatureDoesNotMatch(S3Error):
    code = "SignatureDoesNotMatch"
    status = 403
    default_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class InvalidAccessKeyId(S3Error):
    code = "InvalidAccessKeyId"
    status = 403
    default_message = "The AWS Access Key Id you provided does not exist in our records."


class RequestTimeTooSkewed(S3Error):
    code = "RequestTimeTooSkewed"
    status = 403
    default_message = "The difference between the request time and the current time is too large."


class AuthorizationHeaderMalformed(S3Error):
    code = "AuthorizationHeaderMalformed"
    status = 400
    default_message = "The authorization header is malformed."


class AuthorizationQueryParametersError(S3Error):
    code = "AuthorizationQueryParametersError"
    status = 400
    default_message = "Error parsing the query-string authentication parameters."


class MissingSecurityHeader(S3Error):
    code = "MissingSecurityHeader"
    status = 400
    default_message = "Your request is missing a required header."


class InvalidArgument(S3Error):
    code = "InvalidArgument"
    status = 400
    default_message = "Invalid Argument"


class InvalidRequest(S3Error):
    code = "InvalidRequest"
    status = 400
    default_message = "Invalid Request"


class InvalidURI(S3Error):
    code = "InvalidURI"
    status = 400
    default_message = "Couldn't parse the specified URI."


class InvalidBucketName(S3Error):
    code = "InvalidBucketName"
    status = 400
    default_message = "The specified bucket is not valid."


class KeyTooLongError(S3Error):
    code = "KeyTooLongError"
    status = 400
    default_message = "Your key is too long"


class InvalidRange(S3Error):
    code = "InvalidRange"
    status = 416
    default_message = "The requested range is not satisfiable"


class NoSuchBucket(S3Error):
    code = "NoSuchBucket"
    status = 404
    default_message = "The specified bucket does not exist"


class NoSuchKey(S3Error):
    code = "NoSuchKey"
    status = 404
    default_message = "The specified key does not exist."


class NoSuchUpload(S3Error):
    code = "NoSuchUpload"
    status = 404
    default_message = (
        "The specified upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed."
    )


class MethodNotAllowed(S3Error):
    code = "MethodNotAllowed"
    status = 405
    default_message = "The specified method is not allowed against this resource."


class S3NotImplemented(S3Error):
    """S3's ``NotImplemented`` (renamed so as not to shadow the builtin)."""

    code = "NotImplemented"
    status = 501
    default_message = "A header you provided implies functionality that is not implemented"


class PreconditionFailed(S3Error):
    code = "PreconditionFailed"
    status = 412
    default_message = "At least one of the pre-conditions you specified did not hold"


class InternalError(S3Error):
    code = "InternalError"
    status = 500


class ServiceUnavailable(S3Error):
    code = "ServiceUnavailable"
    status = 503
    default_message = "Service is unable to handle request."


class SlowDown(S3Error):
    code = "SlowDown"
    status = 503
    default_message = "Please reduce your request rate."


class XAmzContentSHA256Mismatch(S3Error):
    code = "XAmzContentSHA256Mismatch"
    status = 400
    default_message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class BadDigest(S3Error):
    code = "BadDigest"
    status = 400
    default_message = "The Content-MD5 you specified did not match what we received."


class RequestTimeout(S3Error):
    code = "RequestTimeout"
    status = 400
    default_message = (
        "Your socket connection to the server was not read from or written to within the "
        "timeout period. Idle connections will be closed."
    )


class EntityTooLarge(S3Error):
    code = "EntityTooLarge"
    status = 400
    default_message = "Your proposed upload exceeds the maximum allowed object size."


class IncompleteBody(S3Error):
    code = "IncompleteBody"
    status = 400
    default_message = (
        "You did not provide the number of bytes specified by the Content-Length HTTP header"
    )


class MissingContentLength(S3Error):
    code = "MissingContentLength"
    status = 411
    default_message = "You must provide the Content-Length HTTP header."


class MalformedXML(S3Error):
    code = "MalformedXML"
    status = 400
    default_message = (
        "The XML you provided was not well-formed or did not validate against our published schema"
    )


class InvalidPartOrder(S3Error):
    code = "InvalidPartOrder"
    status = 400
    default_message = (
        "The list of parts was not in ascending order. "
        "The parts list must be specified in order by part number."
    )


def error_class(code: str) -> type[S3Error]:
    """The class registered for an S3 error ``code`` (unknown codes: :class:`S3Error`)."""
    return _REGISTRY.get(code, S3Error)


# First match wins, so subclasses must come before their bases. Messages of
# internal errors are not passed on: they name workers and paths a client has
# no business seeing; InterfaceError's message is about the client's own input.
_FROM_CACHE: tuple[tuple[type[cache.CacheError], type[S3Error], bool], ...] = (
    (cache.NoSuchKey, NoSuchKey, False),
    (cache.NoSuchBucket, NoSuchBucket, False),
    (cache.InvalidRange, InvalidRange, False),
    (cache.ObjectChanged, PreconditionFailed, False),
    (cache.SlowDown, SlowDown, False),
    (cache.NoWorkers, ServiceUnavailable, False),
    # The gateway itself is healthy but what it depends on is not: 503 says
    # "retry later" to every SDK, where 500 would suggest a bug here.
    (cache.UnderStoreError, ServiceUnavailable, False),
    (cache.NoCapacity, ServiceUnavailable, False),
    (cache.InterfaceError, InvalidArgument, True),
)


def from_cache_error(err: cache.CacheError) -> S3Error:
    """The S3 error a client sees for a pipecache error (anything unmapped: InternalError)."""
    for cache_cls, s3_cls, keep_message in _FROM_CACHE:
        if isinstance(err, cache_cls):
            return s3_cls(err.message if keep_message else None)
    return InternalError()
