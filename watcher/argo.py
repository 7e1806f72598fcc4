"""The task graph of a plain Argo DAG workflow, which is what KFP v1 compiles to.

KFP v1 (SDK 1.x) puts each user container directly in an Argo template; a DAG task is a step,
and data moves between steps as Argo artifacts (``arguments.artifacts[].from:
{{tasks.P.outputs.artifacts.X}}``) stored in the workflow's artifact repository (MinIO's
``mlpipeline`` bucket in a default install). Nested DAG templates (``dsl.Condition``,
``dsl.ParallelFor``) are flattened like KFP v2 sub-DAGs. ``steps:`` templates are treated as
one opaque step.

Loops: a task with ``withItems`` (a literal list), or ``withParam`` naming a list known before
the run (a JSON literal, a workflow or DAG input parameter), runs once per item, so its step
reads every item's inputs: ``{{item}}`` and ``{{item.field}}`` are bound to each item in turn,
and inside a looped DAG the inputs carry one value per item (``_Ctx.params``). A
``withParam`` naming another task's output parameter is known only once that task ran: a
looped step then reads what that output names (an upstream reference); inside a looped DAG
the items are not followed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._model import (
    ANNOTATION,
    MAX_DEPTH,
    ArtRef,
    Graph,
    Input,
    StepSpec,
    add_input,
    as_list,
    as_map,
    as_str,
    charge,
    depends_names,
    find_uris,
    named,
    split_uris,
    topo_order,
)

_EXPR = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
Key = tuple[str, ...]
Ref = Input | ArtRef
MAX_ITEMS = 1_000  # withItems entries expanded per task


def is_kfp_v1(obj: Mapping[str, Any]) -> bool:
    """Whether an Argo workflow carries the KFP v1 SDK's marks."""
    meta = as_map(obj.get("metadata"))
    marks = {**as_map(meta.get("annotations")), **as_map(meta.get("labels"))}
    if any(str(k).startswith("pipelines.kubeflow.org/") for k in marks):
        return True
    for tpl in as_list(as_map(obj.get("spec")).get("templates")):
        labels = as_map(as_map(as_map(tpl).get("metadata")).get("labels"))
        if "pipelines.kubeflow.org/pipeline-sdk-type" in labels:
            return True
    return False


@dataclass(frozen=True)
class _Ctx:
    template: str
    argo_path: Key
    kfp_path: Key
    params: Mapping[str, list[str]]  # {{inputs.parameters.X}} of the enclosing DAG (one per item)
    artifacts: Mapping[str, list[Ref]]  # {{inputs.artifacts.X}} of the enclosing DAG template
    inherited: frozenset[Key]
    enclosing: tuple[Key, ...]
    depth: int
    stack: tuple[str, ...]


def build(obj: Mapping[str, Any], flavor: str) -> Graph:
    """The graph (steps, static inputs, Argo roles) of a plain Argo or KFP v1 workflow."""
    spec = as_map(obj.get("spec"))
    walker = _Walker(spec, default_bucket(obj), flavor)
    # Argo binds the workflow's arguments to the entrypoint template's inputs.
    wf_params = {k: [v] for k, v in walker.wf_params.items()}
    ctx = _Ctx(str(spec.get("entrypoint")), (), (), wf_params, {}, frozenset(), (), 0, ())
    tpl = as_map(walker.templates.get(ctx.template))
    if isinstance(tpl.get("dag"), Mapping):
        walker.walk(ctx)
    else:
        # A single-template workflow: the entrypoint itself is the only step.
        walker.leaf({"name": ctx.template, "template": ctx.template}, ctx, frozenset(), {}, root=True)
    return walker.graph


def default_bucket(obj: Mapping[str, Any]) -> str | None:
    """The artifact repository bucket recorded in the workflow's status, if any."""
    ref = as_map(as_map(obj.get("status")).get("artifactRepositoryRef"))
    return as_str(as_map(as_map(ref.get("artifactRepository")).get("s3")).get("bucket"))


def s3_uri(artifact: Mapping[str, Any], bucket: str | None) -> str | None:
    """``s3://bucket/key`` of an Argo artifact stored in S3 (or MinIO), if it says where."""
    s3 = as_map(artifact.get("s3"))
    key = as_str(s3.get("key"))
    bucket = as_str(s3.get("bucket")) or bucket
    return f"s3://{bucket}/{key.lstrip('/')}" if key and bucket else None


