"""plan_workflow/upcoming on real KFP and Argo workflow files and on our own small ones."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest
from pipecache.watcher import Input, Plan, WorkflowError, plan_workflow, upcoming

Loader = Callable[[str], dict[str, Any]]


def summary(plan: Plan) -> dict[str, tuple[tuple[str, ...], str]]:
    return {s.name: (s.dependencies, s.state) for s in plan.steps}


def inputs(plan: Plan, step: str) -> list[tuple[str, str]]:
    return [(i.uri, i.source) for i in plan.step(step).inputs]


def set_param(wf: dict[str, Any], name: str, value: str) -> None:
    for p in wf["spec"]["arguments"]["parameters"]:
        if p["name"] == name:
            p["value"] = value
            return
    raise KeyError(name)


def dag_task(wf: dict[str, Any], template: str, task: str) -> dict[str, Any]:
    tpl = next(t for t in wf["spec"]["templates"] if t["name"] == template)
    found: dict[str, Any] = next(t for t in tpl["dag"]["tasks"] if t["name"] == task)
    return found


def arg(task: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in task["arguments"]["parameters"] if p["name"] == name)
    return found


def compress(nodes: Any) -> str:
    return base64.b64encode(gzip.compress(json.dumps(nodes, default=str).encode())).decode()


# --- real KFP v2 compiled workflows ---------------------------------------------------------


def test_real_importer_pipeline_graph(real: Loader) -> None:
    plan = plan_workflow(real("argo_v2_compiled/pipeline_with_importer.yaml"))
    assert plan.flavor == "kfp-v2" and not plan.finished and plan.problems == ()
    # condition-1 (a sub-DAG after train) is folded away: its steps wait for train.
    assert summary(plan) == {
        "importer": ((), "ready"),
        "train": (("importer",), "pending"),
        "importer-2": (("train",), "pending"),
        "train-2": (("importer-2",), "pending"),
    }
    assert plan.frontier == ("importer",)
    assert [s.path for s in plan.steps][-1] == ("condition-1", "train-2")
    assert [s.kind for s in plan.steps] == ["importer", "container", "importer", "container"]
    # Its importers point at GCS: reported, but not inputs pipecache can preload.
    assert all(not s.inputs for s in plan.steps)
    assert [(s, i.uri, i.source) for s, i in plan.unsupported] == [
        ("importer", "gs://ml-pipeline-playground/shakespeare1.txt", "importer"),
        ("train", "gs://ml-pipeline-playground/shakespeare1.txt", "importer"),
        ("importer-2", "gs://ml-pipeline-playground/shakespeare2.txt", "importer"),
        ("train-2", "gs://ml-pipeline-playground/shakespeare2.txt", "importer"),
    ]


def test_real_importer_pipeline_with_s3_uris(real: Loader) -> None:
    wf = real("argo_v2_compiled/pipeline_with_importer.yaml")
    # The constant importer, and the run's runtime-config overriding the dataset2 default
    # that the second importer's runtimeParameter reads through the condition sub-DAG.
    set_param(
        wf, "implementations-comp-importer", json.dumps({"artifactUri": {"constant": "s3://corpus/one.txt"}})
    )
    root_driver = dag_task(wf, "entrypoint", "root-driver")
    arg(root_driver, "runtime-config")["value"] = json.dumps(
        {"parameterValues": {"dataset2": "minio://corpus/two.txt"}}
    )
    plan = plan_workflow(wf)
    assert inputs(plan, "importer") == [("s3://corpus/one.txt", "importer")]
    assert inputs(plan, "train") == [("s3://corpus/one.txt", "importer")]
    assert inputs(plan, "importer-2") == [("minio://corpus/two.txt", "importer")]
    assert inputs(plan, "train-2") == [("minio://corpus/two.txt", "importer")]
    assert plan.unsupported == ()


def test_real_importer_pipeline_default_parameter(real: Loader) -> None:
    wf = real("argo_v2_compiled/pipeline_with_importer.yaml")
    root = json.loads(
        next(p["value"] for p in wf["spec"]["arguments"]["parameters"] if p["name"] == "components-root")
    )
    root["inputDefinitions"]["parameters"]["dataset2"]["defaultValue"] = "s3://corpus/default.txt"
    set_param(wf, "components-root", json.dumps(root))
    arg(dag_task(wf, "entrypoint", "root-driver"), "runtime-config")["value"] = "{}"
    assert inputs(plan_workflow(wf), "importer-2") == [("s3://corpus/default.txt", "importer")]


def test_real_pod_metadata_pipeline(real: Loader) -> None:
    plan = plan_workflow(real("argo_v2_compiled/pipeline_with_pod_metadata.yaml"))
    names = ["validate-no-pod-metadata"] + [f"validate-pod-metadata-task-{c}" for c in "abcd"]
    assert summary(plan) == {n: ((), "ready") for n in names}
    assert plan.frontier == tuple(names)
    assert all(not s.inputs for s in plan.steps) and plan.unsupported == ()


def test_real_pod_metadata_annotation_channels(real: Loader) -> None:
    wf = real("argo_v2_compiled/pipeline_with_pod_metadata.yaml")
    # Channel 1: the kubernetes-comp-* config the driver gets (add_pod_annotation).
    config = {"podMetadata": {"annotations": {"pipecache.io/inputs": "s3://a/x, minio://b/y"}}}
    set_param(wf, "kubernetes-comp-validate-pod-metadata-task-c", json.dumps(config))
    # Channel 2: the key/value arguments of the metadata-N-M executor template.
    executor = dag_task(wf, "root", "validate-pod-metadata-task-a")
    arg(executor, "pod-metadata-annotation-key")["value"] = "pipecache.io/inputs"
    arg(executor, "pod-metadata-annotation-val")["value"] = "s3://c/z"
    plan = plan_workflow(wf)
    assert inputs(plan, "validate-pod-metadata-task-c") == [
        ("s3://a/x", "annotation"),
        ("minio://b/y", "annotation"),
    ]
    assert inputs(plan, "validate-pod-metadata-task-a") == [("s3://c/z", "annotation")]


def test_real_kfp_ir_is_not_a_workflow(real: Loader) -> None:
    with pytest.raises(WorkflowError, match="not an Argo Workflow"):
        plan_workflow(real("ir_v2/pipeline_with_importer.yaml"))


# --- real KFP v1 and Argo workflows with status ---------------------------------------------


def test_real_kfp_v1_pipeline(real: Loader) -> None:
    plan = plan_workflow(real("argo_v1_compiled/artifact_pipeline.yaml"))
    assert plan.flavor == "kfp-v1"
    assert summary(plan) == {"create-test-artifact": ((), "ready")}
    assert [s for _, s in upcoming(plan, 5)] == list(plan.steps)


def test_real_argo_running_diamond(real: Loader) -> None:
    plan = plan_workflow(real("argo_status/dag_xfail.yaml"))
    assert (plan.flavor, plan.phase, plan.finished) == ("argo", "Running", False)
    assert summary(plan) == {
        "A": ((), "succeeded"),
        "B": (("A",), "succeeded"),
        "C": (("A",), "failed"),
        "D": (("B", "C"), "pending"),  # behind a failed step: never comes next
    }
    assert plan.frontier == () and upcoming(plan, 10) == []


def test_real_argo_nested_dags_and_retries(real: Loader) -> None:
    plan = plan_workflow(real("argo_status/dag-exhausted-retries-xfail.yaml"))
    # sub-dag1 is flattened: its only step "fail" inherits the dependency on success1.
    assert summary(plan) == {
        "success1": ((), "succeeded"),
        "fail": (("success1",), "failed"),
        "success2": (("fail",), "skipped"),
    }
    assert plan.step("fail").path == ("sub-dag1", "fail")


def test_real_argo_finished_run(real: Loader) -> None:
    plan = plan_workflow(real("argo_status/dag-disable-fail-fast.yaml"))
    assert plan.finished and plan.phase == "Failed"
    assert {n: s for n, (_, s) in summary(plan).items()} == {
        "A": "succeeded",
        "B": "succeeded",
        "C": "failed",
        "D": "succeeded",
        "E": "succeeded",
    }
    assert upcoming(plan, 3) == []


@pytest.mark.parametrize(
    "rel",
    [
        "argo_status/dag_xfail.yaml",
        "argo_status/dag-exhausted-retries-xfail.yaml",
        "argo_status/dag-disable-fail-fast.yaml",
    ],
)
def test_real_compressed_nodes_match_nodes(real: Loader, rel: str) -> None:
    wf = real(rel)
    plain = plan_workflow(wf)
    wf["status"]["compressedNodes"] = compress(wf["status"].pop("nodes"))
    assert plan_workflow(wf) == plain


def test_persisted_final_state_label_means_finished(real: Loader) -> None:
    wf = real("argo_status/dag_xfail.yaml")
    wf["metadata"]["labels"]["pipeline/persistedFinalState"] = "true"
    assert plan_workflow(wf).finished


# --- our own small workflows: every input source and state ----------------------------------


def test_own_v2_compiled(own: Loader) -> None:
    plan = plan_workflow(own("v2_compiled.yaml"))
    assert summary(plan) == {
        "importer": ((), "ready"),
        "import-base": ((), "ready"),
        "prepare": (("importer",), "pending"),
        "train": (("import-base", "prepare"), "pending"),
        "report": (("prepare",), "pending"),
        "audit": (("importer",), "pending"),
        "evaluate": (("train",), "pending"),  # inside condition-1
        "publish": (("prepare",), "pending"),  # inside condition-2
        "read-shard": (("prepare",), "pending"),  # inside for-loop-1 (three Argo levels)
    }
    assert inputs(plan, "importer") == [("s3://datasets/labels.csv", "importer")]
    # runtimeParameter importer reading the base_model pipeline parameter's s3:// default
    assert inputs(plan, "import-base") == [("s3://models/base-v1/", "importer")]
    assert inputs(plan, "prepare") == [
        (
            "s3://datasets/raw-2026-11/",
            "parameter",
        ),  # default s3://datasets/raw/ overridden by runtime-config
        ("minio://mlpipeline/vocab.txt", "parameter"),  # default kept
        ("s3://datasets/labels.csv", "importer"),  # the importer's output, consumed
        ("s3://datasets/extra/a.parquet", "annotation"),  # kubernetes-comp-prepare podMetadata
        ("s3://datasets/extra/b.parquet", "annotation"),
    ]
    assert [(s, i) for s, i in plan.unsupported] == [("prepare", Input("gs://elsewhere/c", "annotation"))]
    assert inputs(plan, "train") == [("s3://models/base-v1/", "importer")]  # features: not decided yet
    assert inputs(plan, "evaluate") == []
    assert inputs(plan, "read-shard") == [  # the loop's items, from a LIST parameter default
        ("s3://shards/part-0.parquet", "parameter"),
        ("s3://shards/part-1.parquet", "parameter"),
    ]
    assert plan.step("read-shard").path == ("for-loop-1", "read-shard")
    assert plan.step("evaluate").path == ("condition-1", "evaluate")


def test_own_v2_upcoming_before_the_run(own: Loader) -> None:
    plan = plan_workflow(own("v2_compiled.yaml"))
    assert upcoming(plan, 0) == []
    got = [(d, s.name) for d, s in upcoming(plan, 3)]
    assert got == [
        (1, "importer"),
        (1, "import-base"),
        (2, "prepare"),
        (2, "audit"),
        (3, "train"),
        (3, "report"),
        (3, "publish"),
        (3, "read-shard"),
    ]
    assert upcoming(plan, -1) == []


@pytest.mark.parametrize("name", ["v2_running.yaml", "v2_running_compressed.yaml"])
def test_own_v2_running(own: Loader, name: str) -> None:
    plan = plan_workflow(own(name))
    assert (plan.name, plan.namespace, plan.run_id) == (
        "prep-train-7xk2p",
        "kubeflow-user",
        "5d3e8a1c-2b4f-4f7a-9c1e-7a6b5c4d3e2f",
    )
    assert {n: s for n, (_, s) in summary(plan).items()} == {
        "importer": "succeeded",
        "import-base": "succeeded",
        "prepare": "succeeded",
        "train": "running",
        "report": "skipped",  # its driver said cached-decision=true
        "audit": "ready",  # importer done, not started yet
        "evaluate": "pending",
        "publish": "skipped",  # condition-2's driver said condition=false
        "read-shard": "running",  # loop iterations: one driver running, one pending
    }
    # prepare's driver emitted its pod-spec-patch: train and the others know where features go.
    features = ("s3://pipeline-root/prep-train/prep-train-7xk2p/prepare/features", "upstream")
    assert inputs(plan, "train") == [("s3://models/base-v1/", "importer"), features]
    assert inputs(plan, "evaluate") == [
        ("s3://pipeline-root/prep-train/prep-train-7xk2p/train/model", "upstream")
    ]
    assert features in inputs(plan, "report") and features in inputs(plan, "publish")
    assert [(d, s.name) for d, s in upcoming(plan, 2)] == [
        (0, "train"),
        (0, "read-shard"),
        (1, "audit"),
        (1, "evaluate"),
    ]
    assert plan.frontier == ("train", "read-shard", "audit", "evaluate")


def test_own_compressed_equals_plain(own: Loader) -> None:
    assert plan_workflow(own("v2_running.yaml")) == plan_workflow(own("v2_running_compressed.yaml"))


def test_own_v2_finished(own: Loader) -> None:
    plan = plan_workflow(own("v2_finished.yaml"))
    assert plan.finished and plan.frontier == () and upcoming(plan, 10) == []
    assert plan.step("audit").state == "pending"  # nothing is "ready" in a finished run


def test_own_kfp_v1_running(own: Loader) -> None:
    plan = plan_workflow(own("v1_running.yaml"))
    assert plan.flavor == "kfp-v1" and plan.run_id == "9f1e2d3c-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
    assert summary(plan) == {"download": ((), "succeeded"), "train": (("download",), "running")}
    assert inputs(plan, "download") == [
        ("s3://datasets/churn/extra.csv", "parameter"),  # workflow argument, via the DAG's inputs
        ("s3://datasets/churn/raw.csv", "importer"),  # S3 artifact input written in the workflow
    ]
    assert inputs(plan, "train") == [
        ("s3://datasets/churn/holdout/", "annotation"),
        # download's output in the artifact repository (bucket from status.artifactRepositoryRef)
        ("s3://mlpipeline/artifacts/churn-v1-q8z4d/download/download-data.tgz", "upstream"),
    ]


def test_plan_json_shape(own: Loader) -> None:
    data = plan_workflow(own("v2_running.yaml")).to_json()
    assert json.loads(json.dumps(data)) == data
    assert set(data) >= {"run_id", "name", "namespace", "finished", "frontier", "steps"}
    for step in data["steps"]:
        assert set(step) == {"name", "dependencies", "state", "inputs"}
        assert step["state"] in {"pending", "ready", "running", "succeeded", "failed", "skipped"}
        for item in step["inputs"]:
            assert set(item) == {"uri", "source"}
            assert item["source"] in {"parameter", "importer", "upstream", "annotation"}


def test_cached_and_condition_false_container_drivers(own: Loader) -> None:
    wf = own("v2_running.yaml")
    for entry in wf["status"]["nodes"].values():
        if entry["name"].endswith(".train-driver"):
            entry["outputs"]["parameters"] = [{"name": "condition", "value": "false"}]
        if entry["name"].endswith(".prepare-driver"):
            entry["outputs"]["parameters"].append({"name": "cached-decision", "value": "true"})
            entry["outputs"]["parameters"].pop(0)  # drop the first cached-decision=false
    plan = plan_workflow(wf)
    assert plan.step("train").state == "skipped"
    assert plan.step("prepare").state == "skipped"


def test_failed_driver_fails_the_step_and_blocks_its_dependants(own: Loader) -> None:
    wf = own("v2_running.yaml")
    for entry in wf["status"]["nodes"].values():
        if entry["name"].endswith((".train-driver", ".train", ".train.executor")):
            entry["phase"] = "Failed" if entry["name"].endswith("-driver") else "Omitted"
    plan = plan_workflow(wf)
    assert plan.step("train").state == "failed"
    assert "evaluate" not in plan.frontier and "train" not in plan.frontier


def test_node_names_without_workflow_name(own: Loader) -> None:
    wf = own("v2_running.yaml")
    del wf["metadata"]["name"]
    assert summary(plan_workflow(wf)) == summary(plan_workflow(own("v2_running.yaml")))


def test_own_kfp_v1_loops_read_every_item(own: Loader) -> None:
    wf = own("v1_loop.yaml")
    plan = plan_workflow(wf)
    assert plan.flavor == "kfp-v1"
    # A DAG called withItems: its step reads every item's field, not the first item's only.
    assert inputs(plan, "train-shard") == [
        ("s3://shards/part-0.parquet", "parameter"),
        ("s3://shards/part-1.parquet", "parameter"),
    ]
    assert plan.step("train-shard").path == ("for-loop-1", "train-shard")
    # withParam over a DAG input holding a JSON list (a pipeline parameter in KFP v1).
    assert [uri for uri, _ in inputs(plan, "evaluate")] == [f"s3://evals/set-{c}.csv" for c in "abc"]
    assert summary(plan)["evaluate"] == (("train-shard",), "pending")
    # withParam over another task's output: known once list-shards ran.
    assert inputs(plan, "score-each") == []
    name = wf["metadata"]["name"]
    listed = '["s3://shards/part-0.parquet", "s3://shards/part-1.parquet"]'
    wf["status"] = {
        "phase": "Running",
        "nodes": {
            "a": {"name": name, "phase": "Running", "type": "DAG"},
            "b": {
                "name": f"{name}.list-shards",
                "phase": "Succeeded",
                "type": "Pod",
                "outputs": {"parameters": [{"name": "list-shards-Output", "value": listed}]},
            },
            "c": {"name": f"{name}.score-each(0:s3://shards/part-0.parquet)", "phase": "Running"},
        },
    }
    plan = plan_workflow(wf)
    assert plan.step("score-each").state == "running"
    assert inputs(plan, "score-each") == [
        ("s3://shards/part-0.parquet", "upstream"),
        ("s3://shards/part-1.parquet", "upstream"),
    ]


def test_loop_items_are_bounded(own: Loader) -> None:
    wf = own("v1_loop.yaml")
    many = json.dumps([f"s3://evals/{i}.csv" for i in range(5000)])
    set_param(wf, "eval-sets", many)
    assert len(plan_workflow(wf).step("evaluate").inputs) <= 1000
