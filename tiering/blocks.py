"""Block math: block ids and the mapping of byte ranges onto fixed-size blocks.

An object version is cut into fixed-size blocks (the last one may be shorter).
A block's id hashes the object's mount, key, ETag and the block's index, so a
changed object (new ETag) never shares ids with its old version: stale blocks
are never served, they simply age out of the cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import xxhash

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
MIN_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 256 * 1024 * 1024

BlockId = str
"""A block id on the wire and on disk: 16 lowercase hex digits of an xxh3_64."""

_SEP = b"\x00"
_ID = re.compile(r"[0-9a-f]{16}")


def block_id(mount: str, key: str, etag: str, index: int) -> BlockId:
    """Return the id of block ``index`` of the object version (mount, key, etag).

    Callers pass a :func:`version_tag` as ``etag`` (see :func:`object_block_id`).
    """
    h = xxhash.xxh3_64()
    # NUL cannot occur in a bucket name, and the key/etag are length-prefixed,
    # so distinct tuples never hash the same input bytes.
    for part in (mount, key, etag):
        raw = part.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
        h.update(_SEP)
    h.update(index.to_bytes(8, "big"))
    return h.hexdigest()


def version_tag(etag: str, size: int, block_size: int) -> str:
    """The object version as its blocks see it: ETag, size and the block size that cut it.

    Binding size and block size into the id means a request that names an object
    with a wrong size or block size names *other* blocks, so it can never store
    wrongly cut bytes under the id honest readers use.
    """
    return f"{etag}\x00{size}\x00{block_size}"


def object_block_id(mount: str, key: str, etag: str, size: int, block_size: int, index: int) -> BlockId:
    """Id of block ``index`` of an object version of ``size`` bytes cut in ``block_size`` blocks."""
    return block_id(mount, key, version_tag(etag, size, block_size), index)


def is_block_id(value: str) -> bool:
    """True when ``value`` is a well-formed block id (safe to use in a file name)."""
    # A compiled fullmatch: full block reports carry millions of ids.
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def block_count(size: int, block_size: int) -> int:
    """Number of blocks of an object of ``size`` bytes (an empty object has none)."""
    if size < 0 or block_size <= 0:
        raise ValueError("size must be >= 0 and block_size > 0")
    return -(-size // block_size)


def block_extent(index: int, size: int, block_size: int) -> tuple[int, int]:
    """Return (offset in object, length) of block ``index``."""
    count = block_count(size, block_size)
    if not 0 <= index < count:
        raise ValueError(f"block index {index} out of range for {count} blocks")
    start = index * block_size
    return start, min(block_size, size - start)


@dataclass(frozen=True, slots=True)
class BlockSpan:
    """The part of one block that a byte range covers."""

    index: int
    """Block index within the object."""
    start: int
    """First byte wanted, relative to the block's start."""
    end: int
    """One past the last byte wanted, relative to the block's start."""
    block_length: int
    """Full length of this block."""

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end == self.block_length


def spans(size: int, block_size: int, start: int = 0, end: int | None = None) -> list[BlockSpan]:
    """Map the byte range [start, end) of an object onto block spans, in order.

    ``end`` defaults to the object's size; both bounds are clamped to it.
    """
    if end is None or end > size:
        end = size
    if start < 0 or start > end:
        raise ValueError(f"bad range [{start}, {end}) for size {size}")
    out: list[BlockSpan] = []
    index = start // block_size
    pos = start
    while pos < end:
        block_start = index * block_size
        block_len = min(block_size, size - block_start)
        stop = min(end, block_start + block_len)
        out.append(BlockSpan(index, pos - block_start, stop - block_start, block_len))
        pos = stop
        index += 1
    return out
