"""The bed works: send | recv through the project's runner, on real OpenZFS.

Three ways: the runner inside the guest on the guest's pools; inside the guest over
ssh to root@localhost; and from the host over ssh into the guest.
"""

from __future__ import annotations

import json

import pytest

from executors.runner import LocalRunner
from reconcile.model import Host
from tests.zfsvm.bed import GUEST_PREFIX, Pools, ZfsBed
from tests.zfsvm.smoke_pipe import replicate

pytestmark = pytest.mark.zfs


def _check(result: dict[str, str]) -> None:
    assert result["src_guid"] == result["dst_guid"]
    assert int(result["src_guid"]) > 0
    assert result["src_sum"] == result["dst_sum"]
    assert "zfs send" in result["command"] and "zfs recv" in result["command"]


# (--slow: over ssh too; every remote test in CI sends over ssh to localhost)
@pytest.mark.parametrize(
    "ssh",
    [None, pytest.param("root@localhost", marks=pytest.mark.slow)],
    ids=["local", "ssh-localhost"],
)
def test_send_recv_inside_guest(zfs_bed: ZfsBed, pools: Pools, ssh: str | None) -> None:
    args = [f"{pools.src}/data", f"{pools.dst}/data"] + ([ssh] if ssh else [])
    out = zfs_bed.guest.run_argv(
        ["env", f"PYTHONPATH={GUEST_PREFIX}", "python3", "-m", "tests.zfsvm.smoke_pipe", *args]
    )
    result = json.loads(out.stdout)
    _check(result)
    if ssh:
        assert result["command"].startswith("ssh ")
    assert zfs_bed.names(pools.dst) == [pools.dst, f"{pools.dst}/data", f"{pools.dst}/data@smoke"]


def test_send_recv_from_host_over_ssh(zfs_bed: ZfsBed, pools: Pools) -> None:
    host = Host(ssh=zfs_bed.guest.name, ssh_config=str(zfs_bed.guest.ssh_config))
    result = replicate(LocalRunner(), host, f"{pools.src}/data", f"{pools.dst}/data")
    _check(result)
    assert zfs_bed.prop(f"{pools.dst}/data@smoke", "guid") == result["src_guid"]
