"""The package layers, checked on the source: tiering < client < services < cli.

import-linter cannot walk this layout (each folder is mapped into ``pipecache``
by package-dir, and grimp only accepts top-level packages), so the same rules
are checked here by reading every module's imports with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = {"tiering": 0, "client": 1, "master": 2, "worker": 2, "gateway": 2, "watcher": 2, "cli": 3}
FORBIDDEN_IN_TIERING = {"aiohttp", "asyncio", "aiobotocore", "kubernetes_asyncio", "socket"}


def _imports(path: Path, package: str) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["pipecache", *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    else:
        parts = parts[:-1]
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
    return out


def _modules() -> list[tuple[str, Path]]:
    return [(pkg, p) for pkg in LAYER for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), _modules(), ids=lambda v: str(v))
def test_layers(package: str, path: Path) -> None:
    for name in _imports(path, package):
        top = name.split(".")
        if top[0] == "pipecache" and len(top) > 1 and top[1] in LAYER:
            other = top[1]
            if other == package:
                continue
            assert LAYER[other] < LAYER[package], f"{path.relative_to(ROOT)} imports {name}"
        if package == "tiering":
            assert top[0] not in FORBIDDEN_IN_TIERING, f"{path} imports {name} (tiering does no I/O)"


def test_checker_sees_violations(tmp_path: Path) -> None:
    bad = ROOT / "tiering" / "_layer_probe.py"
    bad.write_text("from ..master import state\nimport asyncio\n")
    try:
        names = _imports(bad, "tiering")
        assert "pipecache.master" in names and "asyncio" in names
    finally:
        bad.unlink()
