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

Writes go to a temporary file next to the target (same folder, so the same
file system), named with :data:`TMP_PREFIX` (such names are never listed and
never accepted as keys), and are renamed over the target with ``os.replace``
once complete: a reader sees the old file or the new one, never a part. The
new file gets an mtime of "now" in nanoseconds so its ETag differs from any
earlier version even if the inode number is reused.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import NoReturn

import xxhash

from ...tiering.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InterfaceError,
    InvalidPart,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
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
log = logging.getLogger(__name__)
TMP_PREFIX = ".pipecache-tmp."
"""Name prefix of files being written: hidden from listings, refused as key segments."""
UPLOADS_DIR = ".pipecache-uploads"
"""Folder of the root where multipart uploads are staged (not a bucket name: never listed)."""
_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")
_PART_RE = re.compile(r"part-([0-9]{5})\.([0-9a-f]{32})")
_WRITE_BUFFER = 1024 * 1024
"""Bytes gathered from a streamed body before one write to disk (one thread hop)."""


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
        if segment.startswith(TMP_PREFIX):
            raise InterfaceError(f"key {key[:64]!r}: {TMP_PREFIX!r} names are reserved")


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
        """Size, ETag (:func:`local_etag`), mtime, and the content type and metadata it was put with."""
        return await asyncio.to_thread(self._head, bucket, key)

    def _head(self, bucket: str, key: str) -> ObjectInfo:
        path, st = self._stat_object(bucket, key)
        content_type, metadata = read_meta(path)
        return ObjectInfo(
            bucket, key, st.st_size, local_etag(st), st.st_mtime, content_type=content_type, metadata=metadata
        )

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

    # ---- writes ----

    def _entry_path(self, bucket: str, key: str) -> tuple[str, str]:
        """(bucket folder, path of the key's own directory entry).

        The parent is resolved but the last segment is not: writing or
        deleting a key that is a symlink replaces or removes the link, never
        its target.
        """
        check_key(key)
        base = self._bucket_dir(bucket)
        parent, name = os.path.split(os.path.join(base, key))
        path = os.path.join(os.path.realpath(parent), name)
        if not _inside(base, path):
            raise InterfaceError(f"key {key[:64]!r} resolves outside bucket {bucket!r}")
        return base, path

    def _open_temp(self, bucket: str, key: str) -> _TempFile:
        _, path = self._entry_path(bucket, key)
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
            if os.path.isdir(path) and not os.path.islink(path):
                raise InterfaceError(f"key {key[:64]!r} names a folder holding other keys")
            return _TempFile.create(parent, path)
        except (FileExistsError, NotADirectoryError):
            raise InterfaceError(f"key {key[:64]!r}: a prefix of it is an object here") from None
        except OSError as exc:
            _raise_os_error(exc, key)

    async def put(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes] | bytes,
        size: int | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Write to a temporary file, then rename it over the key (see the module docstring).

        Content type and metadata ride on the file as an extended attribute
        (:func:`write_meta`), set before the rename: they change with the bytes.
        """
        tmp = await asyncio.to_thread(self._open_temp, bucket, key)
        try:
            written = await _write_body(tmp, body)
            if size is not None and written != size:
                raise InterfaceError(f"body of {written} bytes, {size} announced")
            assert tmp.fd is not None
            await asyncio.to_thread(write_meta, tmp.fd, content_type, metadata)
            st = await asyncio.to_thread(tmp.commit, key)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(tmp.discard))
            raise
        return ObjectInfo(bucket, key, st.st_size, local_etag(st), st.st_mtime)

    async def delete(self, bucket: str, key: str) -> None:
        """Unlink the file; a missing key (or a folder) is not an error, as in S3."""
        await asyncio.to_thread(self._delete, bucket, key)

    def _delete(self, bucket: str, key: str) -> None:
        try:
            _, path = self._entry_path(bucket, key)
        except InterfaceError:
            return  # no such key can exist here
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            if exc.errno != errno.EISDIR:
                _raise_os_error(exc, key)

    async def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        """Copy the file's bytes to a temporary file and rename it over the destination."""
        st = await asyncio.to_thread(self._copy, src_bucket, src_key, dst_bucket, dst_key)
        return ObjectInfo(dst_bucket, dst_key, st.st_size, local_etag(st), st.st_mtime)

    def _copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> os.stat_result:
        src, _ = self._stat_object(src_bucket, src_key)
        tmp = self._open_temp(dst_bucket, dst_key)
        try:
            with open(src, "rb") as f:
                while chunk := f.read(_WRITE_BUFFER):
                    tmp.write(chunk)
            assert tmp.fd is not None
            write_meta(tmp.fd, *read_meta(src))  # S3's default: the copy keeps them
            return tmp.commit(dst_key)
        except BaseException:
            tmp.discard()
            raise

    async def create_bucket(self, bucket: str) -> None:
        """A new sub-folder of the root."""
        await asyncio.to_thread(self._create_bucket, bucket)

    def _create_bucket(self, bucket: str) -> None:
        if not valid_bucket_name(bucket):
            raise InterfaceError(f"{bucket[:64]!r} is not a valid bucket name")
        try:
            os.mkdir(os.path.join(self.root, bucket))
        except FileExistsError:
            raise BucketAlreadyOwnedByYou(f"bucket {bucket!r} exists") from None
        except OSError as exc:
            raise UnderStoreError(f"creating bucket {bucket!r}: {exc.strerror or exc}") from None

    async def delete_bucket(self, bucket: str) -> None:
        """Remove the folder (with any empty sub-folders); BucketNotEmpty if it holds a file."""
        await asyncio.to_thread(self._delete_bucket, bucket)

    def _delete_bucket(self, bucket: str) -> None:
        base = self._bucket_dir(bucket)
        if _has_file(base, base, MAX_KEY_BYTES):
            raise BucketNotEmpty(f"bucket {bucket!r} is not empty")
        link = os.path.join(self.root, bucket)
        try:
            if os.path.islink(link):
                os.unlink(link)  # the bucket is a link: remove it, leave its target alone
            else:
                shutil.rmtree(base)
        except OSError as exc:
            raise UnderStoreError(f"deleting bucket {bucket!r}: {exc.strerror or exc}") from None

    # ---- multipart uploads ----
    #
    # Parts are staged in ROOT/.pipecache-uploads/<upload id>/ (not a valid
    # bucket name, so never listed): a "meta" file naming the bucket and key,
    # and one file per part, "part-NNNNN.<md5 hex>", written like an object
    # (temporary name, then rename). Completing concatenates the named parts
    # into a temporary file next to the key, renames it over the key, and
    # removes the staging folder. Part sizes are not checked (S3 wants 5 MiB
    # but the last). The content type and metadata given at creation wait in
    # the folder's "object-meta" file and are set on the object at completion.

    def _upload_dir(self, bucket: str, key: str, upload_id: str) -> str:
        if _UPLOAD_ID_RE.fullmatch(upload_id) is None:
            raise NoSuchUpload(f"no upload {upload_id[:40]!r}")
        path = os.path.join(self.root, UPLOADS_DIR, upload_id)
        try:
            with open(os.path.join(path, "meta"), encoding="utf-8") as f:
                owner = f.read()
        except OSError:
            raise NoSuchUpload(f"no upload {upload_id!r}") from None
        if owner != f"{bucket}\n{key}":
            raise NoSuchUpload(f"upload {upload_id!r} is not for {bucket}/{key}")
        return path

    async def create_upload(
        self,
        bucket: str,
        key: str,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """A new staging folder; its id."""
        return await asyncio.to_thread(self._create_upload, bucket, key, content_type, metadata)

    def _create_upload(
        self, bucket: str, key: str, content_type: str | None, metadata: dict[str, str] | None
    ) -> str:
        self._entry_path(bucket, key)  # the key must be storable and the bucket exist
        upload_id = secrets.token_hex(16)
        path = os.path.join(self.root, UPLOADS_DIR, upload_id)
        try:
            os.makedirs(path)
            with open(os.path.join(path, "meta"), "w", encoding="utf-8") as f:
                f.write(f"{bucket}\n{key}")
            with open(os.path.join(path, "object-meta"), "wb") as f:
                f.write(_pack_meta(content_type, metadata))
        except OSError as exc:
            raise UnderStoreError(f"staging an upload: {exc.strerror or exc}") from None
        return upload_id

    async def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes] | bytes,
        size: int | None = None,
    ) -> str:
        """Stage one part (replacing an earlier one of that number); its ETag (MD5 hex)."""
        if not 1 <= part_number <= 10000:
            raise InterfaceError(f"part number {part_number} is not 1..10000")
        path = await asyncio.to_thread(self._upload_dir, bucket, key, upload_id)
        tmp = await asyncio.to_thread(_TempFile.create, path, "")
        md5 = hashlib.md5()
        try:
            written = await _write_body(tmp, body, md5)
            if size is not None and written != size:
                raise InterfaceError(f"body of {written} bytes, {size} announced")
            etag = md5.hexdigest()
            tmp.target = os.path.join(path, f"part-{part_number:05d}.{etag}")
            await asyncio.to_thread(tmp.commit, key)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(tmp.discard))
            raise
        await asyncio.to_thread(_drop_other_parts, path, part_number, etag)
        return etag

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> ObjectInfo:
        """Concatenate the named parts into the object; InvalidPart for a missing or changed one."""
        st = await asyncio.to_thread(self._complete, bucket, key, upload_id, parts)
        return ObjectInfo(bucket, key, st.st_size, local_etag(st), st.st_mtime)

    def _complete(
        self, bucket: str, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> os.stat_result:
        path = self._upload_dir(bucket, key, upload_id)
        files = []
        for number, etag in parts:
            part = os.path.join(path, f"part-{number:05d}.{etag.strip(chr(34)).lower()}")
            if _PART_RE.fullmatch(os.path.basename(part)) is None or not os.path.isfile(part):
                raise InvalidPart(f"part {number} with ETag {etag[:40]!r} was not uploaded")
            files.append(part)
        tmp = self._open_temp(bucket, key)
        try:
            for part in files:
                with open(part, "rb") as f:
                    while chunk := f.read(_WRITE_BUFFER):
                        tmp.write(chunk)
            assert tmp.fd is not None
            with contextlib.suppress(FileNotFoundError):  # staged by an older version: none
                with open(os.path.join(path, "object-meta"), "rb") as f:
                    write_meta(tmp.fd, *_unpack_meta(f.read(_META_MAX + 1)))
            st = tmp.commit(key)
        except BaseException:
            tmp.discard()
            raise
        shutil.rmtree(path, ignore_errors=True)
        return st

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Remove the staging folder; NoSuchUpload if there is none."""
        path = await asyncio.to_thread(self._upload_dir, bucket, key, upload_id)
        await asyncio.to_thread(shutil.rmtree, path, True)

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""


class _TempFile:
    """A file being written (blocking methods, called in a worker thread)."""

    def __init__(self, fd: int, path: str, target: str) -> None:
        self.fd: int | None = fd
        self.path, self.target = path, target

    @classmethod
    def create(cls, folder: str, target: str) -> _TempFile:
        """A new temporary file in ``folder`` (exclusive create, never through a symlink)."""
        path = os.path.join(folder, TMP_PREFIX + secrets.token_hex(8))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return cls(os.open(path, flags, 0o644), path, target)

    def write(self, data: bytes) -> None:
        assert self.fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def commit(self, key: str) -> os.stat_result:
        """Flush, stamp and rename over the target; the new file's stat."""
        assert self.fd is not None
        now = time.time_ns()
        os.utime(self.fd, ns=(now, now))
        os.fsync(self.fd)  # this is the real store, not a cache: survive a crash
        st = os.fstat(self.fd)
        os.close(self.fd)
        self.fd = None
        try:
            os.replace(self.path, self.target)
        except (IsADirectoryError, NotADirectoryError):
            raise InterfaceError(f"key {key[:64]!r} names a folder holding other keys") from None
        except OSError as exc:
            _raise_os_error(exc, key)
        return st

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


META_XATTR = "user.pipecache.meta"
"""Extended attribute holding an object's content type and user metadata (JSON)."""
_META_MAX = 8192
"""S3 allows 2 KB of user metadata; anything far beyond is not ours and is ignored."""
_meta_unsupported = False


def _pack_meta(content_type: str | None, metadata: dict[str, str] | None) -> bytes:
    if not content_type and not metadata:
        return b""
    return json.dumps({"content_type": content_type or "", "metadata": metadata or {}}).encode()


def _unpack_meta(raw: bytes) -> tuple[str, dict[str, str]]:
    """(content type, metadata) from an attribute value; defaults for anything malformed."""
    if not raw or len(raw) > _META_MAX:
        return "", {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return "", {}
    if not isinstance(doc, dict):
        return "", {}
    ct, meta = doc.get("content_type", ""), doc.get("metadata", {})
    if not isinstance(ct, str) or not isinstance(meta, dict):
        return "", {}
    return ct, {k: v for k, v in meta.items() if isinstance(k, str) and isinstance(v, str)}


def write_meta(fd: int, content_type: str | None, metadata: dict[str, str] | None) -> None:
    """Store the content type and metadata on the open file ``fd`` (nothing to store: nothing set).

    A file system without user extended attributes keeps the bytes but not
    these (reads then answer S3's default type), and says so once in the log.
    """
    global _meta_unsupported
    raw = _pack_meta(content_type, metadata)
    if not raw or _meta_unsupported:
        return
    try:
        os.setxattr(fd, META_XATTR, raw)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            raise
        _meta_unsupported = True
        log.warning("this file system keeps no user extended attributes: content types and "
                    "metadata of objects written to the under-store folder are not kept")


def read_meta(path: str) -> tuple[str, dict[str, str]]:
    """The content type and metadata stored on ``path`` (defaults when there are none)."""
    try:
        return _unpack_meta(os.getxattr(path, META_XATTR))
    except OSError:
        return "", {}


def _drop_other_parts(folder: str, number: int, etag: str) -> None:
    """Remove earlier uploads of part ``number`` (a part uploaded again replaces the old one)."""
    keep = f"part-{number:05d}.{etag}"
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(f"part-{number:05d}.") and entry.name != keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


async def _write_body(
    tmp: _TempFile, body: AsyncIterator[bytes] | bytes, digest: hashlib._Hash | None = None
) -> int:
    """Write ``body`` to ``tmp`` in buffers of about :data:`_WRITE_BUFFER`; the byte count."""
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        if digest is not None:
            digest.update(data)
        await asyncio.to_thread(tmp.write, data)
        return len(data)
    pending: builtins.list[bytes] = []
    buffered = written = 0
    async for chunk in body:
        if digest is not None:
            digest.update(chunk)
        pending.append(chunk)
        buffered += len(chunk)
        if buffered >= _WRITE_BUFFER:
            await asyncio.to_thread(tmp.write, b"".join(pending))
            written += buffered
            pending, buffered = [], 0
    if pending:
        await asyncio.to_thread(tmp.write, b"".join(pending))
        written += buffered
    return written


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
    if not _name_ok(entry.name) or entry.name.startswith(TMP_PREFIX):
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
