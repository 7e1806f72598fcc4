"""`pipecache`: one command for every service and the admin verbs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

import click

from .. import __version__
from .sizes import SIZE

MASTER_ENV = "PIPECACHE_MASTER"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)


def _run_service(coro_factory: Any, *, uvloop: bool = True) -> None:
    from ..client import malloc
    from ..client.web import install_uvloop

    malloc.tune()
    if uvloop:
        install_uvloop()
    try:
        asyncio.run(coro_factory())
    except KeyboardInterrupt:
        pass


def _check_or_fail(validate: Any) -> None:
    try:
        validate()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pipecache")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """pipecache: a tiered (memory, SSD) cache for S3 data, with an S3 gateway in front."""
    _logging(verbose)


def _s3_options(fn: Any) -> Any:
    """The S3 endpoint's options, shared by ``gateway`` and ``worker --s3-port``."""
    for option in reversed(_S3_OPTIONS):
        fn = option(fn)
    return fn


_S3_OPTIONS = [
    click.option("--access-key", envvar="PIPECACHE_ACCESS_KEY", default=None, help="SigV4 access key id."),
    click.option("--secret-key", envvar="PIPECACHE_SECRET_KEY", default=None, help="SigV4 secret key."),
    click.option("--region", default="us-east-1", show_default=True, envvar="PIPECACHE_REGION"),
    click.option(
        "--anonymous",
        is_flag=True,
        help="Accept unsigned requests (no keys at all). For trusted networks only.",
    ),
    click.option(
        "--tenants",
        "tenants_file",
        envvar="PIPECACHE_TENANTS",
        default=None,
        help="YAML file of tenants: key pairs, read/write grants, public-read buckets (replaces the keys).",
    ),
    click.option(
        "--domain",
        "domains",
        multiple=True,
        envvar="PIPECACHE_DOMAINS",
        help="Base domain for virtual-host addressing (bucket.DOMAIN); repeat for several.",
    ),
    click.option(
        "--header-timeout",
        type=float,
        default=10.0,
        show_default=True,
        envvar="PIPECACHE_HEADER_TIMEOUT",
        help="Seconds a request's headers may take to arrive; slower clients are closed.",
    ),
    click.option(
        "--body-timeout",
        type=float,
        default=60.0,
        show_default=True,
        envvar="PIPECACHE_BODY_TIMEOUT",
        help="Seconds a request body may go without a byte; slower uploads get RequestTimeout.",
    ),
    click.option(
        "--max-connections",
        type=int,
        default=512,
        show_default=True,
        envvar="PIPECACHE_MAX_CONNECTIONS",
        help="Most client connections open at once; more get 503 SlowDown (raise with ulimit -n).",
    ),
    click.option(
        "--ufs-write-timeout",
        type=float,
        default=15.0,
        show_default=True,
        envvar="PIPECACHE_UFS_WRITE_TIMEOUT",
        help="Seconds a write to the under-store may go without a byte before it is tried again.",
    ),
    click.option(
        "--ufs-write-attempts",
        type=int,
        default=3,
        show_default=True,
        envvar="PIPECACHE_UFS_WRITE_ATTEMPTS",
        help="Attempts per under-store write before it fails (503 ServiceUnavailable).",
    ),
    click.option(
        "--lean-blocks/--aiohttp-blocks",
        default=True,
        show_default=True,
        envvar="PIPECACHE_LEAN_BLOCKS",
        help="Read blocks from workers with the lean keep-alive client, or with aiohttp's (to compare).",
    ),
]


