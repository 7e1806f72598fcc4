"""`pipecache worker --s3-port ... --check-config`: settings a worker could not start with."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from pipecache.cli.main import main

KEYS = {"PIPECACHE_ACCESS_KEY": "team", "PIPECACHE_SECRET_KEY": "team-secret-0123456789abcdef"}


def _check(tmp_path: Path, *args: str) -> tuple[int, str]:
    base = ["worker", "--master=http://127.0.0.1:9000", f"--data-dir={tmp_path}", "--port=9100"]
    result = CliRunner().invoke(main, [*base, *args, "--check-config"], env=KEYS)
    return result.exit_code, result.output


def test_s3_port_beside_the_block_port_is_accepted(tmp_path: Path) -> None:
    assert _check(tmp_path, "--s3-port=8081") == (0, "worker settings ok\n")


def test_s3_port_equal_to_the_block_port_is_refused(tmp_path: Path) -> None:
    code, output = _check(tmp_path, "--s3-port=9100")
    assert code == 2 and "--s3-port must differ from --port (9100)" in output
