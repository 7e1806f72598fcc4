"""The under-store interface: where cached data really lives (S3 or a folder)."""

from __future__ import annotations

import builtins
from typing import Protocol

from ..protocol import BucketInfo, ListPage, ObjectInfo


class UnderStore(Protocol):
    """Async access to the under-store. Keys and buckets are the S3 names.

    Errors are ``tiering.errors`` types: NoSuchBucket, NoSuchKey, ObjectChanged
    (ETag no longer matches), InterfaceError (a key that cannot be stored here),
    SlowDown and UnderStoreError.
    """

    uri: str

    async def head(self, bucket: str, key: str) -> ObjectInfo: ...

    async def get_range(
        self, bucket: str, key: str, start: int, length: int, etag: str | None = None
    ) -> bytes:
        """Exactly ``length`` bytes from ``start``; ObjectChanged if ``etag`` no longer matches."""
        ...

    async def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage: ...

    async def list_buckets(self) -> builtins.list[BucketInfo]: ...

    async def head_bucket(self, bucket: str) -> None: ...

    async def close(self) -> None: ...
