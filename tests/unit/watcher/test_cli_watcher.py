"""`pipecache watcher plan` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pipecache.cli.watcher import watcher

OWN = Path(__file__).resolve().parents[2] / "fixtures" / "kfp"
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "kfp"


def run(*args: str, stdin: str | None = None) -> tuple[int, str, Any]:
    result = CliRunner().invoke(watcher, ["plan", *args], input=stdin)
    data = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, result.output, data


def test_plan_prints_the_plan_json() -> None:
    code, _, data = run(str(OWN / "v2_running.yaml"))
    assert code == 0
    assert data["run_id"] == "5d3e8a1c-2b4f-4f7a-9c1e-7a6b5c4d3e2f"
    assert (data["name"], data["namespace"], data["finished"]) == ("prep-train-7xk2p", "kubeflow-user", False)
    assert data["frontier"] == ["train", "read-shard", "audit", "evaluate"]
    train = next(s for s in data["steps"] if s["name"] == "train")
    assert train == {
        "name": "train",
        "dependencies": ["import-base", "prepare"],
        "state": "running",
        "inputs": [
            {"uri": "s3://models/base-v1/", "source": "importer"},
            {"uri": "s3://pipeline-root/prep-train/prep-train-7xk2p/prepare/features", "source": "upstream"},
        ],
    }


def test_plan_reads_json_from_stdin_compact() -> None:
    wf = yaml.safe_load((OWN / "v1_running.yaml").read_text())
    result = CliRunner().invoke(watcher, ["plan", "--compact", "-"], input=json.dumps(wf))
    assert result.exit_code == 0 and result.stdout.count("\n") == 1
    assert [s["name"] for s in json.loads(result.stdout)["steps"]] == ["download", "train"]


def test_plan_multi_document_and_list(tmp_path: Path) -> None:
    one = (OWN / "v2_compiled.yaml").read_text()
    two = (OWN / "v1_running.yaml").read_text()
    multi = tmp_path / "multi.yaml"
    multi.write_text(one + "\n---\n" + two)
    code, _, data = run(str(multi))
    assert code == 0 and [d["flavor"] for d in data] == ["kfp-v2", "kfp-v1"]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(two)]}))
    code, _, data = run(str(listed))
    assert code == 0 and isinstance(data, list) and data[0]["flavor"] == "kfp-v1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: ConfigMap\ndata: {}\n", "not an Argo Workflow (kind: 'ConfigMap')"),
        ("just a string\n", "a workflow is a mapping"),
        ("a: [1\n", "not YAML or JSON"),
        ("", "no workflow"),
    ],
)
def test_plan_refuses_what_is_not_a_workflow(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, output, _ = run(str(path))
    assert code == 1 and message in output and "Traceback" not in output


def test_plan_names_the_bad_document(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text((OWN / "v1_running.yaml").read_text() + "\n---\nkind: Secret\n")
    code, output, _ = run(str(path))
    assert code == 1 and "(document 2)" in output


def test_plan_missing_file(tmp_path: Path) -> None:
    code, output, _ = run(str(tmp_path / "nope.yaml"))
    assert code == 1 and "cannot read" in output


def test_plan_on_real_compiled_pipeline() -> None:
    path = SHARED / "argo_v2_compiled" / "pipeline_with_importer.yaml"
    if not path.exists():
        pytest.skip(f"real KFP fixtures not found at {SHARED}")
    code, _, data = run(str(path))
    assert code == 0
    assert [(s["name"], s["state"]) for s in data["steps"]] == [
        ("importer", "ready"),
        ("train", "pending"),
        ("importer-2", "pending"),
        ("train-2", "pending"),
    ]


# ---- watcher run ----------------------------------------------------------------------------


def test_run_check_config_accepts_the_chart_flags() -> None:
    args = ["run", "--master=http://pc-master:9000", "--namespace=a", "--namespace=b", "--lookahead=3"]
    result = CliRunner().invoke(watcher, [*args, "--host=0.0.0.0", "--metrics-port=9102", "--check-config"])
    assert result.exit_code == 0 and "watcher settings ok" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--master=pc-master:9000"], "--master must be an http(s) URL"),
        (["--master=http://m:9000", "--namespace=Bad_NS"], "is not a Kubernetes namespace name"),
        (["--master=http://m:9000", "--lookahead=-1"], "Invalid value for '--lookahead'"),
    ],
)
def test_run_refuses_bad_settings(args: list[str], message: str) -> None:
    result = CliRunner().invoke(watcher, ["run", *args, "--check-config"])
    assert result.exit_code == 2 and message in result.output


def test_run_with_a_broken_kubeconfig_says_so(tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    result = CliRunner().invoke(watcher, ["run", "--master=http://127.0.0.1:9", f"--kubeconfig={cfg}"])
    assert result.exit_code == 1
    assert "cannot load Kubernetes configuration" in result.output and "Traceback" not in result.output
