"""S3 XML: responses parsed back (by ElementTree and by botocore's own parser), safe body parsing."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from urllib.parse import unquote, unquote_plus

import botocore.handlers
import botocore.parsers
import botocore.session
import pytest
from pipecache.gateway.s3 import errors as e
from pipecache.gateway.s3 import xml as x
from pipecache.gateway.s3.requests import ListParams

NS = {"s3": x.S3_NS}
T = 1255369830.0  # 2009-10-12T17:50:30.000Z
TRICKY = [
    'a&b<c>"d\'e',
    "spaces  and\ttab",
    "carriage\rreturn and\r\nCRLF",
    "new\nline",
    "unicodé/ключ/🚀",
    "]]>cdata-end",
    "&amp;literal",
    "100%/a+b=c",
]
ILLEGAL = ["ctrl\x01char", "nul\x00", "bell\x07/esc\x1b", "nonchar\ufffe", "vt\x0bff\x0c"]


def entry(key: str, size: int = 3, etag: str = "abc") -> x.ListingEntry:
    return x.ListingEntry(key, size, etag, T)


def parse(body: bytes) -> ET.Element:
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(body)


def texts(root: ET.Element, path: str) -> list[str]:
    return [el.text or "" for el in root.findall(path, NS)]


def text(root: ET.Element, path: str) -> str | None:
    el = root.find(path, NS)
    return None if el is None else (el.text or "")


def botocore_parse(operation: str, body: bytes) -> dict[str, object]:
    model = botocore.session.get_session().get_service_model("s3").operation_model(operation)
    parsed: dict[str, object] = botocore.parsers.RestXMLParser().parse(
        {"body": body, "headers": {}, "status_code": 200}, model.output_shape
    )
    return parsed


# -- error -------------------------------------------------------------------------


def test_error_xml() -> None:
    err = e.NoSuchKey(resource="/b/a<b>", extra={"Key": "a<b>", "BucketName": "b"})
    root = parse(x.error_xml(err, "REQ1", "HOST1"))
    assert root.tag == "Error"  # no namespace, as S3 sends errors
    assert [c.tag for c in root] == [
        "Code", "Message", "Resource", "Key", "BucketName", "RequestId", "HostId"
    ]
    assert text(root, "Code") == "NoSuchKey"
    assert text(root, "Message") == "The specified key does not exist."
    assert text(root, "Resource") == "/b/a<b>"
    assert text(root, "Key") == "a<b>"
    assert text(root, "RequestId") == "REQ1"
    assert text(root, "HostId") == "HOST1"


def test_error_xml_survives_hostile_extras() -> None:
    err = e.SignatureDoesNotMatch(
        extra={"CanonicalRequest": "GET\n/\x01\ud800\r\n", "Bad Tag<": "dropped", "": "dropped"}
    )
    body = x.error_xml(err)
    assert b"Bad Tag" not in body and b"&#x1;" in body and b"&#xD800;" in body
    root = ET.fromstring(body.replace(b"&#x1;", b"").replace(b"&#xD800;", b""))
    assert text(root, "CanonicalRequest") == "GET\n/\r\n"
    assert text(root, "RequestId") == ""


def test_error_xml_parsed_by_botocore() -> None:
    parsed = botocore.parsers.RestXMLParser().parse(
        {"body": x.error_xml(e.NoSuchBucket(), "R"), "headers": {}, "status_code": 404}, None
    )
    assert parsed["Error"]["Code"] == "NoSuchBucket"


# -- listings ----------------------------------------------------------------------


def test_list_v2_fields() -> None:
    params = ListParams(version=2, prefix="p/", delimiter="/", max_keys=3,
                        continuation_token="tok1", start_after="p/0")
    body = x.list_objects_v2_xml(
        "bucket", params, [entry("p/a", 10, "e1"), entry("p/b", 0, '"e2"')], ["p/c/"],
        truncated=True, next_token="tok2", owner=x.Owner("id1", "me"),
    )
    root = parse(body)
    assert root.tag == f"{{{x.S3_NS}}}ListBucketResult"
    assert text(root, "s3:Name") == "bucket"
    assert text(root, "s3:Prefix") == "p/"
    assert text(root, "s3:Delimiter") == "/"
    assert text(root, "s3:MaxKeys") == "3"
    assert text(root, "s3:KeyCount") == "3"
    assert text(root, "s3:IsTruncated") == "true"
    assert text(root, "s3:ContinuationToken") == "tok1"
    assert text(root, "s3:NextContinuationToken") == "tok2"
    assert text(root, "s3:StartAfter") == "p/0"
    assert text(root, "s3:EncodingType") is None
    assert texts(root, "s3:Contents/s3:Key") == ["p/a", "p/b"]
    assert texts(root, "s3:Contents/s3:ETag") == ['"e1"', '"e2"']
    assert texts(root, "s3:Contents/s3:Size") == ["10", "0"]
    assert texts(root, "s3:Contents/s3:LastModified") == ["2009-10-12T17:50:30.000Z"] * 2
    assert texts(root, "s3:Contents/s3:StorageClass") == ["STANDARD"] * 2
    assert root.find("s3:Contents/s3:Owner", NS) is None  # fetch-owner was not asked
    assert texts(root, "s3:CommonPrefixes/s3:Prefix") == ["p/c/"]


def test_list_v2_minimal_and_owner() -> None:
    params = ListParams(version=2, fetch_owner=True)
    root = parse(x.list_objects_v2_xml("b", params, [entry("k")], [], truncated=False,
                                       next_token="ignored", owner=x.Owner("id1", "me")))
    assert text(root, "s3:Prefix") == ""
    assert text(root, "s3:IsTruncated") == "false"
    for tag in ("Delimiter", "ContinuationToken", "NextContinuationToken", "StartAfter"):
        assert root.find(f"s3:{tag}", NS) is None
    assert text(root, "s3:Contents/s3:Owner/s3:ID") == "id1"
    assert text(root, "s3:Contents/s3:Owner/s3:DisplayName") == "me"


def test_list_v2_tricky_keys_round_trip_without_encoding() -> None:
    params = ListParams(version=2, prefix=TRICKY[0], start_after=TRICKY[2])
    root = parse(x.list_objects_v2_xml("b", params, [entry(k) for k in TRICKY], TRICKY,
                                       truncated=False))
    assert texts(root, "s3:Contents/s3:Key") == TRICKY  # \r survives as &#13;
    assert texts(root, "s3:CommonPrefixes/s3:Prefix") == TRICKY
    assert text(root, "s3:Prefix") == TRICKY[0]
    assert text(root, "s3:StartAfter") == TRICKY[2]


def test_list_v2_url_encoding_type() -> None:
    keys = TRICKY + ILLEGAL + ["lone\ud800surrogate"]
    params = ListParams(version=2, prefix="a b+", delimiter="\x01", start_after="é",
                        encoding_type="url")
    body = x.list_objects_v2_xml("b", params, [entry(k) for k in keys], ["pre fix/"],
                                 truncated=False)
    assert body.isascii()
    root = parse(body)  # well-formed XML 1.0 despite control characters in keys
    assert text(root, "s3:EncodingType") == "url"
    got = texts(root, "s3:Contents/s3:Key")
    for decode in (unquote, unquote_plus):
        assert [decode(k, errors="surrogatepass") for k in got] == keys
    assert unquote_plus(text(root, "s3:Prefix") or "") == "a b+"
    assert unquote_plus(text(root, "s3:Delimiter") or "") == "\x01"
    assert unquote_plus(text(root, "s3:StartAfter") or "") == "é"
    assert texts(root, "s3:CommonPrefixes/s3:Prefix") == ["pre%20fix/"]


def test_illegal_xml_characters_become_references_without_url_encoding() -> None:
    body = x.list_objects_v2_xml("b", ListParams(version=2), [entry(k) for k in ILLEGAL], [],
                                 truncated=False)
    for raw in (b"\x00", b"\x01", b"\x07", b"\x0b", b"\x0c", b"\x1b", "\ufffe".encode()):
        assert raw not in body
    assert b"ctrl&#x1;char" in body and b"nul&#x0;" in body and b"nonchar&#xFFFE;" in body


def test_list_v2_parsed_by_botocore_with_url_decoding() -> None:
    keys = TRICKY + ILLEGAL
    params = ListParams(version=2, prefix="p +", delimiter="/", encoding_type="url",
                        continuation_token="t1", start_after="s a")
    body = x.list_objects_v2_xml("b", params, [entry(k, 7) for k in keys], ["p +/q/"],
                                 truncated=True, next_token="t2")
    parsed = botocore_parse("ListObjectsV2", body)
    botocore.handlers.decode_list_object_v2(parsed, {"encoding_type_auto_set": True})
    assert [c["Key"] for c in parsed["Contents"]] == keys  # type: ignore[attr-defined]
    assert parsed["Contents"][0]["Size"] == 7  # type: ignore[index]
    assert parsed["Contents"][0]["ETag"] == '"abc"'  # type: ignore[index]
    assert parsed["Contents"][0]["LastModified"].timestamp() == T  # type: ignore[index]
    assert parsed["Prefix"] == "p +" and parsed["StartAfter"] == "s a"
    assert parsed["CommonPrefixes"] == [{"Prefix": "p +/q/"}]
    assert parsed["IsTruncated"] is True and parsed["KeyCount"] == len(keys) + 1
    assert parsed["NextContinuationToken"] == "t2" and parsed["ContinuationToken"] == "t1"


def test_list_v1_fields_and_next_marker() -> None:
    params = ListParams(version=1, prefix="p", delimiter="/", marker="p0", max_keys=2)
    owner = x.Owner("id1", "me")
    root = parse(x.list_objects_v1_xml("b", params, [entry("pa")], ["pz/"], truncated=True,
                                       owner=owner))
    assert text(root, "s3:Marker") == "p0"
    assert text(root, "s3:NextMarker") == "pz/"  # the greater of last key and last prefix
    assert text(root, "s3:Contents/s3:Owner/s3:ID") == "id1"  # V1 always lists owners
    assert root.find("s3:KeyCount", NS) is None
    root = parse(x.list_objects_v1_xml("b", params, [entry("pz/~")], ["pz/"], truncated=True))
    assert text(root, "s3:NextMarker") == "pz/~"
    root = parse(x.list_objects_v1_xml("b", params, [entry("pa")], [], truncated=True,
                                       next_marker="explicit"))
    assert text(root, "s3:NextMarker") == "explicit"


@pytest.mark.parametrize(
    ("delimiter", "truncated"), [(None, True), ("/", False)]
)
def test_list_v1_no_next_marker(delimiter: str | None, truncated: bool) -> None:
    params = ListParams(version=1, delimiter=delimiter)
    root = parse(x.list_objects_v1_xml("b", params, [entry("a")], [], truncated=truncated))
    assert root.find("s3:NextMarker", NS) is None
    assert text(root, "s3:Marker") == ""


def test_list_v1_url_encoding_parsed_by_botocore() -> None:
    params = ListParams(version=1, prefix="a b", delimiter="/", marker="m+1", encoding_type="url")
    body = x.list_objects_v1_xml("b", params, [entry("a b/\x01")], ["a b/c d/"], truncated=True)
    parsed = botocore_parse("ListObjects", body)
    botocore.handlers.decode_list_object(parsed, {"encoding_type_auto_set": True})
    assert parsed["Contents"][0]["Key"] == "a b/\x01"  # type: ignore[index]
    assert parsed["Marker"] == "m+1" and parsed["NextMarker"] == "a b/c d/"
    assert parsed["Delimiter"] == "/"
    # S3 documents Prefix as encoded in V1 too, but botocore's V1 handler does
    # not decode it: boto3 users see the same "a%20b" they would from S3.
    assert parsed["Prefix"] == "a%20b"


def test_list_buckets_xml() -> None:
    body = x.list_buckets_xml([x.BucketEntry("b1", T), ("b2", 0.0)], x.Owner("o", "n"))
    root = parse(body)
    assert texts(root, "s3:Buckets/s3:Bucket/s3:Name") == ["b1", "b2"]
    assert texts(root, "s3:Buckets/s3:Bucket/s3:CreationDate") == [
        "2009-10-12T17:50:30.000Z", "1970-01-01T00:00:00.000Z"
    ]
    assert text(root, "s3:Owner/s3:ID") == "o"
    parsed = botocore_parse("ListBuckets", body)
    assert [b["Name"] for b in parsed["Buckets"]] == ["b1", "b2"]  # type: ignore[attr-defined]
    assert parse(x.list_buckets_xml([])).find("s3:Owner", NS) is None


def test_location_xml() -> None:
    assert text(ET.fromstring(x.location_xml("eu-west-1")), ".") == "eu-west-1"
    for region in ("us-east-1", ""):
        root = parse(x.location_xml(region))
        assert root.tag == f"{{{x.S3_NS}}}LocationConstraint" and not root.text


def test_delete_result_xml() -> None:
    body = x.delete_result_xml(["a&b", "c"], [("d\x01", e.AccessDenied())], url=False)
    assert b"d&#x1;" in body
    root = parse(x.delete_result_xml(["a&b", "c"], [("d", e.AccessDenied())]))
    assert texts(root, "s3:Deleted/s3:Key") == ["a&b", "c"]
    assert texts(root, "s3:Error/s3:Code") == ["AccessDenied"]
    root = parse(x.delete_result_xml([], [("a b", e.AccessDenied())], url=True))
    assert texts(root, "s3:Error/s3:Key") == ["a%20b"]


def test_quote_etag_and_url_encode() -> None:
    assert x.quote_etag("abc") == '"abc"'
    assert x.quote_etag('"abc"') == '"abc"'
    assert x.quote_etag('"') == '"""'
    assert x.url_encode("a b+c/é~") == "a%20b%2Bc/%C3%A9~"


