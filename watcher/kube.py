"""Kubernetes I/O of the watcher: list-then-watch Argo Workflows, post Events.

Follows the API server's list/watch contract: list once and remember the list's
``resourceVersion``; watch from it (with bookmarks, which move the version forward without
an object); every object seen moves it too. A watch that ends (the server's ``timeoutSeconds``)
is resumed from the last version. ``410 Gone`` (as an HTTP status or as an ``ERROR`` event)
means that version was compacted away: list again, and report objects that vanished meanwhile
as deleted. A dropped connection or an unreachable server is retried with capped, jittered
exponential backoff. Everything the server sends is treated as untrusted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
COMPONENT = "pipecache-watcher"


class KubeError(Exception):
    """The Kubernetes configuration or API cannot be used (a clear message, no traceback)."""


class Gone(Exception):
    """The watched resourceVersion is too old (HTTP 410): list again."""


@dataclass(frozen=True)
class WatchSettings:
    """How the watch talks to the API server."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty: every namespace (needs a ClusterRole)."""
    watch_timeout: int = 300
    """Server-side ``timeoutSeconds`` of one watch request; the watch is then resumed."""
    request_timeout: float = 30.0
    """Seconds for a list or an Event post; a watch may be silent this much past its timeout."""
    backoff_initial: float = 0.5
    """First reconnect delay (seconds); doubles per failure, with full jitter."""
    backoff_max: float = 30.0
    """Longest reconnect delay (seconds)."""


@dataclass(frozen=True)
class WatchEvent:
    """A workflow ``ADDED``, ``MODIFIED`` or ``DELETED`` (a vanished one after a re-list)."""

    type: str
    obj: Mapping[str, Any]