class _Walker:
    def __init__(self, spec: Mapping[str, Any], bucket: str | None, flavor: str) -> None:
        self.graph = Graph(flavor)
        self.bucket = bucket
        self.templates = {
            as_map(t)["name"]: as_map(t)
            for t in as_list(spec.get("templates"))
            if isinstance(as_map(t).get("name"), str)
        }
        self.wf_params = {
            k: v
            for k, e in named(as_map(spec.get("arguments")).get("parameters")).items()
            if isinstance(v := as_map(e).get("value"), str)
        }

    def subst(self, text: str, ctx: _Ctx, item: Any = None) -> list[str]:
        """Argo ``{{...}}`` expressions replaced where the value is known before the run.

        One string per value of the loop inputs ``text`` names (a DAG called with items
        binds its inputs once per item; inputs of one loop have as many values as it has
        items, so the i-th values go together); one string when it names none.
        """
        text = text[: 1 << 20]
        looped = [
            len(ctx.params.get(m.group(1)[len("inputs.parameters.") :], ()))
            for m in _EXPR.finditer(text)
            if m.group(1).startswith("inputs.parameters.")
        ]
        return [self._subst_one(text, ctx, item, i) for i in range(min(max([1, *looped]), MAX_ITEMS))]

    def _subst_one(self, text: str, ctx: _Ctx, item: Any, index: int) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("workflow.parameters."):
                return self.wf_params.get(expr[len("workflow.parameters.") :], m.group(0))
            if expr.startswith("inputs.parameters."):
                values = ctx.params.get(expr[len("inputs.parameters.") :])
                return values[min(index, len(values) - 1)] if values else m.group(0)
            if item is not None and (expr == "item" or expr.startswith("item.")):
                value = item if expr == "item" else as_map(item).get(expr[len("item.") :])
                if value is not None:
                    return value if isinstance(value, str) else json.dumps(value)
            return m.group(0)

        charge(len(text))
        return _EXPR.sub(one, text)

    def items(self, task: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
        """The items a looped task runs with, when known before the run ([None] otherwise)."""
        if "withItems" in task:
            return as_list(task.get("withItems"))[:MAX_ITEMS] or [None]
        source = as_str(task.get("withParam"))
        items: list[Any] = []
        for text in self.subst(source, ctx) if source else []:
            try:
                found = json.loads(text)
            except ValueError:
                continue  # not known yet (another task's output) or not a list
            items += as_list(found)
        return items[:MAX_ITEMS] or [None]

    def walk(self, ctx: _Ctx) -> frozenset[Key]:
        """Add the steps of DAG template ``ctx.template``; return its sink steps."""
        where = "/".join(ctx.argo_path) or ctx.template
        if ctx.depth > MAX_DEPTH or ctx.template in ctx.stack:
            self.graph.problems.append((None, f"{where}: DAG nesting too deep or recursive; not walked"))
            return ctx.inherited
        tasks: dict[str, Mapping[str, Any]] = {}
        for raw in as_list(as_map(as_map(self.templates.get(ctx.template)).get("dag")).get("tasks")):
            task = as_map(raw)
            if isinstance(task.get("name"), str) and isinstance(task.get("template"), str):
                self.graph.count_group()
                tasks.setdefault(task["name"], task)
        deps = {n: {d for d in depends_names(t) if d in tasks and d != n} for n, t in tasks.items()}
        order, cyclic = topo_order(list(tasks), deps)
        if cyclic:
            self.graph.problems.append((None, f"{where}: dependency cycle among {', '.join(cyclic)}"))
        sinks_of: dict[str, frozenset[Key]] = {}
        leaf_of: dict[str, StepSpec] = {}
        for name in order + cyclic:
            wait = frozenset().union(*(sinks_of[d] for d in deps[name] if d in sinks_of)) or ctx.inherited
            task = tasks[name]
            if isinstance(as_map(self.templates.get(task["template"])).get("dag"), Mapping):
                sinks_of[name] = self.enter(task, ctx, wait, leaf_of)
            else:
                sinks_of[name] = frozenset({self.leaf(task, ctx, wait, leaf_of).key})
        for name in cyclic:  # keep the cycle's edges so that its steps never look ready
            if (member := leaf_of.get(name)) is not None:
                member.deps.update(*(sinks_of[d] for d in deps[name] if d in sinks_of))
                member.problems.append("in a dependency cycle")
        used = set().union(*deps.values())
        return frozenset().union(*(s for n, s in sinks_of.items() if n not in used)) or ctx.inherited

    def enter(
        self, task: Mapping[str, Any], ctx: _Ctx, wait: frozenset[Key], leaf_of: Mapping[str, StepSpec]
    ) -> frozenset[Key]:
        """Walk a nested DAG task with its arguments bound to the DAG template's inputs."""
        kfp = (*ctx.kfp_path, task["name"])
        path = (*ctx.argo_path, task["name"])
        self.graph.roles[path] = ("group", kfp, "dag")
        tpl = as_map(self.templates.get(task["template"]))
        params, refs = self.bind(task, tpl, ctx, leaf_of)
        inner = replace(
            ctx,
            template=task["template"],
            argo_path=path,
            kfp_path=kfp,
            params={k: v for k, v in params.items() if v},
            artifacts=refs,
            inherited=wait,
            enclosing=(*ctx.enclosing, kfp),
            depth=ctx.depth + 1,
            stack=(*ctx.stack, ctx.template),
        )
        return self.walk(inner) or wait

    def bind(
        self,
        task: Mapping[str, Any],
        tpl: Mapping[str, Any],
        ctx: _Ctx,
        leaf_of: Mapping[str, StepSpec],
    ) -> tuple[dict[str, list[str]], dict[str, list[Ref]]]:
        """A template's inputs as the task calls it: defaults, then arguments (per loop item)."""
        items = self.items(task, ctx)
        params: dict[str, list[str]] = {}
        inputs = as_map(tpl.get("inputs"))
        for name, entry in named(inputs.get("parameters")).items():
            value = as_map(entry).get("value", as_map(entry).get("default"))
            if isinstance(value, str):
                params[name] = self.subst(value, ctx)
        source = as_str(task.get("withParam")) or ""
        for name, entry in named(as_map(task.get("arguments")).get("parameters")).items():
            value = as_map(entry).get("value")
            if isinstance(value, str):
                if items == [None] and "{{item" in value.replace(" ", ""):
                    value = source  # items known once a task ran: its output names them
                params[name] = [v for item in items for v in self.subst(value, ctx, item)][:MAX_ITEMS]
        refs: dict[str, list[Ref]] = {}
        for entries in (inputs.get("artifacts"), as_map(task.get("arguments")).get("artifacts")):
            for name, entry in named(entries).items():
                found = self.artifact(as_map(entry), ctx, leaf_of)
                if found or name not in refs:
                    refs[name] = found
        return params, refs

    def artifact(self, entry: Mapping[str, Any], ctx: _Ctx, leaf_of: Mapping[str, StepSpec]) -> list[Ref]:
        """Where an artifact argument comes from: a fixed S3 location, an input, or a task."""
        if (uri := s3_uri(entry, self.bucket)) is not None:
            return [Input(uri, "importer")]
        source = as_str(entry.get("from")) or ""
        m = _EXPR.fullmatch(source.strip())
        parts = m.group(1).split(".") if m else []
        if len(parts) == 5 and parts[0] == "tasks" and parts[2:4] == ["outputs", "artifacts"]:
            producer = leaf_of.get(parts[1])
            return [ArtRef(producer.key, parts[4])] if producer is not None else []
        if len(parts) == 3 and parts[:2] == ["inputs", "artifacts"]:
            return list(ctx.artifacts.get(parts[2], []))
        return []

    def leaf(
        self,
        task: Mapping[str, Any],
        ctx: _Ctx,
        wait: frozenset[Key],
        leaf_of: dict[str, StepSpec],
        root: bool = False,
    ) -> StepSpec:
        """One step: a task running a container (or script, resource, steps...) template."""
        key: Key = (*ctx.kfp_path, task["name"])
        step = StepSpec(key=key, kind="task", deps=set(wait), groups=ctx.enclosing)
        self.graph.steps[key] = step
        leaf_of[task["name"]] = step
        self.graph.roles[() if root else (*ctx.argo_path, task["name"])] = ("step", key, "pod")
        tpl = as_map(self.templates.get(task["template"]))
        if not tpl:
            step.problems.append(f"template {task['template']!r} is not defined")
        params, refs = self.bind(task, tpl, ctx, leaf_of)
        for values in params.values():
            for value in values:
                for uri in find_uris(value):
                    add_input(step, uri, "parameter")
                for m in _EXPR.finditer(value):
                    parts = m.group(1).split(".")
                    if len(parts) == 5 and parts[0] == "tasks" and parts[2:4] == ["outputs", "parameters"]:
                        if (producer := leaf_of.get(parts[1])) is not None:
                            step.art_refs.append(ArtRef(producer.key, parts[4]))
        for found in refs.values():
            for ref in found:
                if isinstance(ref, Input):
                    add_input(step, ref.uri, ref.source)
                elif ref not in step.art_refs:
                    step.art_refs.append(ref)
        note = as_map(as_map(tpl.get("metadata")).get("annotations")).get(ANNOTATION)
        if isinstance(note, str):
            for text in self.subst(note, ctx):
                for uri in split_uris(text):
                    add_input(step, uri, "annotation")
        return step
