"""The under-store interface: where cached data really lives (S3 or a folder)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from ..protocol import BucketInfo, ListPage, ObjectInfo


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One uploaded part of a multipart upload."""

    number: int
    etag: str
    size: int
    last_modified: float


@dataclass(frozen=True, slots=True)
class PartsPage:
    """ListParts: parts after ``marker`` in number order; ``next_marker`` resumes."""

    parts: builtins.list[PartInfo] = field(default_factory=builtins.list)
    truncated: bool = False
    next_marker: int = 0


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """One multipart upload in progress."""

    key: str
    upload_id: str
    initiated: float


@dataclass(frozen=True, slots=True)
class UploadsPage:
    """ListMultipartUploads: uploads in (key, upload id) order, and rolled-up common prefixes."""

    uploads: builtins.list[UploadInfo] = field(default_factory=builtins.list)
    prefixes: builtins.list[str] = field(default_factory=builtins.list)
    truncated: bool = False
    next_key_marker: str = ""
    next_upload_id_marker: str = ""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version of an object, or a delete marker."""

    key: str
    version_id: str
    etag: str
    size: int
    last_modified: float
    is_latest: bool = True
    delete_marker: bool = False


@dataclass(frozen=True, slots=True)
class VersionsPage:
    """ListObjectVersions: versions in key order (newest first per key), and common prefixes."""

    versions: builtins.list[VersionInfo] = field(default_factory=builtins.list)
    prefixes: builtins.list[str] = field(default_factory=builtins.list)
    truncated: bool = False
    next_key_marker: str = ""
    next_version_id_marker: str = ""


def uploads_page(
    uploads: builtins.list[UploadInfo],
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    max_uploads: int,
) -> UploadsPage:
    """One ListMultipartUploads page over every upload of a bucket, as S3 orders and rolls them up."""
    items: builtins.list[tuple[str, str, UploadInfo | None]] = []
    seen: set[str] = set()
    for u in sorted(uploads, key=lambda u: (u.key, u.upload_id)):
        if not u.key.startswith(prefix):
            continue
        at = u.key.find(delimiter, len(prefix)) if delimiter else -1
        if at >= 0:
            common = u.key[: at + len(delimiter)]
            if common not in seen and common > key_marker:
                seen.add(common)
                items.append((common, "", None))
        elif u.key > key_marker or (u.key == key_marker and u.upload_id > upload_id_marker != ""):
            items.append((u.key, u.upload_id, u))
    items.sort(key=lambda i: (i[0], i[1]))
    page = items[: max(0, max_uploads)]
    truncated = len(items) > len(page)
    last = page[-1] if truncated and page else ("", "", None)
    return UploadsPage(
        [u for _, _, u in page if u is not None],
        [name for name, _, u in page if u is None],
        truncated,
        last[0],
        last[1],
    )


WRITE_MIN_RATE = 1024 * 1024
"""Bytes per second an under-store write body is allowed to crawl at before its deadline
(see ``UnderStoreTimeouts.write_deadline``): far below any healthy link, so only a stall
(or a link too slow to be of use) meets it."""


@dataclass(frozen=True, slots=True)
class UnderStoreTimeouts:
    """How long a remote under-store may take, and how often a failed read is tried.

    ``read`` bounds each wait for bytes (before the response headers or in the
    middle of a body), not a whole transfer, so a slow but moving body is never
    cut; a stalled one is. Local folders ignore these.
    """

    connect: float = 5.0
    """Seconds to open a connection."""
    read: float = 60.0
    """Seconds without a byte before a request is abandoned (and retried)."""
    attempts: int = 3
    """Attempts per request, the first included; retries back off (0.1 s doubling, jittered)."""

    def silent_for(self) -> float:
        """Most seconds a request to a silent under-store can wait before it fails: every
        attempt waits ``read`` for a byte, and botocore's standard retries back off up to
        ``min(2**i, 20)`` s before attempt i+1 (i from 0)."""
        pauses = sum(min(2.0**i, 20.0) for i in range(self.attempts - 1))
        return self.attempts * self.read + pauses

    def write_deadline(self, size: int) -> float:
        """Seconds a write carrying a body of ``size`` bytes (PutObject, UploadPart) may take
        in all, retries included: ``silent_for()`` plus the body sent at ``WRITE_MIN_RATE``.

        Such writes need a deadline of their own: botocore's read timeout does not
        end them when the under-store accepts the request and never answers
        (aiobotocore waits on, seen with aiohttp 3.14), while calls without a body
        do time out.
        """
        return self.silent_for() + size / WRITE_MIN_RATE

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot work."""
        for name in ("connect", "read"):
            if not getattr(self, name) > 0:
                raise ValueError(f"under-store {name} timeout must be > 0, got {getattr(self, name)}")
        if not 1 <= self.attempts <= 10:
            raise ValueError(f"under-store attempts must be 1..10, got {self.attempts}")


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

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        """Parts of an upload numbered above ``marker``; NoSuchUpload if unknown."""
        ...

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadsPage:
        """Multipart uploads in progress in ``bucket``, after the markers."""
        ...

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> VersionsPage:
        """Object versions (an unversioned store has one, ``null``, per key)."""
        ...

    async def close(self) -> None: ...