# -- safe parsing ------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Delete><Object><Key>&lol2;</Key></Object></Delete>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        EXTERNAL,
        b'<!DOCTYPE Delete SYSTEM "http://example.invalid/x.dtd"><Delete/>',
        b"<Delete><Object><Key>&undefined;</Key></Object></Delete>",
        b"",
        b"   ",
        b"not xml",
        b"<Delete>",
        b"<Delete></Other>",
        b"<a/><b/>",
        b"\xff\xfe<\x00",
        b"<Delete>" + b"<a>" * 20 + b"</a>" * 20 + b"</Delete>",
    ],
)
def test_parse_xml_refuses(body: bytes) -> None:
    with pytest.raises(e.MalformedXML):
        x.parse_xml(body, 1 << 20)


def test_parse_xml_limits() -> None:
    with pytest.raises(e.EntityTooLarge):
        x.parse_xml(b"<a/>" + b" " * 100, 50)
    with pytest.raises(e.MalformedXML):
        x.parse_xml(b"<a>" + b"<b/>" * 11 + b"</a>", 1 << 20, max_elements=10)
    assert len(x.parse_xml(b"<a>" + b"<b/>" * 9 + b"</a>", 1 << 20, max_elements=10)) == 9


def test_parse_xml_strips_namespaces_and_keeps_text() -> None:
    root = x.parse_xml(
        f'<Delete xmlns="{x.S3_NS}"><Object><Key> a &amp; b&#13;</Key></Object></Delete>'.encode(),
        1 << 20,
    )
    assert root.tag == "Delete" and root[0][0].tag == "Key"
    assert root[0][0].text == " a & b\r"


