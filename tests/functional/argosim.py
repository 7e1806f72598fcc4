"""Advance a workflow's status the way the Argo controller does, one tick at a time.

Each :meth:`ArgoSim.tick`: running pods finish (with their outputs), DAGs whose tasks are all
done finish, and tasks whose dependencies are met appear as running nodes (a DAG task's own
tasks appear on later ticks). Node names are the dotted task paths Argo uses
(``wf.root.train-driver``). KFP v2 drivers emit what the real driver emits: a
``pod-spec-patch`` whose executor input lists the input and output artifact URIs, plus
``cached-decision`` and ``condition``; importers resolve their ``artifactUri``; KFP v1 pods
record their output artifacts in S3 under ``artifacts/<workflow>/<task>/<name>.tgz``.

Loops (``withItems``/``withSequence``/``withParam``) are not simulated.
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


@dataclass
class Started:
    """A pod that started on this tick: the task path, its KFP role, what it will read and
    the artifacts it will write."""

    path: tuple[str, ...]
    template: str
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)


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
        for node in [n for n in self.nodes.values() if n.phase == "Running" and "dag" not in n.template]:
            self._finish_pod(node)
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
            else:
                node = self.nodes[path] = _Node(path, task, template)
                if "dag" not in template:
                    started.append(Started(path, task["template"], *self._start_pod(node)))
            children[task["name"]] = self.nodes[path]
        if all(c is not None and c.phase in FINISHED for c in children.values()):
            dag.phase = "Succeeded" if all(c.phase in OK for c in children.values() if c) else "Failed"
        return started

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

    def _start_pod(self, node: _Node) -> tuple[list[str], list[str]]:
        """Outputs a pod will report, computed when it starts; the URIs it reads and writes."""
        args = _params(node.task)
        kind = node.task["template"]
        if kind == "system-container-driver":
            node.outputs = self._container_driver(node, args)
            return [], []
        if kind == "system-dag-driver":
            if args.get("runtime-config"):
                self.runtime = json.loads(args["runtime-config"]).get("parameterValues", {})
            node.outputs = {"execution-id": str(len(self.nodes)), "iteration-count": "0", "condition": "true"}
            return [], []
        if kind == "system-importer":
            uri = self._importer_uri(args)
            self.art[(node.path[-1], "artifact")] = uri
            return [uri] if uri else [], []
        if kind == "system-container-impl":
            patch = json.loads(
                self._output(node.path[:-2] + (node.path[-2] + "-driver",), "pod-spec-patch") or "{}"
            )
            return _patch_artifacts(patch, "inputs"), _patch_artifacts(patch, "outputs")
        # KFP v1 / plain Argo container: outputs in the artifact repository.
        for art in node.template.get("outputs", {}).get("artifacts", []):
            key = f"artifacts/{self.name}/{node.path[-1]}/{art['name']}.tgz"
            node.artifacts.append({"name": art["name"], "s3": {"key": key}})
        return [], [f"s3://{self.bucket}/{a['s3']['key']}" for a in node.artifacts]

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
        executor_input = {
            "inputs": {"artifacts": inputs, "parameterValues": {}},
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


def _patch_artifacts(patch: dict[str, Any], section: str) -> list[str]:
    for container in patch.get("containers", []):
        args = container.get("args", [])
        for flag, value in zip(args, args[1:], strict=False):
            if flag == "--executor_input":
                arts = json.loads(value).get(section, {}).get("artifacts", {})
                return [a["uri"] for v in arts.values() for a in v.get("artifacts", [])]
    return []
