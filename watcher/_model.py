"""Internal building blocks shared by the KFP v2 and Argo/KFP v1 graph builders.

Everything here is pure and bounded: workflow objects come from the cluster (or a
user's file) and may be malformed or hostile, so every walk has a budget and every
accessor tolerates the wrong type instead of raising ``KeyError``/``TypeError``.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

ANNOTATION = "pipecache.io/inputs"
URI_SCHEMES = ("s3://", "minio://")

# Limits: a workflow is at most a few MiB in etcd, so these are far above real use.
MAX_DEPTH = 32  # nesting of DAG templates (KFP loops use three Argo levels per loop)
MAX_GROUPS = 20_000  # DAG tasks walked in total, across every sub-DAG
MAX_JSON_TEXT = 8 << 20  # one embedded JSON string (task, component, pod-spec-patch)
MAX_VALUES = 10_000  # scalar values visited when searching one value for URIs
MAX_INPUTS = 1_000  # URIs kept per step
# Characters parsed or searched per plan. Every string has its own cap, but YAML aliases let
# a small file repeat one big string thousands of times, so the total is capped too.
MAX_WORK = 256 << 20

_URI_RE = re.compile(r"(?:s3|minio)://[A-Za-z0-9][^\s\"'<>,;\\{}\[\]()|]*")


class WorkflowError(ValueError):
    """The object is not a workflow this module can plan, or it is too large or corrupt."""


_BUDGET: ContextVar[list[int]] = ContextVar("pipecache_watcher_budget")


@contextmanager
def work_budget(limit: int = MAX_WORK) -> Iterator[None]:
    """Bound the text work of one plan (see ``charge``)."""
    token = _BUDGET.set([limit])
    try:
        yield
    finally:
        _BUDGET.reset(token)


def charge(chars: int) -> None:
    """Spend ``chars`` of the current plan's work budget; ``WorkflowError`` once it is gone."""
    budget = _BUDGET.get(None)
    if budget is not None:
        budget[0] -= chars
        if budget[0] < 0:
            raise WorkflowError("workflow is too large to plan (work budget exhausted)")


@dataclass(frozen=True)
class Input:
    """One URI a step will read, and where pipecache learnt it from.

    ``source`` is ``parameter`` (a pipeline or task parameter), ``importer`` (an
    importer's ``artifactUri``, or an artifact location written into the workflow),
    ``upstream`` (an output of an earlier step, known once it was decided) or
    ``annotation`` (the ``pipecache.io/inputs`` pod annotation).
    """

    uri: str
    source: str

    def to_json(self) -> dict[str, str]:
        """The JSON form: ``{"uri": ..., "source": ...}``."""
        return {"uri": self.uri, "source": self.source}


@dataclass(frozen=True)
class ArtRef:
    """An artifact input whose URI is only known at run time: ``output`` of ``producer``."""

    producer: tuple[str, ...]
    output: str


@dataclass
class StepSpec:
    """A step while the graph is being built (mutable; frozen into ``Step`` later)."""

    key: tuple[str, ...]  # enclosing group names, then the task name
    kind: str  # container | importer | task
    deps: set[tuple[str, ...]] = field(default_factory=set)
    groups: tuple[tuple[str, ...], ...] = ()  # enclosing DAG groups, outermost first
    inputs: list[Input] = field(default_factory=list)
    unsupported: list[Input] = field(default_factory=list)
    art_refs: list[ArtRef] = field(default_factory=list)
    outputs: dict[str, list[str]] = field(default_factory=dict)  # statically known outputs
    problems: list[str] = field(default_factory=list)