def test_parse_delete() -> None:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="{x.S3_NS}"><Quiet> TRUE </Quiet>'
        "<Object><Key>a/b</Key></Object>"
        "<Object><Key>  spaced  </Key><VersionId>v1</VersionId><ETag>x</ETag></Object>"
        "<Object><Key>caf\u00e9&#x9;&lt;</Key></Object>"
        "</Delete>"
    ).encode()
    req = x.parse_delete(body)
    assert req.quiet
    assert req.objects == (
        x.ObjectToDelete("a/b"),
        x.ObjectToDelete("  spaced  ", "v1"),
        x.ObjectToDelete("café\t<"),
    )
    assert not x.parse_delete(b"<Delete><Object><Key>k</Key></Object></Delete>").quiet


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete></Delete>",
        b"<Delete><Quiet>true</Quiet></Delete>",
        b"<Remove><Object><Key>k</Key></Object></Remove>",
        b"<Delete><Object><Key>k</Key></Object><Other/></Delete>",
        b"<Delete><Object></Object></Delete>",
        b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
        b"<Delete><Object><Key>a</Key><Bogus/></Object></Delete>",
        b"<Delete><Object><Key><Nested/></Key></Object></Delete>",
        b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
        b"<Delete><Quiet>true</Quiet><Quiet>true</Quiet><Object><Key>k</Key></Object></Delete>",
        b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>",
    ],
)
def test_parse_delete_refuses(body: bytes) -> None:
    with pytest.raises(e.MalformedXML):
        x.parse_delete(body)


