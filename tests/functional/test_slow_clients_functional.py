"""Slow and greedy clients at the gateway: header and body deadlines and a connection cap.

Slowloris clients (request heads sent a byte at a time, or never) are closed
once their head is ``--header-timeout`` late, and meanwhile do not keep a normal
client from being served. Connections beyond ``--max-connections`` are
answered 503 SlowDown at once. Idle keep-alive connections between requests
are not cut by the header deadline. Uploads whose body stops for
``--body-timeout`` get S3's RequestTimeout and are closed, and nothing of them
lands in the under-store.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, gateway_client, make_bucket

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
CAP_HEADER_TIMEOUT = 6.0
BUCKET = "slowclients"
BODY = os.urandom(300_000)


@pytest.fixture(scope="module")
def ufs(moto_server: str):  # type: ignore[no-untyped-def]
    """A boto3 client of the under-store itself (moto), around the gateway."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


@pytest.fixture(scope="module")
def seeded(ufs) -> None:  # type: ignore[no-untyped-def]
    make_bucket(ufs, BUCKET)
    ufs.put_object(Bucket=BUCKET, Key="obj", Body=BODY)


def guarded_gateway(cluster: PcCluster, max_connections: int, header_timeout: float) -> Iterator[str]:
    with cluster.running_gateway(
        "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
        "--header-timeout", str(header_timeout), "--max-connections", str(max_connections),
        "--body-timeout", str(BODY_TIMEOUT),
    ) as url:  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def slow_gw(cluster: PcCluster, seeded: None) -> Iterator[str]:
    yield from guarded_gateway(cluster, 64, HEADER_TIMEOUT)


@pytest.fixture(scope="module")
def small_gw(cluster: PcCluster, seeded: None) -> Iterator[str]:
    # A longer deadline: the hogs must hold the cap while the test knocks on it, even on a busy machine.
    yield from guarded_gateway(cluster, 4, CAP_HEADER_TIMEOUT)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def closed_after(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the gateway closed ``sock`` (at most ``limit``), and what it said first."""
    t0 = time.monotonic()
    sock.settimeout(limit)
    said = b""
    try:
        while chunk := sock.recv(4096):
            said += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"connection still open after {limit} s")
    return time.monotonic() - t0, said


def test_slowloris_is_closed_and_others_are_served(cluster: PcCluster, slow_gw: str) -> None:
    port = port_of(slow_gw)
    opened = time.monotonic()
    trickled = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    stop = threading.Event()

    def trickle() -> None:
        """One byte of header per connection every 0.1 s: each is always 'making progress'."""
        for s in trickled:
            s.sendall(b"GET /slowclients/obj HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            for s in trickled:
                try:
                    s.sendall(b"a")
                except OSError:
                    pass
            time.sleep(0.1)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        # A normal client is served at once, slow neighbours or not.
        gw = gateway_client(cluster, slow_gw)
        t0 = time.monotonic()
        assert gw.get_object(Bucket=BUCKET, Key="obj")["Body"].read() == BODY
        assert time.monotonic() - t0 < HEADER_TIMEOUT
        # Every slow connection is closed once its head is late (plus scheduling slack).
        for s in trickled + silent:
            closed_after(s, HEADER_TIMEOUT + 3)
            assert time.monotonic() - opened < HEADER_TIMEOUT + 3
        with socket.create_connection(("127.0.0.1", port)) as idle:
            said = closed_after(idle, HEADER_TIMEOUT + 3)[1]
        assert said.startswith(b"HTTP/1.1 408 "), said
    finally:
        stop.set()
        t.join(5)
        for s in trickled + silent:
            s.close()
    # And the gateway still serves.
    assert gw.get_object(Bucket=BUCKET, Key="obj")["Body"].read() == BODY


def test_idle_keep_alive_connections_are_not_cut(cluster: PcCluster, slow_gw: str) -> None:
    """The deadline runs from a head's first byte: a pooled connection idles freely between requests."""
    sock = socket.create_connection(("127.0.0.1", port_of(slow_gw)))
    with sock:
        for _ in range(2):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            time.sleep(HEADER_TIMEOUT * 2)


def test_connections_over_the_cap_get_slow_down(cluster: PcCluster, small_gw: str) -> None:
    port = port_of(small_gw)
    gw = gateway_client(cluster, small_gw)
    hogs = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.2)  # let the gateway accept them all
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            said = closed_after(extra, 5)[1]
        assert said.startswith(b"HTTP/1.1 503 ") and b"<Code>SlowDown</Code>" in said, said
        with pytest.raises(ClientError) as err:
            gw.get_object(Bucket=BUCKET, Key="obj")
        assert err.value.response["Error"]["Code"] == "SlowDown", err.value.response
        # The hogs send nothing: the header deadline frees their places.
        for s in hogs:
            closed_after(s, CAP_HEADER_TIMEOUT + 3)
    finally:
        for s in hogs:
            s.close()
    assert gw.get_object(Bucket=BUCKET, Key="obj")["Body"].read() == BODY


