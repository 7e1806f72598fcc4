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
    NoSuchHold,
    NoSuchJob,
    NoSuchKey,
    NoWorkers,
    ObjectChanged,
    SlowDown,
    Unauthorized,
    UnderStoreError,
)
from .client import Client, ClientOptions, ObjectReader, Range, connect
from .jobs import Job
from .protocol import (
    BucketInfo,
    FreeReply,
    HoldInfo,
    JobFailure,
    JobInfo,
    ListEntry,
    ListPage,
    ObjectInfo,
    WorkerInfo,
)

__all__ = [
    "BadRequest",
    "BucketInfo",
    "CacheError",
    "ChecksumMismatch",
    "Client",
    "ClientOptions",
    "FreeReply",
    "HoldInfo",
    "InterfaceError",
    "InvalidRange",
    "Job",
    "JobFailure",
    "JobInfo",
    "ListEntry",
    "ListPage",
    "NoCapacity",
    "NoSuchBucket",
    "NoSuchHold",
    "NoSuchJob",
    "NoSuchKey",
    "NoWorkers",
    "ObjectChanged",
    "ObjectInfo",
    "ObjectReader",
    "Range",
    "SlowDown",
    "Unauthorized",
    "UnderStoreError",
    "WorkerInfo",
    "connect",
]
