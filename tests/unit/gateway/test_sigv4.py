"""SigV4 verification against AWS's published examples, the real botocore signer, and abuse.

The published figures come from the Amazon S3 API Reference:

* "Signature Calculations for the Authorization Header: Transferring Payload in
  a Single Chunk (AWS Signature Version 4)" (sig-v4-header-based-auth), section
  "Examples: Signature Calculations": GET Object, PUT Object, GET Bucket
  Lifecycle and Get Bucket (List Objects), all with access key
  AKIAIOSFODNN7EXAMPLE, secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY,
  2013-05-24, us-east-1, bucket examplebucket.
* "Authenticating Requests: Using Query Parameters" (sigv4-query-string-auth),
  the presigned GET of test.txt valid 86400 s.
* "Signature Calculations for the Authorization Header: Transferring Payload in
  Multiple Chunks (Chunked Upload)" (sigv4-streaming), "Example: PUT Object":
  a 66560-byte object of 'a's in chunks of 65536, 1024 and 0 bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.config
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from pipecache.gateway.s3 import errors as e
from pipecache.gateway.s3 import sigv4
from pipecache.gateway.s3.sigv4 import SignedRequest, verify_request

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEYS = {AKID: SECRET}
DOC_DATE = "20130524T000000Z"
DOC_NOW = datetime(2013, 5, 24, tzinfo=UTC).timestamp()
SCOPE = "20130524/us-east-1/s3/aws4_request"
HOST = "examplebucket.s3.amazonaws.com"
EMPTY = sigv4.EMPTY_SHA256


def doc_auth(signed: str, signature: str) -> str:
    return f"AWS4-HMAC-SHA256 Credential={AKID}/{SCOPE},SignedHeaders={signed},Signature={signature}"


# -- (1) published AWS examples ----------------------------------------------------


def test_get_object_example_canonical_request_string_to_sign_and_signature() -> None:
    headers = [
        ("Host", HOST),
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY),
        ("x-amz-date", DOC_DATE),
    ]
    signed = ["host", "range", "x-amz-content-sha256", "x-amz-date"]
    canonical = sigv4.canonical_request("GET", "/test.txt", "", headers, signed, EMPTY)
    assert canonical == (
        "GET\n/test.txt\n\n"
        "host:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        f"x-amz-content-sha256:{EMPTY}\nx-amz-date:20130524T000000Z\n\n"
        f"host;range;x-amz-content-sha256;x-amz-date\n{EMPTY}"
    )
    sts = sigv4.string_to_sign(DOC_DATE, SCOPE, canonical)
    assert sts == (
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )
    key = sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3")
    assert sigv4.sign(key, sts) == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


WELCOME_SHA = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()

DOC_EXAMPLES = {
    "get-object": (
        SignedRequest(
            "GET",
            "/test.txt",
            "",
            [
                ("Host", HOST),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY),
                ("x-amz-date", DOC_DATE),
                (
                    "Authorization",
                    doc_auth(
                        "host;range;x-amz-content-sha256;x-amz-date",
                        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                    ),
                ),
            ],
        ),
        EMPTY,
    ),
    # "PUT test$file.text": the canonical URI is /test%24file.text; string to
    # sign ends 9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d.
    "put-object": (
        SignedRequest(
            "PUT",
            "/test$file.text",
            "",
            [
                ("Host", HOST),
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-date", DOC_DATE),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", WELCOME_SHA),
                (
                    "Authorization",
                    doc_auth(
                        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                    ),
                ),
            ],
        ),
        WELCOME_SHA,
    ),
    # GET ?lifecycle: canonical query "lifecycle=", string to sign ends 9766c798....
    "get-lifecycle": (
        SignedRequest(
            "GET",
            "/",
            "lifecycle",
            [
                ("Host", HOST),
                ("x-amz-date", DOC_DATE),
                ("x-amz-content-sha256", EMPTY),
                (
                    "Authorization",
                    doc_auth(
                        "host;x-amz-content-sha256;x-amz-date",
                        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
                    ),
                ),
            ],
        ),
        EMPTY,
    ),
    # GET /?max-keys=2&prefix=J: string to sign ends df57d21d....
    "list-objects": (
        SignedRequest(
            "GET",
            "/",
            "max-keys=2&prefix=J",
            [
                ("Host", HOST),
                ("x-amz-date", DOC_DATE),
                ("x-amz-content-sha256", EMPTY),
                (
                    "Authorization",
                    doc_auth(
                        "host;x-amz-content-sha256;x-amz-date",
                        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
                    ),
                ),
            ],
        ),
        EMPTY,
    ),
}


@pytest.mark.parametrize("name", DOC_EXAMPLES)
def test_published_header_examples_verify(name: str) -> None:
    req, payload = DOC_EXAMPLES[name]
    result = verify_request(req, KEYS.get, DOC_NOW)
    assert result.access_key == AKID
    assert result.region == "us-east-1"
    assert result.scope == SCOPE
    assert result.payload_hash == payload
    assert result.content_sha256 == payload
    assert not result.presigned


def test_put_example_path_canonicalises_dollar_either_way() -> None:
    assert sigv4.canonical_uri("/test$file.text") == "/test%24file.text"
    assert sigv4.canonical_uri("/test%24file.text") == "/test%24file.text"


@pytest.mark.parametrize("name", DOC_EXAMPLES)
def test_published_examples_fail_with_another_secret(name: str) -> None:
    req, _ = DOC_EXAMPLES[name]
    with pytest.raises(e.SignatureDoesNotMatch) as info:
        verify_request(req, {AKID: SECRET + "x"}.get, DOC_NOW)
    assert info.value.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n20130524T000000Z\n")


PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)


def test_published_presigned_example() -> None:
    req = SignedRequest("GET", "/test.txt", PRESIGNED_QUERY, [("Host", HOST)])
    canonical = sigv4.canonical_request(
        "GET", "/test.txt", PRESIGNED_QUERY, req.headers, ["host"], "UNSIGNED-PAYLOAD", presigned=True
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    assert digest == "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
    result = verify_request(req, KEYS.get, DOC_NOW + 3600)
    assert result.presigned and result.payload_hash == "UNSIGNED-PAYLOAD"
    assert result.content_sha256 is None
    assert sigv4.auth_kind(req) == "presigned"


def test_published_presigned_example_expires_after_a_day() -> None:
    req = SignedRequest("GET", "/test.txt", PRESIGNED_QUERY, [("Host", HOST)])
    verify_request(req, KEYS.get, DOC_NOW + 86400)
    with pytest.raises(e.AccessDenied, match="Request has expired") as info:
        verify_request(req, KEYS.get, DOC_NOW + 86401)
    assert info.value.extra["X-Amz-Expires"] == "86400"
    assert info.value.extra["Expires"] == "2013-05-25T00:00:00.000Z"


def test_raw_path_with_query_attached_is_split() -> None:
    req = SignedRequest("GET", "/test.txt?" + PRESIGNED_QUERY, "", [("Host", HOST)])
    assert verify_request(req, KEYS.get, DOC_NOW).presigned


CHUNKED_HEADERS = [
    ("Host", "s3.amazonaws.com"),
    ("x-amz-date", DOC_DATE),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("Content-Encoding", "aws-chunked"),
    ("x-amz-decoded-content-length", "66560"),
    ("Content-Length", "66824"),
    ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    (
        "Authorization",
        doc_auth(
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
    ),
]
CHUNK_SIGNATURES = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]


def test_published_chunked_upload_example() -> None:
    req = SignedRequest("PUT", "/examplebucket/chunkObject.txt", "", CHUNKED_HEADERS)
    auth = verify_request(req, KEYS.get, DOC_NOW)
    assert auth.signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    assert auth.chunk_signed and not auth.has_trailer and auth.content_sha256 is None
    previous = auth.signature
    for data, signature in CHUNK_SIGNATURES:
        header = sigv4.parse_chunk_header(
            f"{len(data):x};chunk-signature={signature}".encode(), max_size=1 << 20
        )
        assert header.size == len(data) and header.signature == signature
        previous = sigv4.verify_chunk_signature(
            auth, previous, hashlib.sha256(data).hexdigest(), header.signature
        )
    assert previous == CHUNK_SIGNATURES[-1][1]


def test_chunk_chain_rejects_tampered_or_reordered_chunks() -> None:
    req = SignedRequest("PUT", "/examplebucket/chunkObject.txt", "", CHUNKED_HEADERS)
    auth = verify_request(req, KEYS.get, DOC_NOW)
    first, sig1 = CHUNK_SIGNATURES[0]
    with pytest.raises(e.SignatureDoesNotMatch):
        sigv4.verify_chunk_signature(auth, auth.signature, hashlib.sha256(first[1:]).hexdigest(), sig1)
    second, sig2 = CHUNK_SIGNATURES[1]
    with pytest.raises(e.SignatureDoesNotMatch):  # chunk 2 presented first
        sigv4.verify_chunk_signature(auth, auth.signature, hashlib.sha256(second).hexdigest(), sig2)


def test_trailer_signature_round_trip() -> None:
    req = SignedRequest("PUT", "/examplebucket/chunkObject.txt", "", CHUNKED_HEADERS)
    auth = verify_request(req, KEYS.get, DOC_NOW)
    trailer = hashlib.sha256(b"x-amz-checksum-crc32c:sOO8/Q==\n").hexdigest()
    last = CHUNK_SIGNATURES[-1][1]
    good = sigv4.sign(
        auth.signing_key, sigv4.trailer_string_to_sign(auth.amz_date, auth.scope, last, trailer)
    )
    sigv4.verify_trailer_signature(auth, last, trailer, good)
    with pytest.raises(e.SignatureDoesNotMatch):
        sigv4.verify_trailer_signature(auth, last, EMPTY, good)


@pytest.mark.parametrize(
    "line",
    [b"", b"zz;chunk-signature=" + b"0" * 64, b"10;chunk-signature=abc", b"1" * 17, b"10;foo=bar"],
)
def test_malformed_chunk_headers(line: bytes) -> None:
    with pytest.raises(e.IncompleteBody):
        sigv4.parse_chunk_header(line, max_size=1 << 20)


def test_chunk_header_size_limit_and_unsigned_form() -> None:
    assert sigv4.parse_chunk_header(b"400", max_size=1024) == sigv4.ChunkHeader(1024, None)
    with pytest.raises(e.IncompleteBody):
        sigv4.parse_chunk_header(b"401", max_size=1024)


# -- (2) the real botocore signer --------------------------------------------------

BOTO_KEYS = {"AKIDBOTO": "botosecret/with+odd=chars"}
WHEN = datetime(2024, 3, 1, 12, 0, 0)  # botocore's clock is naive UTC
NOW = WHEN.replace(tzinfo=UTC).timestamp()
ENDPOINT = "http://gw.test:9000"


def botocore_signed(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    presign: bool = False,
    region: str = "us-east-1",
) -> SignedRequest:
    """Sign with botocore's own S3 signers, then read the request back as it goes on the wire."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body, params=params)
    creds = Credentials("AKIDBOTO", BOTO_KEYS["AKIDBOTO"])
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        if presign:
            S3SigV4QueryAuth(creds, "s3", region, expires=600).add_auth(request)
        else:
            S3SigV4Auth(creds, "s3", region).add_auth(request)
    prepared = request.prepare()
    wire = urlsplit(prepared.url)
    # The HTTP client sends Host from the URL; botocore signed exactly that.
    pairs = [(n, _text(v)) for n, v in prepared.headers.items()]
    pairs.append(("Host", wire.netloc))
    return SignedRequest(method, wire.path, wire.query, pairs)


