"""In-block Range parsing and block request checks (pure, no event loop)."""

from __future__ import annotations

import pytest
from pipecache.client.protocol import BlockRef
from pipecache.tiering.errors import BadRequest, InvalidRange
from pipecache.worker.blocks import ByteRange, block_length, parse_range, parse_ref


@pytest.mark.parametrize(
    ("header", "length", "expected"),
    [
        (None, 100, None),
        ("bytes=0-99", 100, ByteRange(0, 100)),
        ("bytes=0-0", 100, ByteRange(0, 1)),
        ("bytes=10-19", 100, ByteRange(10, 20)),
        ("bytes=10-1000", 100, ByteRange(10, 100)),  # end clipped to the block
        ("bytes=99-", 100, ByteRange(99, 100)),
        ("bytes=0-", 100, ByteRange(0, 100)),
        ("bytes=-10", 100, ByteRange(90, 100)),
        ("bytes=-1000", 100, ByteRange(0, 100)),  # suffix longer than the block: all of it
        ("  Bytes = 5-6 ", 100, ByteRange(5, 7)),
    ],
)
def test_parse_range(header: str | None, length: int, expected: ByteRange | None) -> None:
    assert parse_range(header, length) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=500-600"],
)
def test_unsatisfiable_range(header: str) -> None:
    with pytest.raises(InvalidRange):
        parse_range(header, 100)


def test_any_range_of_an_empty_block_is_unsatisfiable() -> None:
    for header in ("bytes=0-", "bytes=-5", "bytes=0-0"):
        with pytest.raises(InvalidRange):
            parse_range(header, 0)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=a-b",
        "bytes=5",
        "bytes=9-5",  # last before first
        "bytes=0-1,5-6",  # several ranges
        "items=0-5",
        "bytes=+1-2",
        "bytes=١-٢",  # non-ASCII digits
        "bytes=1-2-3",
    ],
)
def test_malformed_range_is_bad_request(header: str) -> None:
    with pytest.raises(BadRequest):
        parse_range(header, 100)


def test_content_range() -> None:
    assert ByteRange(10, 20).content_range(100) == "bytes 10-19/100"
    assert ByteRange(10, 20).length == 10


def _ref(**kw: object) -> BlockRef:
    base: dict[str, object] = dict(
        bucket="data", key="a/b.bin", etag="e1", index=1, size=10, block_size=4
    )
    base.update(kw)
    return BlockRef(**base)  # type: ignore[arg-type]


def test_parse_ref_accepts_a_matching_id() -> None:
    ref = _ref()
    bid = _ref().block_id()
    assert parse_ref(bid, ref.to_query()) == (bid, ref)


def test_parse_ref_refuses_another_blocks_id() -> None:
    other = _ref(index=2).block_id()
    with pytest.raises(BadRequest, match="does not match"):
        parse_ref(other, _ref().to_query())


@pytest.mark.parametrize("forged", [{"size": 9}, {"block_size": 8}, {"etag": "e2"}])
def test_parse_ref_refuses_forged_object_layouts(forged: dict[str, object]) -> None:
    # The id of the honest block, asked with another size, block size or ETag:
    # such a request would cut other bytes, so it must not be stored under this id.
    with pytest.raises(BadRequest, match="does not match"):
        parse_ref(_ref().block_id(), _ref(**forged).to_query())


@pytest.mark.parametrize("raw", ["", "xyz", "0123456789ABCDEF", "../../etc/passwd", "0" * 17])
def test_parse_ref_refuses_malformed_ids(raw: str) -> None:
    with pytest.raises(BadRequest, match="malformed block id"):
        parse_ref(raw, _ref().to_query())


def test_parse_ref_refuses_bad_queries() -> None:
    bid = _ref().block_id()
    q = _ref().to_query()
    del q["bs"]
    with pytest.raises(BadRequest):
        parse_ref(bid, q)
    with pytest.raises(BadRequest):
        parse_ref(bid, {**_ref().to_query(), "i": "-1"})


def test_block_length() -> None:
    assert block_length(_ref(index=0)) == 4
    assert block_length(_ref(index=2)) == 2  # the short last block
    assert block_length(_ref(index=0, size=0)) == 0  # the lone block of an empty object