# ---- services ----------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PIPECACHE_MASTER_HOST")
@click.option("--port", default=9000, show_default=True, envvar="PIPECACHE_MASTER_PORT")
@click.option(
    "--ufs",
    required=True,
    envvar="PIPECACHE_UFS",
    help="Under-store: file:///path (sub-folders are buckets), http(s)://host:port (S3 endpoint) or s3://.",
)
@click.option("--block-size", type=SIZE, default="4MiB", show_default=True, envvar="PIPECACHE_BLOCK_SIZE")
@click.option("--heartbeat-interval", type=float, default=1.0, show_default=True)
@click.option(
    "--worker-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds of silence after which a worker and its blocks are dropped.",
)
@click.option(
    "--metadata-ttl",
    type=float,
    default=60.0,
    show_default=True,
    envvar="PIPECACHE_METADATA_TTL",
    help="Seconds object metadata is trusted before the under-store is asked again.",
)
@click.option(
    "--consistency",
    default="",
    envvar="PIPECACHE_CONSISTENCY",
    help="immutable, ttl=SECONDS or always (replaces --metadata-ttl; default ttl=METADATA_TTL).",
)
@click.option(
    "--load-window",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Most load-job blocks in flight per worker.",
)
@click.option(
    "--load-window-bytes",
    type=SIZE,
    default="512MiB",
    show_default=True,
    help="Most load-job bytes in flight per worker.",
)
@click.option(
    "--data-dir",
    default=None,
    envvar="PIPECACHE_MASTER_DATA_DIR",
    help="Folder for the journal that keeps load jobs across restarts (default: none, in memory only).",
)
@click.option(
    "--ufs-read-timeout",
    type=float,
    default=10.0,
    show_default=True,
    envvar="PIPECACHE_MASTER_UFS_READ_TIMEOUT",
    help="Seconds a HEAD or LIST to the under-store may go without a byte before it is tried again.",
)
@click.option(
    "--ufs-attempts",
    type=int,
    default=3,
    show_default=True,
    envvar="PIPECACHE_MASTER_UFS_ATTEMPTS",
    help="Attempts per under-store request before it fails (503 at the gateway).",
)
@click.option("--check-config", is_flag=True, help="Validate the settings and exit.")
def master(
    host: str,
    port: int,
    ufs: str,
    block_size: int,
    heartbeat_interval: float,
    worker_timeout: float,
    metadata_ttl: float,
    consistency: str,
    load_window: int,
    load_window_bytes: int,
    data_dir: str | None,
    ufs_read_timeout: float,
    ufs_attempts: int,
    check_config: bool,
) -> None:
    """Run the master: workers, block locations, object metadata, load jobs."""
    from ..client.web import serve
    from ..master import MasterSettings, make_app
    from ..master.journal import JournalError

    s = MasterSettings(
        host=host,
        port=port,
        ufs=ufs,
        block_size=block_size,
        heartbeat_interval=heartbeat_interval,
        worker_timeout=worker_timeout,
        metadata_ttl=metadata_ttl,
        consistency=consistency,
        load_window=load_window,
        load_window_bytes=load_window_bytes,
        data_dir=data_dir or None,
        ufs_read_timeout=ufs_read_timeout,
        ufs_attempts=ufs_attempts,
    )
    _check_or_fail(s.validate)
    if check_config:
        click.echo("master settings ok")
        return
    try:
        _run_service(lambda: serve(make_app(s), host, port, name="master"))
    except JournalError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--master", "master_url", required=True, envvar=MASTER_ENV, help="Master URL.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PIPECACHE_WORKER_HOST")
