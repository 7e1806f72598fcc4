"""Block math: ids and the mapping of byte ranges onto blocks."""

from __future__ import annotations

import random

import pytest
import xxhash
from pipecache.tiering.blocks import (
    BlockSpan,
    block_count,
    block_extent,
    block_id,
    is_block_id,
    spans,
)


def _reference_id(mount: str, key: str, etag: str, index: int) -> str:
    """The documented id layout, rebuilt independently: length-prefixed parts, NUL, index."""
    raw = b""
    for part in (mount, key, etag):
        enc = part.encode()
        raw += len(enc).to_bytes(4, "big") + enc + b"\x00"
    return xxhash.xxh3_64_hexdigest(raw + index.to_bytes(8, "big"))


def test_block_id_is_stable_across_versions_of_the_code() -> None:
    # Ids are persisted on SSD and exchanged between nodes: the layout must not drift.
    for args in [("m", "k", "e", 0), ("bucket", "dir/file.parquet", '"abc-3"', 17)]:
        assert block_id(*args) == _reference_id(*args)


def test_block_id_is_well_formed() -> None:
    bid = block_id("m", "key", "etag", 3)
    assert is_block_id(bid)
    assert len(bid) == 16


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("m", "k", "e", 0), ("m", "k", "e", 1)),
        (("m", "k", "e", 0), ("m", "k", "f", 0)),
        (("m", "k", "e", 0), ("m", "j", "e", 0)),
        (("m", "k", "e", 0), ("n", "k", "e", 0)),
        # Same concatenation, different split: the length prefixes keep them apart.
        (("m", "ab", "c", 0), ("m", "a", "bc", 0)),
        (("m", "a\x00", "b", 0), ("m", "a", "\x00b", 0)),
    ],
)
def test_block_ids_are_distinct(a: tuple[str, str, str, int], b: tuple[str, str, str, int]) -> None:
    assert block_id(*a) != block_id(*b)


def test_block_ids_do_not_collide_over_many_blocks() -> None:
    ids = {block_id("m", f"key{k}", "etag", i) for k in range(50) for i in range(100)}
    assert len(ids) == 5000


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0123456789abcde",
        "0123456789abcdef0",
        "0123456789ABCDEF",
        "0123456789abcdeg",
        "../../etc/pass",
    ],
)
def test_is_block_id_rejects_malformed(value: str) -> None:
    assert not is_block_id(value)


def test_block_count_and_extent() -> None:
    assert block_count(0, 4) == 0
    assert block_count(1, 4) == 1
    assert block_count(8, 4) == 2
    assert block_count(9, 4) == 3
    assert block_extent(2, 9, 4) == (8, 1)  # the short last block
    assert block_extent(0, 9, 4) == (0, 4)


@pytest.mark.parametrize(("index", "size"), [(-1, 9), (3, 9), (0, 0)])
def test_block_extent_out_of_range(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        block_extent(index, size, 4)


@pytest.mark.parametrize(("size", "bs"), [(-1, 4), (4, 0), (4, -4)])
def test_block_count_rejects_bad_arguments(size: int, bs: int) -> None:
    with pytest.raises(ValueError):
        block_count(size, bs)


def test_spans_of_an_empty_object() -> None:
    assert spans(0, 4) == []
    assert spans(0, 4, 0, 10) == []


def test_span_across_a_boundary() -> None:
    assert spans(10, 4, 3, 6) == [BlockSpan(0, 3, 4, 4), BlockSpan(1, 0, 2, 4)]


def test_spans_clamp_end_to_size() -> None:
    out = spans(10, 4, 6, 1000)
    assert [(s.index, s.start, s.end, s.block_length) for s in out] == [(1, 2, 4, 4), (2, 0, 2, 2)]
    assert out[-1].whole


def test_whole_object_spans_are_whole_blocks() -> None:
    out = spans(10, 4)
    assert [s.index for s in out] == [0, 1, 2]
    assert all(s.whole for s in out)
    assert sum(s.length for s in out) == 10


@pytest.mark.parametrize(("start", "end"), [(-1, 4), (5, 4), (11, None)])
def test_spans_reject_bad_ranges(start: int, end: int | None) -> None:
    with pytest.raises(ValueError):
        spans(10, 4, start, end)


def test_spans_cover_exactly_the_range() -> None:
    """Against brute force: every byte of [start, end) once, in order, nothing else."""
    rng = random.Random(7)
    for _ in range(300):
        size, bs = rng.randrange(0, 60), rng.randrange(1, 9)
        start = rng.randrange(0, size + 1)
        end = rng.randrange(start, size + 8)
        got = [
            s.index * bs + off for s in spans(size, bs, start, end) for off in range(s.start, s.end)
        ]
        assert got == list(range(start, min(end, size)))
        for s in spans(size, bs, start, end):
            assert (s.index * bs, s.block_length) == block_extent(s.index, size, bs)
            assert 0 <= s.start < s.end <= s.block_length
