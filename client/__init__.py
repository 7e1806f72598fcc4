"""The async pipecache client and the wire contract every service shares.

    async with pipecache.client.connect("http://127.0.0.1:9000") as pc:
        data = await pc.get("datasets", "train/part-0001.parquet")
"""

from ..tiering.errors import (
    BadRequest,
    CacheError,
    ChecksumMismatch,
    InterfaceError,
    InvalidRange,
    NoCapacity,
    NoSuchBucket,
    NoSuchKey,
    NoWorkers,
    ObjectChanged,
    SlowDown,
    UnderStoreError,
)
from .client import Client, ClientOptions, ObjectReader, Range, connect
from .protocol import BucketInfo, ListEntry, ListPage, ObjectInfo, WorkerInfo

__all__ = [
    "BadRequest",
    "BucketInfo",
    "CacheError",
    "ChecksumMismatch",
    "Client",
    "ClientOptions",
    "InterfaceError",
    "InvalidRange",
    "ListEntry",
    "ListPage",
    "NoCapacity",
    "NoSuchBucket",
    "NoSuchKey",
    "NoWorkers",
    "ObjectChanged",
    "ObjectInfo",
    "ObjectReader",
    "Range",
    "SlowDown",
    "UnderStoreError",
    "WorkerInfo",
    "connect",
]