def test_parse_delete_accepts_the_maximum() -> None:
    body = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1000 + b"</Delete>"
    assert len(x.parse_delete(body).objects) == 1000


def test_parse_complete_multipart() -> None:
    body = (
        f'<CompleteMultipartUpload xmlns="{x.S3_NS}">'
        "<Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag></Part>"
        "<Part><ETag>e2</ETag><PartNumber> 3 </PartNumber><ChecksumCRC32>AAAA</ChecksumCRC32></Part>"
        "</CompleteMultipartUpload>"
    ).encode()
    assert x.parse_complete_multipart(body) == (x.CompletedPart(1, "e1"), x.CompletedPart(3, "e2"))


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ([("2", "a"), ("1", "b")], e.InvalidPartOrder),
        ([("1", "a"), ("1", "b")], e.InvalidPartOrder),
        ([("0", "a")], e.MalformedXML),
        ([("10001", "a")], e.MalformedXML),
        ([("abc", "a")], e.MalformedXML),
        ([("-1", "a")], e.MalformedXML),
        ([("1", "")], e.MalformedXML),
        ([("1", '""')], e.MalformedXML),
        ([], e.MalformedXML),
    ],
)
def test_parse_complete_multipart_refuses(parts: list[tuple[str, str]], error: type[e.S3Error]) -> None:
    inner = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{t}</ETag></Part>" for n, t in parts)
    with pytest.raises(error):
        x.parse_complete_multipart(f"<CompleteMultipartUpload>{inner}</CompleteMultipartUpload>".encode())


