"""The Python client's write API against a real cluster: writes go through and invalidate."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from cluster import PcCluster
from pipecache.client import NoSuchKey, connect
from pipecache.client.protocol import CONFIG, ConfigReply
from pipecache.client.rpc import call

MiB = 1024 * 1024


async def chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_config_names_the_under_store(cluster: PcCluster) -> None:
    async with connect(cluster.master) as pc:
        cfg = await call(pc.session, cluster.master + CONFIG, ConfigReply)
        assert cfg.ufs == cluster.ufs


async def test_put_overwrite_delete_are_seen_at_once(s3, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    # metadata_ttl long enough that only invalidation can explain fresh reads.
    async with (
        connect(cluster.master, metadata_ttl=60.0) as pc,
        connect(cluster.master, metadata_ttl=0.0) as other,
    ):
        await pc.create_bucket("client-writes")
        v1 = os.urandom(MiB + 3)
        info = await pc.put("client-writes", "obj", v1, content_type="text/plain", metadata={"a": "1"})
        assert await pc.get("client-writes", "obj") == v1
        assert await other.get("client-writes", "obj") == v1  # the master's cache is warm too
        v2 = os.urandom(MiB + 3)
        info2 = await pc.put("client-writes", "obj", chunks(v2), size=len(v2))
        assert info2.etag != info.etag
        assert await pc.get("client-writes", "obj") == v2
        assert await other.get("client-writes", "obj") == v2
        full = await pc.stat("client-writes", "obj", full=True)
        assert full.etag == info2.etag
        copied = await pc.copy("client-writes", "obj", "client-writes", "copy")
        assert copied.etag and await other.get("client-writes", "copy") == v2
        await pc.delete("client-writes", "obj")
        await pc.delete("client-writes", "copy")
        with pytest.raises(NoSuchKey):
            await pc.stat("client-writes", "obj")
        with pytest.raises(NoSuchKey):
            await other.stat("client-writes", "obj")
        await pc.delete_bucket("client-writes")


async def test_invalidate_prefix(s3, cluster: PcCluster) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket="inval")
    s3.put_object(Bucket="inval", Key="p/a", Body=b"1")
    async with connect(cluster.master, metadata_ttl=60.0) as pc:
        assert (await pc.stat("inval", "p/a")).size == 1
        s3.put_object(Bucket="inval", Key="p/a", Body=b"22")  # behind pipecache's back
        assert await pc.invalidate("inval", prefix="p/") >= 1
        assert (await pc.stat("inval", "p/a")).size == 2
