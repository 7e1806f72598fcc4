"""HTTP plumbing of the client: msgpack RPCs to the master, block GETs to workers."""

from __future__ import annotations

import os
from typing import TypeVar

import aiohttp

from ..tiering.errors import BadRequest, CacheError, NoWorkers, UnderStoreError
from .protocol import MSGPACK, ErrorBody, Message, unpack

M = TypeVar("M", bound=Message)


async def raise_for_error(resp: aiohttp.ClientResponse) -> None:
    """Turn a non-2xx pipecache answer back into the typed error it carries."""
    if resp.status < 300:
        return
    body = await resp.read()
    raise error_from_answer(resp.status, resp.content_type, body, f"{resp.url.host}:{resp.url.port}")


def error_from_answer(status: int, content_type: str, body: bytes, peer: str) -> CacheError:
    """The typed error a non-2xx answer carries (its msgpack ErrorBody), else a plain CacheError."""
    if content_type == MSGPACK:
        try:
            return ErrorBody.unpack(body).to_error()
        except BadRequest:
            pass
    return CacheError(f"HTTP {status} from {peer}: {body[:200]!r}")


TOKEN_ENV = "PIPECACHE_CLUSTER_TOKEN"
"""The environment variable every pipecache process reads the cluster token from."""


def cluster_token(environ: dict[str, str] | None = None) -> str | None:
    """The cluster token from the environment (None when unset or empty: no check)."""
    token = (os.environ if environ is None else environ).get(TOKEN_ENV, "")
    return token or None


def token_headers(token: str | None) -> dict[str, str]:
    """Request headers that carry ``token`` to a master or worker."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class Unreachable(NoWorkers):
    """The service did not answer at all (refused, reset, timed out): not an answer about the request."""


async def call(
    session: aiohttp.ClientSession,
    url: str,
    reply_cls: type[M],
    msg: Message | None = None,
    *,
    timeout: float | None = None,
) -> M:
    """POST ``msg`` (or GET when None) as msgpack and parse the reply as ``reply_cls``."""
    to = aiohttp.ClientTimeout(total=timeout)
    try:
        if msg is None:
            ctx = session.get(url, timeout=to)
        else:
            ctx = session.post(url, data=msg.pack(), headers={"Content-Type": MSGPACK}, timeout=to)
        async with ctx as resp:
            await raise_for_error(resp)
            body = await resp.read()
    except aiohttp.ClientError as exc:
        raise Unreachable(f"cannot reach {url}: {exc}") from exc
    except TimeoutError as exc:
        raise Unreachable(f"{url} did not answer within {timeout}s") from exc
    if reply_cls is _Empty:
        return _Empty()  # type: ignore[return-value]
    try:
        return reply_cls.from_wire(unpack(body))
    except BadRequest as exc:
        raise UnderStoreError(f"malformed reply from {url}: {exc.message}") from None


class _Empty(Message):
    """A reply whose body carries nothing the caller needs."""

    @classmethod
    def from_wire(cls, data: object) -> _Empty:
        return cls()


Empty = _Empty