@dataclass
class Graph:
    """Steps in definition order, and which Argo task path plays which role for which step."""

    flavor: str
    steps: dict[tuple[str, ...], StepSpec] = field(default_factory=dict)
    # Argo path (task names from the entrypoint down) -> (owner kind, owner key, role)
    roles: dict[tuple[str, ...], tuple[str, tuple[str, ...], str]] = field(default_factory=dict)
    problems: list[tuple[str | None, str]] = field(default_factory=list)
    groups_walked: int = 0

    def count_group(self) -> None:
        """Charge one DAG task to the walk budget."""
        self.groups_walked += 1
        if self.groups_walked > MAX_GROUPS:
            raise WorkflowError(f"workflow has more than {MAX_GROUPS} DAG tasks")


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (hostile input tolerated)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list or tuple, else an empty list."""
    return list(value) if isinstance(value, list | tuple) else []


def as_str(value: Any) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def named(items: Any) -> dict[str, Any]:
    """Argo ``[{name: n, value: v}, ...]`` lists as ``{n: entry}``; unnamed entries dropped."""
    out: dict[str, Any] = {}
    for item in as_list(items):
        name = as_str(as_map(item).get("name"))
        if name is not None and name not in out:
            out[name] = item
    return out


def parse_json(text: Any) -> Any:
    """Parse an embedded JSON string; None when it is not a string or not JSON."""
    if not isinstance(text, str) or len(text) > MAX_JSON_TEXT:
        return None
    charge(len(text))
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: "[[[[..." nested deeper than the interpreter's stack.
        return None


def is_data_uri(uri: str) -> bool:
    """Whether pipecache can preload ``uri`` (an S3 or MinIO object or prefix)."""
    return uri.startswith(URI_SCHEMES) and len(uri.split("://", 1)[1].split("/", 1)[0]) > 0


def find_uris(value: Any) -> list[str]:
    """Every ``s3://``/``minio://`` URI found in the strings of a JSON-like value.

    Strings are searched rather than compared whole, so ``"s3://a,s3://b"`` and a JSON
    list serialised into a parameter both yield their URIs. Bounded by ``MAX_VALUES``.
    """
    out: list[str] = []
    stack = [value]
    seen = 0
    while stack and seen < MAX_VALUES:
        item = stack.pop()
        seen += 1
        if isinstance(item, str):
            charge(len(item))
            if "://" in item:
                out.extend(m.group(0) for m in _URI_RE.finditer(item[:MAX_JSON_TEXT]))
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())[:MAX_VALUES]))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(list(item)[:MAX_VALUES]))
    return out


def split_uris(text: str) -> list[str]:
    """The comma-separated URIs of a ``pipecache.io/inputs`` annotation."""
    return [part.strip() for part in text.split(",") if part.strip()]


def add_input(step: StepSpec, uri: str, source: str) -> None:
    """Record ``uri`` for ``step`` once; URIs pipecache cannot cache go to ``unsupported``."""
    target = step.inputs if is_data_uri(uri) else step.unsupported
    if len(target) >= MAX_INPUTS or any(i.uri == uri for i in target):
        return
    target.append(Input(uri, source))


def depends_names(task: Mapping[str, Any]) -> list[str]:
    """Task names an Argo DAG task waits for: ``dependencies`` plus names in ``depends``.

    ``depends`` is a boolean expression such as ``(a.Succeeded || b.Failed) && !c``;
    any task it mentions is a dependency for planning purposes.
    """
    names = [n for n in as_list(task.get("dependencies")) if isinstance(n, str)]
    expr = as_str(task.get("depends"))
    if expr:
        charge(len(expr))
        for token in re.findall(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", expr[:65536]):
            name = token.split(".", 1)[0]
            if name not in names:
                names.append(name)
    return names


def topo_order(order: list[str], deps: Mapping[str, Iterable[str]]) -> tuple[list[str], list[str]]:
    """Kahn's order over ``order`` (ties keep definition order), plus names left in cycles."""
    index = {n: i for i, n in enumerate(order)}
    missing = {n: {d for d in deps.get(n, ()) if d in index and d != n} for n in order}
    users: dict[str, list[str]] = {n: [] for n in order}
    for name, wanted in missing.items():
        for dep in wanted:
            users[dep].append(name)
    ready = [index[n] for n in order if not missing[n]]
    heapq.heapify(ready)
    done: list[str] = []
    while ready:
        name = order[heapq.heappop(ready)]
        done.append(name)
        for user in users[name]:
            missing[user].discard(name)
            if not missing[user]:
                heapq.heappush(ready, index[user])
    placed = set(done)
    return done, [n for n in order if n not in placed]
