"""An fsspec filesystem over the pipecache client: ``pipecache://bucket/key``.

    import fsspec
    fs = fsspec.filesystem("pipecache", master="http://127.0.0.1:9000")
    fs.cat("datasets/train/part-0001.parquet", start=0, end=1024)
    with fsspec.open("pipecache://datasets/labels.csv", "rt", master=...) as f:
        ...

Libraries that take an fsspec URL (pandas, PyArrow, Hugging Face datasets...)
then read through the cache, with bytes coming straight from the workers.

Theory of operation
-------------------
This module is a thin adapter: every method maps an fsspec call onto one or a
few :class:`~pipecache.client.Client` calls, and the client does the real work
(placement, read-ahead, metadata caching, retries on a changed object).

* One client per filesystem instance, created lazily on the loop fsspec runs
  the coroutines on (fsspec's IO thread, or the caller's loop when
  ``asynchronous=True``), because an aiohttp session is bound to one loop.
* The client is closed by :meth:`PipecacheFileSystem.close` (or ``aclose``,
  ``async with``), and otherwise by a ``weakref.finalize`` hook, as s3fs does:
  fsspec caches instances, so most of them live until the interpreter exits.
* No fsspec ``dircache``: the client already caches object metadata (with a
  short TTL), and a second listing cache would only add staleness.
* Paths are ``bucket/key``; directories are key prefixes ending in ``/``, as
  in S3: ``mkdir`` of a bucket creates it, of anything deeper does nothing.
* Writes go through the client to the under-store (``client.uploads``): a
  file opened for writing is one PUT when it stays under its buffer
  (``block_size``, at least 5 MiB), else a multipart upload of one part per
  buffer. The object appears whole when the file closes, or not at all: an
  exception inside ``with fs.open(path, "wb")`` stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

from fsspec.asyn import AbstractAsyncStreamedFile, AsyncFileSystem, _run_coros_in_chunks, sync, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractBufferedFile
from fsspec.utils import stringify_path

from ..tiering.errors import BucketAlreadyOwnedByYou, BucketNotEmpty, NoSuchBucket, NoSuchKey
from .client import Client, Range, connect
from .protocol import BucketInfo, ListEntry, ObjectInfo
from .uploads import MIN_PART, Upload

DEFAULT_MASTER = "http://127.0.0.1:9000"
PROTOCOL = "pipecache"
WRITE_BLOCK_SIZE = 8 * 1024 * 1024
"""Default buffer (and multipart part) size of files open for writing."""

Info = dict[str, Any]

# Close tasks scheduled from a finalizer running on the loop's own thread: the
# loop keeps only weak references to tasks, so hold them until they finish.
_closing: set[asyncio.Task[None]] = set()
# Clients a forked child inherited from its parent (see close_session).
_inherited: list[Client] = []


@contextlib.contextmanager
def _not_found(path: str) -> Iterator[None]:
    """Turn the client's typed errors into the OSErrors fsspec callers expect."""
    try:
        yield
    except (NoSuchKey, NoSuchBucket) as exc:
        raise FileNotFoundError(errno.ENOENT, exc.message, path) from exc
    except BucketAlreadyOwnedByYou as exc:
        raise FileExistsError(errno.EEXIST, exc.message, path) from exc
    except BucketNotEmpty as exc:
        raise OSError(errno.ENOTEMPTY, exc.message, path) from exc


async def _close_at_shutdown(client: Client) -> AsyncGenerator[None, None]:
    """Close ``client`` when its loop shuts down (asyncio.run, asyncio.Runner, pytest-asyncio).

    The loop tracks every started async generator and closes the ones still
    suspended in ``shutdown_asyncgens`` before it closes; nothing else tells us
    that the loop of a forgotten asynchronous filesystem is ending, and after it
    has closed, the client's sockets can no longer be closed cleanly.
    """
    try:
        yield
    finally:
        await client.close()


def _file_info(bucket: str, key: str, size: int, etag: str, last_modified: float) -> Info:
    # ETag quoted as S3 and s3fs report it, so code written against s3fs reads it unchanged.
    return {
        "name": f"{bucket}/{key}",
        "size": size,
        "type": "file",
        "ETag": f'"{etag}"',
        "LastModified": datetime.fromtimestamp(last_modified, tz=UTC),
    }


