"""Virtual-host addressing (bucket.<base domain>) through a real gateway, beside path style."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, make_bucket

BUCKET = "vhost-bkt"


@pytest.fixture(scope="module")
def vh_gw(cluster: PcCluster, moto_server: str) -> Iterator[str]:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    make_bucket(s3, BUCKET)
    s3.put_object(Bucket=BUCKET, Key="dir/a b.txt", Body=b"hello")
    with cluster.running_gateway(
        "--domain", "localhost", "--domain", "s3.pipecache.test", "--access-key", ACCESS_KEY,
        "--secret-key", SECRET_KEY,
    ) as url:  # fmt: skip
        yield url


def signed_request(gw: str, host: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """Sign for ``host`` as a client that resolved it would, send it to the gateway's socket.

    Returns the status and body.
    """
    req = AWSRequest(method=method, url=f"http://{host}{path}", data=body, headers={"Host": host})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(gw).port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_host_header_names_the_bucket(vh_gw: str) -> None:
    port = urlsplit(vh_gw).port
    assert signed_request(vh_gw, f"{BUCKET}.localhost:{port}", "GET", "/dir/a%20b.txt") == (200, b"hello")
    status, body = signed_request(
        vh_gw, f"{BUCKET}.s3.pipecache.test:{port}", "GET", "/?list-type=2&prefix=dir%2F"
    )
    assert status == 200 and b"<Key>dir/a b.txt</Key>" in body, body
    assert signed_request(vh_gw, f"{BUCKET}.localhost:{port}", "PUT", "/put-here", b"virtual")[0] == 200
    # Path style keeps working on the same gateway, by IP or by the bare base domain.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert signed_request(vh_gw, host, "GET", f"/{BUCKET}/put-here") == (200, b"virtual")


def test_bad_hosts_are_errors_not_redirects(vh_gw: str) -> None:
    port = urlsplit(vh_gw).port
    status, body = signed_request(vh_gw, f"no-such-bucket-vh.localhost:{port}", "GET", "/x")
    assert status == 404 and b"<Code>NoSuchBucket</Code>" in body
    status, body = signed_request(vh_gw, f"Bad_Bucket.localhost:{port}", "GET", "/x")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    status, body = signed_request(vh_gw, f"ab.localhost:{port}", "GET", "/x")
    assert status == 400 and b"<Code>InvalidBucketName</Code>" in body


def test_boto3_virtual_addressing_through_a_proxy_setting(vh_gw: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """boto3 names bucket.localhost; with the gateway as its HTTP proxy no name has to resolve.

    The gateway accepts the absolute-form request line a proxy client sends (RFC 9112).
    """
    port = urlsplit(vh_gw).port
    gw = boto3.client(
        "s3",
        endpoint_url=f"http://localhost:{port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "virtual"}, proxies={"http": vh_gw}, retries={"max_attempts": 1}
        ),
    )
    assert gw.get_object(Bucket=BUCKET, Key="dir/a b.txt")["Body"].read() == b"hello"
    gw.put_object(Bucket=BUCKET, Key="boto/virtual.txt", Body=b"v")
    keys = [o["Key"] for o in gw.list_objects_v2(Bucket=BUCKET, Prefix="boto/")["Contents"]]
    assert keys == ["boto/virtual.txt"]
    src = tmp_path / "up.bin"
    src.write_bytes(b"z" * (6 * 1024 * 1024))
    gw.upload_file(str(src), BUCKET, "boto/multi.bin")
    dst = tmp_path / "down.bin"
    gw.download_file(BUCKET, "boto/multi.bin", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    gw.delete_object(Bucket=BUCKET, Key="boto/virtual.txt")


def _resolves(name: str) -> bool:
    try:
        return any(ai[4][0] == "127.0.0.1" for ai in socket.getaddrinfo(name, 80, socket.AF_INET))
    except OSError:
        return False


@pytest.mark.skipif(
    not _resolves(f"{BUCKET}.localhost"), reason="*.localhost does not resolve on this machine"
)
def test_boto3_virtual_addressing_by_name(vh_gw: str) -> None:
    gw = boto3.client(
        "s3",
        endpoint_url=f"http://localhost:{urlsplit(vh_gw).port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}),
    )
    assert gw.get_object(Bucket=BUCKET, Key="dir/a b.txt")["Body"].read() == b"hello"