def backoff_delay(attempt: int, settings: WatchSettings, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, initial * 2**attempt)]."""
    ceiling = min(settings.backoff_max, settings.backoff_initial * (2 ** min(attempt, 30)))
    return rng.uniform(0, ceiling)


def _key(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    ns, name = meta.get("namespace"), meta.get("name")
    return f"{ns}/{name}" if isinstance(ns, str) and isinstance(name, str) else None


def _version(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) and rv else None


class KubeApi:
    """The few API calls the watcher makes, over one kubernetes-asyncio ApiClient."""

    def __init__(self, api: k8s.ApiClient, settings: WatchSettings) -> None:
        self._api = api
        self._custom = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)
        self.settings = settings

    @classmethod
    async def connect(cls, kubeconfig: str | None, settings: WatchSettings) -> KubeApi:
        """Configuration from ``kubeconfig`` or, without one, the pod's service account."""
        cfg = k8s.Configuration()
        try:
            if kubeconfig:
                await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            else:
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            where = kubeconfig or "in-cluster service account"
            raise KubeError(f"cannot load Kubernetes configuration ({where}): {exc}") from None
        return cls(k8s.ApiClient(cfg), settings)

    async def close(self) -> None:
        await self._api.close()

    async def list_workflows(self, namespace: str | None) -> tuple[list[Mapping[str, Any]], str]:
        """Every workflow (of ``namespace``, or all) and the list's resourceVersion."""
        resp = await self._get(namespace, watch=False)
        try:
            body = await resp.json(content_type=None)
        except (ValueError, aiohttp.ClientError) as exc:
            raise KubeError(f"workflow list is not JSON: {exc}") from None
        finally:
            resp.release()
        if not isinstance(body, Mapping):
            raise KubeError("workflow list is not an object")
        items = [i for i in body.get("items") or [] if isinstance(i, Mapping)]
        meta = body.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if not isinstance(rv, str) or not rv:
            raise KubeError("workflow list has no resourceVersion")
        return items, rv

    async def watch_workflows(self, namespace: str | None, rv: str) -> AsyncIterator[Mapping[str, Any]]:
        """The raw events of one watch request from ``rv``, until the server ends it."""
        resp = await self._get(namespace, watch=True, rv=rv)
        try:
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("skipping a watch line that is not JSON (%d bytes)", len(line))
                    continue
                if isinstance(event, Mapping):
                    yield event
        finally:
            resp.release()

    async def _get(
        self, namespace: str | None, *, watch: bool, rv: str | None = None
    ) -> aiohttp.ClientResponse:
        s = self.settings
        kw: dict[str, Any] = {"_preload_content": False}
        if watch:
            kw.update(
                watch=True,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=s.watch_timeout,
                _request_timeout=aiohttp.ClientTimeout(
                    sock_connect=s.request_timeout, sock_read=s.watch_timeout + s.request_timeout
                ),
            )
        else:
            kw["_request_timeout"] = s.request_timeout
        if namespace:
            resp = await self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kw)
        else:
            resp = await self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)
        assert isinstance(resp, aiohttp.ClientResponse)
        if resp.status == 410:
            resp.release()
            raise Gone()
        if not 200 <= resp.status < 300:
            text = (await resp.content.read(2048)).decode("utf-8", "replace")
            resp.release()
            raise ApiException(status=resp.status, reason=text.strip()[:500])
        return resp

    async def post_event(
        self, involved: Mapping[str, str], reason: str, message: str, *, warning: bool = False
    ) -> None:
        """A core/v1 Event about a workflow (``involved``: namespace, name, uid)."""
        now = datetime.now(UTC)
        ns = involved["namespace"]
        body = k8s.CoreV1Event(
            api_version="v1",
            kind="Event",
            metadata=k8s.V1ObjectMeta(generate_name=f"{involved['name']}.", namespace=ns),
            involved_object=k8s.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="Workflow",
                name=involved["name"],
                namespace=ns,
                uid=involved.get("uid") or None,
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=k8s.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=socket.gethostname()[:128],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        await self._core.create_namespaced_event(ns, body, _request_timeout=self.settings.request_timeout)


class WorkflowWatch:
    """List-then-watch of one namespace (or all), as an endless stream of :class:`WatchEvent`."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str | None,
        *,
        on_relist: Callable[[], None] = lambda: None,
        on_reconnect: Callable[[str], None] = lambda reason: None,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.on_relist = on_relist
        self.on_reconnect = on_reconnect
        self.synced = asyncio.Event()
        self._rng = rng or random.Random()
        self._known: dict[str, Mapping[str, Any]] = {}

    async def events(self) -> AsyncIterator[WatchEvent]:
        rv: str | None = None
        attempt = 0
        where = self.namespace or "all namespaces"
        while True:
            try:
                if rv is None:
                    items, rv = await self.api.list_workflows(self.namespace)
                    for listed in self._relisted(items):
                        yield listed
                    self.synced.set()
                    attempt = 0
                async for raw in self.api.watch_workflows(self.namespace, rv):
                    new_rv, event = self._handle(raw)
                    rv = new_rv or rv
                    attempt = 0
                    if event is not None:
                        yield event
                # The server ended the watch (its timeout): resume from the last version.
            except Gone:
                log.info("workflow watch (%s): resourceVersion %s expired, listing again", where, rv)
                rv = None
                self.on_relist()
            except (aiohttp.ClientError, OSError, TimeoutError, ApiException, KubeError, ValueError) as exc:
                reason = type(exc).__name__
                delay = backoff_delay(attempt, self.api.settings, self._rng)
                attempt += 1
                log.warning(
                    "workflow watch (%s) failed (%s: %s); retrying in %.1fs", where, reason, exc, delay
                )
                self.on_reconnect(reason)
                await asyncio.sleep(delay)

    def _relisted(self, items: list[Mapping[str, Any]]) -> list[WatchEvent]:
        seen: dict[str, Mapping[str, Any]] = {}
        out: list[WatchEvent] = []
        for obj in items:
            key = _key(obj)
            if key is None:
                continue
            seen[key] = obj
            old = self._known.get(key)
            if old is None:
                out.append(WatchEvent("ADDED", obj))
            elif _version(old) != _version(obj):
                out.append(WatchEvent("MODIFIED", obj))
        out += [WatchEvent("DELETED", obj) for key, obj in self._known.items() if key not in seen]
        self._known = seen
        return out

    def _handle(self, raw: Mapping[str, Any]) -> tuple[str | None, WatchEvent | None]:
        kind, obj = raw.get("type"), raw.get("object")
        if not isinstance(obj, Mapping):
            return None, None
        if kind == "ERROR":
            # The server says the version is gone (410) with a Status object in the stream.
            if obj.get("code") == 410:
                raise Gone()
            raise ApiException(status=obj.get("code") or 0, reason=str(obj.get("message", ""))[:500])
        rv = _version(obj)
        if kind == "BOOKMARK":
            return rv, None
        key = _key(obj)
        if kind not in ("ADDED", "MODIFIED", "DELETED") or key is None:
            return rv, None
        if kind == "DELETED":
            self._known.pop(key, None)
        else:
            self._known[key] = obj
        return rv, WatchEvent(kind, obj)
