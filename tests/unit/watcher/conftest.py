"""Workflow files for the watcher tests: the real KFP/Argo ones (shared) and our own small ones."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SHARED_KFP = REPO.parent / "shared" / "fixtures" / "kfp"
OWN_KFP = REPO / "tests" / "fixtures" / "kfp"

_cache: dict[Path, list[Any]] = {}


def load_docs(path: Path) -> list[Any]:
    """All YAML documents of ``path`` (parsed once per session, handed out as copies)."""
    if path not in _cache:
        _cache[path] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return copy.deepcopy(_cache[path])


@pytest.fixture
def real() -> Callable[[str], dict[str, Any]]:
    """Load a real workflow from ../shared/fixtures/kfp/ (skipped when that folder is absent)."""
    if not SHARED_KFP.is_dir():
        pytest.skip(
            f"real KFP fixtures not found at {SHARED_KFP} (a plain clone has only tests/fixtures/kfp)"
        )

    def load(rel: str) -> dict[str, Any]:
        doc = load_docs(SHARED_KFP / rel)[0]
        assert isinstance(doc, dict)
        return doc

    return load


@pytest.fixture
def own() -> Callable[[str], dict[str, Any]]:
    """Load one of our own small workflows from tests/fixtures/kfp/."""

    def load(name: str) -> dict[str, Any]:
        doc = load_docs(OWN_KFP / name)[0]
        assert isinstance(doc, dict)
        return doc

    return load
