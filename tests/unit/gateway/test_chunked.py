"""The aws-chunked decoder and payload checks, with no sockets.

Bodies come from AWS's published chunked-upload example (sigv4-streaming,
"Example: PUT Object": 66560 bytes of 'a' in chunks of 65536, 1024 and 0),
from botocore's own ``AwsChunkedWrapper`` (what boto3 sends over https), and
from a small signer here for the signed-trailer mode.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zlib

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha256Checksum
from pipecache.gateway import chunked
from pipecache.gateway.s3 import errors as e
from pipecache.gateway.s3 import sigv4

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SCOPE = "20130524/us-east-1/s3/aws4_request"
DATE = "20130524T000000Z"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
DOC_CHUNKS = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]


def auth(payload: str = sigv4.STREAMING_PAYLOAD, seed: str = SEED) -> sigv4.AuthResult:
    return sigv4.AuthResult(
        access_key="AKIAIOSFODNN7EXAMPLE",
        region="us-east-1",
        service="s3",
        amz_date=DATE,
        scope=SCOPE,
        signature=seed,
        signing_key=sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3"),
        payload_hash=payload,
        presigned=False,
        signed_headers=("host",),
    )


def doc_body() -> bytes:
    return b"".join(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(d), s.encode(), d) for d, s in DOC_CHUNKS)


def decode(dec: chunked.AwsChunkedDecoder, body: bytes, step: int | None = None) -> bytes:
    out = []
    if step is None:
        out += dec.feed(body)
    else:
        for i in range(0, len(body), step):
            out += dec.feed(body[i : i + step])
    dec.finish()
    return b"".join(out)


def signed_body(a: sigv4.AuthResult, chunks: list[bytes], trailer: bytes | None = None) -> bytes:
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) body, signed here."""
    prev, out = a.signature, []
    for data in [*chunks, b""]:
        sts = sigv4.chunk_string_to_sign(a.amz_date, a.scope, prev, hashlib.sha256(data).hexdigest())
        prev = sigv4.sign(a.signing_key, sts)
        out.append(b"%x;chunk-signature=%s\r\n" % (len(data), prev.encode()))
        if data:
            out.append(data + b"\r\n")
    if trailer is None:
        return b"".join(out) + b"\r\n"
    sts = sigv4.trailer_string_to_sign(a.amz_date, a.scope, prev, hashlib.sha256(trailer + b"\n").hexdigest())
    sig = sigv4.sign(a.signing_key, sts)
    return b"".join(out) + trailer + b"\r\nx-amz-trailer-signature:" + sig.encode() + b"\r\n\r\n"


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# ---- signed chunks -------------------------------------------------------------------


def test_published_example_decodes_whole() -> None:
    dec = chunked.AwsChunkedDecoder(auth=auth(), decoded_length=66560)
    assert decode(dec, doc_body()) == b"a" * 66560
    assert dec.done


def test_published_example_split_at_every_boundary_of_the_frame() -> None:
    body = doc_body()
    # Every split point around the framing (headers, CRLFs, the final chunk), and a few in data.
    frame = set(range(0, 120)) | set(range(65536 + 80, 65536 + 220)) | set(range(len(body) - 100, len(body)))
    for cut in sorted(frame):
        dec = chunked.AwsChunkedDecoder(auth=auth(), decoded_length=66560)
        got = dec.feed(body[:cut]) + dec.feed(body[cut:])
        dec.finish()
        assert b"".join(got) == b"a" * 66560, cut


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 1000])
def test_published_example_in_small_reads(step: int) -> None:
    dec = chunked.AwsChunkedDecoder(auth=auth(), decoded_length=66560)
    assert decode(dec, doc_body(), step) == b"a" * 66560


def test_tampered_chunk_fails_signature() -> None:
    body = bytearray(doc_body())
    body[200] = ord("b")
    with pytest.raises(e.SignatureDoesNotMatch):
        decode(chunked.AwsChunkedDecoder(auth=auth(), decoded_length=66560), bytes(body))


