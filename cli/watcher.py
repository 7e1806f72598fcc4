"""`pipecache watcher ...`: inspect what the Kubeflow watcher would preload for a run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Mapping
from typing import Any

import click
import yaml

from ..watcher import WorkflowError, plan_workflow

MASTER_ENV = "PIPECACHE_MASTER"

MAX_FILE = 64 << 20  # a workflow in etcd is at most ~1.5 MiB; anything far bigger is a mistake


@click.group(name="watcher")
def watcher() -> None:
    """Kubeflow Pipelines watcher tools."""


def _documents(text: str) -> tuple[list[Any], bool]:
    """Every document of a YAML or JSON text (a ``kind: *List`` contributes its items), and
    whether the text held a collection (so that one item still prints as an array)."""
    stripped = text.lstrip()
    try:
        docs = [json.loads(text)] if stripped.startswith(("{", "[")) else None
    except ValueError:
        docs = None  # YAML flow style also starts with "{": let the YAML parser decide
    if docs is None:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    out: list[Any] = []
    collection = len(docs) > 1
    for doc in docs:
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
            out.extend(doc["items"])
            collection = True
        elif isinstance(doc, list):
            out.extend(doc)
            collection = True
        else:
            out.append(doc)
    return out, collection


@watcher.command("plan")
@click.argument("workflow", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--compact", is_flag=True, help="Print the JSON on one line.")
def plan(workflow: str, compact: bool) -> None:
    """Print the plan of WORKFLOW (an Argo Workflow YAML/JSON file, or - for stdin) as JSON.

    The plan lists each pipeline step, its dependencies and state, and the S3 URIs it will
    read; several workflows (a multi-document file or a List) print a JSON array.
    """
    try:
        if workflow == "-":
            text = sys.stdin.read(MAX_FILE + 1)
        else:
            with open(workflow, encoding="utf-8") as f:
                text = f.read(MAX_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {workflow}: {exc}") from None
    if len(text) > MAX_FILE:
        raise click.ClickException(f"{workflow}: larger than {MAX_FILE >> 20} MiB")
    try:
        docs, collection = _documents(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise click.ClickException(f"{workflow}: not YAML or JSON: {exc}") from None
    if not docs:
        raise click.ClickException(f"{workflow}: no workflow in the file")
    plans = []
    for i, doc in enumerate(docs, 1):
        try:
            plans.append(plan_workflow(doc).to_json())
        except WorkflowError as exc:
            where = f"{workflow} (document {i})" if len(docs) > 1 else workflow
            raise click.ClickException(f"{where}: {exc}") from None
    out = plans if collection else plans[0]
    click.echo(json.dumps(out, indent=None if compact else 2))


@watcher.command("run")
@click.option("--master", "master_url", required=True, envvar=MASTER_ENV, help="Master URL.")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    envvar="PIPECACHE_KUBECONFIG",
    default=None,
    help="kubeconfig file (default: the pod's service account, in-cluster).",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Namespace to watch (repeatable; none: every namespace).",
)
@click.option(
    "--lookahead",
    type=click.IntRange(0, 100),
    default=2,
    show_default=True,
    help="Preload the inputs of steps up to this many dependency hops ahead.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the metrics/health server.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9102,
    show_default=True,
    help="Port of /metrics, /healthz and /readyz.",
)
@click.option(
    "--timeline",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Append what the watcher does (preloads, holds, step starts, each step's measured hit "
    "ratio) to FILE as JSON lines.",
)
@click.option(
    "--hits-interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between reads of the running steps' hit counts (the final one is read at each step's end).",
)
@click.option("--check-config", is_flag=True, help="Validate the settings and exit.")
def run(
    master_url: str,
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    lookahead: int,
    host: str,
    metrics_port: int,
    timeline: str | None,
    hits_interval: float,
    check_config: bool,
) -> None:
    """Watch Kubeflow pipeline runs (Argo Workflows) and preload what their next steps read."""
    from ..watcher.kube import KubeError, WatchSettings
    from ..watcher.service import WatcherSettings

    s = WatcherSettings(
        master=master_url,
        lookahead=lookahead,
        kubeconfig=kubeconfig,
        host=host,
        metrics_port=metrics_port,
        hits_interval=hits_interval,
        watch=WatchSettings(namespaces=tuple(dict.fromkeys(namespaces))),
    )
    try:
        s.validate()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if check_config:
        click.echo("watcher settings ok")
        return
    from ..watcher.app import run_watcher
    from ..watcher.timeline import TimelineWriter

    with contextlib.ExitStack() as stack:
        hooks = []
        if timeline is not None:
            try:
                out = stack.enter_context(open(timeline, "a", encoding="utf-8"))
            except OSError as exc:
                raise click.ClickException(f"cannot write {timeline}: {exc}") from None
            hooks.append(TimelineWriter(out))
        try:
            asyncio.run(run_watcher(s, hooks=hooks))
        except KubeError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            pass
