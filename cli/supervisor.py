"""Run N copies of a server in child processes and keep them running.

The children are started with multiprocessing's "spawn" method: each is a fresh
interpreter (no event loop, lock or open connection copied from the parent by
fork), and its arguments travel pickled, so no command line has to be rebuilt
from options that may also have come from the environment. Each child gets the
writing end of a pipe and sends ``READY`` once it listens; the parent uses that
to tell a process that cannot start (give up: ``restarts.decide``) from one that
crashed while serving (restart with backoff).

SIGTERM and SIGINT to the parent are forwarded as SIGTERM to every child, which
stops gracefully; children still alive after ``stop_timeout`` are killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from .restarts import Ended, GiveUp, RestartPolicy, SlotHistory, decide, describe

log = logging.getLogger(__name__)

READY = b"ready"
"""What a child sends on its pipe once it serves."""


@dataclass
class _Child:
    slot: int
    proc: BaseProcess
    conn: Connection
    """The parent's (reading) end of the child's readiness pipe."""
    started: float
    ready: bool = False


@dataclass
class Supervisor:
    """``processes`` children, each running ``target(*args, ready_conn)``."""

    target: Callable[..., None]
    args: tuple[Any, ...]
    processes: int
    name: str = "server"
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout: float = 10.0
    _children: dict[int, _Child] = field(default_factory=dict)
    _history: dict[int, SlotHistory] = field(default_factory=dict)
    _due: dict[int, float] = field(default_factory=dict)
    """Slots waiting for a restart, and when it is due (monotonic)."""
    _stopping: bool = False

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or until a slot cannot be kept running (1)."""
        ctx = multiprocessing.get_context("spawn")
        with _signals_wake() as wakeup:
            try:
                for slot in range(self.processes):
                    self._start(ctx, slot)
                return self._loop(ctx, wakeup)
            finally:
                self._stop_all()

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children.values() if c.proc.pid is not None]

    def _start(self, ctx: multiprocessing.context.SpawnContext, slot: int) -> None:
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=self.target, args=(*self.args, writer), name=f"{self.name}-{slot}")
        proc.start()
        writer.close()  # the child holds the only writer: its death ends the pipe
        self._children[slot] = _Child(slot, proc, reader, time.monotonic())
        log.info("%s process %d started (pid %s)", self.name, slot, proc.pid)

    def _loop(self, ctx: multiprocessing.context.SpawnContext, wakeup: socket.socket) -> int:
        while True:
            if _STOP.is_set():
                log.info("stopping %d %s process(es)", len(self._children), self.name)
                return 0
            now = time.monotonic()
            for slot, due in sorted(self._due.items()):
                if due <= now:
                    del self._due[slot]
                    self._start(ctx, slot)
            timeout = max(0.0, min(self._due.values()) - now) if self._due else None
            waiting: list[Any] = [wakeup]
            for c in self._children.values():
                waiting.append(c.proc.sentinel)
                if not c.ready:
                    waiting.append(c.conn)
            woken = wait(waiting, timeout)
            if wakeup in woken:
                wakeup.recv(64)
            if _STOP.is_set():
                continue  # children ending now stop with us (Ctrl-C reaches them too): no restart
            for c in list(self._children.values()):
                self._poll_ready(c)
                if c.proc.exitcode is not None:
                    code = self._ended(c)
                    if code is not None:
                        return code

    def _poll_ready(self, c: _Child) -> None:
        if c.ready:
            return
        try:
            if c.conn.poll() and c.conn.recv_bytes() == READY:
                c.ready = True
                log.info("%s process %d ready (pid %s)", self.name, c.slot, c.proc.pid)
        except (EOFError, OSError):
            pass  # it died before it was ready: its sentinel says so

    def _ended(self, c: _Child) -> int | None:
        """Schedule the slot's restart; 1 if the supervisor must give up instead."""
        del self._children[c.slot]
        c.conn.close()
        c.proc.join()
        end = Ended(c.ready, time.monotonic() - c.started, c.proc.exitcode)
        history, decision = decide(self.policy, self._history.get(c.slot, SlotHistory()), end)
        self._history[c.slot] = history
        what = f"{self.name} process {c.slot} (pid {c.proc.pid})"
        if isinstance(decision, GiveUp):
            log.error("%s ended with %s: %s; stopping", what, describe(c.proc.exitcode), decision.reason)
            return 1
        log.warning(
            "%s ended with %s after %.1fs; restarting it in %.1fs",
            what,
            describe(c.proc.exitcode),
            end.uptime,
            decision.delay,
        )
        self._due[c.slot] = time.monotonic() + decision.delay
        return None

    def _stop_all(self) -> None:
        for c in self._children.values():
            if c.proc.exitcode is None and c.proc.pid is not None:
                os.kill(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for c in self._children.values():
            c.proc.join(max(0.0, deadline - time.monotonic()))
            if c.proc.exitcode is None:
                log.warning("%s process %d did not stop in time; killing it", self.name, c.slot)
                c.proc.kill()
                c.proc.join()
            c.conn.close()
        self._children.clear()


@dataclass
class _StopFlag:
    requested: bool = False

    def is_set(self) -> bool:
        return self.requested


_STOP = _StopFlag()


@contextmanager
def _signals_wake() -> Iterator[socket.socket]:
    """SIGTERM/SIGINT set ``_STOP`` and wake the loop through the returned socket."""
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _STOP.requested = True

    _STOP.requested = False
    old_fd = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield r
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(old_fd)
        r.close()
        w.close()
