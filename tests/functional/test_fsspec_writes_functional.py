"""Writing through the fsspec filesystem, and pandas and PyArrow on ``pipecache://`` URLs.

Everything written is checked in the under-store itself (moto, through boto3),
and read back through the cache.
"""

from __future__ import annotations

import errno
import random
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from cluster import PcCluster, make_bucket
from pipecache.client.fsspec import PipecacheFileSystem

MiB = 1024 * 1024


@pytest.fixture
def bucket(s3: Any) -> str:
    return make_bucket(s3, f"fswrite-{uuid.uuid4().hex[:10]}")


def stored(s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def test_pipe_and_small_file_are_one_put(fs: PipecacheFileSystem, s3: Any, bucket: str) -> None:
    fs.pipe(f"{bucket}/a/pipe.txt", b"piped\n")
    with fs.open(f"{bucket}/a/small.bin", "wb") as f:
        f.write(b"one ")
        f.write(b"two")
    assert stored(s3, bucket, "a/pipe.txt") == b"piped\n"
    assert stored(s3, bucket, "a/small.bin") == b"one two"
    assert "-" not in s3.head_object(Bucket=bucket, Key="a/small.bin")["ETag"]  # not multipart
    assert fs.cat(f"{bucket}/a/small.bin") == b"one two"
    with fsspec.open(f"pipecache://{bucket}/a/text.txt", "wt", master=fs.master) as t:
        t.write("héllo\n")
    assert stored(s3, bucket, "a/text.txt") == "héllo\n".encode()


def test_big_file_is_multipart_and_replaces_a_cached_version(
    fs: PipecacheFileSystem, s3: Any, bucket: str
) -> None:
    path = f"{bucket}/big.bin"
    fs.pipe(path, b"old version")
    assert fs.cat(path) == b"old version"  # now cached
    body = random.Random(5).randbytes(12 * MiB + 7)
    with fs.open(path, "wb", block_size=5 * MiB) as f:
        for i in range(0, len(body), 3 * MiB + 1):  # uneven writes
            f.write(body[i : i + 3 * MiB + 1])
    assert stored(s3, bucket, "big.bin") == body
    etag = s3.head_object(Bucket=bucket, Key="big.bin")["ETag"]
    assert etag.strip('"').endswith("-3")  # two buffers of 2 writes (6 MiB + 2), then the last 3 bytes
    assert fs.cat(path) == body  # the write dropped the cached metadata of the old version


def test_exception_inside_with_stores_nothing(fs: PipecacheFileSystem, s3: Any, bucket: str) -> None:
    for size in (10, 7 * MiB):  # a single PUT to be, and a multipart upload under way
        with pytest.raises(RuntimeError), fs.open(f"{bucket}/broken-{size}.bin", "wb") as f:
            f.write(b"x" * size)
            f.flush()
            raise RuntimeError("the producer failed")
        assert not fs.exists(f"{bucket}/broken-{size}.bin")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_put_rm_cp_and_refused_modes(fs: PipecacheFileSystem, s3: Any, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "up"
    (local / "sub").mkdir(parents=True)
    big = random.Random(9).randbytes(9 * MiB + 3)
    (local / "big.bin").write_bytes(big)
    (local / "sub" / "s.txt").write_bytes(b"s")
    fs.put(str(local / "big.bin"), f"{bucket}/put/big.bin")
    assert stored(s3, bucket, "put/big.bin") == big
    fs.put(str(local) + "/", f"{bucket}/tree/", recursive=True)
    assert sorted(fs.find(f"{bucket}/tree")) == [f"{bucket}/tree/big.bin", f"{bucket}/tree/sub/s.txt"]
    fs.cp(f"{bucket}/tree/sub/s.txt", f"{bucket}/copy.txt")
    assert stored(s3, bucket, "copy.txt") == b"s"
    fs.rm(f"{bucket}/copy.txt")
    fs.rm(f"{bucket}/tree", recursive=True)
    assert not fs.exists(f"{bucket}/copy.txt") and not fs.exists(f"{bucket}/tree")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["put/big.bin"]
    for mode in ("ab", "xb", "r+b"):
        with pytest.raises(NotImplementedError, match="read \\(rb\\) or written whole \\(wb\\)"):
            fs.open(f"{bucket}/x.bin", mode)
    with pytest.raises(IsADirectoryError):
        fs.pipe(bucket, b"a bucket is not a file")


def test_mkdir_creates_and_rm_deletes_a_bucket(fs: PipecacheFileSystem, s3: Any) -> None:
    name = f"fsmk-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    s3.head_bucket(Bucket=name)
    with pytest.raises(FileExistsError):
        fs.mkdir(name)
    fs.makedirs(name, exist_ok=True)
    fs.mkdir(f"{name}/deeper/still")  # nothing to create below a bucket
    fs.pipe(f"{name}/k", b"v")
    with pytest.raises(OSError) as err:
        fs.rmdir(name)
    assert err.value.errno == errno.ENOTEMPTY
    fs.pipe({f"{name}/many/{i}": b"x" for i in range(40)})
    # Objects go before their bucket (fsspec's own rm would race them).
    fs.rm(name, recursive=True)
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


async def test_asynchronous_writes(cluster: PcCluster, s3: Any, bucket: str) -> None:
    async with fsspec.filesystem("pipecache", master=cluster.master, asynchronous=True) as afs:
        await afs._pipe_file(f"{bucket}/async/p.bin", b"p")
        f = await afs.open_async(f"{bucket}/async/w.bin", "wb")
        await f.write(b"written ")
        await f.write(b"async")
        await f.close()
        with pytest.raises(RuntimeError):
            async with await afs.open_async(f"{bucket}/async/bad.bin", "wb") as bad:
                await bad.write(b"never stored")
                raise RuntimeError("stop")
        assert await afs._cat_file(f"{bucket}/async/w.bin") == b"written async"
        assert await afs._find(f"{bucket}/async") == [f"{bucket}/async/p.bin", f"{bucket}/async/w.bin"]
        await afs._rm_file(f"{bucket}/async/p.bin")
        assert not await afs._exists(f"{bucket}/async/p.bin")
    assert stored(s3, bucket, "async/w.bin") == b"written async"


# ---- pandas and PyArrow ----------------------------------------------------------------


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame(
        {
            "id": range(seed * 1000, seed * 1000 + n),
            "name": [f'item {rng.randrange(10**6)}, "quoted"' for _ in range(n)],
            "score": [rng.random() for _ in range(n)],
        }
    )


def test_pandas_csv_and_parquet_round_trip(cluster: PcCluster, s3: Any, bucket: str) -> None:
    opts = {"master": cluster.master}
    df = frame(5000, 1)
    df.to_csv(f"pipecache://{bucket}/pd/table.csv", index=False, storage_options=opts)
    assert stored(s3, bucket, "pd/table.csv").startswith(b"id,name,score\n1000,")
    pd.testing.assert_frame_equal(pd.read_csv(f"pipecache://{bucket}/pd/table.csv", storage_options=opts), df)
    df.to_parquet(f"pipecache://{bucket}/pd/table.parquet", storage_options=opts)
    assert stored(s3, bucket, "pd/table.parquet")[:4] == b"PAR1"
    pd.testing.assert_frame_equal(
        pd.read_parquet(f"pipecache://{bucket}/pd/table.parquet", storage_options=opts), df
    )


def test_pandas_reads_parquet_through_the_cache(cluster: PcCluster, s3: Any, bucket: str) -> None:
    df = frame(200_000, 2)  # a few MiB: several 1 MiB blocks
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink)
    s3.put_object(Bucket=bucket, Key="pd/seeded.parquet", Body=sink.getvalue().to_pybytes())
    url, opts = f"pipecache://{bucket}/pd/seeded.parquet", {"master": cluster.master}
    before = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=opts), df)
    first = cluster.worker_sum("pipecache_ufs_read_bytes_total")
    assert first > before
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=opts), df)
    assert cluster.worker_sum("pipecache_ufs_read_bytes_total") == first, "the second read missed the cache"


def test_pyarrow_table_and_dataset_over_a_prefix(fs: PipecacheFileSystem, s3: Any, bucket: str) -> None:
    parts = [pa.Table.from_pandas(frame(1000, i), preserve_index=False) for i in range(3)]
    for i, t in enumerate(parts):
        pq.write_table(t, f"{bucket}/ds/part-{i}.parquet", filesystem=fs)
    fs.pipe(f"{bucket}/ds-other/ignored.parquet", b"not under the prefix")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ds/")["Contents"]]
    assert keys == [f"ds/part-{i}.parquet" for i in range(3)]
    assert pq.read_table(f"{bucket}/ds/part-1.parquet", filesystem=fs).equals(parts[1])
    dataset = pds.dataset(f"{bucket}/ds/", filesystem=fs, format="parquet")
    assert sorted(dataset.files) == [f"{bucket}/ds/part-{i}.parquet" for i in range(3)]
    got = dataset.to_table().sort_by("id")
    assert got.equals(pa.concat_tables(parts).sort_by("id"))
    assert dataset.to_table(filter=pds.field("id") >= 2000).num_rows == 1000