TRICKY_KEYS = [
    "plain.txt",
    "with space/and more  spaces",
    "unicodé/ключ/键/🚀.bin",
    "a+b=c&d;e,f",
    "double//slash/",
    "/leading-slash",
    "tilde~and*star'quote(paren)!",
    "percent%2Fliteral%20",
    "dots/./and/../segments",
    "question?hash#",
    "tab\tnewline\n",
    "ctrl\x01char",
]


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_botocore_header_auth_tricky_keys(key: str) -> None:
    url = f"{ENDPOINT}/bucket/{percent_encode(key, safe='/~')}"
    req = botocore_signed("GET", url, headers={"Range": "bytes=0-99"})
    result = verify_request(req, BOTO_KEYS.get, NOW)
    assert result.access_key == "AKIDBOTO" and result.payload_hash == EMPTY


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_botocore_presigned_tricky_keys(key: str) -> None:
    url = f"{ENDPOINT}/bucket/{percent_encode(key, safe='/~')}"
    req = botocore_signed("GET", url, presign=True)
    result = verify_request(req, BOTO_KEYS.get, NOW + 599)
    assert result.presigned and result.payload_hash == "UNSIGNED-PAYLOAD"
    with pytest.raises(e.AccessDenied, match="expired"):
        verify_request(req, BOTO_KEYS.get, NOW + 601)


