"""The restart decisions of the gateway's process supervisor (pure: no processes, no clock)."""

from __future__ import annotations

import pytest
from pipecache.cli.restarts import Ended, GiveUp, Restart, RestartPolicy, SlotHistory, decide, describe

POLICY = RestartPolicy(base_delay=0.5, max_delay=4.0, healthy_after=60.0, max_boot_failures=3)
SERVED = SlotHistory(ever_ready=True, crashes=1)


def test_a_slot_that_never_served_gives_up_at_once() -> None:
    history, decision = decide(POLICY, SlotHistory(), Ended(ready=False, uptime=0.8, exitcode=1))
    assert decision == GiveUp("it failed to start")
    assert history == SlotHistory()


def test_crashes_while_serving_back_off_doubling_up_to_the_cap() -> None:
    history, delays = SlotHistory(), []
    for _ in range(6):
        history, decision = decide(POLICY, history, Ended(ready=True, uptime=5.0, exitcode=-9))
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert history == SlotHistory(ever_ready=True, crashes=6)


def test_a_long_healthy_run_starts_a_new_series() -> None:
    history = SlotHistory(ever_ready=True, crashes=5)
    history, decision = decide(POLICY, history, Ended(ready=True, uptime=60.0, exitcode=1))
    assert decision == Restart(0.5)
    assert history.crashes == 1


def test_boot_failures_after_serving_are_retried_then_given_up() -> None:
    history, decision = decide(POLICY, SERVED, Ended(ready=False, uptime=0.3, exitcode=1))
    assert decision == Restart(1.0)  # the crash that served, then one failed boot
    history, decision = decide(POLICY, history, Ended(ready=False, uptime=0.3, exitcode=1))
    assert decision == Restart(2.0)
    history, decision = decide(POLICY, history, Ended(ready=False, uptime=0.3, exitcode=1))
    assert decision == GiveUp("it failed to start 3 times in a row")
    assert history.boot_failures == 3


def test_a_successful_start_clears_boot_failures() -> None:
    history = SlotHistory(ever_ready=True, crashes=1, boot_failures=2)
    history, decision = decide(POLICY, history, Ended(ready=True, uptime=2.0, exitcode=-15))
    assert history == SlotHistory(ever_ready=True, crashes=2, boot_failures=0)
    assert decision == Restart(1.0)


@pytest.mark.parametrize(
    ("code", "text"), [(0, "exit code 0"), (3, "exit code 3"), (-9, "signal 9"), (None, "an unknown status")]
)
def test_describe(code: int | None, text: str) -> None:
    assert describe(code) == text