@click.option("--port", default=9100, show_default=True, envvar="PIPECACHE_WORKER_PORT")
@click.option(
    "--advertise",
    default=None,
    envvar="PIPECACHE_WORKER_ADVERTISE",
    help="URL others reach this worker at (default http://HOST:PORT).",
)
@click.option("--worker-id", default=None, envvar="PIPECACHE_WORKER_ID")
@click.option(
    "--data-dir",
    default="./.pipecache/worker",
    show_default=True,
    envvar="PIPECACHE_DATA_DIR",
    help="SSD tier folder and the worker's id file.",
)
@click.option(
    "--memory",
    type=SIZE,
    default=None,
    envvar="PIPECACHE_MEMORY",
    help="Memory tier budget (default: a quarter of available memory).",
)
@click.option(
    "--ssd",
    type=SIZE,
    default=None,
    envvar="PIPECACHE_SSD",
    help="SSD tier budget (default: 80%% of free disk at --data-dir; 0 disables).",
)
@click.option("--policy", type=click.Choice(["lru", "lrfu"]), default="lru", show_default=True)
@click.option(
    "--s3-port",
    type=int,
    default=None,
    envvar="PIPECACHE_WORKER_S3_PORT",
    help="Also serve the S3 API on this port, reading this worker's own blocks without a network hop.",
)
@click.option(
    "--ufs-read-timeout",
    type=float,
    default=3.0,
    show_default=True,
    envvar="PIPECACHE_WORKER_UFS_READ_TIMEOUT",
    help="Seconds an under-store read may go without a byte before it is tried again.",
)
@click.option(
    "--ufs-attempts",
    type=int,
    default=3,
    show_default=True,
    envvar="PIPECACHE_WORKER_UFS_ATTEMPTS",
    help="Attempts per under-store read before the miss fails (503 at the gateway).",
)
@_s3_options
@click.option("--check-config", is_flag=True, help="Validate the settings and exit.")
def worker(
    master_url: str,
    host: str,
    port: int,
    advertise: str | None,
    worker_id: str | None,
    data_dir: str,
    memory: int | None,
    ssd: int | None,
    policy: str,
    s3_port: int | None,
    ufs_read_timeout: float,
    ufs_attempts: int,
    check_config: bool,
    **s3: Any,
) -> None:
    """Run a worker: holds blocks in memory and on SSD, fetches misses from the under-store."""
    from ..client.web import Site, serve_all
    from ..gateway import GatewaySettings
    from ..gateway import make_app as make_gateway
    from ..worker import WORKER_ID, LocalReader, WorkerSettings, make_app

    s = WorkerSettings(
        master=master_url,
        host=host,
        port=port,
        advertise=advertise,
        worker_id=worker_id,
        data_dir=data_dir,
        memory_bytes=memory,
        ssd_bytes=ssd,
        policy=policy,
        ufs_read_timeout=ufs_read_timeout,
        ufs_attempts=ufs_attempts,
    )
    _check_or_fail(s.validate)
    gs = None if s3_port is None else GatewaySettings(master=master_url, host=host, port=s3_port, **s3)
    if gs is not None:
        if s3_port == port:
            raise click.UsageError(f"--s3-port must differ from --port ({port})")
        _check_or_fail(gs.validate)
    if check_config:
        click.echo("worker settings ok")
        return

    async def run() -> None:
        app = make_app(s)
        sites = [Site(app, host, port, "worker")]
        if gs is not None:
            s3_app = make_gateway(gs, LocalReader(app, WORKER_ID))
            sites.append(Site(s3_app, host, gs.port, "s3", gs.limits()))
        await serve_all(sites)

    # uvloop has no loop.sendfile: the stdlib loop keeps SSD hits zero-copy. With an S3
    # endpoint, uvloop's cheaper requests win (its SSD hits are one write of a mapped file).
    _run_service(run, uvloop=gs is not None)


@main.command()
@click.option("--master", "master_url", required=True, envvar=MASTER_ENV, help="Master URL.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PIPECACHE_GATEWAY_HOST")
@click.option("--port", default=8080, show_default=True, envvar="PIPECACHE_GATEWAY_PORT")
@_s3_options
@click.option(
    "--processes",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    envvar="PIPECACHE_GATEWAY_PROCESSES",
    help="Gateway processes serving the port (0: one per CPU); more than one use more cores.",
)
@click.option("--check-config", is_flag=True, help="Validate the settings and exit.")
def gateway(
    master_url: str,
    host: str,
    port: int,
    access_key: str | None,
    secret_key: str | None,
    region: str,
    anonymous: bool,
    tenants_file: str | None,
    domains: tuple[str, ...],
    header_timeout: float,
    body_timeout: float,
    max_connections: int,
    ufs_write_timeout: float,
    ufs_write_attempts: int,
    lean_blocks: bool,
    processes: int,
    check_config: bool,
) -> None:
    """Run the S3-compatible gateway."""
    from ..client.web import serve
    from ..gateway import GatewaySettings, make_app

    s = GatewaySettings(
        master=master_url,
        host=host,
        port=port,
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        anonymous=anonymous,
        tenants_file=tenants_file,
        domains=domains,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        ufs_write_timeout=ufs_write_timeout,
        ufs_write_attempts=ufs_write_attempts,
        lean_blocks=lean_blocks,
    )
    _check_or_fail(s.validate)
    if check_config:
        click.echo("gateway settings ok")
        return
    processes = processes or len(os.sched_getaffinity(0))
    if processes > 1:
        from .gateway_procs import run_gateway_processes

        sys.exit(run_gateway_processes(s, processes))
    _run_service(lambda: serve(make_app(s), host, port, name="gateway", limits=s.limits()))