def test_botocore_put_with_signed_payload_and_metadata() -> None:
    body = b"hello world"
    headers = {"x-amz-meta-note": "  spaced   out  value ", "Content-Type": "text/plain"}
    req = botocore_signed("PUT", f"{ENDPOINT}/bucket/k", headers=headers, body=body)
    result = verify_request(req, BOTO_KEYS.get, NOW)
    assert result.content_sha256 == hashlib.sha256(body).hexdigest()
    assert "x-amz-meta-note" in result.signed_headers


RAW_QUERIES = [
    "list-type=2&prefix=&delimiter=%2F",
    "uploads",
    "a=&a=1&a=&b",
    "x=2&x=10&x=1",
    "prefix=caf%C3%A9%20au%20lait&max-keys=5",
    "k%20ey=v%2Bal&~t=_.-",
]


@pytest.mark.parametrize("query", RAW_QUERIES)
def test_botocore_query_strings_in_url(query: str) -> None:
    req = botocore_signed("GET", f"{ENDPOINT}/bucket?{query}")
    verify_request(req, BOTO_KEYS.get, NOW)


def test_botocore_params_sent_form_encoded() -> None:
    # With ``params`` botocore signs %20 but urlencode() sends '+' on the wire.
    params = [("prefix", "a b+c/é"), ("empty", ""), ("rep", "2"), ("rep", "1")]
    req = botocore_signed("GET", f"{ENDPOINT}/bucket", params=params)
    assert "+" in req.raw_query
    verify_request(req, BOTO_KEYS.get, NOW)


