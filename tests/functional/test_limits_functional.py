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



def test_authentication_comes_before_the_cache(s3, cluster: PcCluster, gw) -> None:  # type: ignore[no-untyped-def]
    """Requests that fail SigV4 never reach a worker or the under-store."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from cluster import ACCESS_KEY, make_bucket

    make_bucket(s3, "authfirst")
    s3.put_object(Bucket="authfirst", Key="cold", Body=b"x" * 3_000_000)
    reads = cluster.worker_sum("pipecache_ufs_requests_total")
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    wrong = boto3.client(
        "s3", endpoint_url=cluster.gateway, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="not-the-secret", region_name="us-east-1", config=cfg,
    )  # fmt: skip
    anonymous = boto3.client(
        "s3", endpoint_url=cluster.gateway, region_name="us-east-1",
        config=cfg.merge(Config(signature_version=UNSIGNED)),
    )  # fmt: skip
    for client in (wrong, anonymous):
        for _ in range(5):
            with pytest.raises(ClientError) as err:
                client.get_object(Bucket="authfirst", Key="cold")
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert cluster.worker_sum("pipecache_ufs_requests_total") == reads
    assert gw.get_object(Bucket="authfirst", Key="cold")["Body"].read() == b"x" * 3_000_000
    assert cluster.worker_sum("pipecache_ufs_requests_total") > reads  # the count does move


def test_a_body_over_the_limit_is_refused_before_it_is_read(cluster: PcCluster, gw) -> None:  # type: ignore[no-untyped-def]
    from botocore.exceptions import ClientError

    t0 = time.monotonic()
    with pytest.raises(ClientError) as err:
        # 6 GiB announced (S3's single PUT stops at 5 GiB), one byte sent.
        gw.put_object(Bucket="authfirst", Key="huge", Body=b"x", ContentLength=6 * 1024**3)
    assert err.value.response["Error"]["Code"] == "EntityTooLarge", err.value.response
    assert time.monotonic() - t0 < 5
    # The answer said Connection: close, so the client's next request does not queue
    # behind the 6 GiB it never sent (it used to wait out 10 s of lingering).
    t0 = time.monotonic()
    gw.list_buckets()
    assert time.monotonic() - t0 < 3
