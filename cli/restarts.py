"""When a supervised server process ends: restart it after how long, or give up.

Pure (no processes, no clock): the supervisor passes what happened and the time
and applies the answer. Each process slot keeps its own history.

* A process that ends before it ever said it was ready failed to boot. If no
  process of its slot was ever ready, the configuration or the machine is wrong
  (a port taken, a file unreadable) and restarting would only repeat the error:
  give up at once, so the command fails fast with the child's own message.
* A slot that served before gets ``max_boot_failures`` boot attempts in a row
  (something changed under it) before the supervisor gives up.
* A process that crashes after serving is restarted with a doubling delay;
  one that had been up ``healthy_after`` seconds starts the count afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How eagerly dead processes are replaced."""

    base_delay: float = 0.5
    """Seconds before the first restart of a slot."""
    max_delay: float = 30.0
    """Longest wait between restarts."""
    healthy_after: float = 60.0
    """Seconds of uptime after which a crash counts as the first of a new series."""
    max_boot_failures: int = 5
    """Boot failures in a row of a slot that had served, before giving up."""


@dataclass(frozen=True, slots=True)
class SlotHistory:
    """What one slot's processes did so far."""

    ever_ready: bool = False
    """Some process of this slot got ready (listened) once."""
    crashes: int = 0
    """Ends in the current series (reset by a long healthy run)."""
    boot_failures: int = 0
    """Ends before ready, in a row."""


@dataclass(frozen=True, slots=True)
class Ended:
    """One process's end, as the supervisor saw it."""

    ready: bool
    """It said it was ready before it ended."""
    uptime: float
    """Seconds from its start to its end."""
    exitcode: int | None
    """Its exit code (negative: the signal that killed it)."""


@dataclass(frozen=True, slots=True)
class Restart:
    delay: float
    """Seconds to wait before starting the replacement."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str
    """Why, for the log and the command's error."""


Decision = Restart | GiveUp


def describe(exitcode: int | None) -> str:
    """``exit code 1`` or ``signal 9``, for logs."""
    if exitcode is None:
        return "an unknown status"
    return f"signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"


def decide(policy: RestartPolicy, history: SlotHistory, end: Ended) -> tuple[SlotHistory, Decision]:
    """The slot's new history and what to do about ``end``."""
    if not end.ready:
        if not history.ever_ready:
            return history, GiveUp("it failed to start")
        history = replace(history, boot_failures=history.boot_failures + 1)
        if history.boot_failures >= policy.max_boot_failures:
            return history, GiveUp(f"it failed to start {history.boot_failures} times in a row")
    else:
        crashes = 1 if end.uptime >= policy.healthy_after else history.crashes + 1
        history = SlotHistory(ever_ready=True, crashes=crashes, boot_failures=0)
    attempt = history.crashes + history.boot_failures - 1
    delay = min(policy.max_delay, policy.base_delay * 2.0 ** min(max(attempt, 0), 30))
    return history, Restart(delay)
