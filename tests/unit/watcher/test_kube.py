"""The pure parts of the watch: backoff, re-list diffs, watch event handling."""

from __future__ import annotations

import random
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from pipecache.watcher.kube import Gone, WatchSettings, WorkflowWatch, backoff_delay


def wf(name: str, rv: str, ns: str = "kf") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv}}


def watch() -> WorkflowWatch:
    return WorkflowWatch(None, None)  # type: ignore[arg-type]  # the API is not touched here


def test_backoff_is_jittered_exponential_and_capped() -> None:
    s = WatchSettings(backoff_initial=0.5, backoff_max=8.0)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (4, 8.0), (10, 8.0), (10_000, 8.0)]:
        delays = [backoff_delay(attempt, s, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # spread, not fixed


def test_relist_reports_added_modified_and_vanished() -> None:
    w = watch()
    first = w._relisted([wf("a", "1"), wf("b", "2"), {"metadata": "junk"}])
    assert [(e.type, e.obj["metadata"]["name"]) for e in first] == [("ADDED", "a"), ("ADDED", "b")]
    again = w._relisted([wf("a", "1"), wf("b", "5"), wf("c", "6")])
    assert [(e.type, e.obj["metadata"]["name"]) for e in again] == [("MODIFIED", "b"), ("ADDED", "c")]
    gone = w._relisted([wf("c", "6")])
    assert sorted((e.type, e.obj["metadata"]["name"]) for e in gone) == [("DELETED", "a"), ("DELETED", "b")]


def test_watch_events_move_the_version_and_the_known_set() -> None:
    w = watch()
    rv, ev = w._handle({"type": "ADDED", "object": wf("a", "7")})
    assert rv == "7" and ev is not None and ev.type == "ADDED"
    rv, ev = w._handle(
        {"type": "BOOKMARK", "object": {"kind": "Workflow", "metadata": {"resourceVersion": "9"}}}
    )
    assert (rv, ev) == ("9", None)
    rv, ev = w._handle({"type": "DELETED", "object": wf("a", "10")})
    assert rv == "10" and ev is not None and ev.type == "DELETED"
    assert w._relisted([]) == []  # a was deleted: nothing vanished


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "ADDED"},
        {"type": "ADDED", "object": "text"},
        {"type": "WEIRD", "object": wf("a", "3")},
        {"type": "ADDED", "object": {"metadata": {"name": 5}}},
    ],
)
def test_hostile_events_are_skipped(raw: dict[str, Any]) -> None:
    rv, ev = watch()._handle(raw)
    assert ev is None


def test_error_events() -> None:
    with pytest.raises(Gone):
        watch()._handle({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
    with pytest.raises(ApiException):
        watch()._handle({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd down"}})
