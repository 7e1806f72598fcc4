"""Virtual-host addressing and absolute-form request targets (pure)."""

from __future__ import annotations

import pytest
from pipecache.gateway.s3 import errors as s3e
from pipecache.gateway.s3.hosts import host_bucket, parse_domain, parse_target, split_target

DOMAINS = ("localhost", "s3.example.com")


@pytest.mark.parametrize(
    ("host", "bucket"),
    [
        ("photos.localhost:8080", "photos"),
        ("PHOTOS.LocalHost", "photos"),
        ("my.dotted.bucket.s3.example.com", "my.dotted.bucket"),
        ("photos.s3.example.com.", "photos"),
        ("localhost:8080", None),
        ("s3.example.com", None),
        ("127.0.0.1:8080", None),
        ("[::1]:8080", None),
        ("elsewhere.org", None),
        ("", None),
        (None, None),
    ],
)
def test_host_names_the_bucket(host: str | None, bucket: str | None) -> None:
    assert host_bucket(host, DOMAINS) == bucket


def test_no_domains_means_path_style_only() -> None:
    assert host_bucket("photos.localhost", ()) is None


@pytest.mark.parametrize(
    "host",
    [
        "a b.localhost",
        "photos.localhost:99999",
        "photos.localhost:",
        "x/y.localhost",
        "ph\u00f6tos.localhost",
    ],
)
def test_malformed_host_headers_are_refused(host: str) -> None:
    with pytest.raises(s3e.InvalidArgument):
        host_bucket(host, DOMAINS)


@pytest.mark.parametrize("host", ["ab.localhost", "192.168.1.1.localhost", "a..b.localhost", "-x-.localhost"])
def test_bucket_names_under_a_domain_are_checked(host: str) -> None:
    with pytest.raises(s3e.InvalidBucketName):
        host_bucket(host, DOMAINS)


def test_target_under_a_host_bucket_is_all_key() -> None:
    assert parse_target("/", "photos") == ("photos", None)
    assert parse_target("/?list-type=2", "photos") == ("photos", None)
    assert parse_target("/a%20b//c/", "photos") == ("photos", "a b//c/")
    assert parse_target("/photos/x", None) == ("photos", "x")
    with pytest.raises(s3e.InvalidURI):
        parse_target("/bad%zz", "photos")
    with pytest.raises(s3e.KeyTooLongError):
        parse_target("/" + "k" * 5000, "photos")


def test_absolute_form_targets() -> None:
    assert split_target("/b/k?x=1") == (None, "/b/k?x=1")
    assert split_target("http://photos.localhost:8080/k%2F1?x=1") == ("photos.localhost:8080", "/k%2F1?x=1")
    assert split_target("HTTP://h") == ("h", "/")
    assert split_target("http://h?list-type=2") == ("h", "/?list-type=2")
    for bad in ("*", "ftp://h/x", "h/x", "http:///x"):
        with pytest.raises(s3e.InvalidURI):
            split_target(bad)


def test_domains_are_checked() -> None:
    assert parse_domain("S3.Example.com.") == "s3.example.com"
    for bad in ("", "-a.com", "a..b", "a b", "*.example.com"):
        with pytest.raises(ValueError):
            parse_domain(bad)
