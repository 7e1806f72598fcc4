"""The pure parts of the fsspec adapter: paths, ranges, directory names (no cluster needed)."""

from __future__ import annotations

import pytest
from pipecache.client.fsspec import PipecacheFileSystem, _clamp

strip = PipecacheFileSystem._strip_protocol


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("pipecache://b/k/x.bin", "b/k/x.bin"),
        ("pipecache::b/k", "b/k"),
        ("b/k/x.bin", "b/k/x.bin"),
        ("/b/k/", "b/k"),
        ("pipecache://b", "b"),
        ("pipecache://", ""),
        ("", ""),
    ],
)
def test_strip_protocol(path: str, want: str) -> None:
    assert strip(path) == want


def test_strip_protocol_lists() -> None:
    assert strip(["pipecache://a/b", "c/"]) == ["a/b", "c"]


@pytest.mark.parametrize(
    ("start", "end", "want"),
    [
        (None, None, (0, 100)),
        (10, 20, (10, 20)),
        (-10, None, (90, 100)),  # suffix
        (10, -10, (10, 90)),
        (-200, None, (0, 100)),  # a suffix longer than the object
        (150, None, (100, 100)),  # past the end: empty
        (50, 500, (50, 100)),
        (None, -200, (0, 0)),
    ],
)
def test_clamp(start: int | None, end: int | None, want: tuple[int, int]) -> None:
    assert _clamp(100, start, end) == want
    lo, hi = want
    data = bytes(range(100))
    assert data[lo:hi] == data[start:end]  # the same bytes Python slicing would give


def test_parents() -> None:
    got = PipecacheFileSystem._parents("b/dir", "b/dir/x/y/z.txt")
    assert list(got) == ["b/dir/x", "b/dir/x/y"]
    assert all(i["type"] == "directory" for i in got.values())
    assert PipecacheFileSystem._parents("b", "b/top.txt") == {}
    assert list(PipecacheFileSystem._parents("b", "b/marker/")) == []
