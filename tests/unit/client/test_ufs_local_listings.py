"""LocalUnderStore: ListParts, ListMultipartUploads (paging, delimiter) and its one-version listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipecache.client.ufs import LocalUnderStore
from pipecache.client.ufs.base import UploadInfo, uploads_page
from pipecache.tiering.errors import NoSuchBucket, NoSuchUpload


@pytest.fixture
def store(tmp_path: Path) -> LocalUnderStore:
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    return LocalUnderStore(str(tmp_path))


async def test_list_parts(store: LocalUnderStore) -> None:
    up = await store.create_upload("data", "k")
    etags = [await store.put_part("data", "k", up, n, b"p" * n) for n in (3, 1, 2)]
    await store.put_part("data", "k", up, 2, b"again")  # replaces part 2
    page = await store.list_parts("data", "k", up)
    assert [(p.number, p.size) for p in page.parts] == [(1, 1), (2, 5), (3, 3)]
    assert page.parts[2].etag == etags[0] and not page.truncated
    first = await store.list_parts("data", "k", up, max_parts=2)
    assert [p.number for p in first.parts] == [1, 2] and first.truncated and first.next_marker == 2
    rest = await store.list_parts("data", "k", up, marker=first.next_marker)
    assert [p.number for p in rest.parts] == [3] and not rest.truncated
    with pytest.raises(NoSuchUpload):
        await store.list_parts("data", "other-key", up)


async def test_list_uploads(store: LocalUnderStore) -> None:
    ids = {k: await store.create_upload("data", k) for k in ("a/1", "a/2", "b/3", "top")}
    await store.create_upload("other", "a/x")
    page = await store.list_uploads("data")
    assert [(u.key, u.upload_id) for u in page.uploads] == sorted(ids.items())
    rolled = await store.list_uploads("data", delimiter="/")
    assert rolled.prefixes == ["a/", "b/"] and [u.key for u in rolled.uploads] == ["top"]
    first = await store.list_uploads("data", "a/", max_uploads=1)
    assert [u.key for u in first.uploads] == ["a/1"] and first.truncated
    rest = await store.list_uploads(
        "data", "a/", key_marker=first.next_key_marker, upload_id_marker=first.next_upload_id_marker
    )
    assert [u.key for u in rest.uploads] == ["a/2"] and not rest.truncated
    await store.abort_upload("data", "a/1", ids["a/1"])
    assert [u.key for u in (await store.list_uploads("data", "a/")).uploads] == ["a/2"]
    with pytest.raises(NoSuchBucket):
        await store.list_uploads("missing")


def test_uploads_page_markers_within_one_key() -> None:
    uploads = [UploadInfo("k", i, 0.0) for i in ("u3", "u1", "u2")] + [UploadInfo("z", "u0", 0.0)]
    first = uploads_page(uploads, "", "", "", "", 2)
    assert [u.upload_id for u in first.uploads] == ["u1", "u2"]
    assert (first.next_key_marker, first.next_upload_id_marker) == ("k", "u2")
    rest = uploads_page(uploads, "", "", "k", "u2", 10)
    assert [(u.key, u.upload_id) for u in rest.uploads] == [("k", "u3"), ("z", "u0")]
    assert [u.key for u in uploads_page(uploads, "", "", "k", "", 10).uploads] == ["z"]


async def test_versions_of_a_folder_are_the_objects(store: LocalUnderStore) -> None:
    for k in ("a/x", "b", "c"):
        await store.put("data", k, k.encode())
    page = await store.list_versions("data", delimiter="/")
    assert page.prefixes == ["a/"]
    assert [(v.key, v.version_id, v.is_latest) for v in page.versions] == [
        ("b", "null", True),
        ("c", "null", True),
    ]
    first = await store.list_versions("data", max_keys=2)
    assert (
        [v.key for v in first.versions] == ["a/x", "b"] and first.truncated and first.next_key_marker == "b"
    )
    rest = await store.list_versions("data", key_marker=first.next_key_marker)
    assert [v.key for v in rest.versions] == ["c"]
