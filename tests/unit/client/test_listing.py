"""S3 ListObjectsV2 semantics of client.listing.paginate (pure, no event loop)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import pytest
from pipecache.client.listing import decode_token, encode_token, paginate, rollup
from pipecache.client.protocol import ListEntry, ListPage
from pipecache.tiering.errors import InterfaceError

KEYS = ["a/1", "a/2", "a/b/c", "a/b/d", "a/c", "b", "c/", "c/d/e", "c/x", "d"]


def entries(keys: Iterable[str]) -> list[ListEntry]:
    return [ListEntry(k, len(k), f"etag-{k}", 0.0) for k in keys]


def keys_of(page: ListPage) -> list[str]:
    return [e.key for e in page.entries]


def all_pages(keys: list[str], **kw: object) -> list[ListPage]:
    """Every page of a listing, following the continuation tokens."""
    pages: list[ListPage] = []
    token: str | None = None
    while True:
        page = paginate(entries(keys), token=token, **kw)  # type: ignore[arg-type]
        pages.append(page)
        if not page.truncated:
            return pages
        assert page.next_token is not None
        token = page.next_token


def flatten(pages: list[ListPage]) -> list[str]:
    """Keys and prefixes of all pages, in the order they came."""
    out: list[str] = []
    for p in pages:
        out += sorted(keys_of(p) + p.prefixes)
    return out


def test_no_delimiter_lists_every_key() -> None:
    page = paginate(entries(KEYS))
    assert keys_of(page) == KEYS
    assert page.prefixes == []
    assert not page.truncated and page.next_token is None


def test_delimiter_rolls_up_into_common_prefixes() -> None:
    page = paginate(entries(KEYS), delimiter="/")
    assert keys_of(page) == ["b", "d"]
    assert page.prefixes == ["a/", "c/"]


def test_nested_prefix_with_delimiter() -> None:
    page = paginate(entries(KEYS), prefix="a/", delimiter="/")
    assert keys_of(page) == ["a/1", "a/2", "a/c"]
    assert page.prefixes == ["a/b/"]
    page = paginate(entries(KEYS), prefix="a/b/", delimiter="/")
    assert keys_of(page) == ["a/b/c", "a/b/d"]


def test_partial_prefix_and_folder_marker() -> None:
    # "c/" is an object ending in the delimiter: it rolls up into itself, as in S3.
    page = paginate(entries(KEYS), prefix="c", delimiter="/")
    assert keys_of(page) == [] and page.prefixes == ["c/"]
    page = paginate(entries(KEYS), prefix="c/", delimiter="/")
    assert keys_of(page) == ["c/", "c/x"] and page.prefixes == ["c/d/"]


def test_multi_character_delimiter() -> None:
    keys = ["x--1--a", "x--1--b", "x--2", "x-3"]
    page = paginate(entries(keys), delimiter="--")
    assert page.prefixes == ["x--"] and keys_of(page) == ["x-3"]
    page = paginate(entries(keys), prefix="x--", delimiter="--")
    assert page.prefixes == ["x--1--"] and keys_of(page) == ["x--2"]


def test_prefix_without_matches() -> None:
    assert paginate(entries(KEYS), prefix="zz") == ListPage()


@pytest.mark.parametrize("max_keys", [1, 2, 3, 4, 5])
def test_rollup_across_pages_never_repeats_a_prefix(max_keys: int) -> None:
    pages = all_pages(KEYS, delimiter="/", max_keys=max_keys)
    seen = flatten(pages)
    assert seen == ["a/", "b", "c/", "d"]
    assert len(seen) == len(set(seen))
    for p in pages:
        assert len(p.entries) + len(p.prefixes) <= max_keys


def test_truncated_only_when_more_follow() -> None:
    exact = paginate(entries(KEYS), max_keys=len(KEYS))
    assert not exact.truncated and exact.next_token is None
    short = paginate(entries(KEYS), max_keys=len(KEYS) - 1)
    assert short.truncated and short.next_token == encode_token(KEYS[-2])
    # The last page ends on a common prefix whose later keys are all swallowed.
    rolled = paginate(entries(KEYS), delimiter="/", max_keys=4)
    assert rolled.prefixes == ["a/", "c/"] and not rolled.truncated
    rolled = paginate(entries(KEYS), delimiter="/", max_keys=3)
    assert rolled.truncated and rolled.next_token == encode_token("c/")


def test_max_keys_zero_and_bounds() -> None:
    zero = paginate(entries(KEYS), max_keys=0)
    assert zero == ListPage() and not zero.truncated and zero.next_token is None
    with pytest.raises(InterfaceError, match="max_keys"):
        paginate(entries(KEYS), max_keys=-1)
    many = [f"k{i:05d}" for i in range(1500)]
    capped = paginate(entries(many), max_keys=5000)
    assert len(capped.entries) == 1000 and capped.truncated


def test_start_after_is_exclusive_and_skips_passed_prefixes() -> None:
    assert keys_of(paginate(entries(KEYS), start_after="a/c")) == KEYS[5:]
    assert keys_of(paginate(entries(KEYS), start_after="a/bz")) == KEYS[4:]
    # A start inside a common prefix does not bring the prefix back (as moto does).
    page = paginate(entries(KEYS), delimiter="/", start_after="a/2")
    assert page.prefixes == ["c/"] and keys_of(page) == ["b", "d"]


def test_token_wins_over_start_after() -> None:
    page = paginate(entries(KEYS), start_after="c", token=encode_token("a/c"))
    assert keys_of(page)[0] == "b"


def test_token_round_trip_is_opaque_and_urlsafe() -> None:
    for item in ["a", "a/b/", "é/\U0001f600 ?&=+", "x" * 1024]:
        tok = encode_token(item)
        assert decode_token(tok) == item
        assert set(tok) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("bad", ["", "!!!", "a", "_w", "YQ==", "YQ=", " YQ", "Y Q"])
def test_malformed_token(bad: str) -> None:
    with pytest.raises(InterfaceError, match="continuation token"):
        paginate(entries(KEYS), token=bad)


def test_unicode_is_ordered_by_utf8_bytes() -> None:
    # UTF-16 (Java, JS) puts U+10000 before U+FFFF; S3's UTF-8 byte order does not.
    keys = ["z", "é", "\uffff", "\U00010000", "\u00ff/1", "\u0100"]
    by_bytes = sorted(keys, key=lambda k: k.encode("utf-8"))
    assert sorted(keys) == by_bytes  # code point order == UTF-8 byte order
    page = paginate(entries(by_bytes), max_keys=3)
    assert keys_of(page) == by_bytes[:3]
    rest = paginate(entries(by_bytes), token=page.next_token)
    assert keys_of(rest) == by_bytes[3:]
    utf16 = sorted(keys, key=lambda k: k.encode("utf-16-be"))
    assert utf16 != by_bytes
    with pytest.raises(InterfaceError, match="out of S3 order"):
        paginate(entries(utf16))


def test_out_of_order_or_duplicate_keys_are_refused() -> None:
    with pytest.raises(InterfaceError, match="out of S3 order"):
        paginate(entries(["b", "a"]))
    with pytest.raises(InterfaceError, match="out of S3 order"):
        paginate(entries(["a", "a"]))


class Counting:
    """A key stream that records how far it was read."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.read = 0

    def __iter__(self) -> Iterator[ListEntry]:
        for e in entries(self.keys):
            self.read += 1
            yield e


