"""Request limits at the gateway: oversized or too many headers are refused at once, and it serves on."""

from __future__ import annotations

import re
import socket
import time

import pytest
from cluster import PcCluster


def raw(cluster: PcCluster, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes to the gateway; what it answers before closing or going quiet."""
    host, port = "127.0.0.1", cluster.gateway_port
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /bucket/key HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        + b"\r\n",
        b"GET /" + b"k" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),  # a TLS hello on the plain port
    ],
    ids=["header-20KB", "500-headers", "target-20KB", "tls-hello"],
)
def test_oversized_or_garbled_requests_are_refused_fast(cluster: PcCluster, gw, request_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    answer = raw(cluster, request_bytes)
    assert time.monotonic() - t0 < 5
    # HTTP/1.0 when the parser gave up before it read the version.
    assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:200]
    # Still serving.
    gw.list_buckets()