def test_botocore_date_header_instead_of_x_amz_date() -> None:
    req = botocore_signed("GET", f"{ENDPOINT}/bucket/k", headers={"Date": "placeholder"})
    names = {n.lower() for n, _ in req.headers}
    assert "x-amz-date" not in names and "date" in names
    result = verify_request(req, BOTO_KEYS.get, NOW)
    assert result.amz_date == "20240301T120000Z"


def test_botocore_other_region_and_region_pinning() -> None:
    req = botocore_signed("GET", f"{ENDPOINT}/bucket/k", region="eu-west-3")
    assert verify_request(req, BOTO_KEYS.get, NOW).region == "eu-west-3"
    verify_request(req, BOTO_KEYS.get, NOW, region="eu-west-3")
    with pytest.raises(e.AuthorizationHeaderMalformed, match="region") as info:
        verify_request(req, BOTO_KEYS.get, NOW, region="us-east-1")
    assert info.value.extra["Region"] == "us-east-1"


class _Captured(Exception):
    def __init__(self, request: object) -> None:
        self.request = request


_PY_SIGNERS = {"s3v4": S3SigV4Auth, "s3v4-query": S3SigV4QueryAuth}


@contextlib.contextmanager
def _signing(client: object) -> Iterator[None]:
    """botocore's clock stopped at WHEN, and its pure-Python signer unless the client is a "crt" one.

    With awscrt installed botocore signs through the CRT by default; users without
    it sign in Python. Both must verify.
    """

    def clock(remove_tzinfo: bool = True) -> datetime:
        return WHEN if remove_tzinfo else WHEN.replace(tzinfo=UTC)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch("botocore.auth.get_current_datetime", side_effect=clock))
        if getattr(client, "signer", "python") == "crt":
            stack.enter_context(mock.patch("botocore.crt.auth.get_current_datetime", side_effect=clock))
        else:
            stack.enter_context(mock.patch.dict(botocore.auth.AUTH_TYPE_MAPS, _PY_SIGNERS))
        yield


@pytest.fixture(
    scope="module",
    params=[(url, signer) for signer in ("python", "crt") for url in (ENDPOINT, "https://gw.test:9443")],
    ids=lambda p: "-".join(p),
)
def s3_client(request: pytest.FixtureRequest) -> object:
    """A real boto3 client whose requests are caught just before they would be sent.

    Over https botocore sends put_object as aws-chunked with an unsigned
    trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER); over http it signs the body.
    """
    endpoint, signer = request.param
    if signer == "crt" and not botocore.auth.HAS_CRT:
        pytest.skip("awscrt is not installed: botocore signs in Python only")
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDBOTO",
        aws_secret_access_key=BOTO_KEYS["AKIDBOTO"],
        config=botocore.config.Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 0},
        ),
    )

    def capture(request: object, **_: object) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send.s3", capture)
    client.signer = signer  # type: ignore[attr-defined]
    return client


def _text(value: str | bytes) -> str:
    # What aiohttp hands a handler: header bytes decoded as UTF-8, surrogate-escaped.
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def _wire(captured: _Captured) -> SignedRequest:
    prepared = captured.request
    wire = urlsplit(prepared.url)  # type: ignore[attr-defined]
    pairs = [(n, _text(v)) for n, v in prepared.headers.items()]  # type: ignore[attr-defined]
    if not any(n.lower() == "host" for n, _ in pairs):  # the CRT signer sets it itself
        pairs.append(("Host", wire.netloc))
    return SignedRequest(prepared.method, wire.path, wire.query, pairs)  # type: ignore[attr-defined]


