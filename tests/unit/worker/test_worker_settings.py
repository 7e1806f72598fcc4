"""WorkerSettings: validation, derived values and the persistent worker id."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pipecache.worker import WorkerSettings
from pipecache.worker.settings import WORKER_ID_FILE


def _s(tmp_path: Path, **kw: object) -> WorkerSettings:
    return WorkerSettings(master="http://127.0.0.1:9000", data_dir=str(tmp_path), **kw)  # type: ignore[arg-type]


def test_defaults_validate(tmp_path: Path) -> None:
    s = _s(tmp_path)
    s.validate()
    assert s.advertise_url == "http://127.0.0.1:9100"
    assert s.ssd_dir == str(tmp_path / "blocks")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"master": "127.0.0.1:9000"}, "master must be an http"),
        ({"master": "http://h:notaport"}, "malformed port"),
        ({"advertise": "ftp://x"}, "advertise must be an http"),
        ({"port": 70000}, "port must be"),
        ({"host": ""}, "host must not be empty"),
        ({"worker_id": "has space"}, "worker_id must be"),
        ({"worker_id": ""}, "worker_id must be"),
        ({"memory_bytes": -1}, "memory_bytes must be >= 0"),
        ({"ssd_bytes": -1}, "ssd_bytes must be >= 0"),
        ({"policy": "fifo"}, "policy must be one of"),
        ({"ufs_concurrency": 0}, "ufs_concurrency must be >= 1"),
        ({"io_threads": 0}, "io_threads must be >= 1"),
        ({"master_timeout": 0}, "master_timeout must be > 0"),
        ({"data_dir": ""}, "data_dir must not be empty"),
    ],
)
def test_validate_names_the_bad_setting(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    s = dataclasses.replace(_s(tmp_path), **changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        s.validate()


def test_advertise_overrides_host_and_port(tmp_path: Path) -> None:
    s = _s(tmp_path, advertise="http://10.0.0.5:9100/")
    assert s.advertise_url == "http://10.0.0.5:9100"
    assert _s(tmp_path, host="::1", port=1).advertise_url == "http://[::1]:1"


def test_store_config(tmp_path: Path) -> None:
    cfg = _s(tmp_path, memory_bytes=1000, ssd_bytes=5000, policy="lrfu").store_config()
    assert (cfg.memory_bytes, cfg.ssd_bytes, cfg.policy) == (1000, 5000, "lrfu")
    assert cfg.ssd_dir == str(tmp_path / "blocks")
    no_ssd = _s(tmp_path, memory_bytes=1000, ssd_bytes=0).store_config()
    assert no_ssd.ssd_dir is None and no_ssd.ssd_bytes == 0
    assert _s(tmp_path, ssd_bytes=0).ssd_dir is None


def test_default_budgets_are_measured(tmp_path: Path) -> None:
    cfg = _s(tmp_path).store_config()
    assert cfg.memory_bytes > 0 and cfg.ssd_bytes > 0 and cfg.ssd_dir is not None


def test_worker_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = _s(tmp_path / "new").resolve_worker_id()
    assert first and (tmp_path / "new" / WORKER_ID_FILE).read_text().strip() == first
    assert _s(tmp_path / "new").resolve_worker_id() == first
    assert _s(tmp_path / "other").resolve_worker_id() != first


def test_configured_worker_id_wins(tmp_path: Path) -> None:
    assert _s(tmp_path, worker_id="w7").resolve_worker_id() == "w7"
    assert not (tmp_path / WORKER_ID_FILE).exists()


def test_malformed_id_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / WORKER_ID_FILE).write_text("two words\n")
    with pytest.raises(ValueError, match="malformed worker id"):
        _s(tmp_path).resolve_worker_id()
