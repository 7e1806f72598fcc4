"""Argo ``status.nodes`` (or ``status.compressedNodes``) as a list of parsed nodes.

A node's ``name`` is the dotted path of DAG task names from the workflow down, e.g.
``run-x.root.condition-1.train-2-driver``. Loop expansions and retries add a parenthesised
suffix to a segment (``iteration-iterations(0:0)``, ``train-driver(1)``); stripping them gives
the task path that the graph builders registered, and counting them tells aggregate nodes
(a ``Retry`` or ``TaskGroup`` node) from the attempts and items beneath them.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._model import WorkflowError, as_map, as_str, charge, named

MAX_NODES_BYTES = 64 << 20  # decompressed compressedNodes: a gzip bomb stops here
MAX_NODES = 200_000
MAX_NAME = 4096


@dataclass(frozen=True)
class Node:
    """One Argo node: its task path, how many loop/retry suffixes it had, phase, outputs."""

    path: tuple[str, ...]
    loops: int
    phase: str
    outputs: Mapping[str, Any]

    def param(self, name: str) -> str | None:
        """An output parameter's value (a driver's ``pod-spec-patch``, ``condition``...)."""
        return as_str(as_map(named(self.outputs.get("parameters")).get(name)).get("value"))


def decode_compressed_nodes(text: str, limit: int = MAX_NODES_BYTES) -> dict[str, Any]:
    """Decode Argo's ``status.compressedNodes``: base64 of gzip of the nodes JSON object.

    Raises ``WorkflowError`` if it is not valid, or decompresses to more than ``limit`` bytes.
    """
    if not isinstance(text, str):
        raise WorkflowError("status.compressedNodes is not a string")
    if len(text) > 2 * limit:
        raise WorkflowError("status.compressedNodes is too large")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=False)
        inflater = zlib.decompressobj(wbits=47)  # 32+15: gzip or zlib header, auto-detected
        data = inflater.decompress(raw, limit + 1)
    except (ValueError, binascii.Error, zlib.error, UnicodeEncodeError) as exc:
        raise WorkflowError(f"status.compressedNodes is not base64 gzip: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise WorkflowError(f"status.compressedNodes decompresses to more than {limit} bytes")
    if not inflater.eof:
        raise WorkflowError("status.compressedNodes is truncated")
    try:
        nodes = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise WorkflowError(f"status.compressedNodes is not JSON: {exc}") from None
    if not isinstance(nodes, dict):
        raise WorkflowError("status.compressedNodes is not a JSON object")
    return nodes


def split_name(name: str) -> tuple[tuple[str, ...], int]:
    """``a.b(0:1).c(2)`` → ``(("a", "b", "c"), 2)``: segments without suffixes, suffix count."""
    segments: list[str] = []
    current: list[str] = []
    depth = loops = 0
    for ch in name[:MAX_NAME]:
        if ch == "(":
            if depth == 0:
                loops += 1
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            if ch == ".":
                segments.append("".join(current))
                current = []
            else:
                current.append(ch)
    segments.append("".join(current))
    return tuple(segments), loops


def workflow_nodes(obj: Mapping[str, Any]) -> list[Node]:
    """The workflow's nodes, with paths relative to the entrypoint (decoding if compressed)."""
    status = as_map(obj.get("status"))
    raw = status.get("nodes")
    if not isinstance(raw, Mapping) and status.get("compressedNodes") is not None:
        raw = decode_compressed_nodes(status["compressedNodes"])
    if not isinstance(raw, Mapping):
        return []
    if len(raw) > MAX_NODES:
        raise WorkflowError(f"workflow status has more than {MAX_NODES} nodes")
    wf_name = as_str(as_map(obj.get("metadata")).get("name"))
    nodes: list[Node] = []
    for entry in raw.values():
        entry = as_map(entry)
        name = as_str(entry.get("name"))
        if not name:
            continue
        charge(len(name))
        segments, loops = split_name(name)
        if wf_name and name == wf_name:
            path: tuple[str, ...] = ()
        elif wf_name and name.startswith(wf_name + "."):
            path = split_name(name[len(wf_name) + 1 :])[0]
        else:
            path = segments[1:]  # the workflow's name is unknown: drop the first segment
        phase = as_str(entry.get("phase")) or ""
        nodes.append(Node(path, loops, phase, as_map(entry.get("outputs"))))
    return nodes
