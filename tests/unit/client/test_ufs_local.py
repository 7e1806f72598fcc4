"""LocalUnderStore on a tmp folder: objects, ranges, ETags, hostile keys, listings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pipecache.client.listing import paginate
from pipecache.client.protocol import ListEntry, ListPage
from pipecache.client.ufs import LocalUnderStore, S3UnderStore, UnderStore, open_understore
from pipecache.client.ufs.local import check_key, valid_bucket_name
from pipecache.tiering.errors import (
    InterfaceError,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    UnderStoreError,
)

DATA = bytes(range(256)) * 40  # 10240 bytes


def put(root: Path, bucket: str, key: str, data: bytes = b"x") -> Path:
    path = root / bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "ufs"
    r.mkdir()
    put(r, "data", "blob.bin", DATA)
    return r


@pytest.fixture
def store(root: Path) -> LocalUnderStore:
    return LocalUnderStore(str(root))


def test_is_an_understore(store: LocalUnderStore, root: Path) -> None:
    s: UnderStore = store  # mypy checks the Protocol here
    assert s.uri == f"file://{os.path.realpath(root)}"


# ---- objects ---------------------------------------------------------------------


async def test_head(store: LocalUnderStore, root: Path) -> None:
    info = await store.head("data", "blob.bin")
    st = (root / "data" / "blob.bin").stat()
    assert (info.bucket, info.key, info.size) == ("data", "blob.bin", len(DATA))
    assert info.last_modified == st.st_mtime
    assert len(info.etag) == 16 and info.etag == (await store.head("data", "blob.bin")).etag


async def test_head_missing(store: LocalUnderStore, root: Path) -> None:
    (root / "data" / "dir").mkdir()
    for key in ["nope", "dir", "blob.bin/under-a-file", "dir/nope"]:
        with pytest.raises(NoSuchKey):
            await store.head("data", key)
    with pytest.raises(NoSuchBucket):
        await store.head("nobucket", "blob.bin")


@pytest.mark.parametrize(
    ("start", "length"), [(0, 1), (0, len(DATA)), (len(DATA) - 1, 1), (300, 5000)]
)
async def test_get_range(store: LocalUnderStore, start: int, length: int) -> None:
    etag = (await store.head("data", "blob.bin")).etag
    assert await store.get_range("data", "blob.bin", start, length) == DATA[start : start + length]
    got = await store.get_range("data", "blob.bin", start, length, etag)
    assert got == DATA[start : start + length]


async def test_get_range_edges(store: LocalUnderStore) -> None:
    assert await store.get_range("data", "blob.bin", 5, 0) == b""
    with pytest.raises(UnderStoreError, match="range ends"):
        await store.get_range("data", "blob.bin", len(DATA) - 1, 2)
    with pytest.raises(InterfaceError):
        await store.get_range("data", "blob.bin", -1, 2)
    with pytest.raises(NoSuchKey):
        await store.get_range("data", "nope", 0, 1)


async def test_etag_follows_versions(store: LocalUnderStore, root: Path) -> None:
    path = root / "data" / "blob.bin"
    first = (await store.head("data", "blob.bin")).etag
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # same bytes, newer mtime
    second = (await store.head("data", "blob.bin")).etag
    path.write_bytes(DATA + b"more")
    third = (await store.head("data", "blob.bin")).etag
    tmp = path.with_name("new")
    tmp.write_bytes(DATA + b"more")
    os.utime(tmp, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    tmp.replace(path)  # same size and mtime, new inode
    fourth = (await store.head("data", "blob.bin")).etag
    assert len({first, second, third, fourth}) == 4


async def test_stale_etag_raises_object_changed(store: LocalUnderStore, root: Path) -> None:
    etag = (await store.head("data", "blob.bin")).etag
    (root / "data" / "blob.bin").write_bytes(b"y" * len(DATA) * 2)
    with pytest.raises(ObjectChanged):
        await store.get_range("data", "blob.bin", 0, 10, etag)


async def test_change_during_read_raises_object_changed(
    store: LocalUnderStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = root / "data" / "blob.bin"
    real_pread = os.pread

    def racing_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        with path.open("r+b") as f:  # a writer lands while we read
            f.write(b"Z")
        os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
        return data

    monkeypatch.setattr(os, "pread", racing_pread)
    with pytest.raises(ObjectChanged, match="while it was read"):
        await store.get_range("data", "blob.bin", 0, 100)


# ---- hostile keys ----------------------------------------------------------------

HOSTILE = [
    "",
    "../x",
    "a/../../x",
    "..",
    ".",
    "a/./b",
    "a/..",
    "/etc/passwd",
    "a\0b",
    "a//b",
    "a/",
    "x" * 1025,
    "é" * 513,
    "\udc80",
]


@pytest.mark.parametrize("key", HOSTILE, ids=lambda k: repr(k)[:20])
async def test_hostile_keys_are_refused(store: LocalUnderStore, key: str) -> None:
    with pytest.raises(InterfaceError):
        await store.head("data", key)
    with pytest.raises(InterfaceError):
        await store.get_range("data", key, 0, 1)


async def test_longest_key_is_allowed(store: LocalUnderStore, root: Path) -> None:
    key = "/".join(["k" * 200] * 5) + "/" + "z" * 19  # exactly 1024 bytes
    assert len(key.encode()) == 1024
    check_key(key)
    with pytest.raises(NoSuchKey):
        await store.head("data", key)
    put(root, "data", key, b"deep")
    assert await store.get_range("data", key, 0, 4) == b"deep"
    with pytest.raises(InterfaceError):
        await store.head("data", "w" * 300)  # one segment over NAME_MAX


async def test_symlinks_escaping_the_bucket_are_refused(
    store: LocalUnderStore, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "f").write_bytes(b"secret")
    put(root, "other", "f", b"other bucket")
    bucket = root / "data"
    (bucket / "link").symlink_to(outside / "f")
    (bucket / "dirlink").symlink_to(outside)
    (bucket / "sideways").symlink_to(root / "other" / "f")
    for key in ["link", "dirlink/f", "sideways"]:
        with pytest.raises(InterfaceError, match="outside"):
            await store.head("data", key)
        with pytest.raises(InterfaceError, match="outside"):
            await store.get_range("data", key, 0, 1)
    (bucket / "inside").symlink_to(bucket / "blob.bin")
    assert (await store.head("data", "inside")).size == len(DATA)
    page = await store.list("data")
    assert [e.key for e in page.entries] == ["blob.bin", "inside"]


# ---- buckets ---------------------------------------------------------------------


def test_bucket_names() -> None:
    for ok in ["abc", "data", "my-bucket.v2", "a" * 63, "1bucket"]:
        assert valid_bucket_name(ok), ok
    for bad in ["ab", "a" * 64, "Data", "a_b", "-ab", "ab-", ".ab", "a..b", "a.-b", "10.0.0.1", ""]:
        assert not valid_bucket_name(bad), bad


async def test_buckets(store: LocalUnderStore, root: Path) -> None:
    put(root, "zeta", "k")
    (root / "empty-bucket").mkdir()
    for bad in ["Upper", "under_score", ".hidden", "ab"]:
        (root / bad).mkdir()
    (root / "file-not-bucket").write_bytes(b"")
    buckets = await store.list_buckets()
    assert [b.name for b in buckets] == ["data", "empty-bucket", "zeta"]
    assert buckets[0].created == (root / "data").stat().st_ctime
    await store.head_bucket("empty-bucket")
    for bad in ["Upper", "under_score", "missing", "file-not-bucket", "../ufs", ""]:
        with pytest.raises(NoSuchBucket):
            await store.head_bucket(bad)
    with pytest.raises(NoSuchBucket):
        await store.list("Upper")
    await store.close()


# ---- listings --------------------------------------------------------------------

TREE = ["a/1", "a/2", "a/b/c", "a/b/d", "a/c", "a-x", "b", "c/d/e", "c/x", "é/1", "\U0001f600"]


@pytest.fixture
def tree(root: Path) -> LocalUnderStore:
    for key in TREE:
        put(root, "tree", key, key.encode())
    (root / "tree" / "empty" / "deeper").mkdir(parents=True)  # folders are not objects
    (root / "tree" / "a" / "hollow").mkdir()
    return LocalUnderStore(str(root))


async def pages_of(store: LocalUnderStore, **kw: object) -> list[ListPage]:
    out: list[ListPage] = []
    token: str | None = None
    while True:
        page = await store.list("tree", token=token, **kw)  # type: ignore[arg-type]
        out.append(page)
        if not page.truncated:
            return out
        token = page.next_token


def reference(**kw: object) -> ListPage:
    keys = [ListEntry(k, 0, "", 0.0) for k in sorted(TREE)]
    return paginate(keys, **kw)  # type: ignore[arg-type]


async def test_list_with_delimiter(tree: LocalUnderStore) -> None:
    page = await tree.list("tree", delimiter="/")
    assert page.prefixes == ["a/", "c/", "é/"]
    assert [e.key for e in page.entries] == ["a-x", "b", "\U0001f600"]
    entry = page.entries[1]
    assert (entry.size, entry.etag) == (1, (await tree.head("tree", "b")).etag)
    nested = await tree.list("tree", prefix="a/", delimiter="/")
    assert nested.prefixes == ["a/b/"] and [e.key for e in nested.entries] == ["a/1", "a/2", "a/c"]


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "a/b/", "c/d/", "é", "zz", "empty/"])
@pytest.mark.parametrize("delimiter", ["", "/", "-", "b/"])
@pytest.mark.parametrize("max_keys", [1, 2, 1000])
async def test_list_matches_paginate(
    tree: LocalUnderStore, prefix: str, delimiter: str, max_keys: int
) -> None:
    pages = await pages_of(tree, prefix=prefix, delimiter=delimiter, max_keys=max_keys)
    token: str | None = None
    for page in pages:
        want = reference(prefix=prefix, delimiter=delimiter, max_keys=max_keys, token=token)
        assert [e.key for e in page.entries] == [e.key for e in want.entries]
        assert (page.prefixes, page.truncated, page.next_token) == (
            want.prefixes,
            want.truncated,
            want.next_token,
        )
        token = page.next_token


async def test_list_start_after_and_tokens(tree: LocalUnderStore) -> None:
    page = await tree.list("tree", start_after="a/c")
    # "a-x" sorts before "a/c" ("-" < "/")
    assert [e.key for e in page.entries] == ["b", "c/d/e", "c/x", "é/1", "\U0001f600"]
    page = await tree.list("tree", delimiter="/", start_after="a/b/c")
    assert page.prefixes == ["c/", "é/"]
    with pytest.raises(InterfaceError, match="continuation token"):
        await tree.list("tree", token="%%%")
    assert await tree.list("tree", max_keys=0) == ListPage()


@pytest.mark.parametrize("prefix", ["../", "../data/", "a/../", "./a", "a//", "a\0", "\udc80"])
async def test_list_hostile_prefix_is_empty(tree: LocalUnderStore, prefix: str) -> None:
    assert await tree.list("tree", prefix=prefix) == ListPage()


async def test_list_skips_escaping_symlinks_and_symlinked_folders(
    tree: LocalUnderStore, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_bytes(b"x")
    (root / "tree" / "esc").symlink_to(tmp_path / "out" / "f")
    (root / "tree" / "escdir").symlink_to(tmp_path / "out")
    (root / "tree" / "loop").symlink_to(root / "tree")
    page = await tree.list("tree")
    assert [e.key for e in page.entries] == sorted(TREE)
    assert await tree.list("tree", prefix="loop/") == ListPage()
    assert await tree.list("tree", prefix="escdir/", delimiter="/") == ListPage()


# ---- open_understore ---------------------------------------------------------------


def test_open_understore(tmp_path: Path) -> None:
    where = tmp_path / "made" / "here"
    store = open_understore(f"file://{where}")
    assert isinstance(store, LocalUnderStore) and where.is_dir()
    assert store.uri == f"file://{os.path.realpath(where)}"
    assert isinstance(open_understore("file://localhost" + str(where)), LocalUnderStore)
    s3 = open_understore("http://127.0.0.1:9000")
    assert isinstance(s3, S3UnderStore) and s3.endpoint_url == "http://127.0.0.1:9000"
    assert isinstance(open_understore("https://s3.example.com/"), S3UnderStore)
    aws = open_understore("s3://")
    assert isinstance(aws, S3UnderStore) and aws.endpoint_url is None  # nothing opened yet


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "/abs/path",
        "file://relative/x",
        "file:relative",
        "s3://bucket",
        "ftp://h",
        "http://",
        "http://h:9000/some/path",
        "http://h?x=1",
        "http://user:pw@h",
    ],
)
def test_open_understore_refuses(uri: str) -> None:
    with pytest.raises(InterfaceError, match="file:///"):
        open_understore(uri)


def test_missing_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InterfaceError):
        LocalUnderStore(str(tmp_path / "missing"))