def test_wrong_seed_fails_signature() -> None:
    with pytest.raises(e.SignatureDoesNotMatch):
        decode(chunked.AwsChunkedDecoder(auth=auth(seed="0" * 64), decoded_length=66560), doc_body())


def test_missing_chunk_signature_is_refused() -> None:
    with pytest.raises(e.SignatureDoesNotMatch):
        decode(chunked.AwsChunkedDecoder(auth=auth(), decoded_length=3), b"3\r\nabc\r\n0\r\n\r\n")


def test_decoded_length_is_enforced() -> None:
    with pytest.raises(e.IncompleteBody):
        decode(chunked.AwsChunkedDecoder(auth=auth(), decoded_length=66559), doc_body())
    with pytest.raises(e.IncompleteBody):
        decode(chunked.AwsChunkedDecoder(auth=auth(), decoded_length=66561), doc_body())


@pytest.mark.parametrize("cut", [0, 10, 90, 65536 + 50, -3, -1])
def test_truncated_body_is_incomplete(cut: int) -> None:
    body = doc_body()
    dec = chunked.AwsChunkedDecoder(auth=auth(), decoded_length=66560)
    dec.feed(body[:cut])
    with pytest.raises(e.IncompleteBody):
        dec.finish()


def test_oversize_and_malformed_chunk_headers() -> None:
    dec = chunked.AwsChunkedDecoder(max_chunk=1024)
    with pytest.raises(e.IncompleteBody):
        dec.feed(b"401\r\n")
    with pytest.raises(e.IncompleteBody):
        chunked.AwsChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(e.IncompleteBody):  # a header line that never ends
        chunked.AwsChunkedDecoder().feed(b"1" * (chunked.MAX_LINE + 10))
    with pytest.raises(e.IncompleteBody):  # data longer than announced
        chunked.AwsChunkedDecoder().feed(b"3\r\nabcd\r\n")
    with pytest.raises(e.IncompleteBody):  # bytes after the end
        chunked.AwsChunkedDecoder().feed(b"0\r\n\r\nxx")


def test_signed_trailer_mode() -> None:
    a = auth(sigv4.STREAMING_PAYLOAD_TRAILER)
    data = [b"hello " * 1000, b"world"]
    whole = b"".join(data)
    trailer = b"x-amz-checksum-crc32:" + crc32_b64(whole).encode()
    body = signed_body(a, data, trailer)
    for step in (None, 1, 5, 4096):
        dec = chunked.AwsChunkedDecoder(auth=a, decoded_length=len(whole), trailers=["crc32"])
        assert decode(dec, body, step) == whole
        assert dec.verified == {"crc32": crc32_b64(whole)}
    bad = signed_body(a, data, b"x-amz-checksum-crc32:" + crc32_b64(b"other").encode())
    with pytest.raises(e.BadDigest):
        decode(chunked.AwsChunkedDecoder(auth=a, decoded_length=len(whole), trailers=["crc32"]), bad)
    forged = body.replace(b"x-amz-trailer-signature:", b"x-amz-trailer-signature:0")[:-2]
    forged = forged[: forged.rindex(b":") + 1] + b"0" * 64 + b"\r\n\r\n"
    with pytest.raises(e.SignatureDoesNotMatch):
        decode(chunked.AwsChunkedDecoder(auth=a, decoded_length=len(whole), trailers=["crc32"]), forged)


# ---- unsigned trailer (what boto3 sends over https) -------------------------------------


def botocore_body(data: bytes, checksum_cls: type, name: str, chunk_size: int = 1024) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum_cls, checksum_name=name, chunk_size=chunk_size
    )
    return wrapper.read()


@pytest.mark.parametrize(
    ("cls", "alg"), [(Crc32Checksum, "crc32"), (Sha256Checksum, "sha256")]
)
def test_botocore_unsigned_trailer_bodies(cls: type, alg: str) -> None:
    data = bytes(range(256)) * 40 + b"tail"
    body = botocore_body(data, cls, f"x-amz-checksum-{alg}")
    for step in (None, 1, 13, 1000):
        dec = chunked.AwsChunkedDecoder(decoded_length=len(data), trailers=[alg])
        assert decode(dec, body, step) == data
    # Split at every byte boundary of a small body.
    small = botocore_body(b"0123456789" * 3, cls, f"x-amz-checksum-{alg}", chunk_size=7)
    for cut in range(len(small) + 1):
        dec = chunked.AwsChunkedDecoder(decoded_length=30, trailers=[alg])
        got = dec.feed(small[:cut]) + dec.feed(small[cut:])
        dec.finish()
        assert b"".join(got) == b"0123456789" * 3


