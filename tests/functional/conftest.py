"""Fixtures for functional tests: a whole cluster in front of a real moto S3 server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))

sys.path.insert(0, str(Path(__file__).parents[1]))

from cluster import ACCESS_KEY, SECRET_KEY, PcCluster, gateway_client, running  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from pipecache.client.fsspec import PipecacheFileSystem  # noqa: E402


@pytest.fixture(scope="session")
def cluster(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcCluster]:
    """Master, two workers (small memory tier, SSD tier) and the gateway, in front of moto."""
    yield from running(PcCluster(ufs=moto_server, root=tmp_path_factory.mktemp("cluster")))


@pytest.fixture(scope="module")
def ufs_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A TCP proxy in front of moto that can stall or cut connections (``tests/faultproxy.py``)."""
    u = urlsplit(moto_server)
    proxy = FaultProxy(u.hostname or "127.0.0.1", u.port or 80).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def gw_env() -> dict[str, str]:
    """Environment for AWS tools talking to the gateway."""
    return {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


@pytest.fixture
def gw(cluster: PcCluster):  # type: ignore[no-untyped-def]
    """A boto3 S3 client pointed at the gateway."""
    return gateway_client(cluster)


@pytest.fixture
def fs(cluster: PcCluster) -> Iterator[PipecacheFileSystem]:
    """The fsspec filesystem through its entry point (fsspec caches it: the same instance each time)."""
    import fsspec

    pfs = fsspec.filesystem("pipecache", master=cluster.master)
    assert isinstance(pfs, PipecacheFileSystem)
    yield pfs
    pfs.close()  # a later use starts a new client
