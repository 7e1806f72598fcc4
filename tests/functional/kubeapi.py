"""An in-process Kubernetes API server for the workflows resource, speaking the real protocol.

What a client of ``argoproj.io/v1alpha1`` workflows sees from a real API server:

* ``GET .../workflows`` (cluster-wide or namespaced): a ``WorkflowList`` whose
  ``metadata.resourceVersion`` is the store's current version.
* ``GET ...?watch=1&resourceVersion=R``: a chunked stream of JSON lines
  ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": ...}`` for every change after R, with
  ``BOOKMARK`` events while idle when ``allowWatchBookmarks`` is set, ended after
  ``timeoutSeconds``. A version older than the retained history is answered with an ``ERROR``
  event holding a ``Status`` with code 410 (``gone="event"``, what real servers do) or with HTTP
  410 (``gone="http"``).
* ``POST /api/v1/namespaces/NS/events``: recorded in :attr:`FakeKubeApi.events`.
* A bearer token is required, as with a service account.

The test drives it: :meth:`put` and :meth:`delete` change objects, :meth:`compact` forgets
history (so old versions get 410), :meth:`drop_watches` cuts open watch connections.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

PREFIX = "/apis/argoproj.io/v1alpha1"


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class FakeKubeApi:
    def __init__(
        self, *, token: str = "test-token", bookmark_interval: float = 0.2, gone: str = "event"
    ) -> None:
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.gone = gone
        self.rv = 100
        self.oldest = 0  # first version still in the history
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.watches_served = 0
        self._changed = asyncio.Condition()
        self._transports: set[asyncio.BaseTransport] = set()
        self._streams: set[web.StreamResponse] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> FakeKubeApi:
        app = web.Application()
        app.router.add_get(PREFIX + "/workflows", self._workflows)
        app.router.add_get(PREFIX + "/namespaces/{ns}/workflows", self._workflows)
        app.router.add_post("/api/v1/namespaces/{ns}/events", self._post_event)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        await self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig pointing at this server, with its token."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "watcher", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "watcher"}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(cfg))
        return path

    # ---- test controls --------------------------------------------------------------------

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update a workflow (ADDED or MODIFIED); returns the stored copy."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        key = (meta.setdefault("namespace", "default"), meta["name"])
        old = self.store.get(key)
        meta["uid"] = old["metadata"]["uid"] if old else meta.get("uid") or str(uuid.uuid4())
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.store[key] = obj
        self._record("MODIFIED" if old else "ADDED", obj)
        return obj

    def delete(self, namespace: str, name: str) -> None:
        obj = self.store.pop((namespace, name))
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._record("DELETED", obj)

    def compact(self) -> None:
        """Forget every change so far: a watch from an older version now gets 410 Gone."""
        self.history.clear()
        self.oldest = self.rv + 1

    async def drop_watches(self) -> int:
        """Cut every open watch connection; how many were cut."""
        cut = list(self._transports)
        for t in cut:
            t.abort()  # type: ignore[attr-defined]
        self._transports.clear()
        await asyncio.sleep(0)
        return len(cut)

    async def inject(self, line: bytes) -> int:
        """Write ``line`` as is into every open watch stream (hostile servers); how many."""
        streams = list(self._streams)
        for resp in streams:
            await resp.write(line)
        return len(streams)

    def events_for(self, name: str, reason: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["involvedObject"]["name"] == name and (reason is None or e["reason"] == reason)
        ]

    def _record(self, kind: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, kind, obj))

        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(wake())

    # ---- API ------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _workflows(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if not self._authorized(request):
            return web.json_response(_status(401, "Unauthorized", "Unauthorized"), status=401)
        ns = request.match_info.get("ns")
        if request.query.get("watch") in ("1", "true", "True"):
            return await self._watch(request, ns)
        items = [o for (n, _), o in sorted(self.store.items()) if ns is None or n == ns]
        return web.json_response(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "WorkflowList",
                "metadata": {"resourceVersion": str(self.rv)},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, ns: str | None) -> web.StreamResponse:
        self.watches_served += 1
        since = request.query.get("resourceVersion")
        cursor = int(since) if since and since.isdigit() else None
        if cursor is not None and cursor < self.oldest - 1:
            gone = _status(410, "Expired", f"too old resource version: {cursor} ({self.oldest})")
            if self.gone == "http":
                return web.json_response(gone, status=410)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if cursor is not None and cursor < self.oldest - 1:
            await resp.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return resp
        transport = request.transport
        if transport is not None:
            self._transports.add(transport)
        self._streams.add(resp)
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1", "True")
        deadline = time.monotonic() + float(request.query.get("timeoutSeconds") or 1800)
        try:
            if cursor is None:  # no version: the current state first, as ADDED events
                for (n, _), obj in sorted(self.store.items()):
                    if ns is None or n == ns:
                        await self._send(resp, "ADDED", obj)
                cursor = self.rv
            while time.monotonic() < deadline:
                pending = [(rv, k, o) for rv, k, o in self.history if rv > cursor]
                for rv, kind, obj in pending:
                    cursor = rv
                    if ns is None or obj["metadata"]["namespace"] == ns:
                        await self._send(resp, kind, obj)
                if pending:
                    continue
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), self.bookmark_interval)
                    except TimeoutError:
                        if bookmarks and not self._unsent(cursor):
                            cursor = max(cursor, self.rv)
                            mark = {"metadata": {"resourceVersion": str(cursor)}}
                            await self._send(resp, "BOOKMARK", {"kind": "Workflow", **mark})
        except (ConnectionResetError, RuntimeError):
            return resp
        finally:
            self._streams.discard(resp)
            if transport is not None:
                self._transports.discard(transport)
        return resp

    def _unsent(self, cursor: int) -> bool:
        return any(rv > cursor for rv, _, _ in self.history)

    async def _send(self, resp: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
        await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    async def _post_event(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        if not self._authorized(request):
            return web.json_response(_status(401, "Unauthorized", "Unauthorized"), status=401)
        body = await request.json()
        if (
            body.get("kind") != "Event"
            or body.get("metadata", {}).get("namespace") != request.match_info["ns"]
        ):
            return web.json_response(_status(400, "BadRequest", "not an Event of this namespace"), status=400)
        body["metadata"]["name"] = body["metadata"].get("generateName", "event.") + uuid.uuid4().hex[:5]
        body["receivedAt"] = time.time()
        self.events.append(body)
        return web.json_response(body, status=201)
