"""Pure core of the Kubeflow watcher: a workflow object in, a plan of steps and inputs out.

``plan_workflow`` turns one Argo Workflow (a KFP v2 compiled pipeline, a KFP v1 pipeline or a
plain Argo DAG; with or without ``status``) into a :class:`Plan`: every step the user named,
its dependencies, its state, and the S3 URIs it will read. ``upcoming`` orders the steps that
run now or soon by dependency distance, for the scheduler that preloads their inputs.

No I/O and no clock: the watcher feeds objects from the Kubernetes API, ``pipecache watcher
plan`` feeds a file, and the tests feed the real compiled workflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import argo, kfp_v2
from ._model import (
    ANNOTATION,
    Graph,
    Input,
    StepSpec,
    WorkflowError,
    add_input,
    as_list,
    as_map,
    as_str,
    find_uris,
    named,
    work_budget,
)
from .status import Node, decode_compressed_nodes, workflow_nodes

__all__ = [
    "ANNOTATION",
    "Input",
    "Plan",
    "Problem",
    "Step",
    "WorkflowError",
    "decode_compressed_nodes",
    "plan_workflow",
    "upcoming",
]

STATES = ("pending", "ready", "running", "succeeded", "failed", "skipped")
DONE = frozenset({"succeeded", "skipped"})  # a dependency in these states no longer holds a step back
_SKIPPED = frozenset({"Skipped", "Omitted"})
_FINISHED = frozenset({"Succeeded", "Failed", "Error"})


@dataclass(frozen=True)
class Step:
    """One pipeline task as the user named it (drivers, executors, system tasks folded in).

    ``state`` is one of ``pending``, ``ready`` (every dependency done: runs next), ``running``,
    ``succeeded``, ``failed`` or ``skipped`` (cached, or its condition was false).
    """

    name: str
    dependencies: tuple[str, ...]
    state: str
    inputs: tuple[Input, ...]
    kind: str = "container"  # container | importer | task (plain Argo / KFP v1)
    path: tuple[str, ...] = ()  # enclosing sub-DAGs (conditions, loops), then the task name
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"name", "dependencies", "state", "inputs"}``, as ``pipecache watcher plan`` prints."""
        return {
            "name": self.name,
            "dependencies": list(self.dependencies),
            "state": self.state,
            "inputs": [i.to_json() for i in self.inputs],
        }


@dataclass(frozen=True)
class Problem:
    """Something in the workflow that could not be planned; ``step`` is None for the whole run."""

    step: str | None
    message: str