def _call(fn: object, **kwargs: object) -> SignedRequest:
    with _signing(getattr(fn, "__self__", None)):
        with pytest.raises(_Captured) as info:
            fn(**kwargs)  # type: ignore[operator]
    return _wire(info.value)


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_boto3_client_requests_verify(s3_client: object, key: str) -> None:
    c = s3_client
    for req in (
        _call(c.get_object, Bucket="bucket", Key=key, Range="bytes=1-2"),  # type: ignore[attr-defined]
        _call(c.head_object, Bucket="bucket", Key=key),  # type: ignore[attr-defined]
        _call(c.put_object, Bucket="bucket", Key=key, Body=b"payload"),  # type: ignore[attr-defined]
        _call(
            c.list_objects_v2,  # type: ignore[attr-defined]
            Bucket="bucket", Prefix=key, Delimiter="/", StartAfter=key,
        ),
        _call(c.list_objects, Bucket="bucket", Prefix=key, Marker=key),  # type: ignore[attr-defined]
    ):
        result = verify_request(req, BOTO_KEYS.get, NOW)
        if req.method == "PUT":
            assert result.content_sha256 == hashlib.sha256(b"payload").hexdigest() or (
                result.payload_hash == sigv4.STREAMING_UNSIGNED_TRAILER
                and result.has_trailer
                and not result.chunk_signed
            )


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_boto3_generate_presigned_url_verifies(s3_client: object, key: str) -> None:
    with _signing(s3_client):
        url = s3_client.generate_presigned_url(  # type: ignore[attr-defined]
            "get_object", Params={"Bucket": "bucket", "Key": key}, ExpiresIn=300
        )
    wire = urlsplit(url)
    req = SignedRequest("GET", wire.path, wire.query, [("Host", wire.netloc)])
    assert verify_request(req, BOTO_KEYS.get, NOW + 10).presigned


# -- (3) negatives -----------------------------------------------------------------


def _get_example(**changes: str) -> SignedRequest:
    req, _ = DOC_EXAMPLES["get-object"]
    headers = dict(req.headers)
    headers.update(changes)
    return SignedRequest(req.method, req.raw_path, req.raw_query, list(headers.items()))


def test_tampered_header_path_and_query_fail() -> None:
    with pytest.raises(e.SignatureDoesNotMatch) as info:
        verify_request(_get_example(Range="bytes=0-99"), KEYS.get, DOC_NOW)
    assert "range:bytes=0-99" in info.value.extra["CanonicalRequest"]
    req, _ = DOC_EXAMPLES["get-object"]
    for path, query in (("/test.txT", ""), ("/test.txt", "x=1"), ("//test.txt", "")):
        with pytest.raises(e.SignatureDoesNotMatch):
            verify_request(SignedRequest("GET", path, query, req.headers), KEYS.get, DOC_NOW)
    with pytest.raises(e.SignatureDoesNotMatch):
        verify_request(SignedRequest("HEAD", "/test.txt", "", req.headers), KEYS.get, DOC_NOW)


def test_unknown_access_key() -> None:
    req, _ = DOC_EXAMPLES["get-object"]
    with pytest.raises(e.InvalidAccessKeyId) as info:
        verify_request(req, {}.get, DOC_NOW)
    assert info.value.extra["AWSAccessKeyId"] == AKID and info.value.status == 403


def test_clock_skew_limit() -> None:
    req, _ = DOC_EXAMPLES["get-object"]
    verify_request(req, KEYS.get, DOC_NOW + 900)
    verify_request(req, KEYS.get, DOC_NOW - 900)
    for now in (DOC_NOW + 901, DOC_NOW - 901):
        with pytest.raises(e.RequestTimeTooSkewed) as info:
            verify_request(req, KEYS.get, now)
        assert info.value.extra["MaxAllowedSkewMilliseconds"] == "900000"


def test_presigned_not_yet_valid() -> None:
    req = SignedRequest("GET", "/test.txt", PRESIGNED_QUERY, [("Host", HOST)])
    verify_request(req, KEYS.get, DOC_NOW - 900)
    with pytest.raises(e.AccessDenied, match="not valid yet"):
        verify_request(req, KEYS.get, DOC_NOW - 901)


