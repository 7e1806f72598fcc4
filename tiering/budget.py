"""Tier budgets: sensible defaults from the machine, and human-readable sizes."""

from __future__ import annotations

import os
import re
import shutil

import psutil

_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?)(b?)\s*", re.IGNORECASE)

# cgroup v1 reports "no limit" as a huge page-aligned number rather than "max".
_CGROUP_V1_UNLIMITED = 1 << 60


def parse_size(text: str) -> int:
    """Bytes in a size such as ``"1000"``, ``"512MiB"``, ``"4GiB"``, ``"10G"`` or ``"2Gi"``.

    Suffixes are case-insensitive. K, M, G, T, P are powers of 1000 and Ki,
    Mi, ... (optionally followed by B) powers of 1024, as in Kubernetes. A
    fraction is rounded down to whole bytes.
    """
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit, "
            "such as 1000, 512MiB, 4GiB or 10G"
        )
    number, prefix, binary, _ = m.groups()
    if binary and not prefix:
        raise ValueError(f"invalid size {text!r}: 'i' needs a unit before it (KiB, MiB, GiB...)")
    scale = (1024 if binary else 1000) ** _POWERS[prefix.lower()]
    return int(float(number) * scale) if "." in number else int(number) * scale


def cgroup_memory_limit(cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """The memory limit of this process's cgroup in bytes, or None when unlimited.

    Reads cgroup v2 ``memory.max``, else cgroup v1 ``memory/memory.limit_in_bytes``.
    """
    for rel in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            with open(os.path.join(cgroup_root, rel)) as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw == "max":
            return None
        try:
            limit = int(raw)
        except ValueError:
            return None
        return None if limit >= _CGROUP_V1_UNLIMITED else limit
    return None


def default_memory_bytes(fraction: float = 0.25, *, cgroup_root: str = "/sys/fs/cgroup") -> int:
    """A memory tier budget: ``fraction`` of available memory.

    Available memory is psutil's estimate, capped by the cgroup limit when a
    container sets a smaller one (psutil sees the host's memory, not the
    container's).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be within (0, 1], got {fraction}")
    available = int(psutil.virtual_memory().available)
    limit = cgroup_memory_limit(cgroup_root)
    if limit is not None:
        available = min(available, limit)
    return int(available * fraction)


def default_ssd_bytes(path: str, fraction: float = 0.8) -> int:
    """An SSD tier budget: ``fraction`` of the free space of the disk holding ``path``.

    ``path`` need not exist yet (its nearest existing parent is measured).
    Blocks already cached there count as used space, so prefer an explicit
    size in production, where the cache folder survives restarts.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be within (0, 1], got {fraction}")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return int(shutil.disk_usage(probe).free * fraction)
