"""LocalUnderStore writes: atomic puts, streamed bodies, deletes, copies, buckets, hostile keys."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pipecache.client.ufs import LocalUnderStore
from pipecache.client.ufs.local import TMP_PREFIX
from pipecache.tiering.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InterfaceError,
    InvalidPart,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalUnderStore:
    (tmp_path / "data").mkdir()
    return LocalUnderStore(str(tmp_path))


async def chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for p in parts:
        yield p
    if fail:
        raise RuntimeError("body went bad")


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(TMP_PREFIX + "*")]


async def test_put_bytes_and_stream_then_read(store: LocalUnderStore, tmp_path: Path) -> None:
    info = await store.put("data", "a/b/c.bin", b"hello")
    assert (info.size, info.key) == (5, "a/b/c.bin")
    head = await store.head("data", "a/b/c.bin")
    assert head.etag == info.etag
    big = os.urandom(3 * 1024 * 1024 + 5)
    info2 = await store.put("data", "a/b/c.bin", chunks(big[:100], big[100:]), size=len(big))
    assert info2.etag != info.etag
    assert await store.get_range("data", "a/b/c.bin", 0, len(big), info2.etag) == big
    assert leftovers(tmp_path) == []


async def test_same_size_overwrite_changes_the_etag(store: LocalUnderStore) -> None:
    tags = {(await store.put("data", "k", bytes([i]) * 10)).etag for i in range(20)}
    assert len(tags) == 20


async def test_failed_body_leaves_the_old_version(store: LocalUnderStore, tmp_path: Path) -> None:
    await store.put("data", "k", b"old")
    with pytest.raises(RuntimeError):
        await store.put("data", "k", chunks(b"new bytes", fail=True))
    with pytest.raises(InterfaceError):
        await store.put("data", "k", chunks(b"four"), size=5)
    assert await store.get_range("data", "k", 0, 3) == b"old"
    assert leftovers(tmp_path) == []


async def test_temporary_files_are_never_listed(store: LocalUnderStore, tmp_path: Path) -> None:
    (tmp_path / "data" / (TMP_PREFIX + "abc")).write_bytes(b"partial")
    await store.put("data", "real", b"x")
    page = await store.list("data")
    assert [e.key for e in page.entries] == ["real"]
    with pytest.raises(InterfaceError):
        await store.put("data", TMP_PREFIX + "abc", b"x")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "", "x\0y"])
async def test_hostile_keys_are_refused(store: LocalUnderStore, tmp_path: Path, key: str) -> None:
    with pytest.raises(InterfaceError):
        await store.put("data", key, b"x")
    assert not (tmp_path / "escape").exists()


async def test_symlinked_folder_cannot_lead_out(store: LocalUnderStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "data" / "link").symlink_to(outside)
    with pytest.raises(InterfaceError):
        await store.put("data", "link/evil", b"x")
    assert list(outside.iterdir()) == []


async def test_file_and_folder_conflicts(store: LocalUnderStore) -> None:
    await store.put("data", "a", b"file")
    with pytest.raises(InterfaceError):
        await store.put("data", "a/b", b"under a file")
    await store.put("data", "d/e", b"x")
    with pytest.raises(InterfaceError):
        await store.put("data", "d", b"over a folder")


async def test_delete_is_idempotent(store: LocalUnderStore) -> None:
    await store.put("data", "k", b"x")
    await store.delete("data", "k")
    await store.delete("data", "k")
    await store.delete("data", "../nope")
    with pytest.raises(NoSuchKey):
        await store.head("data", "k")
    with pytest.raises(NoSuchBucket):
        await store.delete("nobucket", "k")


async def test_copy(store: LocalUnderStore) -> None:
    await store.put("data", "src", b"payload")
    info = await store.copy("data", "src", "data", "dir/dst")
    assert info.size == 7
    assert await store.get_range("data", "dir/dst", 0, 7, info.etag) == b"payload"
    with pytest.raises(NoSuchKey):
        await store.copy("data", "missing", "data", "x")


async def test_buckets(store: LocalUnderStore, tmp_path: Path) -> None:
    await store.create_bucket("fresh")
    with pytest.raises(BucketAlreadyOwnedByYou):
        await store.create_bucket("fresh")
    with pytest.raises(InterfaceError):
        await store.create_bucket("Bad_Name")
    await store.put("fresh", "dir/k", b"x")
    with pytest.raises(BucketNotEmpty):
        await store.delete_bucket("fresh")
    await store.delete("fresh", "dir/k")  # leaves an empty folder: still an empty bucket
    await store.delete_bucket("fresh")
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(NoSuchBucket):
        await store.delete_bucket("fresh")


async def test_multipart_upload(store: LocalUnderStore, tmp_path: Path) -> None:
    up = await store.create_upload("data", "mp/obj")
    e1 = await store.put_part("data", "mp/obj", up, 1, b"a" * 10)
    e2 = await store.put_part("data", "mp/obj", up, 2, chunks(b"b" * 5, b"c"))
    e2b = await store.put_part("data", "mp/obj", up, 2, b"d" * 3)  # a part sent again replaces it
    assert e1 == hashlib.md5(b"a" * 10).hexdigest() and e2 != e2b
    with pytest.raises(InvalidPart):
        await store.complete_upload("data", "mp/obj", up, [(1, e1), (2, e2)])
    with pytest.raises(NoSuchKey):
        await store.head("data", "mp/obj")
    info = await store.complete_upload("data", "mp/obj", up, [(1, e1), (2, f'"{e2b}"')])
    assert await store.get_range("data", "mp/obj", 0, 13, info.etag) == b"a" * 10 + b"d" * 3
    with pytest.raises(NoSuchUpload):
        await store.put_part("data", "mp/obj", up, 3, b"late")
    assert leftovers(tmp_path) == []
    assert [e.key for e in (await store.list("data")).entries] == ["mp/obj"]


async def test_multipart_abort_and_hostile_ids(store: LocalUnderStore) -> None:
    up = await store.create_upload("data", "k")
    await store.put_part("data", "k", up, 1, b"x")
    with pytest.raises(NoSuchUpload):  # an upload belongs to its key
        await store.put_part("data", "other", up, 1, b"x")
    await store.abort_upload("data", "k", up)
    with pytest.raises(NoSuchUpload):
        await store.abort_upload("data", "k", up)
    for bad in ("../../etc", "", "0" * 31, up.upper()):
        with pytest.raises(NoSuchUpload):
            await store.put_part("data", "k", bad, 1, b"x")


async def test_content_type_and_metadata_are_kept(store: LocalUnderStore, tmp_path: Path) -> None:
    meta = {"owner": "team-a", "run": "42"}
    await store.put("data", "m/obj", b"x", content_type="text/csv", metadata=meta)
    head = await store.head("data", "m/obj")
    assert (head.content_type, head.metadata) == ("text/csv", meta)
    # A copy keeps them (S3's MetadataDirective COPY); an overwrite without them drops them.
    await store.copy("data", "m/obj", "data", "m/copy")
    assert (await store.head("data", "m/copy")).metadata == meta
    await store.put("data", "m/obj", b"y")
    head = await store.head("data", "m/obj")
    assert (head.content_type, head.metadata) == ("", {})
    # Multipart: given at creation, applied at completion.
    uid = await store.create_upload("data", "m/mp", content_type="application/x-parquet", metadata={"a": "b"})
    etag = await store.put_part("data", "m/mp", uid, 1, b"part")
    await store.complete_upload("data", "m/mp", uid, [(1, etag)])
    head = await store.head("data", "m/mp")
    assert (head.content_type, head.metadata) == ("application/x-parquet", {"a": "b"})


async def test_foreign_or_malformed_attributes_are_ignored(store: LocalUnderStore, tmp_path: Path) -> None:
    from pipecache.client.ufs.local import META_XATTR

    path = tmp_path / "data" / "plain"
    path.write_bytes(b"made outside pipecache")
    assert (await store.head("data", "plain")).content_type == ""
    for bad in (b"not json", b"[1, 2]", b'{"content_type": 5}', b'{"metadata": {"k": 1}}', b"{" * 3000):
        os.setxattr(path, META_XATTR, bad)
        head = await store.head("data", "plain")
        assert head.content_type == "" and all(isinstance(v, str) for v in head.metadata.values())
