"""A folder as the under-store (``file:///path``): sub-folders are buckets, files are objects.

Keys arrive from S3 clients and are hostile: :func:`check_key` refuses any key
that could name something outside its bucket folder or alias another key, and
every path is resolved with ``realpath`` and checked to stay inside the bucket,
so a symlink cannot lead out either.

ETags are :func:`local_etag`: a hash of the file's stat, not of its content.
MD5 over a multi-gigabyte file on every HEAD would cost more than the cache
saves; (mtime_ns, size, inode) changes whenever the file is rewritten or
replaced, which is all a cache needs to notice a new version. One blind spot:
an in-place rewrite of the same size within the file system's timestamp
granularity (a few ms on Linux) keeps the ETag.

All blocking file system work runs in a thread (``asyncio.to_thread``), one hop
per call.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import os
import re
import stat
import struct
from collections.abc import Iterator
from typing import NoReturn

import xxhash

from ...tiering.errors import (
    InterfaceError,
    NoSuchBucket,
    NoSuchKey,
    ObjectChanged,
    UnderStoreError,
)
from ..listing import MAX_KEYS, decode_token, paginate
from ..protocol import BucketInfo, ListEntry, ListPage, ObjectInfo

MAX_KEY_BYTES = 1024
"""S3's limit on the UTF-8 length of a key."""

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_STAT_KEY = struct.Struct("<qqQ")


def valid_bucket_name(name: str) -> bool:
    """Whether ``name`` is a valid S3 bucket name (general purpose bucket rules)."""
    return (
        _BUCKET_RE.fullmatch(name) is not None
        and ".." not in name
        and ".-" not in name
        and "-." not in name
        and _IPV4_RE.fullmatch(name) is None
    )


