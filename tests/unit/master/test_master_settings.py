"""MasterSettings: defaults, validation messages, environment parsing."""

from __future__ import annotations

import dataclasses

import pytest
from pipecache.master import MasterSettings


def test_defaults_validate_and_are_frozen() -> None:
    s = MasterSettings(ufs="file:///data")
    s.validate()
    assert (s.host, s.port, s.block_size) == ("127.0.0.1", 9000, 4 * 1024 * 1024)
    assert (s.heartbeat_interval, s.worker_timeout) == (1.0, 10.0)
    assert (s.metadata_ttl, s.metadata_max_entries) == (60.0, 1_000_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ufs": ""}, "ufs must be a URI"),
        ({"ufs": "/data"}, "ufs must be a URI"),
        ({"ufs": "ftp://x"}, "ufs must be a URI"),
        ({"port": 70000}, "port"),
        ({"host": ""}, "host"),
        ({"block_size": 1000}, "block_size"),
        ({"heartbeat_interval": 0.0}, "heartbeat_interval"),
        ({"worker_timeout": 1.0}, "worker_timeout"),
        ({"metadata_ttl": -1.0}, "metadata_ttl"),
        ({"metadata_max_entries": -1}, "metadata_max_entries"),
        ({"consistency": "sometimes"}, "consistency"),
        ({"consistency": "ttl=0"}, "consistency"),
    ],
)
def test_validate_names_the_bad_setting(changes: dict[str, object], message: str) -> None:
    s = dataclasses.replace(MasterSettings(ufs="http://127.0.0.1:9001"), **changes)
    with pytest.raises(ValueError, match=message):
        s.validate()


def test_from_env() -> None:
    s = MasterSettings.from_env(
        {
            "PIPECACHE_MASTER_UFS": "s3://",
            "PIPECACHE_MASTER_PORT": "9100",
            "PIPECACHE_MASTER_WORKER_TIMEOUT": "30",
            "PIPECACHE_MASTER_METADATA_MAX_ENTRIES": "5",
            "UNRELATED": "x",
        }
    )
    assert (s.ufs, s.port, s.worker_timeout, s.metadata_max_entries) == ("s3://", 9100, 30.0, 5)
    s.validate()


def test_from_env_falls_back_to_pipecache_ufs_and_takes_overrides() -> None:
    s = MasterSettings.from_env({"PIPECACHE_UFS": "file:///x"}, port=0)
    assert (s.ufs, s.port) == ("file:///x", 0)


def test_from_env_errors() -> None:
    with pytest.raises(ValueError, match="PIPECACHE_MASTER_UFS"):
        MasterSettings.from_env({})
    with pytest.raises(ValueError, match="PIPECACHE_MASTER_PORT='x'"):
        MasterSettings.from_env({"PIPECACHE_UFS": "file:///x", "PIPECACHE_MASTER_PORT": "x"})


def test_data_dir_from_env_and_empty_means_no_journal() -> None:
    s = MasterSettings.from_env({"PIPECACHE_UFS": "s3://", "PIPECACHE_MASTER_DATA_DIR": "/var/lib/pc"})
    assert s.data_dir == "/var/lib/pc"
    empty = {"PIPECACHE_UFS": "s3://", "PIPECACHE_MASTER_DATA_DIR": ""}
    assert MasterSettings.from_env(empty).data_dir is None
    assert MasterSettings.from_env({"PIPECACHE_UFS": "s3://"}).data_dir is None
    with pytest.raises(ValueError, match="data_dir"):
        MasterSettings(ufs="s3://", data_dir="").validate()
