"""A far-away network on loopback: a private namespace, an htb rate limit, a delay proxy.

This kernel has no netem, so latency comes from a small TCP proxy that holds
every chunk for ``delay`` seconds before passing it on (each direction), and
bandwidth from an htb class on the namespace's loopback matching the origin's
source port. Nothing leaves the namespace: it has only its own loopback.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path


def run_in_namespace(argv: list[str]) -> int:
    """Re-run ``argv`` inside a fresh network namespace with only ``lo`` up; delete it after."""
    ns = f"pcbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        return subprocess.run(["ip", "netns", "exec", ns, *argv]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def limit_port(port: int, mbit: int) -> None:
    """Shape traffic sent from ``port`` on ``lo`` to ``mbit`` Mbit/s; other ports stay unshaped."""
    cmds = [
        "tc qdisc replace dev lo root handle 1: htb default 99",
        "tc class add dev lo parent 1: classid 1:99 htb rate 100gbit",
        f"tc class add dev lo parent 1: classid 1:10 htb rate {mbit}mbit ceil {mbit}mbit",
        f"tc filter add dev lo protocol ip parent 1:0 prio 1 u32 match ip sport {port} 0xffff flowid 1:10",
    ]
    for c in cmds:
        subprocess.run(c.split(), check=True)


class DelayProxy:
    """Forward 127.0.0.1:``port`` -> 127.0.0.1:``upstream``, each chunk held ``delay`` seconds."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="delay-proxy")
        self._ready = threading.Event()

    def start(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("delay proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for t in tasks:
            t.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            w.close()
            return
        try:
            await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w), return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the proxy is stopping; end quietly (asyncio logs cancelled connection handlers)
        for x in (w, uw):
            x.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        # A reader task stamps chunks; the writer sends each when its time comes, so
        # latency is added without limiting throughput (many chunks are in flight).
        q: deque[tuple[float, bytes]] = deque()
        more = asyncio.Event()
        done = False

        async def read() -> None:
            nonlocal done
            try:
                while data := await src.read(256 * 1024):
                    q.append((time.monotonic() + self.delay, data))
                    more.set()
            finally:
                done = True
                more.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                while not q:
                    if done:
                        if dst.can_write_eof():
                            dst.write_eof()
                        return
                    more.clear()
                    await more.wait()
                due, data = q.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            reader.cancel()


def fill(root: Path, total: int, low: int, high: int, seed: int = 7) -> list[tuple[str, int]]:
    """Files of random sizes in [low, high] under ``root``, ``total`` bytes in all: (key, size)."""
    import random

    rng = random.Random(seed)
    out: list[tuple[str, int]] = []
    root.mkdir(parents=True, exist_ok=True)
    left, i = total, 0
    chunk = os.urandom(high)
    while left > 0:
        size = min(rng.randint(low, high), left)
        key = f"epoch/{i:05d}.bin"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size != size:
            # Unique bytes per file: a rotation of one random buffer plus the index.
            start = (i * 7919) % high
            data = (chunk[start:] + chunk[:start])[: size - 8] + i.to_bytes(8, "big")
            path.write_bytes(data[:size])
        out.append((key, size))
        left -= size
        i += 1
    return out


if __name__ == "__main__":  # pragma: no cover - manual check of the proxy
    p = DelayProxy(int(sys.argv[1]), float(sys.argv[2])).start()
    print(p.port, flush=True)
    threading.Event().wait()