@main.command()
@click.option(
    "--data-dir",
    default="./.pipecache",
    show_default=True,
    help="Where workers keep SSD blocks (and the default under-store).",
)
@click.option(
    "--ufs",
    default=None,
    help="Under-store URI (default: file://DATA_DIR/ufs, whose sub-folders are buckets).",
)
@click.option("--gateway-port", default=8080, show_default=True)
@click.option("--master-port", default=0, help="Master port (default: a free one).")
@click.option("--workers", "n_workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--memory", type=SIZE, default="512MiB", show_default=True, help="Memory tier budget per worker."
)
@click.option(
    "--ssd", type=SIZE, default="4GiB", show_default=True, help="SSD tier budget per worker (0 disables)."
)
@click.option("--access-key", envvar="PIPECACHE_ACCESS_KEY", default="pipecache", show_default=True)
@click.option("--secret-key", envvar="PIPECACHE_SECRET_KEY", default="pipecache-secret", show_default=True)
@click.option(
    "--consistency",
    default="ttl=60",
    show_default=True,
    envvar="PIPECACHE_CONSISTENCY",
    help="Under-store consistency: immutable, ttl=SECONDS or always.",
)
@click.option("--tenants", "tenants_file", default=None, help="Tenants YAML file (replaces the key pair).")
@click.option(
    "--gateway-processes",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Gateway processes (gateway --processes; 0: one per CPU).",
)
def up(**kw: Any) -> None:
    """Run a whole cluster on this machine: master, workers and gateway on 127.0.0.1."""
    from .up import run_up

    sys.exit(run_up(**kw))


# ---- admin verbs -------------------------------------------------------------


def _split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise click.BadParameter(f"{uri!r}: expected s3://bucket/key")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise click.BadParameter(f"{uri!r}: no bucket")
    return bucket, key


def _admin(coro_factory: Any) -> Any:
    from ..client import CacheError

    try:
        return asyncio.run(coro_factory())
    except CacheError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


master_opt = click.option(
    "--master",
    "master_url",
    envvar=MASTER_ENV,
    default="http://127.0.0.1:9000",
    show_default=True,
    help="Master URL (or $PIPECACHE_MASTER).",
)
json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@main.command()
@master_opt
@json_opt
@click.argument("uri")
def stat(master_url: str, as_json: bool, uri: str) -> None:
    """Metadata of s3://BUCKET/KEY and where its blocks are cached."""
    from ..client import connect
    from ..tiering.blocks import block_count

    bucket, key = _split_uri(uri)

    async def go() -> dict[str, Any]:
        async with connect(master_url) as pc:
            info = await pc.stat(bucket, key, fresh=True)
            ids = [info.block_id(i) for i in range(block_count(info.size, info.block_size))]
            where = await pc.locate(ids) if ids else {}
            return {
                **info.to_wire(),
                "blocks": [{"index": i, "id": b, "workers": where.get(b, [])} for i, b in enumerate(ids)],
            }

    out = _admin(go)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    cached = sum(1 for b in out["blocks"] if b["workers"])
    click.echo(f"{uri}\n  size {out['size']}  etag {out['etag']}  block size {out['block_size']}")
    click.echo(f"  blocks cached: {cached}/{len(out['blocks'])}")
    for b in out["blocks"]:
        click.echo(f"  [{b['index']:>5}] {b['id']}  {', '.join(b['workers']) or '-'}")


@main.command()
@master_opt
@json_opt
def report(master_url: str, as_json: bool) -> None:
    """Capacity and use per worker and tier, hit ratio, under-store bytes, tenants' cache vs quota."""
    from ..client import CacheError, connect
    from .report import report_json, report_lines

    async def go() -> tuple[list[Any], dict[str, int]]:
        async with connect(master_url) as pc:
            workers = await pc.workers()
            try:
                return workers, await pc.quotas()
            except CacheError:  # a master that predates quotas
                return workers, {}

    workers, quotas = _admin(go)
    if as_json:
        click.echo(json.dumps(report_json(workers, quotas), indent=2))
        return
    for line in report_lines(workers, quotas):
        click.echo(line)


@main.command("ls")
@master_opt
@json_opt
@click.argument("uri")
def ls_cmd(master_url: str, as_json: bool, uri: str) -> None:
    """List s3://BUCKET/PREFIX through the master (one level, like `aws s3 ls`)."""
    from ..client import connect

    bucket, prefix = _split_uri(uri)

    async def go() -> dict[str, Any]:
        async with connect(master_url) as pc:
            page = await pc.ls(bucket, prefix, delimiter="/")
            return page.to_wire()

    page = _admin(go)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for pre in page["prefixes"]:
        click.echo(f"{'PRE':>12}  {pre}")
    for e in page["entries"]:
        click.echo(f"{e['size']:>12}  {e['key']}")


# ---- load jobs -------------------------------------------------------------------