def _entry_info(bucket: str, e: ListEntry) -> Info:
    return _file_info(bucket, e.key, e.size, e.etag, e.last_modified)


def _object_info(info: ObjectInfo) -> Info:
    return _file_info(info.bucket, info.key, info.size, info.etag, info.last_modified)


def _dir_info(name: str) -> Info:
    return {"name": name.rstrip("/"), "size": 0, "type": "directory"}


def _bucket_info(b: BucketInfo) -> Info:
    out = _dir_info(b.name)
    out["CreationDate"] = datetime.fromtimestamp(b.created, tz=UTC)
    return out


def _clamp(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """fsspec's [start, end) with negatives counted from the end, clamped to the object."""
    lo = 0 if start is None else (size + start if start < 0 else start)
    hi = size if end is None else (size + end if end < 0 else end)
    return max(0, min(lo, size)), max(0, min(hi, size))


class PipecacheFileSystem(AsyncFileSystem):  # type: ignore[misc]  # fsspec is untyped
    """fsspec filesystem for ``pipecache://bucket/key`` URLs.

    Reads come through the cache; writes go through to the under-store.

    :param master: the master's URL (default ``$PIPECACHE_MASTER``, else
        ``http://127.0.0.1:9000``).
    :param read_ahead: blocks fetched ahead of a reader (see ``ClientOptions``).
    :param timeout: seconds for one RPC or one block GET.
    :param metadata_ttl: seconds object metadata is reused without asking the master.
    :param asynchronous: True when used from async code: call the ``_``-prefixed
        coroutines and ``open_async``. The client closes with ``await fs.aclose()``,
        ``async with fs``, or else when its loop shuts down (``asyncio.run``).
    :param loop: the loop to run on when not asynchronous (default: fsspec's IO thread).
    :param default_block_size: buffer size of files from :meth:`open`.
    """

    protocol = PROTOCOL
    root_marker = ""
    default_block_size = 4 * 1024 * 1024

    def __init__(
        self,
        master: str | None = None,
        *,
        read_ahead: int | None = None,
        timeout: float | None = None,
        metadata_ttl: float | None = None,
        asynchronous: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        default_block_size: int | None = None,
        default_cache_type: str = "readahead",
        **kwargs: Any,
    ) -> None:
        super().__init__(asynchronous=asynchronous, loop=loop, **kwargs)
        self.master = master or os.environ.get("PIPECACHE_MASTER") or DEFAULT_MASTER
        opts = {"read_ahead": read_ahead, "timeout": timeout, "metadata_ttl": metadata_ttl}
        self.client_options: dict[str, Any] = {k: v for k, v in opts.items() if v is not None}
        self.default_block_size = default_block_size or self.default_block_size
        self.default_cache_type = default_cache_type
        self._client: Client | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._finalizer: weakref.finalize[..., PipecacheFileSystem] | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    # ---- lifecycle ---------------------------------------------------------

    async def set_session(self) -> Client:
        """The pipecache client of this filesystem, started on the running loop on first use."""
        running = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not running:
            # fsspec caches instances, so an asynchronous one can outlive the loop
            # (one pytest test, one asyncio.run) it was first used on.
            self._release()
        if self._client is None:
            client = connect(self.master, **self.client_options)
            self._client, self._client_loop = client, running
            await client.start()
            self._finalizer = weakref.finalize(self, self.close_session, running, client, os.getpid())
            if self.asynchronous:
                self._closer = _close_at_shutdown(client)
                await anext(self._closer)
        return self._client

    async def aclose(self) -> None:
        """Close the client (it is recreated if the filesystem is used again)."""
        if self._client is not None and self._client_loop is not asyncio.get_running_loop():
            self._release()
            return
        client, closer = self._client, self._closer
        self._client = self._closer = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if closer is not None:
            await closer.aclose()  # its `finally` closes the client
        elif client is not None:
            await client.close()

    close = sync_wrapper(aclose)

    async def __aenter__(self) -> PipecacheFileSystem:
        await self.set_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _release(self) -> None:
        """Drop the client without awaiting (used when its loop is gone or elsewhere)."""
        if self._finalizer is not None:
            self._finalizer()  # runs close_session once, then detaches itself
        self._client = self._finalizer = self._closer = None

    @staticmethod
    def close_session(loop: asyncio.AbstractEventLoop, client: Client, pid: int | None = None) -> None:
        """Close ``client`` from synchronous code: the finalizer of a forgotten filesystem.

        ``pid``: the process that started the client; elsewhere it is left alone.
        """
        if pid is not None and pid != os.getpid():
            # A forked child (a DataLoader worker) dropping the parent's instances,
            # as fsspec does after a fork: closing the inherited sockets would
            # unregister them from the epoll set the child shares with the parent
            # and stall the parent's reads. Keep them, unused, for the child's life.
            _inherited.append(client)
            return
        if loop.is_running() and not loop.is_closed():
            try:
                on_loop = asyncio.get_running_loop() is loop
            except RuntimeError:
                on_loop = False
            if on_loop:
                # Blocking here would deadlock the loop: schedule the close instead.
                task = loop.create_task(client.close())
                _closing.add(task)
                task.add_done_callback(_closing.discard)
                return
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=2)
                return
        # The loop is gone: close the sockets by hand, so aiohttp does not warn
        # about an unclosed session when it is collected (s3fs does the same).
        session = client._session
        if session is not None and session.connector is not None:
            with contextlib.suppress(Exception):
                session.connector._close()

    # ---- paths -------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """``pipecache://bucket/key``, ``/bucket/key/`` or ``bucket/key`` -> ``bucket/key``."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        for head in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
            if path.startswith(head):
                path = path[len(head) :]
        return path.strip("/")

    def split_path(self, path: str) -> tuple[str, str]:
        """``(bucket, key)`` of a path; the key is "" for a bucket or the root."""
        bucket, _, key = self._strip_protocol(path).partition("/")
        return bucket, key

    # ---- metadata ----------------------------------------------------------

    async def _info(self, path: str, refresh: bool = False, **kwargs: Any) -> Info:
        """fsspec's info; ``refresh=True`` asks the master instead of the client's metadata cache."""
        bucket, key = self.split_path(path)
        if not bucket:
            return _dir_info("")
        pc = await self.set_session()
        with _not_found(path):
            if not key:
                await pc.head_bucket(bucket)
                return _dir_info(bucket)
            try:
                return _object_info(await pc.stat(bucket, key, fresh=refresh))
            except NoSuchKey:
                pass  # maybe a directory: a prefix other keys sit under
            if await self._has_children(pc, bucket, key):
                return _dir_info(f"{bucket}/{key}")
        raise FileNotFoundError(errno.ENOENT, "no such key or prefix", path)

    async def _has_children(self, pc: Client, bucket: str, key: str) -> bool:
        page = await pc.ls(bucket, key + "/", delimiter="/", max_keys=1)
        return bool(page.entries or page.prefixes)

    async def _isdir(self, path: str) -> bool:
        # One listing call, where the default (_info) would stat the key first.
        bucket, key = self.split_path(path)
        if not bucket:
            return True
        pc = await self.set_session()
        try:
            if not key:
                await pc.head_bucket(bucket)
                return True
            return await self._has_children(pc, bucket, key)
        except NoSuchBucket:
            return False

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Info] | list[str]:
        bucket, key = self.split_path(path)
        pc = await self.set_session()
        if not bucket:
            out = [_bucket_info(b) for b in await pc.buckets()]
        else:
            with _not_found(path):
                out = await self._ls_prefix(pc, bucket, f"{key}/" if key else "")
            if not out and key:
                # A file lists as itself (as in fsspec's local fs); an empty folder marker as nothing.
                info = await self._info(path)
                out = [info] if info["type"] == "file" else []
        return out if detail else [o["name"] for o in out]

    async def _ls_prefix(self, pc: Client, bucket: str, prefix: str) -> list[Info]:
        """One level under ``prefix``: objects and common prefixes, across all pages."""
        out: list[Info] = []
        token: str | None = None
        while True:
            page = await pc.ls(bucket, prefix, delimiter="/", token=token)
            out += [_dir_info(f"{bucket}/{p}") for p in page.prefixes]
            # A "folder marker" object named exactly like the prefix is the directory itself.
            out += [_entry_info(bucket, e) for e in page.entries if e.key != prefix]
            if not page.truncated or not page.next_token:
                return sorted(out, key=lambda o: o["name"])
            token = page.next_token

    async def _find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> list[str] | dict[str, Info]:
        """Every object under ``path``, from one flat listing (no per-directory requests)."""
        bucket, key = self.split_path(path)
        if maxdepth is not None or not bucket:
            # Depth-limited (or over every bucket): fsspec's walk, one listing per directory.
            found: list[str] | dict[str, Info] = await super()._find(
                path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs
            )
            return found
        root = f"{bucket}/{key}" if key else bucket
        pc = await self.set_session()
        out: dict[str, Info] = {}
        try:
            async for e in pc.walk(bucket, f"{key}/" if key else ""):
                name = f"{bucket}/{e.key}"
                if withdirs:
                    out.update(self._parents(root, name))
                if not e.key.endswith("/"):
                    out[name] = _entry_info(bucket, e)
                elif withdirs:  # a folder marker ("empty/") is a directory, not a file
                    out[name.rstrip("/")] = _dir_info(name)
        except NoSuchBucket:
            return {} if detail else []
        if withdirs and out:
            out[root] = _dir_info(root)
        if not out and key:
            with contextlib.suppress(FileNotFoundError):
                info = await self._info(path)
                if info["type"] == "file":
                    out[root] = info
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    @staticmethod
    def _parents(root: str, name: str) -> dict[str, Info]:
        """The directories between ``root`` and ``name`` (exclusive of both)."""
        parts = name[len(root) + 1 :].rstrip("/").split("/")[:-1]
        return {d: _dir_info(d) for d in (f"{root}/{'/'.join(parts[: i + 1])}" for i in range(len(parts)))}

    # ---- data --------------------------------------------------------------

    async def _stat(self, path: str) -> ObjectInfo:
        """The object's metadata; FileNotFoundError if it is missing or a directory."""
        bucket, key = self.split_path(path)
        if not key:
            raise IsADirectoryError(errno.EISDIR, "a bucket is not a file", path)
        pc = await self.set_session()
        with _not_found(path):
            return await pc.stat(bucket, key)

    async def _read(self, info: ObjectInfo, start: int, end: int) -> bytes:
        """Bytes [start, end) of exactly this version of the object (ObjectChanged if replaced)."""
        if end <= start:
            return b""
        pc = await self.set_session()
        with _not_found(f"{info.bucket}/{info.key}"):
            async with pc.open(info.bucket, info.key, Range(start, end), info=info) as reader:
                return await reader.read()

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        info = await self._stat(path)
        lo, hi = _clamp(info.size, start, end)
        if hi <= lo:
            return b""
        bucket, key = self.split_path(path)
        pc = await self.set_session()
        with _not_found(path):
            # Through get(), not the pinned reader: get() rereads once if the object was replaced.
            return await pc.get(bucket, key, Range(lo, hi))

    async def _get_file(
        self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK, **kwargs: Any
    ) -> None:
        """Stream an object to a local file, block by block (never whole in memory)."""
        try:
            info = await self._stat(rpath)
        except (FileNotFoundError, IsADirectoryError):
            # Stat first, list second: files are the common case and cost one call.
            if not await self._isdir(rpath):
                raise
            os.makedirs(lpath, exist_ok=True)
            return
        callback.set_size(info.size)
        pc = await self.set_session()
        try:
            with open(lpath, "wb") as f:  # noqa: ASYNC230  # the writes go to a thread below
                async for chunk in self._stream(pc, info):
                    # Off the loop thread: the reader's read-ahead fetches keep running meanwhile.
                    await asyncio.to_thread(f.write, chunk)
                    callback.relative_update(len(chunk))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(lpath)  # no truncated file that looks like a good copy
            raise

    async def _stream(self, pc: Client, info: ObjectInfo) -> AsyncIterator[bytes]:
        with _not_found(f"{info.bucket}/{info.key}"):
            async with pc.open(info.bucket, info.key, info=info) as reader:
                async for chunk in reader:
                    yield chunk

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        cache_type: str | None = None,
        cache_options: dict[str, Any] | None = None,
        autocommit: bool = True,
        **kwargs: Any,
    ) -> PipecacheFile | PipecacheWriteFile:
        """A buffered file: seekable for reading ("rb"), or written on close ("wb").

        Text modes are wrapped by fsspec's ``open``.
        """
        if self.asynchronous:
            raise NotImplementedError("an asynchronous filesystem opens files with `await fs.open_async()`")
        if mode == "wb":
            if not autocommit:
                raise NotImplementedError("pipecache has no fsspec transactions: write with autocommit")
            upload: Upload = sync(self.loop, self._upload, path, kwargs.get("ContentType"))
            return PipecacheWriteFile(self, path, upload, block_size or WRITE_BLOCK_SIZE)
        if mode != "rb":
            raise NotImplementedError(f"mode {mode!r}: pipecache files are read (rb) or written whole (wb)")
        info: ObjectInfo = sync(self.loop, self._stat, path)
        return PipecacheFile(
            self,
            info,
            block_size=block_size or self.default_block_size,
            cache_type=cache_type or self.default_cache_type,
            cache_options=cache_options,
        )

    async def open_async(
        self, path: str, mode: str = "rb", **kwargs: Any
    ) -> PipecacheStreamedFile | PipecacheAsyncWriteFile:
        """An unbuffered file for async code: ``await f.read(n)``, ``f.seek``; or one to
        ``await f.write(data)`` (mode "wb"), stored on ``await f.close()``."""
        if kwargs.get("compression"):
            raise NotImplementedError("open_async does not compress")
        if mode == "wb":
            upload = await self._upload(path, kwargs.get("ContentType"))
            return PipecacheAsyncWriteFile(self, path, upload, kwargs.get("block_size") or WRITE_BLOCK_SIZE)
        if mode != "rb":
            raise NotImplementedError(f"mode {mode!r}: pipecache files are read (rb) or written whole (wb)")
        return PipecacheStreamedFile(self, await self._stat(path))

    # ---- writes ------------------------------------------------------------

    async def _upload(self, path: str, content_type: str | None = None) -> Upload:
        bucket, key = self.split_path(path)
        if not key:
            raise IsADirectoryError(errno.EISDIR, "a bucket is not a file", path)
        return Upload(await self.set_session(), bucket, key, content_type=content_type)

    async def _pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        upload = await self._upload(path, kwargs.get("ContentType"))
        with _not_found(path):
            await upload.send(bytes(value), final=True)

    async def _put_file(
        self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK, **kwargs: Any
    ) -> None:
        """Upload a local file, streamed in parts (never whole in memory)."""
        upload = await self._upload(rpath, kwargs.get("ContentType"))
        try:
            f = open(lpath, "rb")  # noqa: ASYNC230  # opening is quick; the reads go to a thread
        except IsADirectoryError:
            return  # no directories in S3: the files under it make it
        part = max(kwargs.get("block_size") or WRITE_BLOCK_SIZE, MIN_PART)
        with _not_found(rpath), f:
            callback.set_size(os.fstat(f.fileno()).st_size)
            chunk = await asyncio.to_thread(f.read, part)
            while True:
                # One part read ahead: a full last part is sent as final, not followed by an empty one.
                following = await asyncio.to_thread(f.read, part) if len(chunk) == part else b""
                await upload.send(chunk, final=not following)
                callback.relative_update(len(chunk))
                if not following:
                    return
                chunk = following

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        """Delete an object (a missing one is fine, as in S3); a bucket path deletes the bucket
        if it is empty."""
        bucket, key = self.split_path(path)
        pc = await self.set_session()
        with _not_found(path):
            if key:
                await pc.delete(bucket, key)
            else:
                await pc.delete_bucket(bucket)

    async def _rm(
        self,
        path: str | list[str],
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Objects first, concurrently; then the buckets among the paths, once empty.

        fsspec's own ``_rm`` deletes everything at once, so a bucket's delete could
        race its objects' and find it not yet empty.
        """
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        objects = [p for p in paths if self.split_path(p)[1]]
        buckets = [p for p in paths if not self.split_path(p)[1]]
        await _run_coros_in_chunks(
            [self._rm_file(p) for p in objects], batch_size=batch_size or self.batch_size, nofiles=True
        )
        for b in buckets:
            await self._rm_file(b)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy inside the under-store (the bytes do not pass through here)."""
        (b1, k1), (b2, k2) = self.split_path(path1), self.split_path(path2)
        if not k1 or not k2:
            raise IsADirectoryError(errno.EISDIR, "copy needs two objects, not buckets", f"{path1} {path2}")
        pc = await self.set_session()
        with _not_found(path1):
            await pc.copy(b1, k1, b2, k2)

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Create a bucket (FileExistsError if it exists); deeper paths need no creating."""
        bucket, key = self.split_path(path)
        if not bucket:
            raise PermissionError(errno.EPERM, "give a bucket to create", path)
        if key:
            if create_parents:
                await self._makedirs(bucket, exist_ok=True)
            return
        pc = await self.set_session()
        # Asked first: S3 in us-east-1 (and moto) answers 200 to creating a bucket one owns.
        with contextlib.suppress(NoSuchBucket):
            await pc.head_bucket(bucket)
            raise FileExistsError(errno.EEXIST, "the bucket exists", path)
        with _not_found(path):
            await pc.create_bucket(bucket)

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        bucket, _ = self.split_path(path)
        try:
            await self._mkdir(bucket)
        except FileExistsError:
            if not exist_ok:
                raise

    async def _rmdir(self, path: str) -> None:
        """Delete an empty bucket; deeper "directories" vanish with their last object."""
        bucket, key = self.split_path(path)
        if bucket and not key:
            await self._rm_file(bucket)

    rmdir = sync_wrapper(_rmdir)  # fsspec mirrors only the methods it lists; _rmdir is not one


class PipecacheFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec is untyped
    """A read-only file pinned to the version (ETag) it was opened at.

    fsspec's cache (``cache_type``, default read-ahead) buffers ``block_size``
    bytes; each miss is one range read through the client, which fetches the
    blocks of that range from their workers in parallel. If the object is
    replaced while the file is open, reads raise ObjectChanged rather than mix
    bytes of two versions.
    """

    def __init__(self, fs: PipecacheFileSystem, info: ObjectInfo, **kwargs: Any) -> None:
        self.object_info = info
        self._details = _object_info(info)
        super().__init__(fs, f"{info.bucket}/{info.key}", "rb", size=info.size, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = sync(self.fs.loop, self.fs._read, self.object_info, start, min(end, self.size))
        return data


class PipecacheStreamedFile(AbstractAsyncStreamedFile):  # type: ignore[misc]  # fsspec is untyped
    """The async counterpart of :class:`PipecacheFile` (no buffering), from ``open_async``."""

    def __init__(self, fs: PipecacheFileSystem, info: ObjectInfo) -> None:
        self.object_info = info
        self._details = _object_info(info)
        super().__init__(fs, f"{info.bucket}/{info.key}", "rb", size=info.size, cache_type="none")

    async def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = await self.fs._read(self.object_info, start, min(end, self.size))
        return data


class PipecacheWriteFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec is untyped
    """A file open for writing: buffered, stored when closed (see ``client.uploads``).

    Leaving a ``with`` block on an exception stores nothing.
    """

    def __init__(self, fs: PipecacheFileSystem, path: str, upload: Upload, block_size: int) -> None:
        self.upload = upload
        super().__init__(fs, path, "wb", block_size=max(block_size, MIN_PART), cache_type="none")

    def _initiate_upload(self) -> None:
        """Nothing yet: a file that fits one buffer is a single PUT at close."""

    def _upload_chunk(self, final: bool = False) -> bool:
        sync(self.fs.loop, self.upload.send, self.buffer.getvalue(), final=final)
        return True

    def discard(self) -> None:
        sync(self.fs.loop, self.upload.abort)

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
            return
        self.discard()
        self.closed = True


class PipecacheAsyncWriteFile(AbstractAsyncStreamedFile):  # type: ignore[misc]  # fsspec is untyped
    """The async counterpart of :class:`PipecacheWriteFile`, from ``open_async(path, "wb")``."""

    def __init__(self, fs: PipecacheFileSystem, path: str, upload: Upload, block_size: int) -> None:
        self.upload = upload
        super().__init__(fs, path, "wb", block_size=max(block_size, MIN_PART), cache_type="none")

    async def _initiate_upload(self) -> None:
        """Nothing yet: a file that fits one buffer is a single PUT at close."""

    async def _upload_chunk(self, final: bool = False) -> bool:
        await self.upload.send(self.buffer.getvalue(), final=final)
        return True

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            await self.close()
            return
        await self.upload.abort()
        self.closed = True
