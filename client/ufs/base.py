"""The under-store interface: where cached data really lives (S3 or a folder)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
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

    async def put(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes] | bytes,
        size: int | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store an object whole: readers see the old version or the new one, never a part.

        ``body`` streams (memory stays bounded). If it raises, nothing is
        stored: callers verify checksums inside the iterator, so a bad upload
        fails before the commit. ``size``, when given, must match the bytes
        received (InterfaceError otherwise). Returns the new version's info
        (its ETag at least).
        """
        ...

    async def delete(self, bucket: str, key: str) -> None:
        """Remove an object; a missing key is not an error (as S3). NoSuchBucket if no bucket."""
        ...

    async def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        """Server-side copy (content, content type and metadata); the new version's info."""
        ...

    async def create_bucket(self, bucket: str) -> None:
        """BucketAlreadyOwnedByYou if it exists; InterfaceError for an invalid name."""
        ...

    async def delete_bucket(self, bucket: str) -> None:
        """BucketNotEmpty unless empty; NoSuchBucket if missing."""
        ...

    async def create_upload(
        self,
        bucket: str,
        key: str,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Start a multipart upload; its id."""
        ...

    async def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes] | bytes,
        size: int | None = None,
    ) -> str:
        """Store one part (1..10000); its ETag. NoSuchUpload if the upload is unknown."""
        ...

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> ObjectInfo:
        """Assemble the object from (part number, ETag) pairs; InvalidPart for a bad one."""
        ...

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Drop an upload and its parts; NoSuchUpload if unknown."""
        ...

    async def close(self) -> None: ...