@pytest.mark.parametrize(
    "body",
    [
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><ETag>a</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Other/></CompleteMultipartUpload>",
        b"<Complete><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part></Complete>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag><X/></Part>"
        b"</CompleteMultipartUpload>",
    ],
)
def test_parse_complete_multipart_malformed(body: bytes) -> None:
    with pytest.raises(e.MalformedXML):
        x.parse_complete_multipart(body)


# -- hostile input -----------------------------------------------------------------


def test_mutated_bodies_raise_only_s3_errors() -> None:
    rng = random.Random(5)
    seeds = [
        b"<Delete><Quiet>true</Quiet><Object><Key>a&amp;b</Key><VersionId>v</VersionId></Object></Delete>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e\"</ETag></Part>"
        b"<Part><PartNumber>2</PartNumber><ETag>f</ETag></Part></CompleteMultipartUpload>",
        BILLION_LAUGHS,
    ]
    alphabet = b"<>/&;!#x\"'= \x00\xffDeleteObjectKeyPart1"
    for _ in range(3000):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(body))
            if rng.random() < 0.5:
                body[at] = rng.choice(alphabet)
            else:
                del body[at]
        for parse in (x.parse_delete, x.parse_complete_multipart):
            try:
                parse(bytes(body))
            except (e.MalformedXML, e.InvalidPartOrder):
                pass


def test_random_keys_always_serialise() -> None:
    rng = random.Random(11)
    for _ in range(300):
        keys = [
            "".join(chr(rng.choice([rng.randrange(0x20), rng.randrange(0x110000)])) for _ in range(8))
            for _ in range(5)
        ]
        plain = x.list_objects_v2_xml("b", ListParams(version=2), [entry(k) for k in keys], keys,
                                      truncated=False)
        assert plain.decode("utf-8")  # never raw surrogates
        body = x.list_objects_v2_xml("b", ListParams(version=2, encoding_type="url"),
                                     [entry(k) for k in keys], keys, truncated=False)
        got = texts(ET.fromstring(body), "s3:Contents/s3:Key")
        assert [unquote(k, errors="surrogatepass") for k in got] == keys
