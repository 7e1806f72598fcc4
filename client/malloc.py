"""Keep freed block buffers in the process instead of handing them back to the kernel.

glibc serves allocations above its mmap threshold (128 KiB, raised dynamically up
to 32 MiB) with fresh ``mmap`` pages, and returns heap tops above its trim
threshold to the kernel. A service that allocates and frees one 4 MiB buffer per
block then page-faults (and has the kernel zero) every page of every block it
reads: about a quarter of a gateway's CPU on a big-object stream. Raising both
thresholds lets freed buffers be reused as they are.

The environment wins: with ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``
set, glibc already applied the operator's choice and nothing is changed here;
``PIPECACHE_MALLOC_TUNING=0`` leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter numbers (glibc's malloc.h)."""

MMAP_THRESHOLD = 64 * 1024 * 1024
"""Allocations below this come from the heap: every block buffer up to 64 MiB blocks."""
TRIM_THRESHOLD = 128 * 1024 * 1024
"""Free heap kept before glibc returns the top of it to the kernel: a few dozen blocks."""

ENV_SWITCH = "PIPECACHE_MALLOC_TUNING"
GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`tune` will set, or why it sets nothing."""

    settings: tuple[tuple[int, int], ...]
    reason: str


def plan(environ: Mapping[str, str], libc_name: str) -> Plan:
    """The ``mallopt`` calls to make for this environment and C library (pure)."""
    if libc_name != "glibc":
        return Plan((), f"C library is {libc_name or 'unknown'}, not glibc")
    if environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return Plan((), f"{ENV_SWITCH}={environ[ENV_SWITCH]}")
    chosen = [name for name in GLIBC_ENV if name in environ]
    if chosen:
        return Plan((), f"{', '.join(chosen)} set in the environment")
    return Plan(((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)), "")


def tune(environ: Mapping[str, str] | None = None) -> bool:
    """Apply :func:`plan` to this process; True when glibc accepted every setting."""
    p = plan(os.environ if environ is None else environ, platform.libc_ver()[0])
    if not p.settings:
        log.debug("malloc left as it is: %s", p.reason)
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt answers 1 on success, 0 on a refused value.
    return all(mallopt(param, value) == 1 for param, value in p.settings)
