"""Which hold each held block belongs to, and how the reads of a hold's blocks were served.

Reads go from clients straight to the worker that owns a block, never through the master,
so a hold's hit ratio can only be measured where the block is served. The master names the
hold in the pin commands it sends for the hold's blocks (a *tag*); the worker keeps, for
tagged blocks only (held blocks: few), block -> tags, and counts per tag the block reads it
served: hits (from memory or SSD) and misses (from the under-store). A tag stays on a block
whether or not the block is resident, so the read of a held block that was evicted, or never
arrived, counts as the miss it is.

Counts are cumulative per tag from the moment the tag arrived; the worker reports them in
every heartbeat and the master keeps the latest per worker, so a lost beat loses nothing.
A tag goes when its hold ends ("untag") or when the worker registers again (the master that
answers sends again the pins, and tags, it still wants). Pure, like ``pins.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .blocks import BlockId


class ReadTags:
    """Block -> tags, and per tag [reads, hits] (see the module docstring)."""

    def __init__(self) -> None:
        self._tags: dict[BlockId, frozenset[str]] = {}
        """Block -> its tags; the sets are shared (most held blocks have the same few tags)."""
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self._blocks: dict[str, set[BlockId]] = {}
        self._counts: dict[str, list[int]] = {}

    def tag(self, tag: str, ids: Iterable[BlockId]) -> int:
        """Count the reads of ``ids`` for ``tag`` from now on; returns how many were new to it."""
        blocks = self._blocks.setdefault(tag, set())
        self._counts.setdefault(tag, [0, 0])
        new = 0
        for b in ids:
            if b not in blocks:
                blocks.add(b)
                self._tags[b] = self._shared(self._tags.get(b, frozenset()) | {tag})
                new += 1
        return new

    def untag(self, tag: str) -> int:
        """Forget ``tag``, its blocks and its counts; returns how many blocks it had."""
        blocks = self._blocks.pop(tag, set())
        self._counts.pop(tag, None)
        for b in blocks:
            left = self._tags[b] - {tag}
            if left:
                self._tags[b] = self._shared(left)
            else:
                del self._tags[b]
        if blocks:
            self._sets = {s: s for s in self._tags.values()}  # drop sets no block uses now
        return len(blocks)

    def _shared(self, tags: frozenset[str]) -> frozenset[str]:
        return self._sets.setdefault(tags, tags)

    def read(self, block_id: BlockId, hit: bool) -> None:
        """One read of ``block_id`` was served: from a tier (``hit``) or the under-store."""
        for tag in self._tags.get(block_id, ()):
            c = self._counts[tag]
            c[0] += 1
            c[1] += hit

    def counts(self, limit: int | None = None) -> dict[str, list[int]]:
        """Tag -> [reads, hits] for the tags read at least once (at most ``limit``, by name)."""
        read = sorted(t for t, c in self._counts.items() if c[0])
        return {t: list(self._counts[t]) for t in read[:limit]}

    def tags_of(self, block_id: BlockId) -> list[str]:
        return sorted(self._tags.get(block_id, ()))

    def clear(self) -> None:
        """Forget every tag (the worker registers again)."""
        self._tags.clear()
        self._sets.clear()
        self._blocks.clear()
        self._counts.clear()

    def __len__(self) -> int:
        """Tags known."""
        return len(self._blocks)
