"""The hold verbs' output lines."""

from __future__ import annotations

from pipecache.cli.holds import expires_text, free_line, hold_line
from pipecache.client.protocol import FreeReply, HoldInfo

NOW = 1_800_000_000.0


def test_hold_line_names_kind_blocks_expiry_and_paths() -> None:
    paths = ["s3://d/val/", "s3://d/test/"]
    info = HoldInfo("val", "pin", paths, NOW - 5, NOW + 3725, 12, 7, reads=8, hits=6)
    assert hold_line(info, NOW) == (
        "val  pin  7/12 blocks  8 reads, 75.0% hits  expires 2027-01-15T09:02:05Z (in 1h02m)  "
        "s3://d/val/ s3://d/test/"
    )
    assert "reads" not in hold_line(HoldInfo("t", "ttl", expires=NOW), NOW)
    assert "0 reads, - hits" in hold_line(HoldInfo("p", "protect"), NOW)
    assert expires_text(HoldInfo("x", "protect"), NOW) == "never"
    assert expires_text(HoldInfo("x", "ttl", expires=NOW + 90), NOW).endswith("(in 1m30s)")
    assert expires_text(HoldInfo("x", "ttl", expires=NOW + 2 * 86400 + 7200), NOW).endswith("(in 2d2h)")
    assert expires_text(HoldInfo("x", "ttl", expires=NOW - 3), NOW).endswith("(in 0s)")


def test_free_line_explains_refusals() -> None:
    assert free_line(FreeReply(3, 0)) == "freeing 3 cached blocks"
    line = free_line(FreeReply(0, 2))
    assert line.endswith("kept 2 pinned or protected blocks (use --force to drop them too)")