def test_stops_reading_early() -> None:
    keys = [f"{c}{i:03d}" for c in "abc" for i in range(100)]
    stream = Counting(keys)
    page = paginate(stream, prefix="a")
    assert len(page.entries) == 100 and stream.read == 101  # first "b" key ends the run
    stream = Counting(keys)
    page = paginate(stream, max_keys=10)
    assert page.truncated and stream.read == 11  # one look-ahead key
    stream = Counting(keys)
    paginate(stream, max_keys=0)
    assert stream.read == 0


def test_rollup() -> None:
    assert rollup("a/b/c", "", "/") == "a/"
    assert rollup("a/b/c", "a/", "/") == "a/b/"
    assert rollup("a/b/c", "a/b/", "/") is None
    assert rollup("a/b/c", "", "") is None


def test_random_listings_page_consistently() -> None:
    """Any page size yields the same items as one big page, each exactly once."""
    rng = random.Random(7)
    alphabet = ["a", "b", "/", "é", "-", "\U0001f600"]
    keys = sorted({"".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(250)})
    for prefix in ["", "a", "a/", "b/é"]:
        for delimiter in ["", "/", "-", "a/"]:
            whole = paginate(entries(keys), prefix=prefix, delimiter=delimiter)
            assert not whole.truncated
            expected = sorted(keys_of(whole) + whole.prefixes)
            for max_keys in [1, 2, 7]:
                pages = all_pages(keys, prefix=prefix, delimiter=delimiter, max_keys=max_keys)
                assert flatten(pages) == expected, (prefix, delimiter, max_keys)