def test_tampered_presigned_query_fails() -> None:
    tampered = PRESIGNED_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=86401")
    req = SignedRequest("GET", "/test.txt", tampered, [("Host", HOST)])
    with pytest.raises(e.SignatureDoesNotMatch):
        verify_request(req, KEYS.get, DOC_NOW)
    extra = SignedRequest("GET", "/test.txt", PRESIGNED_QUERY + "&versionId=1", [("Host", HOST)])
    with pytest.raises(e.SignatureDoesNotMatch):
        verify_request(extra, KEYS.get, DOC_NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("X-Amz-Expires=86400", "X-Amz-Expires=604801"), "less than a week"),
        (("X-Amz-Expires=86400", "X-Amz-Expires=0"), "less than a week"),
        (("X-Amz-Expires=86400", "X-Amz-Expires=-5"), "should be a number"),
        (("X-Amz-Expires=86400", "X-Amz-Expires=1e3"), "should be a number"),
        (("X-Amz-Expires=86400&", ""), "requires the X-Amz-Algorithm"),
        (("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA1"), "only supports"),
        (("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"), "ISO8601"),
        (("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-amz-date"), "must include host"),
        (("%2Fs3%2F", "%2Fs4%2F"), "incorrect service"),
        (("%2F20130524%2F", "%2F20130525%2F"), "Date is not the same"),
        (("%2F20130524%2F", "%2F2013052%2F"), "incorrect date format"),
        (("AKIAIOSFODNN7EXAMPLE%2F", ""), "mal-formed"),
        (("X-Amz-Signature=aeee", "X-Amz-Signature=zzzz"), "Signature is mal-formed"),
    ],
)
def test_malformed_presigned_parameters(change: tuple[str, str], message: str) -> None:
    query = PRESIGNED_QUERY.replace(*change)
    req = SignedRequest("GET", "/test.txt", query, [("Host", HOST)])
    with pytest.raises(e.AuthorizationQueryParametersError, match=message):
        verify_request(req, KEYS.get, DOC_NOW)


def test_duplicate_presigned_parameter_is_refused() -> None:
    req = SignedRequest("GET", "/t", PRESIGNED_QUERY + "&X-Amz-Date=20130524T000000Z", [("Host", HOST)])
    with pytest.raises(e.AuthorizationQueryParametersError):
        verify_request(req, KEYS.get, DOC_NOW)


GOOD_SIG = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
CRED = f"Credential={AKID}/{SCOPE}"
SIGNED = "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"


@pytest.mark.parametrize(
    "header",
    [
        f"AWS4-HMAC-SHA256 {CRED},{SIGNED},Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED}, {SIGNED}, Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256   {CRED} ,  {SIGNED} ,Signature={GOOD_SIG}  ",
        f"AWS4-HMAC-SHA256 {SIGNED}, Signature={GOOD_SIG}, {CRED}",
        f"AWS4-HMAC-SHA256 {CRED},\t{SIGNED},\tSignature={GOOD_SIG.upper()}",
    ],
)
def test_authorization_whitespace_variants_accepted(header: str) -> None:
    verify_request(_get_example(Authorization=header), KEYS.get, DOC_NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "AWS4-HMAC-SHA256",
        "Bearer abc",
        "aws4-hmac-sha256 " + f"{CRED},{SIGNED},Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED},{SIGNED}",
        f"AWS4-HMAC-SHA256 {CRED},{SIGNED},Signature={GOOD_SIG},Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED},{SIGNED},Signature={GOOD_SIG},Extra=1",
        f"AWS4-HMAC-SHA256 {CRED};{SIGNED};Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED},{SIGNED},Signature={GOOD_SIG[:-1]}",
        f"AWS4-HMAC-SHA256 {CRED},{SIGNED},Signature={GOOD_SIG[:-1]}g",
        f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3,{SIGNED},Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_req,{SIGNED},Signature=x",
        f"AWS4-HMAC-SHA256 Credential={AKID}/20131324/us-east-1/s3/aws4_request,{SIGNED},Signature=x",
        f"AWS4-HMAC-SHA256 Credential=/{SCOPE},{SIGNED},Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 Credential={AKID}/{SCOPE}/x,{SIGNED},Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED},SignedHeaders=host;;range,Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED},SignedHeaders=host;host,Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED},SignedHeaders=ho st,Signature={GOOD_SIG}",
        f"AWS4-HMAC-SHA256 {CRED},SignedHeaders={';'.join(f'h{i}' for i in range(65))},Signature=x",
        f"AWS4-HMAC-SHA256 {CRED},{SIGNED},Signature={GOOD_SIG}" + " " * 5000,
        f"AWS4-HMAC-SHA256 {CRED},SignedHeaders=x-amz-date,Signature={GOOD_SIG}",
    ],
)
def test_malformed_authorization_headers(header: str) -> None:
    with pytest.raises(e.AuthorizationHeaderMalformed):
        verify_request(_get_example(Authorization=header), KEYS.get, DOC_NOW)


