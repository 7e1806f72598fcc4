"""`pipecache gateway --processes N`: N gateway processes on one port, supervised.

Small-object hits are CPU bound in Python, so one event loop caps a gateway at
one core. Each child runs its own loop and its own ``make_app`` (its own client,
its own invalidation feed from the master: nothing is shared but the port).

Why SO_REUSEPORT and not one listening socket passed to every child: with one
shared socket every child's event loop wakes on each new connection and the
winner accepts all that are queued (uvloop and asyncio accept in a loop), so a
burst of connections, such as a client pool opening, lands on one process and
stays there (keep-alive). With SO_REUSEPORT each child has its own socket and
the kernel spreads connections over them by hash. The price: connections still
queued in a child's socket when it dies are reset (clients retry), and a
listener of the same user with SO_REUSEPORT would silently share the port, so
the parent first checks that nothing listens on it.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from multiprocessing.connection import Connection

from ..client import malloc
from ..client.web import Site, install_uvloop, serve_all
from ..gateway import GatewaySettings, make_app
from ..gateway.app import MULTIPROC_ENV
from .main import LOG_FORMAT
from .supervisor import READY, Supervisor

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def port_free(host: str, port: int) -> str | None:
    """None if nothing listens on host:port, else why not (bound without SO_REUSEPORT,
    the way a single gateway binds, so any listener there makes it fail)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc}"
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                reason = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
                return f"cannot listen on {host}:{port}: {reason}"
    return None


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process if the supervisor dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: an orphan is stopped by hand
    if os.getppid() != parent:
        sys.exit(0)  # the parent died before the request took effect


def gateway_child(settings: GatewaySettings, log_level: int, parent: int, ready: Connection) -> None:
    """One gateway process (the target of ``Supervisor``)."""
    _die_with_parent(parent)
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    malloc.tune()
    install_uvloop()

    def say_ready() -> None:
        ready.send_bytes(READY)
        ready.close()

    try:
        app = make_app(settings)
        site = Site(app, settings.host, settings.port, "gateway", settings.limits(), reuse_port=True)
        asyncio.run(serve_all([site], ready=say_ready))
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as exc:
        # Start-up failures (a port taken since the check, settings refused): one line, no traceback.
        print(f"pipecache gateway: {exc}", file=sys.stderr)
        sys.exit(1)


def run_gateway_processes(settings: GatewaySettings, processes: int) -> int:
    """Serve with ``processes`` gateway processes until SIGTERM/SIGINT; the exit code."""
    busy = port_free(settings.host, settings.port)
    if busy is not None:
        print(f"pipecache gateway: {busy}", file=sys.stderr)
        return 1
    metrics_dir = tempfile.mkdtemp(prefix="pipecache-gateway-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # the children inherit it when they are spawned
    try:
        sup = Supervisor(
            gateway_child,
            (settings, logging.getLogger().getEffectiveLevel(), os.getpid()),
            processes,
            name="gateway",
        )
        code = sup.run()
        if code:
            print("pipecache gateway: a gateway process cannot run (see above); stopped", file=sys.stderr)
        return code
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
