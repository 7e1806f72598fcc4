"""The fsspec filesystem (``pipecache://bucket/key``) against a whole cluster in front of moto.

Objects are seeded straight into moto with boto3 and read back through the
``pipecache`` entry point, so these tests check what a training job using
fsspec URLs would see. The cluster uses 1 MiB blocks: ranges below cross them.
"""

from __future__ import annotations

import csv
import gc
import io
import multiprocessing
import pickle
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import fsspec
import pytest
from cluster import PcCluster
from pipecache.client.fsspec import PipecacheFileSystem

MiB = 1024 * 1024
BIG = random.Random(7).randbytes(3 * MiB + 12345)
SMALL = {
    "dir/a.txt": b"alpha\n",
    "dir/b.txt": b"bravo\n",
    "dir/sub/c.txt": b"charlie\n",
    "dir/sub/deep/d.txt": b"delta\n",
    "top.txt": b"top\n",
}
CSV = 'id,name,score\n1,ada,9.5\n2,grace,8.25\n3,"lovelace, a",7\n'


class Data:
    """A seeded bucket: ``path(key)`` is its fsspec path, ``url(key)`` its URL."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def path(self, key: str = "") -> str:
        return f"{self.bucket}/{key}" if key else self.bucket

    def url(self, key: str) -> str:
        return f"pipecache://{self.bucket}/{key}"

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)


@pytest.fixture(scope="module")
def data(moto_server: str) -> Data:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    d = Data(s3, f"fsspec-{uuid.uuid4().hex[:12]}")
    s3.create_bucket(Bucket=d.bucket)
    d.put("big.bin", BIG)
    d.put("table.csv", CSV.encode())
    for key, body in SMALL.items():
        d.put(key, body)
    return d


def test_entry_point_and_paths(cluster: PcCluster) -> None:
    assert fsspec.get_filesystem_class("pipecache") is PipecacheFileSystem
    strip = PipecacheFileSystem._strip_protocol
    assert strip("pipecache://b/k/x.bin") == strip("b/k/x.bin") == strip("/b/k/x.bin/") == "b/k/x.bin"
    assert strip("pipecache://b") == "b" and strip("pipecache://") == ""
    fs, path = fsspec.url_to_fs("pipecache://b/k", master=cluster.master)
    assert isinstance(fs, PipecacheFileSystem) and path == "b/k" and fs.master == cluster.master
    assert fs.split_path(path) == ("b", "k")


def test_master_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECACHE_MASTER", "http://10.0.0.1:9000")
    assert PipecacheFileSystem(skip_instance_cache=True).master == "http://10.0.0.1:9000"
    monkeypatch.delenv("PIPECACHE_MASTER")
    assert PipecacheFileSystem(skip_instance_cache=True).master == "http://127.0.0.1:9000"


def test_cat_whole_and_ranges(fs: PipecacheFileSystem, data: Data) -> None:
    big = data.path("big.bin")
    assert fs.cat(big) == BIG
    assert fs.cat_file(data.path("top.txt")) == b"top\n"
    for start, end in [
        (0, 10),
        (MiB - 10, MiB + 10),  # across the first block boundary
        (MiB - 1, 2 * MiB + 1),  # a whole block and one byte either side
        (MiB, 2 * MiB),  # exactly one block
        (3 * MiB - 5, None),  # into the short last block, to the end
        (-100, None),  # suffix
        (10, -10),  # negative end counts from the end
        (-(2 * MiB), -MiB),
    ]:
        assert fs.cat_file(big, start, end) == BIG[start:end], (start, end)
    assert fs.cat_file(big, len(BIG) + 5) == b""  # past the end: empty, as in fsspec's local fs
    assert fs.cat_file(big, 100, 50) == b""
    ranges = fs.cat_ranges([big, big], [0, MiB - 3], [3, MiB + 3])
    assert ranges == [BIG[:3], BIG[MiB - 3 : MiB + 3]]


def test_open_seek_read(fs: PipecacheFileSystem, data: Data) -> None:
    # A buffer smaller than a block, so reads miss the fsspec cache often.
    with fs.open(data.path("big.bin"), "rb", block_size=256 * 1024) as f:
        assert f.size == len(BIG) and f.readable() and f.seekable() and not f.writable()
        assert f.read(100) == BIG[:100]
        f.seek(MiB - 5)
        assert f.read(10) == BIG[MiB - 5 : MiB + 5]
        assert f.tell() == MiB + 5
        f.seek(-20, io.SEEK_END)
        assert f.read() == BIG[-20:]
        assert f.read(10) == b""
        f.seek(2 * MiB - 7)
        assert f.read(MiB + 14) == BIG[2 * MiB - 7 : 3 * MiB + 7]
        f.seek(-3, io.SEEK_CUR)
        assert f.read(6) == BIG[3 * MiB + 4 : 3 * MiB + 10]
        f.seek(0)
        assert f.read() == BIG
    assert f.closed


def test_fsspec_open_url(cluster: PcCluster, data: Data) -> None:
    with fsspec.open(data.url("big.bin"), "rb", master=cluster.master) as f:
        f.seek(MiB + 1)
        assert f.read(MiB) == BIG[MiB + 1 : 2 * MiB + 1]
    with fsspec.open(data.url("dir/a.txt"), "rb", master=cluster.master) as f:
        assert f.read() == b"alpha\n"


def test_csv_in_text_mode(cluster: PcCluster, data: Data) -> None:
    with fsspec.open(data.url("table.csv"), "rt", master=cluster.master, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"id": "1", "name": "ada", "score": "9.5"},
        {"id": "2", "name": "grace", "score": "8.25"},
        {"id": "3", "name": "lovelace, a", "score": "7"},
    ]


def test_ls(fs: PipecacheFileSystem, data: Data) -> None:
    b = data.bucket
    assert fs.ls(data.path("dir"), detail=False) == [f"{b}/dir/a.txt", f"{b}/dir/b.txt", f"{b}/dir/sub"]
    assert fs.ls(f"pipecache://{b}/dir/", detail=False) == fs.ls(data.path("dir"), detail=False)
    detail = {o["name"]: o for o in fs.ls(data.path("dir"), detail=True)}
    assert detail[f"{b}/dir/a.txt"]["type"] == "file" and detail[f"{b}/dir/a.txt"]["size"] == 6
    assert detail[f"{b}/dir/sub"] == {"name": f"{b}/dir/sub", "size": 0, "type": "directory"}
    top = fs.ls(b, detail=False)
    assert top == [f"{b}/big.bin", f"{b}/dir", f"{b}/table.csv", f"{b}/top.txt"]
    assert fs.ls(data.path("top.txt"), detail=False) == [f"{b}/top.txt"]  # a file lists as itself
    buckets = {o["name"]: o for o in fs.ls("", detail=True)}
    assert buckets[b]["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.ls(data.path("nope"))
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-bucket-fsspec/x")


def test_ls_and_find_across_pages(fs: PipecacheFileSystem, data: Data) -> None:
    # More than one 1000-key page, both as files and as common prefixes.
    keys = [f"many/f{i:04d}" for i in range(1010)] + [f"many/d{i:04d}/x" for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: data.put(k, b"x"), keys))
    listed = fs.ls(data.path("many"), detail=False)
    assert len(listed) == 2015 and len(set(listed)) == 2015
    assert sum(fs.isdir(p) for p in listed[:3]) == 3 and listed[-1] == data.path("many/f1009")
    assert fs.find(data.path("many")) == sorted(data.path(k) for k in keys)


def test_folder_markers(fs: PipecacheFileSystem, data: Data) -> None:
    # Zero-byte "folder/" objects, as the S3 console and some tools create them.
    data.put("markers/empty/", b"")
    data.put("markers/full/", b"")
    data.put("markers/full/x.txt", b"x")
    m = data.path("markers")
    assert fs.ls(m, detail=False) == [f"{m}/empty", f"{m}/full"]
    assert fs.ls(f"{m}/empty", detail=False) == []
    assert fs.ls(f"{m}/full", detail=False) == [f"{m}/full/x.txt"]
    assert fs.isdir(f"{m}/empty") and fs.info(f"{m}/empty")["type"] == "directory"
    assert fs.find(m) == [f"{m}/full/x.txt"]
    assert fs.find(m, withdirs=True) == [m, f"{m}/empty", f"{m}/full", f"{m}/full/x.txt"]


def test_info_exists_isdir(fs: PipecacheFileSystem, data: Data) -> None:
    info = fs.info(data.url("big.bin"))
    head = data.s3.head_object(Bucket=data.bucket, Key="big.bin")
    assert info["name"] == data.path("big.bin") and info["type"] == "file"
    assert info["size"] == len(BIG) and info["ETag"] == head["ETag"]
    assert isinstance(info["LastModified"], datetime)
    assert abs(info["LastModified"].timestamp() - head["LastModified"].timestamp()) < 1
    assert fs.info(data.path("dir/sub")) == {"name": data.path("dir/sub"), "size": 0, "type": "directory"}
    assert fs.info(data.bucket)["type"] == "directory"
    assert fs.info("")["type"] == "directory"
    assert fs.size(data.path("dir/a.txt")) == 6
    assert fs.exists(data.path("dir/a.txt")) and fs.exists(data.path("dir")) and fs.exists(data.bucket)
    assert not fs.exists(data.path("dir/zzz")) and not fs.exists("no-such-bucket-fsspec")
    assert fs.isdir(data.path("dir")) and fs.isdir(data.path("dir/sub/")) and fs.isdir(data.bucket)
    assert not fs.isdir(data.path("dir/a.txt")) and not fs.isdir("no-such-bucket-fsspec")
    assert fs.isfile(data.path("dir/a.txt")) and not fs.isfile(data.path("dir"))


def test_find_walk_glob(fs: PipecacheFileSystem, data: Data) -> None:
    b = data.bucket
    files = [f"{b}/{k}" for k in sorted(SMALL) if k.startswith("dir/")]
    assert fs.find(data.path("dir")) == files
    assert fs.find(data.url("dir/")) == files
    found = fs.find(data.path("dir"), withdirs=True, detail=True)
    dirs = [n for n, i in found.items() if i["type"] == "directory"]
    assert dirs == [f"{b}/dir", f"{b}/dir/sub", f"{b}/dir/sub/deep"]
    assert fs.find(data.path("dir"), maxdepth=1) == [f"{b}/dir/a.txt", f"{b}/dir/b.txt"]
    assert fs.find(data.path("top.txt")) == [f"{b}/top.txt"]
    assert fs.find(data.path("nothing-here")) == []
    assert fs.find("no-such-bucket-fsspec") == []
    walked = {root: (sorted(d), sorted(f)) for root, d, f in fs.walk(data.path("dir"))}
    assert walked[f"{b}/dir"] == (["sub"], ["a.txt", "b.txt"])
    assert walked[f"{b}/dir/sub/deep"] == ([], ["d.txt"])
    assert fs.glob(data.path("dir/*.txt")) == [f"{b}/dir/a.txt", f"{b}/dir/b.txt"]
    assert fs.glob(data.path("dir/**/*.txt")) == files
    assert fs.glob(f"pipecache://{b}/**/d.txt") == [f"{b}/dir/sub/deep/d.txt"]
    assert fs.glob(data.path("*.csv")) == [f"{b}/table.csv"]
    assert fs.du(data.path("dir")) == sum(len(v) for k, v in SMALL.items() if k.startswith("dir/"))


def test_missing_is_file_not_found(fs: PipecacheFileSystem, data: Data, tmp_path: Path) -> None:
    for path in [data.path("missing.bin"), "no-such-bucket-fsspec/k"]:
        with pytest.raises(FileNotFoundError):
            fs.cat(path)
        with pytest.raises(FileNotFoundError):
            fs.info(path)
        with pytest.raises(FileNotFoundError):
            fs.open(path)
        with pytest.raises(FileNotFoundError):
            fs.get(path, str(tmp_path / "out"))
        assert not (tmp_path / "out").exists()


def test_get_to_local_files(fs: PipecacheFileSystem, data: Data, tmp_path: Path) -> None:
    fs.get(data.path("big.bin"), str(tmp_path / "big.bin"))
    assert (tmp_path / "big.bin").read_bytes() == BIG
    fs.get(data.path("dir"), str(tmp_path / "tree"), recursive=True)
    tree = tmp_path / "tree"
    got = {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert got == {k[len("dir/") :]: v for k, v in SMALL.items() if k.startswith("dir/")}


def test_second_read_served_from_cache(fs: PipecacheFileSystem, cluster: PcCluster, data: Data) -> None:
    body = random.Random(11).randbytes(2 * MiB + 99)
    data.put("cached.bin", body)
    before = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    assert fs.cat(data.path("cached.bin")) == body
    first = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    assert first - before >= len(body)  # a first read fetches from the under-store
    assert fs.cat(data.path("cached.bin")) == body
    with fs.open(data.path("cached.bin"), block_size=MiB // 2) as f:
        f.seek(MiB - 1)
        assert f.read(MiB) == body[MiB - 1 : 2 * MiB - 1]
    assert cluster.worker_sum("pipecache_ufs_read_bytes_total") == first, "a repeat read missed the cache"


async def test_asynchronous(cluster: PcCluster, data: Data, tmp_path: Path) -> None:
    body = random.Random(13).randbytes(MiB + 4321)
    data.put("async.bin", body)
    async with fsspec.filesystem("pipecache", master=cluster.master, asynchronous=True) as afs:
        assert isinstance(afs, PipecacheFileSystem) and afs.asynchronous
        assert await afs._cat_file(data.path("async.bin")) == body
        assert await afs._cat_file(data.path("async.bin"), MiB - 2, MiB + 2) == body[MiB - 2 : MiB + 2]
        ufs = cluster.worker_sum("pipecache_ufs_read_bytes_total")
        assert await afs._cat_file(data.url("async.bin")) == body
        assert cluster.worker_sum("pipecache_ufs_read_bytes_total") == ufs
        assert await afs._ls(data.path("dir"), detail=False) == [
            data.path("dir/a.txt"),
            data.path("dir/b.txt"),
            data.path("dir/sub"),
        ]
        assert (await afs._info(data.path("async.bin")))["size"] == len(body)
        assert await afs._exists(data.path("dir")) and await afs._isdir(data.path("dir"))
        assert len(await afs._find(data.path("dir"))) == 4
        assert await afs._glob(data.path("dir/*.txt")) == [data.path("dir/a.txt"), data.path("dir/b.txt")]
        with pytest.raises(FileNotFoundError):
            await afs._cat_file(data.path("missing.bin"))
        await afs._get(data.path("async.bin"), str(tmp_path / "a.bin"))
        assert (tmp_path / "a.bin").read_bytes() == body
        f = await afs.open_async(data.path("async.bin"))
        f.seek(MiB - 1)
        assert await f.read(3) == body[MiB - 1 : MiB + 2]
        await f.close()
        with pytest.raises(NotImplementedError, match="open_async"):
            afs.open(data.path("async.bin"))


async def test_asynchronous_left_open(cluster: PcCluster, data: Data) -> None:
    # Not closed on purpose: the loop's shutdown closes the client (else: unclosed-socket warnings).
    afs = fsspec.filesystem("pipecache", master=cluster.master, asynchronous=True, read_ahead=2)
    assert await afs._cat_file(data.path("top.txt")) == b"top\n"


async def test_asynchronous_instance_reused_on_a_new_loop(cluster: PcCluster, data: Data) -> None:
    # fsspec hands back the previous test's cached instance, whose loop has closed.
    afs = fsspec.filesystem("pipecache", master=cluster.master, asynchronous=True, read_ahead=2)
    old = afs._client
    try:
        assert await afs._cat_file(data.path("dir/b.txt")) == b"bravo\n"
        assert afs._client is not old and afs._client is not None
        assert afs._client.options.read_ahead == 2
        assert old is None or old._session is None  # closed at the old loop's shutdown
    finally:
        await afs.aclose()


def _read_url(master: str, path: str, timeout: float | None = None) -> bytes:
    with fsspec.open(f"pipecache://{path}", "rb", master=master, timeout=timeout) as f:
        data: bytes = f.read()
    return data


def _read_in_child(master: str, path: str) -> bytes:
    data = _read_url(master, path)
    gc.collect()  # the child drops the instances it inherited (fsspec clears its cache in a fork)
    return data


def test_pickle_and_forked_workers(fs: PipecacheFileSystem, cluster: PcCluster, data: Data) -> None:
    # What a PyTorch DataLoader does: pickle the filesystem, or fork workers that open URLs.
    clone = pickle.loads(pickle.dumps(fs))
    assert isinstance(clone, PipecacheFileSystem) and clone.master == cluster.master
    assert clone.cat(data.path("top.txt")) == b"top\n"
    # An instance only fsspec's cache holds, with keep-alive connections open when we fork.
    # (a helper function, so no local variable keeps a file, and with it the instance, alive).
    assert _read_url(cluster.master, data.path("dir/a.txt"), 5.0) == b"alpha\n"
    paths = [data.path(k) for k in sorted(SMALL)] + [data.path("big.bin")]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.starmap(_read_in_child, [(cluster.master, p) for p in paths])
    assert got == [SMALL[k] for k in sorted(SMALL)] + [BIG]
    # The children dropped their copies of our instances without touching their sockets.
    assert _read_url(cluster.master, data.path("dir/b.txt"), 5.0) == b"bravo\n"
    assert fs.cat_file(data.path("big.bin"), MiB, MiB + 3) == BIG[MiB : MiB + 3]


def test_forgotten_instance_closes_its_client(cluster: PcCluster, data: Data) -> None:
    pfs = PipecacheFileSystem(master=cluster.master, skip_instance_cache=True)
    assert pfs.cat(data.path("top.txt")) == b"top\n"
    client, finalizer = pfs._client, pfs._finalizer
    assert client is not None and finalizer is not None and finalizer.alive
    del pfs
    gc.collect()
    assert not finalizer.alive and client._session is None