def check_key(key: str) -> None:
    """Raise InterfaceError unless ``key`` can be stored as a file path below a bucket.

    Besides S3's own limits, refuses ``.``/``..`` segments and a leading ``/``
    (they lead out of the bucket) and empty segments (``a//b`` and ``a/`` would
    alias ``a/b`` and ``a``).
    """
    if not key:
        raise InterfaceError("empty key")
    if "\0" in key:
        raise InterfaceError("key contains NUL")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InterfaceError("key is not valid Unicode (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InterfaceError(f"key of {size} bytes is over the {MAX_KEY_BYTES} byte limit")
    if key.startswith("/"):
        raise InterfaceError(f"key {key[:64]!r} starts with '/'")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InterfaceError(f"key {key[:64]!r} has an empty, '.' or '..' segment")


def local_etag(st: os.stat_result) -> str:
    """The ETag of a file: xxh3-64 (hex) of its (mtime_ns, size, inode)."""
    return xxhash.xxh3_64_hexdigest(_STAT_KEY.pack(st.st_mtime_ns, st.st_size, st.st_ino))


def _inside(base: str, path: str) -> bool:
    return path.startswith(base + os.sep)


def _name_ok(name: str) -> bool:
    """Whether a file name can be part of a key (undecodable names come back as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class LocalUnderStore:
    """The under-store on a local (or mounted) folder ``root``.

    Each sub-folder of ``root`` whose name is a valid S3 bucket name is a
    bucket; each regular file below it is an object whose key is its relative
    path with ``/``. Folders themselves (empty or not) are not objects.
    Symlinks are followed only while they stay inside the bucket; listings do
    not descend into symlinked folders (no cycles), though reads through them
    work.
    """

    def __init__(self, root: str) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise InterfaceError(f"under-store folder {root!r} does not exist")
        self.root = real
        self.uri = "file://" + real

    # ---- path resolution (blocking, called in the worker thread) ----

    def _bucket_dir(self, bucket: str) -> str:
        if not valid_bucket_name(bucket):
            raise NoSuchBucket(f"{bucket[:64]!r} is not a valid bucket name")
        path = os.path.realpath(os.path.join(self.root, bucket))
        if not os.path.isdir(path):
            raise NoSuchBucket(f"no bucket {bucket!r}")
        return path

    def _object_path(self, bucket: str, key: str) -> str:
        check_key(key)
        base = self._bucket_dir(bucket)
        path = os.path.realpath(os.path.join(base, key))
        if not _inside(base, path):
            raise InterfaceError(f"key {key[:64]!r} resolves outside bucket {bucket!r}")
        return path

    def _stat_object(self, bucket: str, key: str) -> tuple[str, os.stat_result]:
        path = self._object_path(bucket, key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchKey(f"no key {key!r} in bucket {bucket!r}") from None
        except OSError as exc:
            _raise_os_error(exc, key)
        if not stat.S_ISREG(st.st_mode):
            raise NoSuchKey(f"no key {key!r} in bucket {bucket!r} (not a file)")
        return path, st

    # ---- the UnderStore API ----

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag (:func:`local_etag`) and mtime of one file."""
        _, st = await asyncio.to_thread(self._stat_object, bucket, key)
        return ObjectInfo(bucket, key, st.st_size, local_etag(st), st.st_mtime)

    async def get_range(
        self, bucket: str, key: str, start: int, length: int, etag: str | None = None
    ) -> bytes:
        """Exactly ``length`` bytes from ``start``.

        ObjectChanged if the file's ETag is not ``etag`` before the read, or if
        the file changes while it is read; UnderStoreError if it is too short.
        """
        if start < 0 or length < 0:
            raise InterfaceError(f"bad range: start {start}, length {length}")
        return await asyncio.to_thread(self._read, bucket, key, start, length, etag)

    def _read(self, bucket: str, key: str, start: int, length: int, etag: str | None) -> bytes:
        path = self._object_path(bucket, key)
        try:
            # O_NOFOLLOW: path is already resolved; a symlink here was swapped in since.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchKey(f"no key {key!r} in bucket {bucket!r}") from None
        except OSError as exc:
            _raise_os_error(exc, key)
        try:
            return _read_fd(fd, key, start, length, etag)
        finally:
            os.close(fd)

    async def list(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        token: str | None = None,
        max_keys: int = MAX_KEYS,
    ) -> ListPage:
        """One ListObjectsV2 page, computed by :func:`client.listing.paginate`."""
        return await asyncio.to_thread(
            self._list, bucket, prefix, delimiter, start_after, token, max_keys
        )

    def _list(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        start_after: str,
        token: str | None,
        max_keys: int,
    ) -> ListPage:
        base = self._bucket_dir(bucket)
        bound = decode_token(token) if token is not None else start_after
        keys = _entries(base, prefix, delimiter, bound)
        try:
            return paginate(
                keys,
                prefix=prefix,
                delimiter=delimiter,
                start_after=start_after,
                token=token,
                max_keys=max_keys,
            )
        except OSError as exc:  # an unreadable folder: fail rather than list part of it
            raise UnderStoreError(f"listing {bucket!r}: {exc}") from None

    async def list_buckets(self) -> builtins.list[BucketInfo]:
        """Sub-folders of the root with valid bucket names, by name; created = folder ctime."""
        return await asyncio.to_thread(self._list_buckets)

    def _list_buckets(self) -> builtins.list[BucketInfo]:
        out: builtins.list[BucketInfo] = []
        try:
            with os.scandir(self.root) as it:
                for entry in it:
                    if valid_bucket_name(entry.name) and entry.is_dir():
                        out.append(BucketInfo(entry.name, entry.stat().st_ctime))
        except OSError as exc:
            raise UnderStoreError(f"listing buckets in {self.root}: {exc}") from None
        return sorted(out, key=lambda b: b.name)

    async def head_bucket(self, bucket: str) -> None:
        """NoSuchBucket unless ``bucket`` is a sub-folder of the root."""
        await asyncio.to_thread(self._bucket_dir, bucket)

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""


def _read_fd(fd: int, key: str, start: int, length: int, etag: str | None) -> bytes:
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        raise NoSuchKey(f"no key {key!r} (not a file)")
    tag = local_etag(before)
    if etag is not None and tag != etag:
        raise ObjectChanged(f"{key!r} is now version {tag}, not {etag}")
    if start + length > before.st_size:
        raise UnderStoreError(f"{key!r} has {before.st_size} bytes, range ends at {start + length}")
    chunks: list[bytes] = []
    got = 0
    while got < length:  # pread returns at most ~2 GiB per call on Linux
        chunk = os.pread(fd, length - got, start + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    # Comparing the stat after the read catches a write that raced with it
    # (a replace by rename is harmless: the open fd still reads the old file).
    if local_etag(os.fstat(fd)) != tag:
        raise ObjectChanged(f"{key!r} changed while it was read")
    if got != length:
        raise UnderStoreError(f"short read of {key!r}: {got} of {length} bytes")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _raise_os_error(exc: OSError, key: str) -> NoReturn:
    if exc.errno == errno.ENAMETOOLONG:
        raise InterfaceError(f"key {key[:64]!r}: a path segment is too long for this store")
    raise UnderStoreError(f"{key[:64]!r}: {exc.strerror or exc}")


# ---- listing ------------------------------------------------------------------


def _entries(base: str, prefix: str, delimiter: str, bound: str) -> Iterator[ListEntry]:
    """ListEntries below the folder ``prefix`` points into, in S3 order, stat'ed lazily.

    Only that folder's sub-tree is walked. With the ``/`` delimiter only its
    top level is read: a sub-folder becomes one synthetic key (``name/``, which
    rolls up into the common prefix) if it holds any file at all, checked only
    when the listing reaches it. Items at or before ``bound`` are dropped
    unstat'ed (paginate would skip them anyway).
    """
    head, _, name_prefix = prefix.rpartition("/")
    if "\0" in prefix or not _name_ok(prefix):
        return  # no valid key starts with such a prefix
    if head and any(s in ("", ".", "..") for s in head.split("/")):
        return
    top = os.path.join(base, head) if head else base
    # Listings never enter symlinked folders, so neither does the starting one.
    if os.path.realpath(top) != top or not os.path.isdir(top):
        return
    rel = head + "/" if head else ""
    if delimiter == "/":
        names = sorted(_top_level(top, rel, base, name_prefix))
        for key, path, is_dir in names:
            if key <= bound:
                continue
            if is_dir:
                if _has_file(path, base, MAX_KEY_BYTES - _key_bytes(key)):
                    # Size and ETag are never read: paginate rolls this key up.
                    yield ListEntry(key, 0, "", 0.0)
            elif (entry := _stat_entry(key, path)) is not None:
                yield entry
        return
    found: list[tuple[str, str]] = []
    _walk(top, rel, base, name_prefix, found)
    found.sort()
    for key, path in found:
        if key > bound and (entry := _stat_entry(key, path)) is not None:
            yield entry


def _kind(entry: os.DirEntry[str], base: str) -> str | None:
    """'file', 'dir' or None (skip) for one directory entry of a bucket."""
    if not _name_ok(entry.name):
        return None
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    if entry.is_symlink():
        # A symlinked file counts if it stays inside the bucket; symlinked
        # folders are never descended (cycles, and the target is listed anyway).
        real = os.path.realpath(entry.path)
        if _inside(base, real) and os.path.isfile(real):
            return "file"
    return None


def _top_level(top: str, rel: str, base: str, name_prefix: str) -> Iterator[tuple[str, str, bool]]:
    with os.scandir(top) as it:
        for entry in it:
            if not entry.name.startswith(name_prefix):
                continue
            kind = _kind(entry, base)
            if kind is not None:
                key = rel + entry.name + ("/" if kind == "dir" else "")
                if _key_bytes(key) <= MAX_KEY_BYTES:
                    yield key, entry.path, kind == "dir"


def _walk(folder: str, rel: str, base: str, name_prefix: str, out: list[tuple[str, str]]) -> None:
    try:
        it = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return  # removed while we walked
    with it:
        for entry in it:
            if not entry.name.startswith(name_prefix):
                continue
            kind = _kind(entry, base)
            key = rel + entry.name
            if kind is None or _key_bytes(key) > MAX_KEY_BYTES - (kind == "dir"):
                continue  # too deep for any key: also bounds the recursion
            if kind == "dir":
                _walk(entry.path, key + "/", base, "", out)
            else:
                out.append((key, entry.path))


def _has_file(folder: str, base: str, room: int) -> bool:
    """Whether a file with a key of at most ``room`` more bytes lies below ``folder``.

    Stops at the first one found.
    """
    try:
        with os.scandir(folder) as it:
            for entry in it:
                kind = _kind(entry, base)
                if kind is None:
                    continue
                need = _key_bytes(entry.name)
                if kind == "file" and need <= room:
                    return True
                if kind == "dir" and need < room and _has_file(entry.path, base, room - need - 1):
                    return True
    except OSError:
        pass  # vanished or unreadable: nothing listable below
    return False


def _key_bytes(key: str) -> int:
    return len(key.encode("utf-8"))


def _stat_entry(key: str, path: str) -> ListEntry | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # removed since the walk
    if not stat.S_ISREG(st.st_mode):
        return None
    return ListEntry(key, st.st_size, local_etag(st), st.st_mtime)
