"""Malformed and hostile workflow objects: a WorkflowError or a plan, never anything else."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipecache.watcher import Plan, WorkflowError, decode_compressed_nodes, plan_workflow, upcoming
from pipecache.watcher.status import split_name

Loader = Callable[[str], dict[str, Any]]
OWN = ["v2_compiled.yaml", "v2_running.yaml", "v1_running.yaml"]


def plan_or_error(obj: Any) -> Plan | None:
    """Plan ``obj``; a WorkflowError is fine, but it must not be the internal-error safety net."""
    try:
        plan = plan_workflow(obj)
    except WorkflowError as exc:
        assert "internal error" not in str(exc), str(exc)
        return None
    json.dumps(plan.to_json())
    upcoming(plan, 3)
    return plan


def minimal(**extra: Any) -> dict[str, Any]:
    wf: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "a", "template": "c"},
                            {"name": "b", "template": "c", "depends": "a.Succeeded"},
                        ]
                    },
                },
                {"name": "c", "container": {"image": "x"}},
            ],
        },
    }
    wf.update(extra)
    return wf


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (None, "mapping"),
        ([], "mapping"),
        ("kind: Workflow", "mapping"),
        ({}, "kind"),
        ({"kind": "ConfigMap", "data": {}}, "kind: 'ConfigMap'"),
        ({"kind": "Workflow", "apiVersion": "v1", "spec": {}}, "apiVersion"),
        ({"kind": "Workflow"}, "no spec"),
        ({"kind": "Workflow", "spec": []}, "no spec"),
        ({"kind": "Workflow", "spec": {"templates": "x"}}, "no templates"),
        ({"kind": "Workflow", "spec": {"workflowTemplateRef": {"name": "t"}}}, "workflowTemplateRef"),
        ({"kind": "Workflow", "spec": {"entrypoint": "nope", "templates": [{"name": "main"}]}}, "entrypoint"),
        ({"kind": "Workflow", "spec": {"entrypoint": 3, "templates": [{"name": "main"}]}}, "entrypoint"),
    ],
)
def test_not_a_workflow(obj: Any, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        plan_workflow(obj)


def test_wrong_types_inside_a_workflow_give_a_plan() -> None:
    wf = minimal()
    wf["metadata"] = "oops"
    wf["status"] = {"nodes": ["not", "a", "mapping"], "phase": 7}
    wf["spec"]["templates"][0]["dag"]["tasks"] += [None, 3, {"name": 5}, {"name": "d", "template": "missing"}]
    plan = plan_or_error(wf)
    assert plan is not None
    assert [s.name for s in plan.steps] == ["a", "b", "d"]
    assert plan.step("d").problems == ("template 'missing' is not defined",)


def test_recursive_and_cyclic_dags_are_bounded() -> None:
    wf = minimal()
    wf["spec"]["templates"][0]["dag"]["tasks"] += [
        {"name": "self", "template": "main"},  # the DAG includes itself
        {"name": "x", "template": "c", "depends": "y"},
        {"name": "y", "template": "c", "depends": "x"},
    ]
    plan = plan_or_error(wf)
    assert plan is not None
    messages = " ".join(p.message for p in plan.problems)
    assert "recursive" in messages and "cycle" in messages
    assert {s.name for s in plan.steps} >= {"a", "b", "x", "y"}
    assert [s.name for _, s in upcoming(plan, 5)] == ["a", "b"]  # the cycle never comes next


def test_deeply_nested_dags_stop_at_the_depth_limit() -> None:
    templates: list[dict[str, Any]] = [
        {"name": f"t{i}", "dag": {"tasks": [{"name": f"n{i}", "template": f"t{i + 1}"}]}} for i in range(200)
    ]
    templates.append({"name": "t200", "container": {"image": "x"}})
    wf = {"kind": "Workflow", "spec": {"entrypoint": "t0", "templates": templates}}
    plan = plan_or_error(wf)
    assert plan is not None and any("deep" in p.message for p in plan.problems)


def test_wide_workflow_hits_the_task_budget() -> None:
    tasks = [{"name": f"n{i}", "template": "c"} for i in range(25_000)]
    wf = {
        "kind": "Workflow",
        "spec": {
            "entrypoint": "m",
            "templates": [{"name": "m", "dag": {"tasks": tasks}}, {"name": "c", "container": {}}],
        },
    }
    with pytest.raises(WorkflowError, match="more than"):
        plan_workflow(wf)


def test_deeply_nested_json_in_parameters() -> None:
    wf = minimal()
    wf["spec"]["arguments"] = {"parameters": [{"name": "components-root", "value": "[" * 100_000}]}
    plan_or_error(wf)


# --- compressedNodes -------------------------------------------------------------------------


def test_decode_compressed_nodes_round_trip() -> None:
    nodes = {"w": {"name": "w", "phase": "Running"}}
    text = base64.b64encode(gzip.compress(json.dumps(nodes).encode())).decode()
    assert decode_compressed_nodes(text) == nodes


def test_gzip_bomb_is_refused() -> None:
    bomb = base64.b64encode(gzip.compress(b"{" + b" " * (80 << 20) + b"}", compresslevel=6)).decode()
    assert len(bomb) < 1 << 20
    with pytest.raises(WorkflowError, match="more than"):
        decode_compressed_nodes(bomb)
    with pytest.raises(WorkflowError, match="more than"):
        plan_workflow(minimal(status={"compressedNodes": bomb}))


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!!",
        base64.b64encode(b"plain bytes").decode(),
        base64.b64encode(gzip.compress(b"[1, 2]")).decode(),  # JSON, but not an object
        base64.b64encode(gzip.compress(b"{nope")).decode(),
        base64.b64encode(gzip.compress(b'{"a": 1}')[:-12]).decode(),  # truncated
        base64.b64encode(zlib.compress(b"[" * 100_000)).decode(),
        "\u00e9\u00e9",
        42,
    ],
)
def test_bad_compressed_nodes(text: Any) -> None:
    with pytest.raises(WorkflowError, match="compressedNodes"):
        plan_workflow(minimal(status={"compressedNodes": text}))


def test_split_name() -> None:
    assert split_name("w.root.for-loop-1.iteration-iterations(0:0).x-driver(1)") == (
        ("w", "root", "for-loop-1", "iteration-iterations", "x-driver"),
        2,
    )
    assert split_name('w.a(0:{"k": "v.w"}).b') == (("w", "a", "b"), 1)  # dots inside items
    assert split_name("") == (("",), 0)


# --- hypothesis: random objects and mutated real shapes --------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=12),
    st.sampled_from(["Workflow", "main", "{{", "s3://b/k", "system-dag-driver", "a.Succeeded"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=120, deadline=None)
@given(json_value)
def test_random_values(value: Any) -> None:
    plan_or_error(value)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.sampled_from(["kind", "apiVersion", "metadata", "spec", "status"]), json_value))
def test_random_workflow_shaped_dicts(obj: dict[str, Any]) -> None:
    obj["kind"] = "Workflow"
    plan_or_error(obj)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return doc


def _reencode(value: Any, data: st.DataObject) -> Any:
    """Embedded JSON strings get mutated too: parse, mutate one spot, serialise again."""
    try:
        inner = json.loads(value)
    except (TypeError, ValueError):
        return data.draw(json_value)
    paths = _paths(inner)
    path = data.draw(st.sampled_from(paths))
    return json.dumps(_mutate(inner, path, data.draw(json_value)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_workflows(own: Loader, data: st.DataObject) -> None:
    doc = own(data.draw(st.sampled_from(OWN)))
    for _ in range(data.draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        old: Any = doc
        for key in path:
            old = old[key]
        new = _reencode(old, data) if isinstance(old, str) and old[:1] in "{[" else data.draw(json_value)
        doc = _mutate(doc, path, new)
    plan_or_error(copy.deepcopy(doc))


def test_yaml_alias_amplification_is_bounded() -> None:
    """One big string repeated (as YAML aliases allow) in thousands of tasks hits the budget."""
    big = json.dumps({"taskInfo": {"name": "t"}, "pad": "x" * (1 << 20)})
    tasks = [
        {
            "name": f"t{i}-driver",
            "template": "system-container-driver",
            "arguments": {
                "parameters": [{"name": "task", "value": big}, {"name": "task-name", "value": f"t{i}"}]
            },
        }
        for i in range(5_000)
    ]
    wf = {
        "kind": "Workflow",
        "spec": {
            "entrypoint": "root",
            "templates": [
                {"name": "root", "dag": {"tasks": tasks}},
                {"name": "system-container-driver", "container": {}},
            ],
        },
    }
    with pytest.raises(WorkflowError, match="too large"):
        plan_workflow(wf)