@main.command()
@master_opt
@json_opt
@click.option("--priority", default=0, show_default=True, help="Higher-priority jobs load first.")
@click.option("--wait", "wait_", is_flag=True, help="Follow the job to its end, with a progress bar.")
@click.option("--interval", default=0.5, show_default=True, help="Seconds between progress updates.")
@click.argument("paths", nargs=-1, required=True)
def load(
    master_url: str, as_json: bool, priority: int, wait_: bool, interval: float, paths: tuple[str, ...]
) -> None:
    """Load every object under s3://BUCKET/PREFIX (one or more) into the cache.

    With --wait, exits 1 if the job failed (listing the keys that could not be loaded).
    """
    from .jobs import run_load

    for path in paths:
        _split_uri(path)
    sys.exit(_admin(lambda: run_load(master_url, list(paths), priority, wait_, interval, as_json)))


@main.command()
@master_opt
@json_opt
def jobs(master_url: str, as_json: bool) -> None:
    """Load jobs and their progress."""
    from ..client import connect
    from .jobs import job_line

    async def go() -> list[Any]:
        async with connect(master_url) as pc:
            return await pc.jobs()

    infos = _admin(go)
    if as_json:
        click.echo(json.dumps({"jobs": [i.to_wire() for i in infos]}, indent=2))
        return
    if not infos:
        click.echo("no load jobs")
    for info in infos:
        click.echo(f"{info.id}  {info.state:<9}  {job_line(info)}  {' '.join(info.paths)}")


@main.command()
@master_opt
@json_opt
@click.argument("job_id")
def cancel(master_url: str, as_json: bool, job_id: str) -> None:
    """Cancel a load job (blocks already loaded stay cached)."""
    from ..client import connect

    async def go() -> Any:
        async with connect(master_url) as pc:
            return await pc.job(job_id).cancel()

    info = _admin(go)
    if as_json:
        click.echo(json.dumps(info.to_wire(), indent=2))
        return
    click.echo(f"{info.id}  {info.state}")


# ---- pins, free, TTL --------------------------------------------------------------


@main.command()
@master_opt
@json_opt
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), default=None, help="Unpin after SECONDS.")
@click.option("--name", default=None, help="Name of the pin (default: the paths).")
@click.argument("paths", nargs=-1, required=True)
def pin(master_url: str, as_json: bool, ttl: float | None, name: str | None, paths: tuple[str, ...]) -> None:
    """Keep every block under s3://BUCKET/PREFIX (one or more) in the cache.

    Blocks not cached yet are kept from the moment they arrive (combine with
    `pipecache load` to bring them in).
    """
    from .holds import echo_hold, run

    for path in paths:
        _split_uri(path)
    echo_hold(_admin(run(master_url, lambda pc: pc.pin(list(paths), name, ttl))), as_json)


@main.command()
@master_opt
@json_opt
@click.argument("name")
def unpin(master_url: str, as_json: bool, name: str) -> None:
    """End a pin (or protection) by NAME: its blocks become ordinary again."""
    from .holds import echo_hold, run

    echo_hold(_admin(run(master_url, lambda pc: pc.unpin(name))), as_json)


@main.command()
@master_opt
@json_opt
@click.option("--force", is_flag=True, help="Drop pinned and protected blocks too.")
@click.argument("paths", nargs=-1, required=True)
def free(master_url: str, as_json: bool, force: bool, paths: tuple[str, ...]) -> None:
    """Drop every cached block under s3://BUCKET/PREFIX (one or more)."""
    from .holds import free_line, run

    for path in paths:
        _split_uri(path)
    reply = _admin(run(master_url, lambda pc: pc.free(list(paths), force)))
    click.echo(json.dumps(reply.to_wire(), indent=2) if as_json else free_line(reply))


@main.command()
@master_opt
@json_opt
@click.argument("paths", nargs=-1, required=True)
@click.argument("seconds", type=click.FloatRange(min=0, min_open=True))
def ttl(master_url: str, as_json: bool, paths: tuple[str, ...], seconds: float) -> None:
    """Drop the cached blocks under s3://BUCKET/PREFIX (one or more) SECONDS from now."""
    from .holds import echo_hold, run

    for path in paths:
        _split_uri(path)
    echo_hold(_admin(run(master_url, lambda pc: pc.set_ttl(list(paths), seconds))), as_json)


@main.command()
@master_opt
@json_opt
def pins(master_url: str, as_json: bool) -> None:
    """Pins, protections and TTL entries: blocks resident/total and expiry."""
    from .holds import echo_holds, run

    echo_holds(_admin(run(master_url, lambda pc: pc.holds())), as_json)


def _register_groups() -> None:
    from .watcher import watcher

    main.add_command(watcher)


_register_groups()