def signed_head(
    url: str, method: str, target: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """A SigV4-signed request head for ``body`` (whose hash it claims), as raw bytes."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = url.removeprefix("http://")
    req = AWSRequest(method=method, url=url + target, data=body, headers={"Host": host, **(headers or {})})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    lines = [f"{method} {target} HTTP/1.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stall_body(
    url: str, method: str, target: str, body: bytes, sent: int, **headers: str
) -> tuple[float, bytes]:
    """Send a signed head and ``sent`` bytes of ``body``, then nothing: (seconds to the close, answer)."""
    with socket.create_connection(("127.0.0.1", port_of(url))) as sock:
        sock.sendall(signed_head(url, method, target, body, headers) + body[:sent])
        return closed_after(sock, BODY_TIMEOUT + 5)


def assert_request_timeout(waited: float, said: bytes) -> None:
    assert said.startswith(b"HTTP/1.1 400 "), said
    assert b"<Code>RequestTimeout</Code>" in said, said
    assert b"Idle connections will be closed." in said, said
    assert b"Connection: close" in said, said
    assert BODY_TIMEOUT * 0.9 <= waited < BODY_TIMEOUT + 4, waited


def test_a_stalled_put_body_times_out_and_nothing_lands(cluster: PcCluster, slow_gw: str, ufs) -> None:  # type: ignore[no-untyped-def]
    body = os.urandom(300_000)
    for sent in (0, 100_000):  # nothing of the body, or a third of it
        assert_request_timeout(*stall_body(slow_gw, "PUT", f"/{BUCKET}/stalled-{sent}", body, sent))
        with pytest.raises(ClientError) as err:
            ufs.head_object(Bucket=BUCKET, Key=f"stalled-{sent}")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # The same upload sent whole lands, through the same gateway.
    gw = gateway_client(cluster, slow_gw)
    gw.put_object(Bucket=BUCKET, Key="stalled-0", Body=body)
    assert ufs.get_object(Bucket=BUCKET, Key="stalled-0")["Body"].read() == body
    assert "stalled-100000" not in [o["Key"] for o in ufs.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_a_stalled_part_is_not_listed(cluster: PcCluster, slow_gw: str, ufs) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_client(cluster, slow_gw)
    upload = gw.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    try:
        part = os.urandom(200_000)
        target = f"/{BUCKET}/mp?partNumber=1&uploadId={upload}"
        assert_request_timeout(*stall_body(slow_gw, "PUT", target, part, 50_000))
        assert ufs.list_parts(Bucket=BUCKET, Key="mp", UploadId=upload).get("Parts", []) == []
        gw.upload_part(Bucket=BUCKET, Key="mp", UploadId=upload, PartNumber=2, Body=part)
        parts = ufs.list_parts(Bucket=BUCKET, Key="mp", UploadId=upload)["Parts"]
        assert [p["PartNumber"] for p in parts] == [2]
        # CompleteMultipartUpload whose XML stops half-way: the upload stays open, no object.
        xml = (
            "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber>"
            f"<ETag>{parts[0]['ETag']}</ETag></Part></CompleteMultipartUpload>"
        ).encode()
        assert_request_timeout(*stall_body(slow_gw, "POST", f"/{BUCKET}/mp?uploadId={upload}", xml, 20))
        with pytest.raises(ClientError):
            ufs.head_object(Bucket=BUCKET, Key="mp")
        uploads = ufs.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        assert [u["UploadId"] for u in uploads] == [upload]
    finally:
        gw.abort_multipart_upload(Bucket=BUCKET, Key="mp", UploadId=upload)


def test_a_stalled_multi_delete_deletes_nothing(cluster: PcCluster, slow_gw: str, ufs) -> None:  # type: ignore[no-untyped-def]
    ufs.put_object(Bucket=BUCKET, Key="keep", Body=b"kept")
    xml = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
    stalled = stall_body(slow_gw, "POST", f"/{BUCKET}?delete", xml, len(xml) // 2, **{"Content-MD5": md5})
    assert_request_timeout(*stalled)
    assert ufs.get_object(Bucket=BUCKET, Key="keep")["Body"].read() == b"kept"
