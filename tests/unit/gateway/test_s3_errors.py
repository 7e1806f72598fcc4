"""S3 error classes: codes, statuses, registry, and the mapping from pipecache's errors."""

from __future__ import annotations

import pytest
from pipecache.gateway import s3
from pipecache.gateway.s3 import errors as e
from pipecache.tiering import errors as cache

EXPECTED = {
    "AccessDenied": 403,
    "SignatureDoesNotMatch": 403,
    "InvalidAccessKeyId": 403,
    "RequestTimeTooSkewed": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "MissingSecurityHeader": 400,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
    "InvalidBucketName": 400,
    "KeyTooLongError": 400,
    "InvalidRange": 416,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "MethodNotAllowed": 405,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "NotModified": 304,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "SlowDown": 503,
    "XAmzContentSHA256Mismatch": 400,
    "BadDigest": 400,
    "EntityTooLarge": 400,
    "MalformedXML": 400,
    "InvalidURI": 400,
    "InvalidPartOrder": 400,
    "IncompleteBody": 400,
    "MissingContentLength": 411,
}


@pytest.mark.parametrize(("code", "status"), EXPECTED.items())
def test_codes_and_statuses(code: str, status: int) -> None:
    cls = e.error_class(code)
    assert cls.code == code and cls.status == status
    err = cls()
    assert err.message == cls.default_message and err.message
    assert issubclass(cls, e.S3Error) and issubclass(cls, Exception)
    assert str(err) == f"{code}: {err.message}"


def test_not_implemented_does_not_shadow_the_builtin() -> None:
    assert e.error_class("NotImplemented") is e.S3NotImplemented
    assert not hasattr(e, "NotImplemented") or e.NotImplemented is NotImplemented


def test_unknown_code_falls_back_to_base() -> None:
    assert e.error_class("NoSuchThing") is e.S3Error
    assert e.S3Error().code == "InternalError" and e.S3Error().status == 500


def test_instance_fields() -> None:
    err = e.NoSuchKey("gone", resource="/b/k", extra={"Key": "k"}, headers={"X": "1"})
    assert (err.message, err.resource, err.extra, err.headers) == ("gone", "/b/k", {"Key": "k"}, {"X": "1"})
    assert repr(err) == "NoSuchKey('gone')"
    a, b = e.AccessDenied(), e.AccessDenied()
    a.extra["x"] = "1"
    assert b.extra == {}  # no shared mutable defaults


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (cache.NoSuchKey(), e.NoSuchKey),
        (cache.NoSuchBucket(), e.NoSuchBucket),
        (cache.InvalidRange(), e.InvalidRange),
        (cache.ObjectChanged(), e.PreconditionFailed),
        (cache.SlowDown(), e.SlowDown),
        (cache.NoWorkers(), e.ServiceUnavailable),
        (cache.UnderStoreError("s3 said 500 at host x"), e.ServiceUnavailable),
        (cache.NoCapacity(), e.ServiceUnavailable),
        (cache.InterfaceError("bad offset"), e.InvalidArgument),
        (cache.BlockNotFound(), e.InternalError),
        (cache.ChecksumMismatch(), e.InternalError),
        (cache.BadRequest(), e.InternalError),
        (cache.UnknownWorker(), e.InternalError),
        (cache.Unauthorized(), e.InternalError),
        (cache.CacheError(), e.InternalError),
    ],
)
def test_from_cache_error(source: cache.CacheError, target: type[e.S3Error]) -> None:
    assert type(e.from_cache_error(source)) is target


def test_from_cache_error_messages() -> None:
    # Internal details stay inside; the caller's own mistake is explained.
    assert e.from_cache_error(cache.UnderStoreError("host 10.0.0.1 down")).message == (
        e.ServiceUnavailable.default_message
    )
    assert e.from_cache_error(cache.InterfaceError("offset < 0")).message == "offset < 0"


def test_public_api_is_exported() -> None:
    for name in s3.__all__:
        assert hasattr(s3, name), name
    assert len(set(s3.__all__)) == len(s3.__all__)
