from __future__ import annotations

from pipecache.tiering.writefaults import WriteFaults


def test_only_the_first_failure_of_a_run_and_its_end_are_news() -> None:
    f = WriteFaults()
    assert f.succeeded() == 0  # writes that work are no news
    assert [f.failed() for _ in range(5)] == [True, False, False, False, False]
    assert f.succeeded() == 5
    assert f.succeeded() == 0
    assert f.failed() is True  # a new run speaks again