@pytest.mark.parametrize(
    "header",
    [
        "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
        f"AWS4-ECDSA-P256-SHA256 {CRED},{SIGNED},Signature=abc",
    ],
)
def test_only_sigv4_is_supported(header: str) -> None:
    with pytest.raises(e.InvalidRequest, match="Please use AWS4-HMAC-SHA256"):
        verify_request(_get_example(Authorization=header), KEYS.get, DOC_NOW)
    with pytest.raises(e.InvalidRequest, match="Please use AWS4-HMAC-SHA256"):
        sigv4.parse_authorization(header)


def test_sigv2_presigned_url_is_refused() -> None:
    query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1141889120&Signature=vjbyPxybd"
    req = SignedRequest("GET", "/b/k", query, [("Host", HOST)])
    with pytest.raises(e.InvalidRequest, match="AWS4-HMAC-SHA256"):
        verify_request(req, KEYS.get, DOC_NOW)


def test_parse_authorization_fields() -> None:
    auth = sigv4.parse_authorization(f"AWS4-HMAC-SHA256 {CRED}, {SIGNED}, Signature={GOOD_SIG}")
    assert auth.credential == sigv4.Credential(AKID, "20130524", "us-east-1", "s3")
    assert auth.credential.scope == SCOPE
    assert auth.signed_headers == ("host", "range", "x-amz-content-sha256", "x-amz-date")
    assert auth.signature == GOOD_SIG


def test_missing_or_bad_content_sha256() -> None:
    req, _ = DOC_EXAMPLES["get-object"]
    without = [(n, v) for n, v in req.headers if n != "x-amz-content-sha256"]
    with pytest.raises(e.InvalidRequest, match="x-amz-content-sha256"):
        verify_request(SignedRequest("GET", "/test.txt", "", without), KEYS.get, DOC_NOW)
    for bad in ("abc", "UNSIGNED", EMPTY + "0", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"):
        with pytest.raises(e.InvalidArgument) as info:
            verify_request(_get_example(**{"x-amz-content-sha256": bad}), KEYS.get, DOC_NOW)
        assert info.value.extra["ArgumentName"] == "x-amz-content-sha256"


def test_missing_or_bad_date() -> None:
    req, _ = DOC_EXAMPLES["get-object"]
    without = [(n, v) for n, v in req.headers if n != "x-amz-date"]
    with pytest.raises(e.AccessDenied, match="Date or x-amz-date"):
        verify_request(SignedRequest("GET", "/test.txt", "", without), KEYS.get, DOC_NOW)
    for bad in ("20130524", "20130524T250000Z", "2013-05-24T00:00:00Z", ""):
        with pytest.raises(e.AccessDenied, match="Date or x-amz-date"):
            verify_request(_get_example(**{"x-amz-date": bad}), KEYS.get, DOC_NOW)
    with pytest.raises(e.AuthorizationHeaderMalformed, match="Date is not the same"):
        verify_request(_get_example(**{"x-amz-date": "20130525T000000Z"}), KEYS.get, DOC_NOW)


def test_unsigned_amz_header_is_refused() -> None:
    with pytest.raises(e.AccessDenied, match="not signed") as info:
        verify_request(_get_example(**{"x-amz-meta-evil": "1"}), KEYS.get, DOC_NOW)
    assert info.value.extra["HeadersNotSigned"] == "x-amz-meta-evil"


def test_two_auth_mechanisms_are_refused() -> None:
    req, _ = DOC_EXAMPLES["get-object"]
    both = SignedRequest("GET", "/test.txt", "X-Amz-Signature=abc", req.headers)
    with pytest.raises(e.InvalidArgument, match="Only one auth mechanism"):
        verify_request(both, KEYS.get, DOC_NOW)


def test_repeated_authorization_header_is_refused() -> None:
    req, _ = DOC_EXAMPLES["get-object"]
    twice = [*req.headers, ("Authorization", doc_auth("host", GOOD_SIG))]
    with pytest.raises(e.AuthorizationHeaderMalformed):
        verify_request(SignedRequest("GET", "/test.txt", "", twice), KEYS.get, DOC_NOW)


def test_anonymous_request() -> None:
    req = SignedRequest("GET", "/b/k", "", [("Host", HOST)])
    assert sigv4.auth_kind(req) == "none"
    with pytest.raises(e.AccessDenied):
        verify_request(req, KEYS.get, DOC_NOW)


def test_headers_as_case_insensitive_mapping() -> None:
    from multidict import CIMultiDict

    req, _ = DOC_EXAMPLES["get-object"]
    ci = CIMultiDict(req.headers)
    assert verify_request(SignedRequest("GET", "/test.txt", "", ci), KEYS.get, DOC_NOW)


# -- canonicalisation details ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/b/a%2Fb", "/b/a%2Fb"),
        ("/b/a%2fb", "/b/a%2Fb"),
        ("/b//x/./y/../", "/b//x/./y/../"),
        ("/b/(x)!*'", "/b/%28x%29%21%2A%27"),
        ("/b/%28x%29", "/b/%28x%29"),
        ("/b/a+b", "/b/a%2Bb"),
        ("/b/~_-.", "/b/~_-."),
        ("/b/%7E", "/b/~"),
        ("/b/100%", "/b/100%25"),
        ("/b/é", "/b/%C3%A9"),
        ("/b/k?x=1", "/b/k"),
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a&b=", "a=&b="),
        ("x=2&x=10&x=1", "x=1&x=10&x=2"),
        ("p=a+b", "p=a%20b"),
        ("p=a%2Bb", "p=a%2Bb"),
        ("p=%7e%2f", "p=~%2F"),
        ("p=/", "p=%2F"),
        ("&&a=1&&", "a=1"),
        ("a=b=c", "a=b%3Dc"),
    ],
)
def test_canonical_query(raw: str, canonical: str) -> None:
    assert sigv4.canonical_query(raw) == canonical


