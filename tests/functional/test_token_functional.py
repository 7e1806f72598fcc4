"""The cluster token: masters and workers answer control and block requests only to its holders."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from cluster import PcCluster
from pipecache.client import ClientOptions, Unauthorized, connect
from pipecache.client.protocol import API, BLOCKS, WORKERS
from pipecache.client.rpc import TOKEN_ENV

TOKEN = "t0k3n-for-tests-" + "x" * 16
BODY = os.urandom(300_000)


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcCluster]:
    root = tmp_path_factory.mktemp("token")
    (root / "ufs" / "sealed").mkdir(parents=True)
    (root / "ufs" / "sealed" / "obj").write_bytes(BODY)
    mp = pytest.MonkeyPatch()
    mp.setenv(TOKEN_ENV, TOKEN)  # every process the cluster spawns inherits it
    c = PcCluster(ufs=(root / "ufs").as_uri(), root=root, n_workers=1)
    try:
        yield c.start()
    finally:
        c.stop()
        mp.undo()


def status(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


async def test_token_holders_read_and_gateway_serves(tc: PcCluster, gw) -> None:  # type: ignore[no-untyped-def]
    async with connect(tc.master, ClientOptions(token=TOKEN)) as pc:
        assert await pc.get("sealed", "obj") == BODY
    # The gateway and the workers carry the token themselves (their environment).
    assert gw.get_object(Bucket="sealed", Key="obj")["Body"].read() == BODY


async def test_no_token_or_a_wrong_one_is_refused(tc: PcCluster) -> None:
    for token in (None, "wrong", TOKEN + "x"):
        async with connect(tc.master, ClientOptions(token=token)) as pc:
            with pytest.raises(Unauthorized):
                await pc.stat("sealed", "obj")
        assert status(tc.master + WORKERS, token) == 401
        # A block id that exists or not: the refusal comes before any lookup.
        assert status(tc.workers[0].url + BLOCKS + "/" + "0" * 32, token) == 401
        assert status(tc.master + API + "/no-such-route", token) == 401


def test_probes_and_metrics_need_no_token(tc: PcCluster) -> None:
    for url in (tc.master, tc.workers[0].url):
        assert status(url + "/health") == 200
        assert status(url + "/metrics") == 200
    assert status(tc.master + WORKERS, TOKEN) == 200


@pytest.fixture
def gw(tc: PcCluster):  # type: ignore[no-untyped-def]
    from cluster import gateway_client

    return gateway_client(tc)


def test_encoded_paths_do_not_get_around_the_check(tc: PcCluster) -> None:
    for path in ("/api%2Fv1/workers", "/api/v1//workers", "/%61pi/v1/workers", "/blocks%2F" + "0" * 32):
        assert status(tc.master + path) != 200, path
        assert status(tc.workers[0].url + path) != 200, path
