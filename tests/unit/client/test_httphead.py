"""The block fetcher's response-head parser: good heads, heads split across reads, hostile heads."""

from __future__ import annotations

import pytest
from pipecache.client.httphead import HEAD_MAX, BadHead, Head, head_end, parse_head, request_head

WORKER_HEAD = (
    b"HTTP/1.1 206 Partial Content\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"X-Pipecache-Tier: memory\r\n"
    b"Content-Range: bytes 0-9/100\r\n"
    b"Content-Length: 10\r\n"
    b"Date: Tue, 24 Nov 2026 02:00:00 GMT\r\n"
    b"Server: Python/3.11 aiohttp/3.14.5\r\n\r\n"
)


def test_a_worker_head() -> None:
    assert parse_head(WORKER_HEAD) == Head(206, 10, "application/octet-stream", False, False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/x-msgpack; charset=utf-8\r\n"
            b"Content-Length: 7\r\n\r\n",
            Head(404, 7, "application/x-msgpack"),
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length:0\r\nCONNECTION: Close\r\n\r\n", Head(200, 0, close=True)),
        (b"HTTP/1.1 200\r\nConnection: keep-alive, Upgrade\r\n\r\n", Head(200, None)),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", Head(200, 3, close=True)),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n", Head(200, 3)),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Head(200, None, transfer_encoded=True)),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \t42 \r\n\r\n", Head(200, 42)),
    ],
)
def test_good_heads(raw: bytes, expected: Head) -> None:
    assert parse_head(raw) == expected


def test_head_end_across_reads() -> None:
    """The blank line is found however the head is cut, without rescanning from the start."""
    body = b"0123456789"
    stream = WORKER_HEAD + body
    assert head_end(stream, len(stream), 0) == len(WORKER_HEAD)
    for cut in range(1, len(WORKER_HEAD)):
        buf = bytearray(stream[:cut])
        assert head_end(buf, cut, 0) == -1
        buf += stream[cut:]
        assert head_end(buf, len(buf), cut) == len(WORKER_HEAD)


def test_head_end_in_unfilled_buffer() -> None:
    """Only the filled part of a preallocated buffer counts."""
    buf = bytearray(64)
    buf[:4] = b"HTTP"
    buf[40:44] = b"\r\n\r\n"  # stale bytes past what was filled
    assert head_end(buf, 4, 0) == -1


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * HEAD_MAX + b"\r\n\r\n", "over"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", "blank line"),
        (b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\nX: y\r\n\r\n", "bare CR or LF"),
        (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR or LF"),
        (b"HTTP/2 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 99 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 600 Nope\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "status line"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "status line"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "interim"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "bad Content-Length"),  # latin-1 superscript 2
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "more than one"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", "more than one"),
        (b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n\r\nX: after the end\r\n\r\n", "malformed header"),
    ],
)
def test_hostile_heads(raw: bytes, why: str) -> None:
    with pytest.raises(BadHead, match=why):
        parse_head(raw)


def test_request_head() -> None:
    raw = request_head("/blocks/ab?b=x&k=a+b", {"Host": "h:1", "Range": "bytes=0-9"})
    assert raw == b"GET /blocks/ab?b=x&k=a+b HTTP/1.1\r\nHost: h:1\r\nRange: bytes=0-9\r\n\r\n"


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "\u20ac"])
def test_request_head_refuses_values_that_split_or_do_not_encode(value: str) -> None:
    with pytest.raises(ValueError):
        request_head("/", {"Authorization": value})
