"""Advance a workflow's status the way the Argo controller does, one tick at a time.

Each :meth:`ArgoSim.tick`: running pods finish (with their outputs), DAGs whose tasks are all
done finish, and tasks whose dependencies are met appear as running nodes (a DAG task's own
tasks appear on later ticks). Node names are the dotted task paths Argo uses
(``wf.root.train-driver``). KFP v2 drivers emit what the real driver emits: a
``pod-spec-patch`` whose executor input lists the input and output artifact URIs, plus
``cached-decision`` and ``condition``; importers resolve their ``artifactUri``; KFP v1 pods
record their output artifacts in S3 under ``artifacts/<workflow>/<task>/<name>.tgz``.

Loops: a task with ``withItems``, ``withSequence`` or ``withParam`` becomes a group node and
one node per item, named ``task(i:item)`` as Argo names them, with ``{{item}}`` bound in its
arguments; the group finishes when its members have. KFP v2 loop drivers do what the real ones
do: the iterator's driver reports ``iteration-count`` (the ``parameterIterator``'s items), each
item's driver binds the loop item, and container drivers pass input parameters in the executor
input (``Started.parameters``).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

FINISHED = {"Succeeded", "Failed", "Error", "Skipped", "Omitted"}
OK = {"Succeeded", "Skipped", "Omitted"}
_TASK_OUT = re.compile(r"\{\{tasks\.([A-Za-z0-9_-]+)\.outputs\.parameters\.([A-Za-z0-9_-]+)\}\}")
_WF_PARAM = re.compile(r"^\{\{workflow\.parameters\.([A-Za-z0-9_.-]+)\}\}$")
_INPUT = re.compile(r"\{\{inputs\.parameters\.([A-Za-z0-9_-]+)\}\}")
_LOOPS = frozenset({"withItems", "withSequence", "withParam"})


def _params(task: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("value", "") for p in task.get("arguments", {}).get("parameters", [])}


def _deps(task: dict[str, Any]) -> list[str]:
    names = list(task.get("dependencies") or [])
    for token in re.findall(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", task.get("depends") or ""):
        name = token.split(".", 1)[0]
        if name not in names:
            names.append(name)
    return names


@dataclass
class _Node:
    path: tuple[str, ...]
    task: dict[str, Any]
    template: dict[str, Any]
    phase: str = "Running"
    outputs: dict[str, str] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    members: list[tuple[str, ...]] | None = None
    """For a looped task's group node: the paths of its items' nodes."""

    @property
    def is_pod(self) -> bool:
        return "dag" not in self.template and self.members is None


@dataclass
class Started:
    """A pod that started on this tick: the task path, its KFP role, what it will read and
    the artifacts it will write."""

    path: tuple[str, ...]
    template: str
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    """Input parameter values the KFP driver passed (a loop item among them)."""


class ArgoSim:
    def __init__(
        self,
        wf: dict[str, Any],
        *,
        pipeline_root: str = "s3://pipeline-root",
        fail: frozenset[str] = frozenset(),
        compressed: bool = False,
        bucket: str = "mlpipeline",
    ) -> None:
        self.wf = wf
        self.name = wf["metadata"]["name"]
        self.root = pipeline_root.rstrip("/")
        self.fail = fail
        self.compressed = compressed
        self.bucket = bucket
        spec = wf["spec"]
        self.templates = {t["name"]: t for t in spec["templates"]}
        self.wf_params = {
            p["name"]: p.get("value", "") for p in spec.get("arguments", {}).get("parameters", [])
        }
        self.nodes: dict[tuple[str, ...], _Node] = {}
        self.art: dict[tuple[str, str], str] = {}  # (KFP task, output key) -> URI
        self.runtime: dict[str, Any] = {}
        self.scope: dict[tuple[str, ...], dict[str, Any]] = {}  # DAG path -> loop item bindings
        root = json.loads(self.wf_params.get("components-root", "") or "{}")
        self.defaults = {
            k: v["defaultValue"]
            for k, v in root.get("inputDefinitions", {}).get("parameters", {}).items()
            if "defaultValue" in v
        }
        self.ticks = 0
        entry = self.templates[spec["entrypoint"]]
        self.nodes[()] = _Node((), {"name": self.name}, entry)
        wf["status"] = {"phase": "Running"}
        self._publish()

    # ---- driving --------------------------------------------------------------------------

    @property
    def phase(self) -> str:
        return str(self.wf["status"]["phase"])

    def tick(self) -> list[Started]:
        """Advance one step; the pods that started."""
        self.ticks += 1
        for node in [n for n in self.nodes.values() if n.phase == "Running" and n.is_pod]:
            self._finish_pod(node)
        for node in [n for n in self.nodes.values() if n.phase == "Running" and n.members is not None]:
            members = [self.nodes[m] for m in node.members or ()]
            if all(m.phase in FINISHED for m in members):
                node.phase = "Succeeded" if all(m.phase in OK for m in members) else "Failed"
        started: list[Started] = []
        for node in sorted(
            (n for n in self.nodes.values() if "dag" in n.template), key=lambda n: len(n.path)
        ):
            if node.phase == "Running":
                started += self._advance_dag(node)
        root = self.nodes[()]
        if root.phase in FINISHED:
            self.wf["status"]["phase"] = "Succeeded" if root.phase in OK else "Failed"
            labels = self.wf["metadata"].setdefault("labels", {})
            labels["workflows.argoproj.io/completed"] = "true"
        self._publish()
        return started

    def run_to_end(self, limit: int = 100) -> None:
        while self.phase == "Running" and limit:
            self.tick()
            limit -= 1

    # ---- DAGs -----------------------------------------------------------------------------

    def _advance_dag(self, dag: _Node) -> list[Started]:
        tasks = dag.template["dag"]["tasks"]
        children = {t["name"]: self.nodes.get(dag.path + (t["name"],)) for t in tasks}
        started: list[Started] = []
        for task in tasks:
            if children[task["name"]] is not None:
                continue
            deps = [children.get(d) for d in _deps(task) if d in children]
            if any(d is None or d.phase not in FINISHED for d in deps):
                continue
            path = dag.path + (task["name"],)
            template = self.templates[task["template"]]
            if any(d is not None and d.phase not in OK for d in deps) or not self._when(dag, task):
                self.nodes[path] = _Node(path, task, template, phase="Omitted")
            elif _LOOPS & task.keys():
                started += self._expand(dag, task, path, template)
            else:
                started += self._start(path, task, template)
            children[task["name"]] = self.nodes[path]
        if all(c is not None and c.phase in FINISHED for c in children.values()):
            dag.phase = "Succeeded" if all(c.phase in OK for c in children.values() if c) else "Failed"
        return started

    def _start(self, path: tuple[str, ...], task: dict[str, Any], template: dict[str, Any]) -> list[Started]:
        node = self.nodes[path] = _Node(path, task, template)
        if "dag" in template:
            return []
        inputs, outputs, parameters = self._start_pod(node)
        return [Started(path, task["template"], inputs, outputs, parameters)]

    def _expand(
        self, dag: _Node, task: dict[str, Any], path: tuple[str, ...], template: dict[str, Any]
    ) -> list[Started]:
        """A looped task: its group node, and one node per item (``name(i:item)``)."""
        items = self._items(dag, task)
        group = self.nodes[path] = _Node(path, task, {"name": task["template"]}, members=[])
        started: list[Started] = []
        for i, item in enumerate(items):
            text = item if isinstance(item, str) else json.dumps(item)
            member = dag.path + (f"{task['name']}({i}:{text})",)
            bound = json.loads(json.dumps(task).replace("{{item}}", text.replace('"', '\\"')))
            for key in _LOOPS:
                bound.pop(key, None)
            started += self._start(member, bound, template)
            assert group.members is not None
            group.members.append(member)
        if not items:
            group.phase = "Succeeded"
        return started

    def _items(self, dag: _Node, task: dict[str, Any]) -> list[Any]:
        if "withItems" in task:
            return list(task["withItems"])
        if "withSequence" in task:
            count = _TASK_OUT.sub(lambda m: self._output(dag.path + (m.group(1),), m.group(2)),
                                  str(task["withSequence"].get("count", "0")))
            return [str(i) for i in range(int(count or 0))]
        text = _TASK_OUT.sub(lambda m: self._output(dag.path + (m.group(1),), m.group(2)), task["withParam"])
        return list(json.loads(self._resolve(text)))

    def _when(self, dag: _Node, task: dict[str, Any]) -> bool:
        when = task.get("when")
        if not when:
            return True
        text = _TASK_OUT.sub(lambda m: self._output(dag.path + (m.group(1),), m.group(2)), when)
        left, _, right = text.partition("!=")
        return not right or left.strip() != right.strip()

    def _output(self, path: tuple[str, ...], name: str) -> str:
        node = self.nodes.get(path)
        return node.outputs.get(name, "") if node else ""

    # ---- pods -----------------------------------------------------------------------------

    def _start_pod(self, node: _Node) -> tuple[list[str], list[str], dict[str, Any]]:
        """Outputs a pod will report, computed when it starts; the URIs it reads and writes,
        and the input parameters its driver passed."""
        args = self._args(node)
        kind = node.task["template"]
        if kind == "system-container-driver":
            node.outputs = self._container_driver(node, args)
            return [], [], {}
        if kind == "system-dag-driver":
            if args.get("runtime-config"):
                self.runtime = json.loads(args["runtime-config"]).get("parameterValues", {})
            node.outputs = {"execution-id": str(len(self.nodes)), "iteration-count": "0", "condition": "true"}
            self._loop_driver(node, args)
            return [], [], {}
        if kind == "system-importer":
            uri = self._importer_uri(args)
            self.art[(node.path[-1], "artifact")] = uri
            return [uri] if uri else [], [], {}
        if kind == "system-container-impl":
            patch = json.loads(
                self._output(node.path[:-2] + (node.path[-2] + "-driver",), "pod-spec-patch") or "{}"
            )
            executor = _executor_input(patch)
            return (
                _artifact_uris(executor, "inputs"),
                _artifact_uris(executor, "outputs"),
                executor.get("inputs", {}).get("parameterValues", {}),
            )
        # KFP v1 / plain Argo container: outputs in the artifact repository.
        for art in node.template.get("outputs", {}).get("artifacts", []):
            key = f"artifacts/{self.name}/{node.path[-1]}/{art['name']}.tgz"
            node.artifacts.append({"name": art["name"], "s3": {"key": key}})
        return [], [f"s3://{self.bucket}/{a['s3']['key']}" for a in node.artifacts], {}

    def _args(self, node: _Node) -> dict[str, str]:
        """The task's arguments, ``{{inputs.parameters.X}}`` bound from its enclosing DAG's call."""
        outer = _params(self.nodes[node.path[:-1]].task) if node.path[:-1] in self.nodes else {}
        bind = lambda m: outer.get(m.group(1), m.group(0))  # noqa: E731
        return {k: _INPUT.sub(bind, v) for k, v in _params(node.task).items()}

    def _loop_driver(self, node: _Node, args: dict[str, str]) -> None:
        """A KFP loop's drivers: the iterator's counts the items, an item's binds its item."""
        task = json.loads(args.get("task") or "{}")
        iterator = task.get("parameterIterator")
        if not iterator:
            return
        items = iterator.get("items", {})
        if "raw" in items:
            values = json.loads(items["raw"])
        else:
            spec = task.get("inputs", {}).get("parameters", {}).get(items.get("inputParameter", ""), {})
            values = self._value(spec.get("componentInputParameter", ""), node.path)
            values = json.loads(values) if isinstance(values, str) else list(values or [])
        index = int(args.get("iteration-index", "-1") or -1)
        if index < 0:
            node.outputs["iteration-count"] = str(len(values))
        else:
            self.scope[node.path[:-1]] = {iterator["itemInput"]: values[index]}

    def _value(self, name: str, path: tuple[str, ...]) -> Any:
        """A KFP input parameter seen from ``path``: a loop item, the run's value or the default."""
        for i in range(len(path), -1, -1):
            if name in self.scope.get(path[:i], {}):
                return self.scope[path[:i]][name]
        plain = name.removeprefix("pipelinechannel--")
        return self.runtime.get(plain, self.defaults.get(plain))

    def _finish_pod(self, node: _Node) -> None:
        task_name = node.path[-1] if node.path else ""
        failing = task_name in self.fail or (len(node.path) > 1 and node.path[-2] in self.fail)
        node.phase = "Failed" if failing else "Succeeded"

    def _container_driver(self, node: _Node, args: dict[str, str]) -> dict[str, str]:
        task = json.loads(args["task"])
        name = args.get("task-name") or node.path[-1].removesuffix("-driver")
        comp = json.loads(self._resolve(args.get("component", "")) or "{}")
        inputs: dict[str, Any] = {}
        for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
            ref = spec.get("taskOutputArtifact") or {}
            uri = self.art.get((ref.get("producerTask", ""), ref.get("outputArtifactKey", "")))
            if uri:
                inputs[key] = {"artifacts": [{"name": key, "uri": uri}]}
        outputs: dict[str, Any] = {}
        for key in comp.get("outputDefinitions", {}).get("artifacts", {}):
            uri = f"{self.root}/{self.name}/{name}/{key}"
            self.art[(name, key)] = uri
            outputs[key] = {"artifacts": [{"name": key, "uri": uri}]}
        values = {}
        for key, spec in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in spec:
                values[key] = spec["runtimeValue"].get("constant")
            elif "componentInputParameter" in spec:
                values[key] = self._value(spec["componentInputParameter"], node.path)
        executor_input = {
            "inputs": {"artifacts": inputs, "parameterValues": values},
            "outputs": {"artifacts": outputs},
        }
        patch = {"containers": [{"name": "main", "args": ["--executor_input", json.dumps(executor_input)]}]}
        return {"pod-spec-patch": json.dumps(patch), "cached-decision": "false", "condition": "true"}

    def _importer_uri(self, args: dict[str, str]) -> str:
        impl = json.loads(self._resolve(args.get("importer", "")) or "{}")
        art = impl.get("artifactUri", {})
        if "constant" in art:
            return str(art["constant"])
        task = json.loads(args.get("task") or "{}")
        spec = task.get("inputs", {}).get("parameters", {}).get(art.get("runtimeParameter", ""), {})
        if "runtimeValue" in spec:
            return str(spec["runtimeValue"].get("constant", ""))
        name = str(spec.get("componentInputParameter", "")).removeprefix("pipelinechannel--")
        return str(self.runtime.get(name, ""))

    def _resolve(self, value: str) -> str:
        m = _WF_PARAM.match(value)
        return self.wf_params.get(m.group(1), "") if m else value

    # ---- status ---------------------------------------------------------------------------

    def _publish(self) -> None:
        nodes: dict[str, Any] = {}
        for node in self.nodes.values():
            name = ".".join((self.name, *node.path))
            entry: dict[str, Any] = {
                "id": f"{self.name}-{zlib.crc32(name.encode())}",
                "name": name,
                "displayName": name.rsplit(".", 1)[-1],
                "phase": node.phase,
                "type": "DAG"
                if "dag" in node.template
                else ("Skipped" if node.phase == "Omitted" else "Pod"),
            }
            outputs: dict[str, Any] = {}
            if node.outputs and node.phase != "Running":
                outputs["parameters"] = [{"name": k, "value": v} for k, v in node.outputs.items()]
            if node.artifacts and node.phase == "Succeeded":
                outputs["artifacts"] = node.artifacts
            if outputs:
                entry["outputs"] = outputs
            nodes[entry["id"]] = entry
        status = self.wf["status"]
        status["artifactRepositoryRef"] = {"artifactRepository": {"s3": {"bucket": self.bucket}}}
        if self.compressed:
            status.pop("nodes", None)
            status["compressedNodes"] = base64.b64encode(gzip.compress(json.dumps(nodes).encode())).decode()
        else:
            status["nodes"] = nodes


def _executor_input(patch: dict[str, Any]) -> dict[str, Any]:
    for container in patch.get("containers", []):
        args = container.get("args", [])
        for flag, value in zip(args, args[1:], strict=False):
            if flag == "--executor_input":
                found: dict[str, Any] = json.loads(value)
                return found
    return {}


def _artifact_uris(executor: dict[str, Any], section: str) -> list[str]:
    arts = executor.get(section, {}).get("artifacts", {})
    return [a["uri"] for v in arts.values() for a in v.get("artifacts", [])]
