"""Output of the hold verbs (pin, unpin, free, ttl, pins): one line per hold, or JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click

from ..client import Client, FreeReply, HoldInfo, connect
from ..client.stats import percent


def _left(seconds: float) -> str:
    s = max(int(seconds + 0.5), 0)
    if s >= 86400:
        return f"{s // 86400}d{s // 3600 % 24}h"
    if s >= 3600:
        return f"{s // 3600}h{s // 60 % 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def expires_text(info: HoldInfo, now: float) -> str:
    """``never``, or the UTC time and how long from ``now`` (epoch seconds)."""
    if info.expires is None:
        return "never"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.expires))
    return f"{stamp} (in {_left(info.expires - now)})"


def reads_text(info: HoldInfo) -> str:
    """How the reads of a keeping hold's blocks were served ("" for ttl entries)."""
    if info.kind == "ttl":
        return ""
    return f"{info.reads} reads, {percent(info.hit_ratio)} hits  "


def hold_line(info: HoldInfo, now: float) -> str:
    """Name, kind, blocks resident/total, reads and hit ratio, expiry, paths."""
    return (
        f"{info.name}  {info.kind}  {info.resident_blocks}/{info.blocks} blocks  {reads_text(info)}"
        f"expires {expires_text(info, now)}  {' '.join(info.paths)}"
    )


def free_line(reply: FreeReply) -> str:
    line = f"freeing {reply.freed} cached blocks"
    if reply.refused:
        line += f"; kept {reply.refused} pinned or protected blocks (use --force to drop them too)"
    return line


def run(master: str, fn: Callable[[Client], Awaitable[Any]]) -> Any:
    """Wrap ``fn`` in a client session (the caller runs the coroutine)."""

    async def go() -> Any:
        async with connect(master) as pc:
            return await fn(pc)

    return go


def echo_holds(infos: list[HoldInfo], as_json: bool, empty: str = "no pins") -> None:
    if as_json:
        click.echo(json.dumps({"holds": [i.to_wire() for i in infos]}, indent=2))
        return
    if not infos:
        click.echo(empty)
    now = time.time()
    for info in infos:
        click.echo(hold_line(info, now))


def echo_hold(info: HoldInfo, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(info.to_wire(), indent=2))
    else:
        click.echo(f"{info.state}: {hold_line(info, time.time())}")
