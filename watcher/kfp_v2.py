"""The task graph of a KFP v2 pipeline compiled to an Argo Workflow.

How the KFP v2 backend compiler lays a pipeline out (``backend/src/v2/compiler/argocompiler``):

* Every component's spec and implementation travel as JSON strings in workflow parameters
  ``components-<name>``, ``implementations-<name>`` and ``kubernetes-comp-<task>``; DAG tasks
  refer to them as ``{{workflow.parameters.components-...}}``.
* A container task ``t`` becomes two Argo tasks: ``t-driver`` (template
  ``system-container-driver``, with the KFP task JSON in its ``task`` argument and the task key
  in ``task-name``) and ``t`` (template ``system-container-executor``, a DAG whose ``executor``
  pod runs with the driver's ``pod-spec-patch`` unless ``cached-decision`` is true).
* An importer is one Argo task on ``system-importer``; its ``importer`` argument holds the
  implementation JSON with ``artifactUri`` (``constant`` or ``runtimeParameter``).
* A sub-DAG (condition, loop, nested pipeline) is a ``system-dag-driver`` task plus a task on the
  sub-DAG's template that reads ``{{tasks.<driver>.outputs.parameters...}}``. Loops add two Argo
  levels (``iteration-driver``/``iteration-iterations`` with ``withSequence``, then
  ``iteration-item-driver``/``iteration-item``) whose drivers carry the loop's own ``task-name``:
  those levels continue the same KFP group instead of opening a new one.
* The entrypoint runs ``root-driver`` (``driver-type: ROOT_DAG``, with the run's
  ``runtime-config``) and then the ``root`` DAG.

So Argo tasks are grouped into KFP tasks by the driver they belong to, and Argo ``depends``
between those groups become dependencies between steps; sub-DAG groups are flattened (their
inner steps inherit the group's dependencies, and a step after a group waits for its sinks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._model import (
    ANNOTATION,
    MAX_DEPTH,
    MAX_VALUES,
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
    parse_json,
    split_uris,
    topo_order,
)

_WF_PARAM = re.compile(r"^\{\{\s*workflow\.parameters\.([A-Za-z0-9_.-]+)\s*\}\}$")
_TASK_REF = re.compile(r"\{\{\s*tasks\.([A-Za-z0-9_-]+)\.outputs\.")
Key = tuple[str, ...]
Ref = Input | ArtRef


def is_kfp_v2(spec: Mapping[str, Any]) -> bool:
    """Whether an Argo ``spec`` was produced by the KFP v2 compiler."""
    if "components-root" in named(as_map(spec.get("arguments")).get("parameters")):
        return True
    return any(
        str(as_map(t).get("name", "")).endswith(("system-dag-driver", "system-container-driver"))
        for t in as_list(spec.get("templates"))
    )


@dataclass
class Scope:
    """Values visible to tasks of one KFP DAG: its input parameters and artifacts."""

    params: dict[str, list[Any]] = field(default_factory=dict)
    artifacts: dict[str, list[Ref]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Ctx:
    template: str
    argo_path: Key
    kfp_path: Key
    scope: Scope
    scope_ready: bool  # False: ``scope`` is still the parent's (group had no driver yet)
    parent_leaf_of: Mapping[str, StepSpec]
    inherited: frozenset[Key]
    enclosing: tuple[Key, ...]
    depth: int
    stack: tuple[str, ...]
    group_name: str | None


@dataclass
class _Group:
    name: str
    members: list[Mapping[str, Any]] = field(default_factory=list)
    deps: set[str] = field(default_factory=set)


def build(obj: Mapping[str, Any]) -> Graph:
    """The graph (steps, static inputs, Argo roles) of a KFP v2 compiled workflow."""
    spec = as_map(obj.get("spec"))
    walker = _Walker(spec)
    root = _Ctx(
        template=str(spec.get("entrypoint")),
        argo_path=(),
        kfp_path=(),
        scope=Scope(),
        scope_ready=True,
        parent_leaf_of={},
        inherited=frozenset(),
        enclosing=(),
        depth=0,
        stack=(),
        group_name=None,
    )
    walker.walk(root)
    return walker.graph


class _Walker:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.graph = Graph("kfp-v2")
        self.templates = {
            as_map(t)["name"]: as_map(t)
            for t in as_list(spec.get("templates"))
            if isinstance(as_map(t).get("name"), str)
        }
        self.wf_params = {
            k: as_str(as_map(v).get("value"))
            for k, v in named(as_map(spec.get("arguments")).get("parameters")).items()
        }

    # --- lookups -------------------------------------------------------------------------

    def kind(self, template: str) -> str:
        """What an Argo template is in the KFP v2 layout."""
        for suffix, kind in (
            ("system-dag-driver", "dag-driver"),
            ("system-container-driver", "container-driver"),
            ("system-importer", "importer"),
            ("system-container-executor", "executor"),
        ):
            if template.endswith(suffix):
                return kind
        tpl = as_map(self.templates.get(template))
        role = as_map(as_map(tpl.get("metadata")).get("annotations")).get(
            "pipelines.kubeflow.org/runtime-role"
        )
        if role == "driver":
            outs = named(as_map(tpl.get("outputs")).get("parameters"))
            return "dag-driver" if "execution-id" in outs else "container-driver"
        return "dag" if isinstance(tpl.get("dag"), Mapping) else "other"

    @staticmethod
    def args(task: Mapping[str, Any]) -> dict[str, str]:
        params = named(as_map(task.get("arguments")).get("parameters"))
        return {k: v for k, e in params.items() if isinstance(v := as_map(e).get("value"), str)}

    def deref(self, value: Any) -> Any:
        """``{{workflow.parameters.X}}`` replaced by X's value; anything else unchanged."""
        if isinstance(value, str) and (m := _WF_PARAM.match(value)):
            return self.wf_params.get(m.group(1))
        return value

    def json_arg(self, value: Any) -> Mapping[str, Any]:
        return as_map(parse_json(self.deref(value)))

    # --- the walk --------------------------------------------------------------------------

    def walk(self, ctx: _Ctx) -> frozenset[Key]:
        """Add the steps of DAG template ``ctx.template``; return its sink steps."""
        where = "/".join(ctx.argo_path) or ctx.template
        if ctx.depth > MAX_DEPTH:
            self.graph.problems.append((None, f"{where}: DAGs nested deeper than {MAX_DEPTH}; not walked"))
            return ctx.inherited
        if ctx.template in ctx.stack:
            self.graph.problems.append((None, f"{where}: template {ctx.template!r} includes itself"))
            return ctx.inherited
        tpl = self.templates.get(ctx.template)
        if tpl is None:
            self.graph.problems.append((None, f"{where}: template {ctx.template!r} is not defined"))
            return ctx.inherited
        tasks = []
        for raw in as_list(as_map(tpl.get("dag")).get("tasks")):
            task = as_map(raw)
            if isinstance(task.get("name"), str) and isinstance(task.get("template"), str):
                self.graph.count_group()
                tasks.append(task)
        groups = self.group(tasks)
        order, cyclic = topo_order(list(groups), {n: g.deps for n, g in groups.items()})
        if cyclic:
            self.graph.problems.append((None, f"{where}: dependency cycle among {', '.join(cyclic)}"))
        sinks_of: dict[str, frozenset[Key]] = {}
        leaf_of: dict[str, StepSpec] = {}
        for name in order + cyclic:
            group = groups[name]
            deps = frozenset().union(*(sinks_of[d] for d in group.deps if d in sinks_of)) or ctx.inherited
            dags = [m for m in group.members if self.kind(m["template"]) == "dag"]
            if dags:
                sinks_of[name] = self.enter(group, dags, ctx, deps, leaf_of)
            else:
                step = self.leaf(group, ctx, deps, leaf_of)
                sinks_of[name] = frozenset({step.key})
        for name in cyclic:  # keep the cycle's edges so that its steps never look ready
            if (member := leaf_of.get(name)) is not None:
                member.deps.update(*(sinks_of[d] for d in groups[name].deps if d in sinks_of))
                member.problems.append("in a dependency cycle")
        used = set().union(*(g.deps for g in groups.values()))
        sinks = frozenset().union(*(s for n, s in sinks_of.items() if n not in used))
        return sinks or ctx.inherited

    def group(self, tasks: list[Mapping[str, Any]]) -> dict[str, _Group]:
        """Argo tasks grouped into KFP tasks: a driver (or importer) plus what reads its outputs."""
        owner: dict[str, str] = {}
        for task in tasks:
            kind = self.kind(task["template"])
            if kind in ("container-driver", "dag-driver", "importer"):
                name = task["name"]
                default = name[: -len("-driver")] if kind != "importer" and name.endswith("-driver") else name
                owner[name] = self.args(task).get("task-name") or default
        for task in tasks:
            if task["name"] not in owner:
                text = " ".join(self.args(task).values())
                charge(len(text))
                refs = [owner[r] for r in _TASK_REF.findall(text) if r in owner]
                owner[task["name"]] = refs[0] if refs else task["name"]
        groups: dict[str, _Group] = {}
        for task in tasks:
            groups.setdefault(owner[task["name"]], _Group(owner[task["name"]])).members.append(task)
        for name, group in groups.items():
            for task in group.members:
                wanted = [owner.get(n) for n in depends_names(task)]
                listed = as_list(as_map(parse_json(self.args(task).get("task"))).get("dependentTasks"))
                wanted += [n for n in listed if isinstance(n, str) and n in groups]
                group.deps.update(n for n in wanted if n is not None and n != name)
        return groups

    def enter(
        self,
        group: _Group,
        dags: list[Mapping[str, Any]],
        ctx: _Ctx,
        deps: frozenset[Key],
        leaf_of: dict[str, StepSpec],
    ) -> frozenset[Key]:
        """Walk a sub-DAG group (condition, loop level, nested pipeline or the root)."""
        driver = next((m for m in group.members if self.kind(m["template"]) == "dag-driver"), None)
        args = self.args(driver) if driver is not None else {}
        continued = group.name == ctx.group_name
        parents: Mapping[str, StepSpec]
        if args.get("driver-type") == "ROOT_DAG":
            kfp, scope, ready, parents = ctx.kfp_path, self.root_scope(args), True, leaf_of
        elif continued:
            kfp, parents = ctx.kfp_path, ctx.parent_leaf_of
            if ctx.scope_ready or driver is None:
                scope, ready = ctx.scope, ctx.scope_ready
            else:
                scope, ready = self.child_scope(args, ctx.scope, ctx.parent_leaf_of), True
        else:
            kfp, parents = (*ctx.kfp_path, group.name), leaf_of
            if driver is not None:
                scope, ready = self.child_scope(args, ctx.scope, leaf_of), True
            else:
                scope, ready = ctx.scope, False
        enclosing = ctx.enclosing if continued else (*ctx.enclosing, kfp)
        for member in group.members:
            kind = self.kind(member["template"])
            role = "dag-driver" if kind == "dag-driver" else "dag" if kind == "dag" else "other"
            self.graph.roles[(*ctx.argo_path, member["name"])] = ("group", kfp, role)
        sinks: frozenset[Key] = frozenset()
        for member in dags:
            inner = replace(
                ctx,
                template=member["template"],
                argo_path=(*ctx.argo_path, member["name"]),
                kfp_path=kfp,
                scope=scope,
                scope_ready=ready,
                parent_leaf_of=parents,
                inherited=deps,
                enclosing=enclosing,
                depth=ctx.depth + 1,
                stack=(*ctx.stack, ctx.template),
                group_name=group.name,
            )
            sinks |= self.walk(inner)
        return sinks or deps

    def leaf(self, group: _Group, ctx: _Ctx, deps: frozenset[Key], leaf_of: dict[str, StepSpec]) -> StepSpec:
        """One user-visible step: a container task, an importer, or an unknown Argo task."""
        key: Key = (*ctx.kfp_path, group.name)
        if key in self.graph.steps:
            key = (*ctx.kfp_path, f"{group.name}#{len(self.graph.steps)}")
            self.graph.problems.append((group.name, "task name used twice in one DAG"))
        kinds = {m["name"]: self.kind(m["template"]) for m in group.members}
        source = next(
            (m for m in group.members if kinds[m["name"]] in ("container-driver", "importer")), None
        )
        has_exec = any(k == "executor" for k in kinds.values())
        kind = "importer" if "importer" in kinds.values() else "container" if source or has_exec else "task"
        step = StepSpec(key=key, kind=kind, deps=set(deps), groups=ctx.enclosing)
        self.graph.steps[key] = step
        leaf_of[group.name] = step
        for member in group.members:
            self.register(member, kinds[member["name"]], ctx.argo_path, key)
        if source is not None:
            self.static_inputs(step, source, ctx, leaf_of)
        for member in group.members:
            if kinds[member["name"]] == "executor":
                self.metadata_annotation(step, self.args(member))
        return step

    def register(self, member: Mapping[str, Any], kind: str, argo_path: Key, key: Key) -> None:
        path = (*argo_path, member["name"])
        role = {"container-driver": "driver", "importer": "importer", "executor": "executor"}.get(kind, "pod")
        self.graph.roles[path] = ("step", key, role)
        if kind == "executor":
            for sub in as_list(as_map(self.templates.get(member["template"], {}).get("dag")).get("tasks")):
                if isinstance(name := as_map(sub).get("name"), str):
                    self.graph.roles[(*path, name)] = ("step", key, "executor-pod")

    # --- inputs known before the run -------------------------------------------------------

    def static_inputs(
        self, step: StepSpec, source: Mapping[str, Any], ctx: _Ctx, leaf_of: Mapping[str, StepSpec]
    ) -> None:
        args = self.args(source)
        task = as_map(parse_json(args.get("task")))
        if not task:
            step.problems.append("the driver's task JSON is missing or not JSON")
        inputs = as_map(task.get("inputs"))
        params = as_map(inputs.get("parameters"))
        if step.kind == "importer":  # first, so its URI is reported as the importer's
            self.importer_uri(step, args, params, ctx.scope)
        for spec in params.values():
            for value in resolve_param(spec, ctx.scope):
                for uri in find_uris(value):
                    add_input(step, uri, "parameter")
        for spec in as_map(inputs.get("artifacts")).values():
            for ref in resolve_artifact(spec, ctx.scope, leaf_of):
                if isinstance(ref, Input):
                    add_input(step, ref.uri, ref.source)
                elif ref not in step.art_refs:
                    step.art_refs.append(ref)
        kube = self.json_arg(args.get("kubernetes-config"))
        note = as_map(as_map(kube.get("podMetadata")).get("annotations")).get(ANNOTATION)
        if isinstance(note, str):
            for uri in split_uris(note):
                add_input(step, uri, "annotation")

    def importer_uri(
        self, step: StepSpec, args: Mapping[str, str], params: Mapping[str, Any], scope: Scope
    ) -> None:
        impl = self.json_arg(args.get("importer"))
        where = as_map(impl.get("artifactUri"))
        values: list[Any] = []
        if "constant" in where:
            values = [where["constant"]]
        elif isinstance(cv := where.get("constantValue"), Mapping):
            values = list(cv.values())[:1]
        elif isinstance(rp := where.get("runtimeParameter"), str):
            values = resolve_param(params.get(rp), scope)
            if not values:
                step.problems.append(f"importer parameter {rp!r} has no value known before the run")
        else:
            step.problems.append("importer has no artifactUri")
        uris = [v for v in values if isinstance(v, str) and v]
        for uri in uris:
            add_input(step, uri, "importer")
        outputs = as_map(
            as_map(self.json_arg(args.get("component")).get("outputDefinitions")).get("artifacts")
        )
        for name in list(outputs) or ["artifact"]:
            step.outputs[str(name)] = uris

    @staticmethod
    def metadata_annotation(step: StepSpec, args: Mapping[str, str]) -> None:
        """The annotation as the compiler passes it to ``metadata-N-M-...`` executor templates."""
        for name, value in args.items():
            if name.startswith("pod-metadata-annotation-key") and value == ANNOTATION:
                val = args.get(name.replace("-key", "-val", 1))
                for uri in split_uris(val or ""):
                    add_input(step, uri, "annotation")

    # --- scopes ----------------------------------------------------------------------------

    def root_scope(self, args: Mapping[str, str]) -> Scope:
        """Pipeline parameters: the root component's defaults overlaid with ``runtime-config``."""
        scope = Scope(params=defaults(self.json_arg(args.get("component"))))
        config = as_map(parse_json(args.get("runtime-config")))
        for name, value in as_map(config.get("parameterValues")).items():
            scope.params[str(name)] = [value]
        # The older RuntimeConfig form: {"parameters": {"x": {"stringValue": "..."}}}.
        for name, value in as_map(config.get("parameters")).items():
            scope.params[str(name)] = (
                list(as_map(value).values())[:1] if isinstance(value, Mapping) else [value]
            )
        return scope

    def child_scope(
        self, args: Mapping[str, str], parent: Scope, parent_leaf_of: Mapping[str, StepSpec]
    ) -> Scope:
        """A sub-DAG's inputs, resolved in the parent scope, plus a loop's items."""
        task = as_map(parse_json(args.get("task")))
        scope = Scope(params=defaults(self.json_arg(args.get("component"))))
        inputs = as_map(task.get("inputs"))
        for name, spec in as_map(inputs.get("parameters")).items():
            if values := resolve_param(spec, parent):
                scope.params[str(name)] = values
        for name, spec in as_map(inputs.get("artifacts")).items():
            scope.artifacts[str(name)] = resolve_artifact(spec, parent, parent_leaf_of)
        iterator = as_map(task.get("parameterIterator"))
        item = as_str(iterator.get("itemInput"))
        if item:
            items = as_map(iterator.get("items"))
            raw: list[Any] = [items["raw"]] if "raw" in items else []
            if isinstance(src := items.get("inputParameter"), str):
                raw = scope.params.get(src, [])
            scope.params[item] = flatten(raw)
        return scope


