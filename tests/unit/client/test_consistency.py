"""Consistency modes: parsing, what they mean for the master's and the gateway's metadata caches."""

from __future__ import annotations

import math

import pytest
from pipecache.client.consistency import Consistency, from_ttl, parse_consistency
from pipecache.master import MasterSettings


@pytest.mark.parametrize(
    ("text", "mode", "master_ttl", "gateway_ttl"),
    [
        ("immutable", "immutable", math.inf, math.inf),
        ("always", "always", 0.0, 0.0),
        ("ttl", "ttl=60", 60.0, 2.0),
        ("ttl=1", "ttl=1", 1.0, 1.0),
        (" TTL=0.5 ", "ttl=0.5", 0.5, 0.5),
        ("ttl=3600", "ttl=3600", 3600.0, 2.0),
    ],
)
def test_modes(text: str, mode: str, master_ttl: float, gateway_ttl: float) -> None:
    c = parse_consistency(text)
    assert str(c) == mode
    assert parse_consistency(str(c)) == c
    assert c.metadata_ttl == master_ttl
    assert c.reuse_for(2.0) == gateway_ttl


@pytest.mark.parametrize(
    "text", ["", "sometimes", "ttl=", "ttl=0", "ttl=-1", "ttl=nan", "ttl=inf", "always=1"]
)
def test_bad_modes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="consistency"):
        parse_consistency(text)


def test_master_mode_comes_from_metadata_ttl_unless_set() -> None:
    assert from_ttl(0) == Consistency("always")
    assert MasterSettings(ufs="file:///d").consistency_mode() == Consistency("ttl", 60.0)
    assert MasterSettings(ufs="file:///d", metadata_ttl=0).consistency_mode() == Consistency("always")
    s = MasterSettings(ufs="file:///d", metadata_ttl=5, consistency="immutable")
    assert s.consistency_mode() == Consistency("immutable")
    env = MasterSettings.from_env({"PIPECACHE_UFS": "file:///d", "PIPECACHE_MASTER_CONSISTENCY": "ttl=7"})
    assert env.consistency_mode() == Consistency("ttl", 7.0)
