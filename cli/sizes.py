"""Byte sizes on the command line: 4GiB, 512MiB, 10G, 1000."""

from __future__ import annotations

import click

from ..tiering.budget import parse_size


class Size(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    name = "size"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = Size()