def defaults(component: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Default values of a component's input parameters."""
    params = as_map(as_map(component.get("inputDefinitions")).get("parameters"))
    return {str(k): [as_map(v)["defaultValue"]] for k, v in params.items() if "defaultValue" in as_map(v)}


def flatten(values: list[Any]) -> list[Any]:
    """Loop items: lists (or JSON-encoded lists) opened one level."""
    out: list[Any] = []
    for value in values:
        parsed = parse_json(value) if isinstance(value, str) else value
        out.extend(parsed if isinstance(parsed, list) else [value])
    return out[:MAX_VALUES]


def resolve_param(spec: Any, scope: Scope) -> list[Any]:
    """Candidate values of a task's parameter input; empty when only known at run time."""
    spec = as_map(spec)
    if isinstance(name := spec.get("componentInputParameter"), str):
        return list(scope.params.get(name, []))
    runtime = as_map(spec.get("runtimeValue"))
    if "constant" in runtime:
        return [runtime["constant"]]
    if isinstance(cv := runtime.get("constantValue"), Mapping):
        return list(cv.values())[:1]
    return []


def resolve_artifact(spec: Any, scope: Scope, leaf_of: Mapping[str, StepSpec]) -> list[Ref]:
    """Where a task's artifact input comes from: a URI known now, or a producer's output."""
    spec = as_map(spec)
    out = as_map(spec.get("taskOutputArtifact"))
    if out:
        producer = leaf_of.get(str(out.get("producerTask")))
        key = str(out.get("outputArtifactKey"))
        if producer is None:
            return []  # a sub-DAG's output: known only from the consumer's own driver
        if producer.kind == "importer":
            return [Input(u, "importer") for u in producer.outputs.get(key, [])]
        return [ArtRef(producer.key, key)]
    if isinstance(name := spec.get("componentInputArtifact"), str):
        return list(scope.artifacts.get(name, []))
    return []


def executor_input(pod_spec_patch: Any) -> Mapping[str, Any]:
    """The ``--executor_input`` JSON inside a driver's ``pod-spec-patch`` (empty if absent)."""
    patch = as_map(parse_json(pod_spec_patch))
    for container in as_list(patch.get("containers")):
        words = as_list(as_map(container).get("command")) + as_list(as_map(container).get("args"))
        for i, word in enumerate(words[:-1]):
            if word == "--executor_input":
                return as_map(parse_json(words[i + 1]))
    return {}


def artifact_uris(section: Mapping[str, Any], key: str | None = None) -> list[str]:
    """URIs of ``section.artifacts`` (all keys, or only ``key``) of an executor input."""
    uris: list[str] = []
    for name, entry in as_map(section.get("artifacts")).items():
        if key is None or name == key:
            for artifact in as_list(as_map(entry).get("artifacts")):
                if isinstance(uri := as_map(artifact).get("uri"), str) and uri:
                    uris.append(uri)
    return uris
