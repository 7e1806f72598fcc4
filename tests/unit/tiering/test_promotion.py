from __future__ import annotations

import pytest
from pipecache.tiering.promotion import PromotionFilter


def test_a_block_is_promoted_on_its_second_hit() -> None:
    f = PromotionFilter(budget=10)
    assert f.hit("a", 4) is False
    assert f.hit("a", 4) is True
    assert len(f) == 0  # forgotten once promoted: the next SSD hit starts over


def test_a_scan_larger_than_memory_promotes_nothing() -> None:
    f = PromotionFilter(budget=16)
    blocks = [f"b{i}" for i in range(64)]
    promoted = [b for _ in range(3) for b in blocks if f.hit(b, 4)]
    assert promoted == []
    assert len(f) == 4  # only what memory could hold is remembered


def test_reuse_within_memory_promotes() -> None:
    f = PromotionFilter(budget=16)
    loop = [f"b{i}" for i in range(3)]  # 12 bytes, fits in 16
    promoted = [b for _ in range(2) for b in loop if f.hit(b, 4)]
    assert promoted == loop


def test_blocks_larger_than_memory_are_never_promoted() -> None:
    f = PromotionFilter(budget=8)
    assert not f.hit("huge", 9)
    assert not f.hit("huge", 9)


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        PromotionFilter(-1)
