"""The fastest a Python HTTP server gets here: aiohttp on uvloop answering from a dict.

    python bench/ceiling.py ROOT PORT

Serves every file under ROOT (read into memory at start) at its relative path,
with no signature, no metadata lookup and no cache: the floor of any Python S3
endpoint's cost per request. bench/hits.py runs it beside nginx and the gateway
to show how much of the distance to nginx is the language and its HTTP stack.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web


def make_app(root: Path) -> web.Application:
    blobs = {"/" + str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    async def get(request: web.Request) -> web.Response:
        body = blobs.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{tail:.*}", get)
    return app


def main() -> None:
    root, port = Path(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(make_app(root), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
