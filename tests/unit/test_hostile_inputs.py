"""Hostile input, fuzzed: every parser of network input answers with its typed error or a result.

Each property feeds one parser arbitrary (and adversarially shaped) input and
allows exactly two outcomes: a parsed value that respects the parser's
contract, or the error type the service turns into a proper answer (an S3
error for the gateway, BadRequest/InterfaceError for the services). Anything
else (an IndexError, a UnicodeError, a RecursionError) would be a 500 with a
traceback, or worse, a path out of a folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import string
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pipecache.client import protocol
from pipecache.client.ufs.local import LocalUnderStore
from pipecache.gateway.s3.errors import S3Error
from pipecache.gateway.s3.requests import parse_path, parse_query, parse_range
from pipecache.gateway.s3.sigv4 import SignedRequest, parse_authorization, parse_chunk_header, verify_request
from pipecache.gateway.s3.xml import parse_complete_multipart, parse_delete
from pipecache.tiering.blocks import is_block_id
from pipecache.tiering.errors import CacheError

CASES = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])

# Text that leans towards the characters parsers split on.
_ALPHABET = string.ascii_letters + string.digits + " =,/-_.%+:;?&\"'\\\t\r\n\x00é😀"
nasty = st.text(alphabet=_ALPHABET, max_size=300) | st.text(max_size=80)


@CASES
@given(nasty)
def test_authorization_header(value: str) -> None:
    try:
        parse_authorization(value)
    except S3Error:
        pass


def _auth_header(credential: str, signed: str) -> str:
    return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature=00"


_PRESIGNED = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"


@CASES
@given(
    auth=nasty | st.builds(_auth_header, nasty, nasty),
    path=nasty,
    query=nasty | st.just(_PRESIGNED),
    date=nasty | st.just("20260101T000000Z"),
    sha=nasty | st.sampled_from(["UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "0" * 64]),
)
def test_sigv4_verification(auth: str, path: str, query: str, date: str, sha: str) -> None:
    headers = [("authorization", auth), ("x-amz-date", date), ("x-amz-content-sha256", sha), ("host", "h")]
    req = SignedRequest("GET", "/" + path, query, headers)
    try:
        verify_request(req, lambda key: "secret" if key == "a" else None, 1_767_225_600.0)
    except S3Error:
        return
    pytest.fail("a request signed with nothing valid was accepted")


@CASES
@given(nasty, st.integers(min_value=0, max_value=1 << 40))
def test_range_header(header: str, size: int) -> None:
    try:
        got = parse_range(header, size)
    except S3Error:
        return
    if got is not None:
        start, end = got
        assert 0 <= start < end <= size


@CASES
@given(nasty)
def test_path_and_query(raw: str) -> None:
    try:
        bucket, key = parse_path("/" + raw)
    except S3Error:
        pass
    else:
        assert key is None or ("\x00" not in key)
    try:
        parse_query(raw)
    except S3Error:
        pass


_XML_PIECES = st.sampled_from(
    [
        "<Delete>", "</Delete>", "<Object>", "</Object>", "<Key>", "</Key>", "<Quiet>true</Quiet>",
        "<CompleteMultipartUpload>", "</CompleteMultipartUpload>", "<Part>", "</Part>",
        "<PartNumber>", "</PartNumber>", "<ETag>", "</ETag>", "&amp;", "&lt;", "&xx;", "<![CDATA[x]]>",
        '<!DOCTYPE d [<!ENTITY a "aaaaaaaa">]>', "&a;", '<?xml version="1.0"?>', "1", "k", "<", ">",
        "\x00", "é", 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"',
    ]
)
xml_bodies = st.lists(_XML_PIECES, max_size=40).map("".join).map(str.encode) | st.binary(max_size=200)


@CASES
@given(xml_bodies)
def test_xml_bodies(body: bytes) -> None:
    for parse in (parse_delete, parse_complete_multipart):
        try:
            parse(body)
        except S3Error:
            pass


def test_xml_entity_expansion_is_refused() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(8))
        + b"]><Delete><Object><Key>&i;</Key></Object></Delete>"
    )
    with pytest.raises(S3Error) as err:
        parse_delete(laughs)
    assert err.value.code == "MalformedXML"


@CASES
@given(st.binary(max_size=120) | nasty.map(str.encode))
def test_aws_chunk_headers(line: bytes) -> None:
    try:
        header = parse_chunk_header(line, max_size=1 << 20)
    except S3Error:
        return
    assert 0 <= header.size <= 1 << 20


_MESSAGES = [
    cls
    for _, cls in inspect.getmembers(protocol, inspect.isclass)
    if issubclass(cls, protocol.Message) and cls is not protocol.Message and dataclasses.is_dataclass(cls)
]
_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)


@pytest.mark.parametrize("cls", _MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(body=_msgpack_values, raw=st.binary(max_size=64))
def test_msgpack_messages(cls: type[protocol.Message], body: object, raw: bytes) -> None:
    """Any map, of any field names and types, and any bytes at all: a message or BadRequest."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    shaped = dict.fromkeys(fields, body) if isinstance(body, dict | list | str | int) else body
    for payload in (msgpack.packb(body), msgpack.packb(shaped), raw):
        try:
            msg = cls.unpack(payload)
        except CacheError:
            continue
        ids = getattr(msg, "ids", None) or getattr(msg, "blocks", None)
        if isinstance(ids, list) and ids and isinstance(ids[0], str):
            assert all(is_block_id(b) for b in ids), "a malformed block id got through"


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.lists(
        st.sampled_from(
            ["..", ".", "", "a", "b", "/", "\x00", "x" * 300, "%2e%2e", "\\..", "é", "outside", "link-out"]
        ),
        min_size=1,
        max_size=8,
    ).map("/".join)
    | nasty
)
@example(key="a/link-out")
@example(key="a/link-out/../../outside")
def test_no_key_escapes_the_bucket_folder(tmp_path_factory: pytest.TempPathFactory, key: str) -> None:
    root = tmp_path_factory.getbasetemp() / "escape-root"
    bucket_dir = root / "bucket"
    if not bucket_dir.exists():
        bucket_dir.mkdir(parents=True)
        (root / "outside").write_bytes(b"secret")
        (bucket_dir / "a").mkdir()
        os.symlink(root / "outside", bucket_dir / "a" / "link-out")
    store = LocalUnderStore(str(root))
    try:
        path = store._object_path("bucket", key)
    except CacheError:
        return
    assume(path)
    assert Path(path).resolve().is_relative_to(bucket_dir.resolve()), (key, path)