@dataclass(frozen=True)
class Plan:
    """A workflow's steps (dependencies before dependants) and what each will read."""

    name: str | None
    namespace: str | None
    run_id: str | None
    flavor: str  # kfp-v2 | kfp-v1 | argo
    phase: str | None
    finished: bool
    steps: tuple[Step, ...]
    problems: tuple[Problem, ...] = ()
    unsupported: tuple[tuple[str, Input], ...] = ()  # URIs steps read that pipecache cannot cache

    def step(self, name: str) -> Step:
        """The step called ``name``; ``KeyError`` if there is none."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def frontier(self) -> tuple[str, ...]:
        """Steps that run now or next (dependencies running or done), nearest first."""
        return tuple(step.name for _, step in upcoming(self, 1))

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data (what ``pipecache watcher plan`` prints)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "run_id": self.run_id,
            "flavor": self.flavor,
            "phase": self.phase,
            "finished": self.finished,
            "frontier": list(self.frontier),
            "steps": [s.to_json() for s in self.steps],
            "unsupported_inputs": [{"step": s, **i.to_json()} for s, i in self.unsupported],
            "problems": [{"step": p.step, "message": p.message} for p in self.problems],
        }


def upcoming(plan: Plan, lookahead: int) -> list[tuple[int, Step]]:
    """Steps within ``lookahead`` dependency hops of what is running or done, nearest first.

    Distance 0 is a running step; a step whose dependencies are all running or done is at 1;
    otherwise one more than its farthest unfinished dependency. Finished runs, and steps behind
    a failed one, have nothing upcoming.
    """
    if plan.finished or lookahead < 0:
        return []
    state = {s.name: s.state for s in plan.steps}
    dist: dict[str, int | None] = {}
    for step in plan.steps:  # dependencies come first, so one pass suffices
        dist[step.name] = _distance(step, state, dist)
    order = {s.name: i for i, s in enumerate(plan.steps)}
    found = [(d, s) for s in plan.steps if (d := dist[s.name]) is not None and d <= lookahead]
    return sorted(found, key=lambda pair: (pair[0], order[pair[1].name]))


def _distance(step: Step, state: Mapping[str, str], dist: Mapping[str, int | None]) -> int | None:
    if step.state == "running":
        return 0
    if step.state not in ("pending", "ready"):
        return None
    farthest = 0
    for dep in step.dependencies:
        if state.get(dep) in DONE:
            continue
        d = dist.get(dep)
        if d is None:
            return None  # behind a failed step, or a cycle
        farthest = max(farthest, d)
    return farthest + 1


def plan_workflow(obj: Mapping[str, Any]) -> Plan:
    """Plan one Argo Workflow object (as parsed from YAML/JSON), with or without status.

    Raises ``WorkflowError`` (a ``ValueError``) if ``obj`` is not a workflow, or its status is
    corrupt or too large; smaller defects become ``Plan.problems`` instead.
    """
    spec = _check(obj)
    try:
        with work_budget():
            nodes = workflow_nodes(obj)
            if kfp_v2.is_kfp_v2(spec):
                graph = kfp_v2.build(obj)
            else:
                graph = argo.build(obj, "kfp-v1" if argo.is_kfp_v1(obj) else "argo")
            return _resolve(obj, graph, nodes)
    except WorkflowError:
        raise
    except RecursionError:
        raise WorkflowError("workflow is nested too deeply to plan") from None
    except Exception as exc:  # noqa: BLE001 - the watcher must survive any object it is fed
        raise WorkflowError(f"internal error planning workflow: {type(exc).__name__}: {exc}") from exc


def _check(obj: Any) -> Mapping[str, Any]:
    """The workflow's spec, after checking that ``obj`` is an Argo Workflow we can plan."""
    if not isinstance(obj, Mapping):
        raise WorkflowError(f"a workflow is a mapping, not {type(obj).__name__}")
    kind, api = obj.get("kind"), obj.get("apiVersion")
    if kind != "Workflow":
        hint = " (a KFP pipeline spec: submit it to KFP to get a workflow)" if "pipelineInfo" in obj else ""
        raise WorkflowError(f"not an Argo Workflow (kind: {kind!r}){hint}")
    if api is not None and not (isinstance(api, str) and api.startswith("argoproj.io/")):
        raise WorkflowError(f"not an Argo Workflow (apiVersion: {api!r})")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise WorkflowError("workflow has no spec")
    templates = as_list(spec.get("templates"))
    if not templates:
        hint = " (workflowTemplateRef is not followed)" if "workflowTemplateRef" in spec else ""
        raise WorkflowError(f"workflow spec has no templates{hint}")
    entry = spec.get("entrypoint")
    if not isinstance(entry, str) or not any(as_map(t).get("name") == entry for t in templates):
        raise WorkflowError(f"workflow entrypoint {entry!r} is not one of its templates")
    return spec


def _finished(obj: Mapping[str, Any]) -> bool:
    labels = as_map(as_map(obj.get("metadata")).get("labels"))
    if "pipeline/persistedFinalState" in labels or labels.get("workflows.argoproj.io/completed") == "true":
        return True
    return as_str(as_map(obj.get("status")).get("phase")) in _FINISHED


class _Status:
    """Nodes indexed by the step or group (and role) they belong to."""

    def __init__(self, graph: Graph, nodes: list[Node]) -> None:
        self.by_owner: dict[tuple[str, tuple[str, ...], str], list[Node]] = {}
        for node in nodes:
            if (owner := graph.roles.get(node.path)) is not None:
                self.by_owner.setdefault(owner, []).append(node)

    def primary(self, owner: str, key: tuple[str, ...], role: str) -> list[Node]:
        """The aggregate nodes of a role: those with the fewest loop/retry suffixes."""
        nodes = self.by_owner.get((owner, key, role), [])
        least = min((n.loops for n in nodes), default=0)
        return [n for n in nodes if n.loops == least]

    def group_skipped(self, key: tuple[str, ...]) -> bool:
        drivers = self.primary("group", key, "dag-driver")
        if drivers and all(n.param("condition") == "false" for n in drivers):
            return True
        dags = self.primary("group", key, "dag")
        return bool(dags) and all(n.phase in _SKIPPED for n in dags)

    def state(self, spec: StepSpec) -> str | None:
        """The step's state from its nodes; None when nothing of it has started."""
        if any(self.group_skipped(g) for g in spec.groups):
            return "skipped"
        drivers = self.primary("step", spec.key, "driver")
        if drivers:
            if all(n.param("condition") == "false" for n in drivers):
                return "skipped"
            if all(n.param("cached-decision") == "true" for n in drivers):
                return "skipped"
            if _aggregate(drivers) == "failed":
                return "failed"
        for role in ("executor", "executor-pod", "importer", "pod"):
            if nodes := self.primary("step", spec.key, role):
                return _aggregate(nodes)
        return "running" if drivers else None  # driver done: the executor is about to start