def test_canonical_query_presigned_drops_only_the_signature() -> None:
    assert sigv4.canonical_query("X-Amz-Signature=1&a=2", presigned=True) == "a=2"
    assert sigv4.canonical_query("X-Amz-Signature=1&a=2") == "X-Amz-Signature=1&a=2"


def test_canonical_headers_trim_and_join() -> None:
    headers = [("X-Amz-Meta-A", "  a   b \t c "), ("x-amz-meta-a", "d"), ("Host", "h")]
    canonical = sigv4.canonical_request("GET", "/", "", headers, ["host", "x-amz-meta-a"], EMPTY)
    assert "host:h\nx-amz-meta-a:a b c,d\n\nhost;x-amz-meta-a\n" in canonical


def test_signing_key_cache_is_bounded_and_reuses_keys() -> None:
    cache = sigv4.SigningKeyCache(maxsize=2)
    k1 = cache.get(SECRET, "20130524", "us-east-1")
    assert k1 == sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3")
    assert cache.get(SECRET, "20130524", "us-east-1") is k1
    cache.get(SECRET, "20130525", "us-east-1")
    cache.get(SECRET, "20130526", "us-east-1")
    assert len(cache) == 2
    req, _ = DOC_EXAMPLES["get-object"]
    verify_request(req, KEYS.get, DOC_NOW, key_cache=cache)


# -- hostile input -----------------------------------------------------------------


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    alphabet = " ,;=/\t%+-_.~aZ09\x00é\ud800"
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(chars) + 1)
        op = rng.random()
        if op < 0.4:
            chars.insert(at, rng.choice(alphabet))
        elif chars and op < 0.8:
            chars[min(at, len(chars) - 1)] = rng.choice(alphabet)
        elif chars:
            del chars[min(at, len(chars) - 1)]
    return "".join(chars)


def test_mutated_requests_raise_only_s3_errors() -> None:
    rng = random.Random(99)
    examples = [req for req, _ in DOC_EXAMPLES.values()]
    examples.append(SignedRequest("GET", "/test.txt", PRESIGNED_QUERY, [("Host", HOST)]))
    outcomes: set[str] = set()
    for _ in range(3000):
        req = rng.choice(examples)
        headers = list(req.headers)
        target = rng.randrange(len(headers) + 2)
        path, query = req.raw_path, req.raw_query
        if target == len(headers):
            path = _mutate(rng, path)
        elif target == len(headers) + 1:
            query = _mutate(rng, query)
        else:
            name, value = headers[target]
            headers[target] = (name, _mutate(rng, value))
        try:
            verify_request(SignedRequest(req.method, path, query, headers), KEYS.get, DOC_NOW)
            outcomes.add("ok")
        except e.S3Error as err:
            outcomes.add(err.code)
    assert "SignatureDoesNotMatch" in outcomes and len(outcomes) > 5


def test_random_authorization_headers_raise_only_s3_errors() -> None:
    rng = random.Random(7)
    good = f"AWS4-HMAC-SHA256 {CRED}, {SIGNED}, Signature={GOOD_SIG}"
    for _ in range(3000):
        try:
            sigv4.parse_authorization(_mutate(rng, good))
        except e.S3Error:
            pass
    for _ in range(1000):
        line = bytes(rng.randrange(256) for _ in range(rng.randint(0, 90)))
        try:
            sigv4.parse_chunk_header(line, max_size=1 << 20)
        except e.IncompleteBody:
            pass
