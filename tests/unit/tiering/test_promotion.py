from __future__ import annotations

import pytest
from pipecache.tiering.promotion import PromotionFilter


def ssd_hit(f: PromotionFilter, block: str, nbytes: int) -> bool:
    f.read(nbytes)
    return f.hit(block, nbytes)


def test_a_block_is_promoted_on_its_second_hit() -> None:
    f = PromotionFilter(budget=10)
    assert ssd_hit(f, "a", 4) is False
    assert ssd_hit(f, "a", 4) is True
    assert len(f) == 0  # forgotten once promoted: the next SSD hit starts over


def test_a_scan_larger_than_memory_promotes_nothing() -> None:
    f = PromotionFilter(budget=16)
    blocks = [f"b{i}" for i in range(64)]
    promoted = [b for _ in range(3) for b in blocks if ssd_hit(f, b, 4)]
    assert promoted == []
    assert len(f) == 5  # only hits whose block could still come back in reach


def test_reuse_within_memory_promotes() -> None:
    f = PromotionFilter(budget=16)
    loop = [f"b{i}" for i in range(4)]  # 16 bytes: exactly memory
    promoted = [b for _ in range(2) for b in loop if ssd_hit(f, b, 4)]
    assert promoted == loop


def test_memory_hits_count_towards_the_distance() -> None:
    # An epoch over twice memory: half the blocks stay in memory, half are read
    # from SSD. Counting only SSD hits, the SSD half looks as if it fitted.
    f = PromotionFilter(budget=16)
    promoted = []
    for _ in range(3):
        for i in range(4):
            f.read(4)  # a memory hit
            if ssd_hit(f, f"s{i}", 4):
                promoted.append(i)
    assert promoted == []


def test_forgets_hits_older_than_memory_holds() -> None:
    f = PromotionFilter(budget=16)
    ssd_hit(f, "a", 4)
    f.read(13)  # with ``a`` itself, one byte more than memory
    assert ssd_hit(f, "a", 4) is False
    assert ssd_hit(f, "a", 4) is True  # that late hit was remembered afresh
    ssd_hit(f, "b", 4)
    f.read(13)
    assert len(f) == 1  # out of reach, forgotten at the next read
    f.read(1)
    assert len(f) == 0


def test_blocks_larger_than_memory_are_never_promoted() -> None:
    f = PromotionFilter(budget=8)
    assert not ssd_hit(f, "huge", 9)
    assert not ssd_hit(f, "huge", 9)
    assert len(f) == 0


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        PromotionFilter(-1)
