"""Budgets: size parsing and machine-derived defaults."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from pipecache.tiering.budget import (
    cgroup_memory_limit,
    default_memory_bytes,
    default_ssd_bytes,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000", 1000),
        ("0", 0),
        ("512B", 512),
        ("4GiB", 4 * 2**30),
        ("512MiB", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("10G", 10 * 10**9),
        ("10GB", 10 * 10**9),
        ("3k", 3000),
        ("1.5KiB", 1536),
        (" 7 mib ", 7 * 2**20),
        ("1TiB", 2**40),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "-1", "4 GiBs", "4XB", "1e9", "iB", "4iB", "1,000"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_cgroup_limits(tmp_path: Path) -> None:
    assert cgroup_memory_limit(str(tmp_path)) is None  # no cgroup files
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(str(tmp_path)) is None
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert cgroup_memory_limit(str(tmp_path)) == 2**30
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    assert cgroup_memory_limit(str(v1)) is None  # v1's "unlimited"
    (v1 / "memory" / "memory.limit_in_bytes").write_text("5000000")
    assert cgroup_memory_limit(str(v1)) == 5_000_000


def test_default_memory_is_capped_by_a_small_cgroup(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("4000000\n")
    assert default_memory_bytes(0.25, cgroup_root=str(tmp_path)) == 1_000_000


def test_default_memory_follows_available_memory(tmp_path: Path) -> None:
    got = default_memory_bytes(0.5, cgroup_root=str(tmp_path / "none"))
    avail = psutil.virtual_memory().available
    assert 0.4 * avail < got < 0.6 * avail  # memory moves a little between the reads


def test_default_ssd_bytes(tmp_path: Path) -> None:
    free = psutil.disk_usage(str(tmp_path)).free
    got = default_ssd_bytes(str(tmp_path / "not" / "yet" / "there"), 0.5)
    assert abs(got - free * 0.5) < 0.05 * free + (64 << 20)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_bad_fractions(tmp_path: Path, fraction: float) -> None:
    with pytest.raises(ValueError):
        default_memory_bytes(fraction)
    with pytest.raises(ValueError):
        default_ssd_bytes(str(tmp_path), fraction)
