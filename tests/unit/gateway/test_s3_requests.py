"""Request parsing: Range, path, bucket names, list parameters, dates, conditional headers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict, MultiDict
from pipecache.gateway.s3 import errors as e
from pipecache.gateway.s3 import requests as r

# -- Range -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=0-0", 100, (0, 1)),
        ("bytes=99-99", 100, (99, 100)),
        ("bytes=90-200", 100, (90, 100)),
        ("bytes=0-", 100, (0, 100)),
        ("bytes=42-", 100, (42, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-200", 100, (0, 100)),
        ("bytes=0-99999999999999999999999999", 100, (0, 100)),
        ("BYTES=1-2", 100, (1, 3)),
        ("bytes = 1-2 ", 100, (1, 3)),
        ("bytes=1-2, ", 100, (1, 3)),
        ("bytes=-5", 0, None),  # an empty object is its own last bytes: send it whole
        # Ignored (the whole object is sent), as RFC 9110 and S3 do:
        ("bytes=9-0", 100, None),
        ("items=0-1", 100, None),
        ("bytes 0-1", 100, None),
        ("bytes=", 100, None),
        ("bytes=-", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=0x1-2", 100, None),
        ("bytes=+1-2", 100, None),
        ("bytes=1 - 2", 100, None),
        ("bytes=\u0661-\u0662", 100, None),  # Arabic-Indic digits are not DIGIT
        ("bytes=0-1,5-6", 100, None),  # S3 does not serve multiple ranges
        ("bytes=0-1,-5", 100, None),
        ("bytes=0-" + "9" * 300, 100, None),  # over-long header
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert r.parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=500-600", 100), ("bytes=-0", 100),
     ("bytes=0-", 0), ("bytes=0-0", 0), ("bytes=" + "9" * 30 + "-", 100)],
)
def test_unsatisfiable_range(header: str, size: int) -> None:
    with pytest.raises(e.InvalidRange) as info:
        r.parse_range(header, size)
    err = info.value
    assert err.status == 416
    assert err.headers == {"Content-Range": f"bytes */{size}"}
    assert err.extra == {"RangeRequested": header, "ActualObjectSize": str(size)}


def test_content_range() -> None:
    assert r.content_range(0, 10, 100) == "bytes 0-9/100"
    assert r.content_range(99, 100, 100) == "bytes 99-99/100"


# -- path, bucket, key -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", (None, None)),
        ("/bucket", ("bucket", None)),
        ("/bucket/", ("bucket", None)),
        ("/bucket/a/b.txt", ("bucket", "a/b.txt")),
        ("/bucket//a", ("bucket", "/a")),
        ("/bucket/a//b/", ("bucket", "a//b/")),
        ("/bucket/a/./../b", ("bucket", "a/./../b")),
        ("/bucket/%2e%2e/x", ("bucket", "../x")),
        ("/bucket/a%2Fb", ("bucket", "a/b")),
        ("/bucket/caf%C3%A9%20%F0%9F%9A%80", ("bucket", "café 🚀")),
        ("/bucket/a+b", ("bucket", "a+b")),  # '+' in a path is a plus, not a space
        ("/bucket/100%25", ("bucket", "100%")),
        ("/bucket/k?x=1&y", ("bucket", "k")),
        ("/bucket/tab%09nl%0A", ("bucket", "tab\tnl\n")),
        ("/my.bucket-1/k", ("my.bucket-1", "k")),
    ],
)
def test_parse_path(raw: str, expected: tuple[str | None, str | None]) -> None:
    assert r.parse_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("", e.InvalidURI),
        ("bucket/key", e.InvalidURI),
        ("/bucket/%ff", e.InvalidURI),
        ("/bucket/%C3", e.InvalidURI),
        ("/bucket/%ED%A0%80", e.InvalidURI),  # an encoded surrogate is not UTF-8
        ("/bucket/%zz", e.InvalidURI),
        ("/bucket/abc%4", e.InvalidURI),
        ("/bucket/a%00b", e.InvalidArgument),
        ("/bucket/" + "a" * 1025, e.KeyTooLongError),
        ("/bucket/" + "%C3%A9" * 513, e.KeyTooLongError),
        ("/bucket/" + "a" * 100_000, e.KeyTooLongError),
        ("//key", e.InvalidBucketName),
        ("/Bad_Bucket/k", e.InvalidBucketName),
        ("/b%FFx/k", e.InvalidURI),
    ],
)
def test_parse_path_rejects(raw: str, error: type[e.S3Error]) -> None:
    with pytest.raises(error):
        r.parse_path(raw)


def test_key_length_limit_is_in_utf8_bytes() -> None:
    assert r.parse_path("/bucket/" + "%C3%A9" * 512)[1] == "é" * 512
    r.validate_key("a" * 1024)
    with pytest.raises(e.KeyTooLongError) as info:
        r.validate_key("é" * 513)
    assert info.value.extra["Size"] == "1026"
    with pytest.raises(e.InvalidArgument):
        r.validate_key("")
    with pytest.raises(e.InvalidArgument):
        r.validate_key("\ud800")


def test_legacy_bucket_names() -> None:
    assert r.parse_path("/Old_Bucket/k", legacy_bucket_names=True) == ("Old_Bucket", "k")


@pytest.mark.parametrize(
    "name", ["abc", "a" * 63, "my-bucket", "my.bucket.1", "1bucket", "b-1-2", "xn-ok"]
)
def test_valid_bucket_names(name: str) -> None:
    r.validate_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "", "ab", "a" * 64, "My-Bucket", "my_bucket", "-bucket", "bucket-", ".bucket", "bucket.",
        "my..bucket", "192.168.5.4", "xn--bucket", "sthree-b", "amzn-s3-demo-b", "b-s3alias",
        "b--ol-s3", "b.mrap", "b--x-s3", "b--table-s3", "bück", "b b", "b/c",
    ],
)
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(e.InvalidBucketName) as info:
        r.validate_bucket_name(name)
    assert info.value.extra["BucketName"] == name


# -- query and list parameters -----------------------------------------------------


def test_parse_query() -> None:
    assert r.parse_query("a=1&b=&c&&d=x%20y+z%2B") == [("a", "1"), ("b", ""), ("c", ""), ("d", "x y z+")]
    assert r.parse_query("?list-type=2") == [("list-type", "2")]
    assert r.parse_query("") == []
    assert r.parse_query("p=%zz") == [("p", "%zz")]
    with pytest.raises(e.InvalidArgument):
        r.parse_query("p=%ff")
    with pytest.raises(e.InvalidArgument):
        r.parse_query("&".join(f"k{i}=v" for i in range(1001)))


def test_list_params_defaults_are_v1() -> None:
    p = r.parse_list_params({})
    assert p == r.ListParams(version=1, max_keys=1000)


def test_list_params_v2_all_fields() -> None:
    query = [
        ("list-type", "2"), ("prefix", "photos/"), ("delimiter", "/"), ("max-keys", "50"),
        ("continuation-token", "tok"), ("start-after", "photos/a"), ("encoding-type", "URL"),
        ("fetch-owner", "True"), ("marker", "ignored-in-v2"), ("x-id", "ListObjectsV2"),
    ]
    assert r.parse_list_params(query) == r.ListParams(
        version=2, prefix="photos/", delimiter="/", max_keys=50, continuation_token="tok",
        start_after="photos/a", marker=None, encoding_type="url", fetch_owner=True,
    )


def test_list_params_v1_ignores_v2_fields() -> None:
    p = r.parse_list_params(MultiDict([("marker", "m"), ("start-after", "s"), ("fetch-owner", "x")]))
    assert p.version == 1 and p.marker == "m" and p.start_after is None and not p.fetch_owner


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ("1", 1), ("1000", 1000), ("5000", 1000),
                                              (" 7 ", 7), ("2147483647", 1000)])
def test_max_keys(raw: str, expected: int) -> None:
    assert r.parse_list_params({"max-keys": raw}).max_keys == expected


@pytest.mark.parametrize(
    "query",
    [
        {"max-keys": "abc"}, {"max-keys": "-1"}, {"max-keys": "1.5"}, {"max-keys": ""},
        {"max-keys": "--5"}, {"max-keys": "2147483648"}, {"max-keys": "9" * 40}, {"max-keys": "１"},
        {"list-type": "3"}, {"list-type": ""}, {"encoding-type": "gzip"},
        {"list-type": "2", "continuation-token": ""}, {"list-type": "2", "fetch-owner": "yes"},
        {"prefix": "p" * 5000},
    ],
)
def test_invalid_list_params(query: dict[str, str]) -> None:
    with pytest.raises(e.InvalidArgument) as info:
        r.parse_list_params(query)
    assert info.value.extra["ArgumentName"] in query


def test_repeated_list_param_is_refused() -> None:
    with pytest.raises(e.InvalidArgument):
        r.parse_list_params([("prefix", "a"), ("prefix", "b")])


def test_empty_delimiter_and_start_after_mean_none() -> None:
    p = r.parse_list_params({"list-type": "2", "delimiter": "", "start-after": ""})
    assert p.delimiter is None and p.start_after is None


# -- dates -------------------------------------------------------------------------

RFC_EXAMPLE = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example


def test_http_date() -> None:
    assert r.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert r.http_date(RFC_EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert r.http_date(RFC_EXAMPLE + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"
    ts = datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC).timestamp()
    assert r.http_date(ts) == "Tue, 19 Jan 2038 03:14:08 GMT"


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "  Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 06 Nov 1994 08:49:37 -0000",  # email.utils.formatdate, as botocore sends Date
        "Sun, 6 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 10:49:37 +0200",
    ],
)
def test_parse_http_date_forms(text: str) -> None:
    assert r.parse_http_date(text) == RFC_EXAMPLE


@pytest.mark.parametrize(
    "text",
    [
        "", "garbage", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 31 Feb 1994 08:49:37 GMT",
        "Foo, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:49:37", "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 50 + "x", "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",
    ],
)
def test_parse_http_date_rejects(text: str) -> None:
    assert r.parse_http_date(text) is None


def test_rfc850_two_digit_years() -> None:
    assert r.parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0.0
    assert r.parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT") == 946684800.0


def test_http_date_round_trips() -> None:
    for ts in (0.0, RFC_EXAMPLE, 1700000000.0, 4102444800.0):
        assert r.parse_http_date(r.http_date(ts)) == ts


def test_iso8601() -> None:
    assert r.iso8601(1255369830.0) == "2009-10-12T17:50:30.000Z"
    assert r.iso8601(1255369830.1239) == "2009-10-12T17:50:30.123Z"
    assert r.iso8601(0) == "1970-01-01T00:00:00.000Z"


# -- conditional requests ----------------------------------------------------------

T = 1_700_000_000.0
BEFORE, AT, AFTER = r.http_date(T - 60), r.http_date(T), r.http_date(T + 60)


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, None),
        ({"If-Match": '"abc"'}, None),
        ({"If-Match": "abc"}, None),
        ({"If-Match": '"x", "abc"'}, None),
        ({"If-Match": "*"}, None),
        ({"If-Match": '"x"'}, "If-Match"),
        ({"If-Match": 'W/"abc"'}, "If-Match"),  # weak tags never match If-Match
        ({"If-Match": ""}, "If-Match"),
        ({"If-None-Match": '"abc"'}, "not_modified"),
        ({"If-None-Match": 'W/"abc"'}, "not_modified"),
        ({"If-None-Match": "*"}, "not_modified"),
        ({"If-None-Match": '"x", "y"'}, None),
        ({"If-Modified-Since": AT}, "not_modified"),
        ({"If-Modified-Since": AFTER}, "not_modified"),
        ({"If-Modified-Since": BEFORE}, None),
        ({"If-Modified-Since": "not a date"}, None),
        ({"If-Unmodified-Since": BEFORE}, "If-Unmodified-Since"),
        ({"If-Unmodified-Since": AT}, None),
        ({"If-Unmodified-Since": "not a date"}, None),
        # S3's documented combinations:
        ({"If-Match": '"abc"', "If-Unmodified-Since": BEFORE}, None),  # 200
        ({"If-None-Match": '"abc"', "If-Modified-Since": BEFORE}, "not_modified"),  # 304
        ({"If-None-Match": '"x"', "If-Modified-Since": AFTER}, None),  # IMS ignored
        ({"If-Match": '"x"', "If-None-Match": '"abc"'}, "If-Match"),
        ({"If-Unmodified-Since": BEFORE, "If-None-Match": '"abc"'}, "If-Unmodified-Since"),
        ({"if-none-match": '"abc"'}, "not_modified"),
    ],
)
def test_evaluate_conditions(headers: dict[str, str], outcome: str | None) -> None:
    if outcome in ("If-Match", "If-Unmodified-Since"):
        with pytest.raises(e.PreconditionFailed) as info:
            r.evaluate_conditions(headers, '"abc"', T)
        assert info.value.extra == {"Condition": outcome}
        assert info.value.status == 412
    else:
        assert r.evaluate_conditions(headers, '"abc"', T) == outcome


def test_conditions_compare_whole_seconds() -> None:
    assert r.evaluate_conditions({"If-Modified-Since": AT}, "abc", T + 0.9) == "not_modified"
    r.evaluate_conditions({"If-Unmodified-Since": AT}, "abc", T + 0.9)


def test_conditions_accept_multidicts_and_pairs() -> None:
    ci = CIMultiDict([("IF-NONE-MATCH", '"x"'), ("If-None-Match", '"abc"')])
    assert r.evaluate_conditions(ci, "abc", T) == "not_modified"
    pairs = [("If-Modified-Since", AT), ("If-Modified-Since", AT)]
    assert r.evaluate_conditions(pairs, "abc", T) is None  # a repeated date is ignored


def test_header_map() -> None:
    assert r.header_map([("A", "1"), ("a", "2"), ("B", "3")]) == {"a": ["1", "2"], "b": ["3"]}
    assert r.header_map(CIMultiDict([("X", "1"), ("x", "2")])) == {"x": ["1", "2"]}


# -- hostile input -----------------------------------------------------------------

ALPHABET = "bytes=-,0123456789 %/+?&=;:\"'<>*W\x00\x01\r\n\té🚀\ud800AaZz.~_GMTSun, Nov"


def _noise(rng: random.Random, seed: str = "") -> str:
    if seed and rng.random() < 0.7:
        chars = list(seed)
        for _ in range(rng.randint(1, 4)):
            op, at = rng.random(), rng.randrange(len(chars) + 1)
            if op < 0.4:
                chars.insert(at, rng.choice(ALPHABET))
            elif chars and op < 0.8:
                chars[min(at, len(chars) - 1)] = rng.choice(ALPHABET)
            elif chars:
                del chars[min(at, len(chars) - 1)]
        return "".join(chars)
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))


def test_hostile_inputs_raise_only_s3_errors() -> None:
    rng = random.Random(1234)
    seeds = ["bytes=0-9", "/bucket/a%20b/c", "list-type=2&max-keys=5&prefix=a",
             "Sun, 06 Nov 1994 08:49:37 GMT", '"abc", W/"x"']
    for _ in range(3000):
        text = _noise(rng, rng.choice(seeds))
        size = rng.choice([0, 1, 10, 1000])
        try:
            got = r.parse_range(text, size)
        except e.InvalidRange:
            pass
        else:
            assert got is None or 0 <= got[0] < got[1] <= size
        for parse in (r.parse_path, r.parse_query, lambda t: r.parse_list_params(r.parse_query(t))):
            try:
                parse(text)
            except e.S3Error:
                pass
        assert r.parse_http_date(text) is None or isinstance(r.parse_http_date(text), float)
        headers = [(rng.choice(["If-Match", "If-None-Match", "If-Modified-Since",
                                "If-Unmodified-Since"]), text)]
        try:
            assert r.evaluate_conditions(headers, "abc", T) in (None, "not_modified")
        except e.PreconditionFailed:
            pass
