"""S3 ListObjectsV2 semantics over a sorted stream of keys (pure, no I/O).

Under-stores that cannot list natively (a local folder) produce their keys in
S3 order and let :func:`paginate` cut them into pages, so every under-store
answers a listing the way S3 would.

Theory of operation
-------------------
S3 orders keys by their UTF-8 bytes. UTF-8 preserves code point order, so
comparing Python ``str`` values (which compare by code point) gives the same
order as comparing their UTF-8 encodings; no encoding is needed per key. (It is
UTF-16 order, as in Java or JavaScript, that differs above U+FFFF.)

With a delimiter, every key maps to an *item*: the key itself, or the common
prefix it rolls up into (``prefix`` + the rest up to and including the first
delimiter). Items are non-decreasing along a sorted key stream, because a
rolled-up prefix is a prefix of its keys and all keys sharing it are adjacent.
So a page is "the first ``max_keys`` distinct items greater than the resume
point", and the resume point is the last item of the previous page:

* the continuation token is that item, encoded (urlsafe base64, no padding);
  resuming skips every key whose item is <= it, so a common prefix that ended
  one page is never repeated on the next, even when more of its keys follow;
* ``start_after`` uses the same rule (as moto does): nothing at or before it
  is returned, and a key inside an already-passed common prefix does not bring
  that prefix back. A token, when given, wins over ``start_after``, as in S3.

``truncated`` is True only when another item really follows (S3 looks ahead
too), so the scan reads at most up to the first key of the next page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from ..tiering.errors import InterfaceError
from .protocol import ListEntry, ListPage

MAX_KEYS = 1000
"""S3 never returns more than this many items in one page, whatever is asked."""


def encode_token(item: str) -> str:
    """The opaque continuation token that resumes after ``item``."""
    return base64.urlsafe_b64encode(item.encode("utf-8")).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> str:
    """The item a token resumes after; InterfaceError if the token is malformed."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        item = raw.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise InterfaceError(f"malformed continuation token {token[:64]!r}") from None
    # An empty item can never have been the last one returned; "" would also
    # silently restart the listing, which S3 refuses as well.
    if not item or encode_token(item) != token:
        raise InterfaceError(f"malformed continuation token {token[:64]!r}")
    return item


def rollup(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix ``key`` rolls up into, or None if it is listed as itself.

    ``key`` must start with ``prefix``. A key that ends with the delimiter (a
    "folder marker" such as ``photos/``) rolls up into itself, as in S3.
    """
    if delimiter:
        at = key.find(delimiter, len(prefix))
        if at >= 0:
            return key[: at + len(delimiter)]
    return None


def paginate(
    keys_with_info: Iterable[ListEntry],
    *,
    prefix: str = "",
    delimiter: str = "",
    start_after: str = "",
    token: str | None = None,
    max_keys: int = MAX_KEYS,
) -> ListPage:
    """One ListObjectsV2 page over ``keys_with_info``, which must be in S3 key order.

    Reads the stream only as far as needed: past the run of keys under
    ``prefix``, or to the first key of the next page, it stops. ``max_keys``
    over 1000 is capped at 1000 and 0 returns an empty, untruncated page, as S3
    does. Raises InterfaceError for a malformed token, a negative ``max_keys``
    or keys that are not strictly increasing.
    """
    if max_keys < 0:
        raise InterfaceError(f"max_keys must be >= 0, not {max_keys}")
    bound = decode_token(token) if token is not None else start_after
    limit = min(max_keys, MAX_KEYS)
    if limit == 0:
        return ListPage()
    entries: list[ListEntry] = []
    prefixes: list[str] = []
    last_item: str | None = None
    previous: str | None = None
    for entry in keys_with_info:
        key = entry.key
        if previous is not None and key <= previous:
            raise InterfaceError(f"keys out of S3 order: {key!r} after {previous!r}")
        previous = key
        if not key.startswith(prefix):
            if key > prefix:
                break  # past the contiguous run of keys under prefix
            continue
        common = rollup(key, prefix, delimiter)
        item = key if common is None else common
        if item <= bound or item == last_item:
            continue  # before the resume point, or more keys of the last prefix
        if last_item is not None and len(entries) + len(prefixes) == limit:
            return ListPage(entries, prefixes, truncated=True, next_token=encode_token(last_item))
        if common is None:
            entries.append(entry)
        else:
            prefixes.append(common)
        last_item = item
    return ListPage(entries, prefixes)
