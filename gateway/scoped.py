"""Listings of a tenant that holds only some folders of the listed prefix.

The granted folders (sorted, none inside another) cover disjoint, ordered key
ranges, so listing each in turn and concatenating gives one listing in key
order; a page ends after ``max_keys`` items and resumes after its last item
(a key or a common prefix), which the caller turns into a token or marker.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..client import ListEntry, ListPage
from ..client.client import Client
from .tenants import ListScope, ScopePart

_Item = tuple[str, ListEntry | None]
"""A key with its entry, or a common prefix (None)."""


def _items(page: ListPage) -> Iterator[_Item]:
    """Entries and common prefixes of one page, merged in key order."""
    merged: list[_Item] = [(e.key, e) for e in page.entries]
    merged += [(p, None) for p in page.prefixes]
    return iter(sorted(merged, key=lambda item: item[0]))


async def _exists(client: Client, bucket: str, prefix: str) -> bool:
    page = await client.ls(bucket, prefix, max_keys=1)
    return bool(page.entries or page.prefixes)


async def _part(
    client: Client, bucket: str, part: ScopePart, delimiter: str, cursor: str, want: int
) -> list[_Item]:
    """Up to ``want`` items of one folder after ``cursor``."""
    if part.rollup is not None:
        ok = part.rollup > cursor and await _exists(client, bucket, part.prefix)
        return [(part.rollup, None)] if ok else []
    if cursor > part.prefix and not cursor.startswith(part.prefix):
        return []  # the whole folder sorts before the cursor
    start = cursor if cursor > part.prefix else ""
    out: list[_Item] = []
    token: str | None = None
    while len(out) < want:
        page = await client.ls(
            bucket, part.prefix, delimiter=delimiter, start_after=start, token=token, max_keys=min(1000, want)
        )
        # A common prefix resumed from is listed again: only what sorts after the cursor counts.
        out += [item for item in _items(page) if item[0] > cursor]
        if not page.truncated or not page.next_token:
            break
        token = page.next_token
    return out[:want]


async def scoped_page(
    client: Client, bucket: str, scope: ListScope, delimiter: str, cursor: str, max_keys: int
) -> tuple[ListPage, str | None]:
    """One page of the merged listing after ``cursor``, and the cursor to resume from (if truncated)."""
    items: list[_Item] = []
    if max_keys > 0:
        for part in scope.parts:
            if len(items) > max_keys:
                break
            got = await _part(client, bucket, part, delimiter, cursor, max_keys + 1 - len(items))
            if got and items and got[0][0] == items[-1][0]:
                got = got[1:]  # two folders rolled up into the same common prefix
            items += got
    truncated = len(items) > max_keys
    items = items[:max_keys]
    entries = [e for _, e in items if e is not None]
    prefixes = [name for name, e in items if e is None]
    next_cursor = items[-1][0] if truncated and items else None
    return ListPage(entries, prefixes, truncated), next_cursor