def test_bad_trailer_checksum_is_bad_digest() -> None:
    data = b"payload bytes" * 100
    body = botocore_body(data, Crc32Checksum, "x-amz-checksum-crc32")
    corrupt = body.replace(b"payload", b"paYload", 1)
    with pytest.raises(e.BadDigest):
        decode(chunked.AwsChunkedDecoder(decoded_length=len(data), trailers=["crc32"]), corrupt)


def test_missing_or_unannounced_trailers() -> None:
    with pytest.raises(e.IncompleteBody):
        decode(chunked.AwsChunkedDecoder(decoded_length=1, trailers=["crc32"]), b"1\r\na\r\n0\r\n\r\n")
    with pytest.raises(e.IncompleteBody):
        body = b"1\r\na\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
        decode(chunked.AwsChunkedDecoder(decoded_length=1), body)


@pytest.mark.parametrize(
    ("algorithm", "check"),
    # The catalogued check values of each CRC over b"123456789" (CRC-32C/iSCSI, CRC-64/NVME).
    [("crc32c", 0xE3069283.to_bytes(4, "big")), ("crc64nvme", 0xAE8B14860A799888.to_bytes(8, "big"))],
)
def test_crc32c_and_crc64nvme_are_verified(algorithm: str, check: bytes) -> None:
    value = base64.b64encode(check)
    body = b"5\r\n12345\r\n4\r\n6789\r\n0\r\nx-amz-checksum-%s:%s\r\n\r\n" % (algorithm.encode(), value)
    dec = chunked.AwsChunkedDecoder(decoded_length=9, trailers=[algorithm])
    assert decode(dec, body) == b"123456789"
    wrong = body.replace(b"6789", b"6788", 1)
    with pytest.raises(e.BadDigest):
        decode(chunked.AwsChunkedDecoder(decoded_length=9, trailers=[algorithm]), wrong)


def test_unknown_trailer_is_refused() -> None:
    with pytest.raises(e.InvalidRequest):
        chunked.trailer_algorithms("x-amz-meta-foo")
    assert chunked.trailer_algorithms("x-amz-checksum-crc32, x-amz-checksum-SHA256") == ["crc32", "sha256"]


# ---- plain payload checks ----------------------------------------------------------------


def test_payload_checks() -> None:
    data = b"some object bytes"
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    c = chunked.PayloadChecks(
        length=len(data),
        sha256_hex=hashlib.sha256(data).hexdigest().upper(),
        content_md5=md5,
        checksums={"crc32": crc32_b64(data)},
    )
    c.update(data[:5])
    c.update(data[5:])
    assert c.finish() == {"crc32": crc32_b64(data)}

    c = chunked.PayloadChecks(length=len(data), sha256_hex="0" * 64)
    c.update(data)
    with pytest.raises(e.XAmzContentSHA256Mismatch):
        c.finish()
    c = chunked.PayloadChecks(content_md5=base64.b64encode(b"x" * 16).decode())
    c.update(data)
    with pytest.raises(e.BadDigest):
        c.finish()
    with pytest.raises(chunked.InvalidDigest):
        chunked.PayloadChecks(content_md5="not base64!")
    c = chunked.PayloadChecks(length=3)
    with pytest.raises(e.IncompleteBody):
        c.update(b"abcd")
    c = chunked.PayloadChecks(length=3)
    c.update(b"ab")
    with pytest.raises(e.IncompleteBody):
        c.finish()
    c = chunked.PayloadChecks(checksums={"crc32": crc32_b64(b"other")})
    c.update(data)
    with pytest.raises(e.BadDigest):
        c.finish()
