"""glibc allocator tuning: what is set when, and that freed block buffers are reused."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from pipecache.client import malloc

TUNED = ((malloc.M_MMAP_THRESHOLD, malloc.MMAP_THRESHOLD), (malloc.M_TRIM_THRESHOLD, malloc.TRIM_THRESHOLD))


def test_glibc_by_default_gets_both_thresholds() -> None:
    assert malloc.plan({}, "glibc").settings == TUNED
    # Every block size the worker accepts (up to 64 MiB) stays under the mmap threshold.
    assert malloc.MMAP_THRESHOLD >= 64 * 1024 * 1024


@pytest.mark.parametrize("value", ["0", "false", "off", " NO "])
def test_switched_off(value: str) -> None:
    p = malloc.plan({malloc.ENV_SWITCH: value}, "glibc")
    assert p.settings == ()
    assert malloc.ENV_SWITCH in p.reason


def test_switch_on_values_keep_tuning() -> None:
    assert malloc.plan({malloc.ENV_SWITCH: "1"}, "glibc").settings == TUNED


@pytest.mark.parametrize("name", malloc.GLIBC_ENV)
def test_operator_environment_wins(name: str) -> None:
    p = malloc.plan({name: "1048576"}, "glibc")
    assert p.settings == ()
    assert name in p.reason


@pytest.mark.parametrize("libc", ["", "musl"])
def test_other_c_libraries_left_alone(libc: str) -> None:
    p = malloc.plan({}, libc)
    assert p.settings == ()
    assert "not glibc" in p.reason


def test_tune_refuses_when_switched_off() -> None:
    assert malloc.tune({malloc.ENV_SWITCH: "0"}) is False


_CHURN = """
import resource
from pipecache.client import malloc
tuned = malloc.tune()
src = bytes(4 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    # A gateway's read-ahead: a few 4 MiB block buffers filled, sent, freed together.
    buffers = [bytearray(src) for _ in range(4)]
    del buffers
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(tuned, faults / (20 * 16))
"""


def _faults_per_mib(tuning: str) -> tuple[bool, float]:
    env = {k: v for k, v in os.environ.items() if k not in malloc.GLIBC_ENV}
    env[malloc.ENV_SWITCH] = tuning
    out = subprocess.run([sys.executable, "-c", _CHURN], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned == "True", float(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning applies to glibc only")
def test_freed_block_buffers_are_reused_not_faulted_in_again() -> None:
    tuned, with_tuning = _faults_per_mib("1")
    untuned, without = _faults_per_mib("0")
    assert tuned and not untuned
    # Untuned, every 4 KiB page of every buffer is a fresh page (256 faults per MiB).
    assert without > 128
    assert with_tuning < without / 4