def _aggregate(nodes: list[Node]) -> str:
    phases = {n.phase for n in nodes}
    if phases & {"Running", "Pending", ""}:
        return "running"
    if phases & {"Failed", "Error"}:
        return "failed"
    if phases <= _SKIPPED:
        return "skipped"
    return "succeeded" if phases <= _SKIPPED | {"Succeeded"} else "running"


def _upstream(graph: Graph, status: _Status, spec: StepSpec, bucket: str | None) -> None:
    """Add URIs that only the run's status reveals: producers' outputs, the step's own inputs."""
    if graph.flavor == "kfp-v2":
        for ref in spec.art_refs:
            for node in status.primary("step", ref.producer, "driver"):
                outputs = as_map(kfp_v2.executor_input(node.param("pod-spec-patch")).get("outputs"))
                for uri in kfp_v2.artifact_uris(outputs, ref.output):
                    add_input(spec, uri, "upstream")
        for node in status.primary("step", spec.key, "driver"):
            inputs = as_map(kfp_v2.executor_input(node.param("pod-spec-patch")).get("inputs"))
            for uri in kfp_v2.artifact_uris(inputs):
                add_input(spec, uri, "upstream")
            for uri in find_uris(inputs.get("parameterValues")):
                add_input(spec, uri, "parameter")
        return
    for ref in spec.art_refs:
        for node in status.primary("step", ref.producer, "pod"):
            for name, entry in named(node.outputs.get("artifacts")).items():
                if name == ref.output and (location := argo.s3_uri(as_map(entry), bucket)):
                    add_input(spec, location, "upstream")
            value = node.param(ref.output)
            for uri in find_uris(value):
                add_input(spec, uri, "upstream")


def _resolve(obj: Mapping[str, Any], graph: Graph, nodes: list[Node]) -> Plan:
    meta = as_map(obj.get("metadata"))
    finished = _finished(obj)
    status = _Status(graph, nodes)
    specs = list(graph.steps.values())
    bare = [s.key[-1] for s in specs]
    names = {s.key: (s.key[-1] if bare.count(s.key[-1]) == 1 else "/".join(s.key)) for s in specs}
    states: dict[tuple[str, ...], str] = {}
    for spec in specs:  # dependencies before dependants (cycles aside)
        state = status.state(spec)
        if state is None:
            ready = not finished and all(states.get(d) in DONE for d in spec.deps)
            state = "ready" if ready else "pending"
        states[spec.key] = state
        _upstream(graph, status, spec, argo.default_bucket(obj))
    steps = tuple(
        Step(
            name=names[s.key],
            dependencies=tuple(sorted(names[d] for d in s.deps if d in names)),
            state=states[s.key],
            inputs=tuple(s.inputs),
            kind=s.kind,
            path=s.key,
            problems=tuple(s.problems),
        )
        for s in specs
    )
    problems = [Problem(names.get(s.key), p) for s in specs for p in s.problems]
    problems += [Problem(step, message) for step, message in graph.problems]
    if not nodes and "offloadNodeStatusVersion" in as_map(obj.get("status")):
        problems.append(Problem(None, "node status is offloaded to Argo's database; states are unknown"))
    labels = as_map(meta.get("labels"))
    return Plan(
        name=as_str(meta.get("name")) or as_str(meta.get("generateName")),
        namespace=as_str(meta.get("namespace")),
        run_id=as_str(labels.get("pipeline/runid")),
        flavor=graph.flavor,
        phase=as_str(as_map(obj.get("status")).get("phase")),
        finished=finished,
        steps=steps,
        problems=tuple(problems),
        unsupported=tuple((names[s.key], i) for s in specs for i in s.unsupported),
    )
