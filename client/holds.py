"""Holds from the client side: pin, protect, release, free and TTL (mixed into ``Client``).

    info = await pc.pin(["s3://datasets/imagenet/val/"], ttl=3600)
    await pc.protect("run-42/step-3", ["s3://features/run-42/"])
    await pc.release("run-42/step-3")          # its blocks are evicted first
    await pc.free(["s3://scratch/tmp/"])       # held blocks need force=True
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from ..tiering.errors import InterfaceError
from . import protocol as p
from .rpc import M, call


def as_paths(paths: str | Sequence[str]) -> list[str]:
    """One path or several, as a list; InterfaceError when there is none."""
    out = [paths] if isinstance(paths, str) else list(paths)
    if not out:
        raise InterfaceError("give at least one path")
    return out


class HoldsApi:
    """The hold verbs of :class:`Client` (which provides ``master``, ``session`` and ``_t``)."""

    master: str

    @property
    def session(self) -> aiohttp.ClientSession:
        raise NotImplementedError

    def _t(self, timeout: float | None) -> float:
        raise NotImplementedError

    async def _hold_rpc(
        self, route: str, reply: type[M], msg: p.Message | None, timeout: float | None
    ) -> M:
        return await call(self.session, self.master + route, reply, msg, timeout=self._t(timeout))

    async def pin(
        self,
        paths: str | Sequence[str],
        name: str | None = None,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> p.HoldInfo:
        """Keep every block under ``paths`` in the cache until ``unpin`` (or ``ttl`` seconds).

        ``name`` defaults to the path (the paths joined by spaces when several).
        Blocks not cached yet are kept from the moment they arrive. Pinning
        under an existing name adds the paths to that pin.
        """
        ps = as_paths(paths)
        req = p.HoldRequest(name or " ".join(ps), ps, "pin", ttl)
        return await self._hold_rpc(p.HOLDS, p.HoldInfo, req, timeout)

    async def unpin(self, name: str, *, timeout: float | None = None) -> p.HoldInfo:
        """End a pin (or protection): its blocks become ordinary eviction candidates."""
        return await self.release(name, evict_first=False, timeout=timeout)

    async def protect(
        self, name: str, paths: str | Sequence[str], *, timeout: float | None = None
    ) -> p.HoldInfo:
        """Keep every block under ``paths`` from eviction until ``release(name)``.

        For pipelines: protect what a step reads before it runs, release it
        when the step ends. Protecting under an existing name adds the paths.
        """
        req = p.HoldRequest(name, as_paths(paths), "protect")
        return await self._hold_rpc(p.HOLDS, p.HoldInfo, req, timeout)

    async def release(
        self, name: str, evict_first: bool = True, *, timeout: float | None = None
    ) -> p.HoldInfo:
        """End a hold; with ``evict_first`` its blocks are the first to be evicted.

        NoSuchHold when there is no hold of that name.
        """
        req = p.ReleaseRequest(name, evict_first)
        return await self._hold_rpc(p.HOLD_RELEASE, p.HoldInfo, req, timeout)

    async def free(
        self, paths: str | Sequence[str], force: bool = False, *, timeout: float | None = None
    ) -> p.FreeReply:
        """Drop every cached block under ``paths`` (the workers do it within a heartbeat).

        Blocks a pin or protection keeps are refused (counted in ``refused``)
        unless ``force``.
        """
        req = p.FreeRequest(as_paths(paths), force)
        return await self._hold_rpc(p.FREE, p.FreeReply, req, timeout)

    async def set_ttl(
        self, paths: str | Sequence[str], seconds: float, *, timeout: float | None = None
    ) -> p.HoldInfo:
        """Drop the cached blocks under ``paths`` ``seconds`` from now (held blocks stay)."""
        req = p.TtlRequest(as_paths(paths), seconds)
        return await self._hold_rpc(p.TTL, p.HoldInfo, req, timeout)

    async def holds(self, *, timeout: float | None = None) -> list[p.HoldInfo]:
        """Every pin, protection and TTL entry, oldest first."""
        return (await self._hold_rpc(p.HOLDS, p.HoldsReply, None, timeout)).holds
