"""Remote modes and the transfer pipeline on real OpenZFS over real ssh.

In one guest, ssh to root@localhost stands in for the remote side (pull, push,
pull+push); between two guests the source (or target) really is another machine, which
has nothing but sh, ssh and zfs (the tool is not installed there).
"""

from __future__ import annotations

import pytest

from tests.zfsvm.bed import Pools, ZfsBed
from tests.zfsvm.guest import LOCAL, PEER

pytestmark = pytest.mark.zfs

TAG = "zfs_autobackup:rem"
#: ZFS allows spaces, ':' and '.' in names (it refuses quotes, '$', ';' and non-ASCII)
AWKWARD = "my data:set.v1"


def stamp(hour: int, day: int = 1) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def snapname(hour: int, day: int = 1, name: str = "rem") -> str:
    return f"{name}-202601{day:02d}{hour:02d}0000"


MODES = {
    "pull": ["--ssh-source", LOCAL],
    "push": ["--ssh-target", LOCAL],
    "pull+push": ["--ssh-source", LOCAL, "--ssh-target", LOCAL],
}


# (CI runs pull+push, with ssh at both ends; pull and push over ssh run in CI in the
# least-privilege tests; --slow runs these two as well)
@pytest.mark.parametrize(
    "mode", [m if m == "pull+push" else pytest.param(m, marks=pytest.mark.slow) for m in MODES]
)
def test_modes_over_ssh_with_awkward_names(zfs_bed: ZfsBed, pools: Pools, mode: str) -> None:
    s, d = pools.src, pools.dst
    source = f"{s}/{AWKWARD}"
    target_path = f"{d}/back up"
    zfs_bed.sh("zfs", "create", "-p", f"{source}/child one")
    zfs_bed.sh("zfs", "create", target_path)
    zfs_bed.sh("zfs", "set", "autobackup:rem=true", source)
    zfs_bed.write(source, "f", 128)
    args = [*MODES[mode], "rem", target_path, "--exclude-received", "--verbose", "--debug"]
    run = zfs_bed.tool(*args, now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    # pull+push between two different hosts runs two ssh (see the two-guest test); with
    # the same host at both ends the whole pipeline runs there, in one ssh
    expected_ssh = 1
    send_line = next(
        line for line in run.stdout.splitlines() if "zfs send" in line and "CMD >" in line
    )
    assert send_line.count("ssh ") == expected_ssh, send_line
    target = f"{target_path}/{source}"
    assert zfs_bed.names(target_path) == [
        target_path, f"{target_path}/{s}", target, f"{target}@{snapname(1)}", f"{target}/child one", f"{target}/child one@{snapname(1)}",
    ]  # fmt: skip
    assert zfs_bed.prop(f"{target}@{snapname(1)}", "guid") == zfs_bed.prop(
        f"{source}@{snapname(1)}", "guid"
    )
    assert zfs_bed.checksum(target) == zfs_bed.checksum(source)
    assert zfs_bed.holds(f"{target}@{snapname(1)}") == [TAG]
    # the source keeps the chain with its bookmark, over ssh too
    tag = zfs_bed.prop(target_path, "guid")
    assert zfs_bed.holds(f"{source}@{snapname(1)}") == []
    assert zfs_bed.bookmarks(source) == [f"{snapname(1)}__{tag}"]

    zfs_bed.write(source, "g", 64)
    logins = _ssh_logins_from_the_guest(zfs_bed)
    run = zfs_bed.tool(*args, now=stamp(2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{target}@{snapname(2)}: receiving incremental" in run.stdout
    assert zfs_bed.checksum(target) == zfs_bed.checksum(source)
    assert zfs_bed.bookmarks(source) == [f"{snapname(2)}__{tag}"]
    # one multiplexed connection per host: the run's dozen ssh commands logged in once
    assert _ssh_logins_from_the_guest(zfs_bed) - logins == 1


def _ssh_logins_from_the_guest(bed: ZfsBed) -> int:
    """How many ssh logins came from inside the guest (the tool's, not the test bed's)."""
    out = bed.run(
        "journalctl -u ssh --no-pager -o cat"
        " | grep -cE 'Accepted publickey for root from (127[.]0[.]0[.]1|::1) ' || true"
    ).stdout
    return int(out.strip() or 0)


@pytest.mark.slow  # boots a second guest; the modes test above runs each mode over ssh
def test_pull_and_push_between_two_guests(
    zfs_bed: ZfsBed, zfs_peer: ZfsBed, pools: Pools, peer_pools: Pools
) -> None:
    """The seed's pull example against another machine, push back to it, and pull+push
    through this guest (source and target never talk to each other)."""
    remote = peer_pools.src
    zfs_peer.run(f"zfs create -p '{remote}/{AWKWARD}' && zfs set autobackup:rem=true {remote}")
    zfs_peer.write(f"{remote}/{AWKWARD}", "data", 256)
    config = "/root/peer config"
    zfs_bed.guest.run(
        f"printf 'Host peer\\n  HostName 10.0.2.100\\n  User root\\n  StrictHostKeyChecking no\\n"
        f"  UserKnownHostsFile /dev/null\\n  LogLevel ERROR\\n' > '{config}'"
    )
    d = pools.dst
    run = zfs_bed.tool(
        "--ssh-config",
        config,
        "--ssh-source",
        "peer",
        "rem",
        d,
        "--verbose",
        "--progress",
        now=stamp(1),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[Source] Datasets on: peer" in run.stdout
    pulled = f"{d}/{remote}/{AWKWARD}"
    assert zfs_bed.prop(f"{pulled}@{snapname(1)}", "guid") == zfs_peer.prop(
        f"{remote}/{AWKWARD}@{snapname(1)}", "guid"
    )
    assert zfs_bed.checksum(pulled) == zfs_peer.checksum(f"{remote}/{AWKWARD}")
    assert zfs_peer.holds(f"{remote}/{AWKWARD}@{snapname(1)}") == [TAG]

    # push from this guest to the peer
    zfs_peer.sh("zfs", "create", f"{remote}/pushed")
    s = pools.src
    zfs_bed.run(f"zfs create {s}/local && zfs set autobackup:out=true {s}/local")
    zfs_bed.write(f"{s}/local", "f", 64)
    run = zfs_bed.tool("--ssh-target", PEER, "out", f"{remote}/pushed", "--verbose", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    pushed = f"{remote}/pushed/{s}/local"
    assert zfs_peer.prop(f"{pushed}@{snapname(1, name='out')}", "guid") == zfs_bed.prop(
        f"{s}/local@{snapname(1, name='out')}", "guid"
    )
    assert zfs_peer.checksum(pushed) == zfs_bed.checksum(f"{s}/local")

    # pull+push: from the peer to this guest's pool, both ends over ssh
    zfs_peer.write(f"{remote}/{AWKWARD}", "more", 64)
    run = zfs_bed.tool(
        "--ssh-source", PEER, "--ssh-target", LOCAL, "rem", d, "--exclude-received", "--verbose",
        "--compress", now=stamp(2),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{pulled}@{snapname(2)}: receiving incremental" in run.stdout
    assert zfs_bed.checksum(pulled) == zfs_peer.checksum(f"{remote}/{AWKWARD}")


def test_interrupted_transfer_resumes(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/big && zfs set autobackup:rem=true {s}/big")
    zfs_bed.write(f"{s}/big", "blob", 24 * 1024)
    # cut the stream after 15 MB: the receive fails and leaves a resume token
    run = zfs_bed.tool(
        "--ssh-source", LOCAL, "rem", d, "--send-pipe", "head -c 15000000", now=stamp(1)
    )
    assert run.returncode == 1, run.stdout + run.stderr
    token = zfs_bed.prop(f"{d}/{s}/big", "receive_resume_token")
    assert token not in ("", "-")
    run = zfs_bed.tool("--ssh-source", LOCAL, "rem", d, "--no-snapshot", "--verbose", now=stamp(2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"[Target] {d}/{s}/big@{snapname(1)}: resuming" in run.stdout
    assert zfs_bed.prop(f"{d}/{s}/big", "receive_resume_token") in ("", "-")
    assert zfs_bed.prop(f"{d}/{s}/big@{snapname(1)}", "guid") == zfs_bed.prop(
        f"{s}/big@{snapname(1)}", "guid"
    )
    assert zfs_bed.checksum(f"{d}/{s}/big") == zfs_bed.checksum(f"{s}/big")


def test_stale_resume_token_is_aborted_and_the_send_restarts(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/big && zfs set autobackup:rem=true {s}/big")
    zfs_bed.write(f"{s}/big", "blob", 24 * 1024)
    run = zfs_bed.tool("rem", d, "--send-pipe", "head -c 15000000", now=stamp(1))
    assert run.returncode == 1
    # the snapshot the token belongs to is gone on the source
    zfs_bed.sh("zfs", "destroy", f"{s}/big@{snapname(1)}")
    run = zfs_bed.tool("rem", d, "--allow-empty", "--verbose", now=stamp(2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"[Target] {d}/{s}/big: Aborting resume, its no longer valid." in run.stdout
    assert f"{d}/{s}/big@{snapname(2)}: receiving full" in run.stdout
    assert zfs_bed.snapshots(f"{d}/{s}/big") == [snapname(2)]
    assert zfs_bed.checksum(f"{d}/{s}/big") == zfs_bed.checksum(f"{s}/big")


def test_encrypted_dataset_is_sent_raw_and_arrives_locked(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(
        "echo 'correct horse battery' > /root/zfs.key && "
        f"zfs create -o encryption=aes-256-gcm -o keyformat=passphrase -o keylocation=file:///root/zfs.key {s}/secret && "
        f"zfs set autobackup:rem=true {s}/secret"
    )
    zfs_bed.write(f"{s}/secret", "f", 256)
    for hour in (1, 2):
        run = zfs_bed.tool(
            "--ssh-target",
            LOCAL,
            "rem",
            d,
            "--allow-empty",
            "--exclude-received",
            "--debug",
            now=stamp(hour),
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert " -w " in next(
            line for line in run.stdout.splitlines() if "zfs send" in line and "CMD >" in line
        )
        zfs_bed.write(f"{s}/secret", f"g{hour}", 32)
    target = f"{d}/{s}/secret"
    assert zfs_bed.prop(target, "encryption") == "aes-256-gcm"
    assert zfs_bed.prop(target, "keystatus") == "unavailable"
    assert zfs_bed.snapshots(target) == [snapname(1), snapname(2)]
    zfs_bed.sh("zfs", "load-key", "-L", "file:///root/zfs.key", target)
    assert zfs_bed.checksum(target) == zfs_bed.checksum(f"{s}/secret@{snapname(2)}")


@pytest.mark.parametrize(
    ("options", "source_stages", "target_stages"),
    [
        # (CI: two runs prove every stage kind: a compressor with send and receive pipes,
        # and mbuffer on both sides with its size and rate; one option each is --slow)
        (
            ["--compress", "--send-pipe", "tee /tmp/copy", "--recv-pipe", "cat -u"],
            ["tee /tmp/copy", "zstd -T0 -3"],
            ["zstd -dc", "cat -u"],
        ),
        (
            ["--buffer=8M", "--rate=20M"],
            ["mbuffer -q -s128k -m8M -R20M"],
            ["mbuffer -q -s128k -m8M"],
        ),
        *(
            pytest.param(options, source, target, marks=pytest.mark.slow)
            for options, source, target in [
                (["--compress"], ["zstd -T0 -3"], ["zstd -dc"]),
                (["--compress=gzip"], ["gzip -3"], ["gzip -dc"]),
                (["--compress=lz4"], ["lz4"], ["lz4 -dc"]),
                (["--compress=xz"], ["xz"], ["xz -d"]),
                (["--compress=lzo"], ["lzop"], ["lzop -dfc"]),
                (["--compress=pigz-fast"], ["pigz -3"], ["pigz -dc"]),
                (["--buffer=8M"], ["mbuffer -q -s128k -m8M"], ["mbuffer -q -s128k -m8M"]),
                (["--rate=20M"], ["mbuffer -q -s128k -m16M -R20M"], []),
                (
                    ["--send-pipe", "tee /tmp/copy", "--recv-pipe", "cat -u"],
                    ["tee /tmp/copy"],
                    ["cat -u"],
                ),
            ]
        ),
    ],
)
def test_pipeline_options_shape_the_pipeline_and_deliver_identical_data(
    zfs_bed: ZfsBed,
    pools: Pools,
    options: list[str],
    source_stages: list[str],
    target_stages: list[str],
) -> None:
    """Each stage sits in its place of `zfs send | ... | zfs recv`, in order, and the data
    arrives."""
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/p && zfs set autobackup:rem=true {s}/p")
    zfs_bed.write(f"{s}/p", "f", 512)
    run = zfs_bed.tool("--ssh-source", LOCAL, "rem", d, *options, "--debug", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(line for line in run.stdout.splitlines() if "zfs send" in line and "CMD >" in line)
    remote, _, local = line.partition("' | ")
    assert "".join(f" | {stage}" for stage in source_stages) in remote, line
    if target_stages:
        assert "".join(f"{stage} | " for stage in target_stages) + "zfs recv" in local, line
    assert zfs_bed.checksum(f"{d}/{s}/p") == zfs_bed.checksum(f"{s}/p")


def test_missing_helper_is_a_clear_error_before_anything_changes(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/p && zfs set autobackup:rem=true {s}/p")
    before = zfs_bed.names(s, d)
    run = zfs_bed.tool(
        "--ssh-target", LOCAL, "rem", d, "--recv-pipe", "no-such-helper -x", now=stamp(1)
    )
    assert run.returncode == 255
    assert run.stderr.strip() == (
        "! no-such-helper not installed on the target (root@localhost): install it there, or drop "
        "the option that needs it (--compress, --buffer, --rate, --send-pipe, --recv-pipe)"
    )
    assert zfs_bed.names(s, d) == before


def test_received_properties_are_filtered_and_set(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create -o compression=lz4 -o atime=off {s}/fs && zfs create -V 8M {s}/vol && "
        f"zfs set autobackup:rem=true {s}/fs && zfs set autobackup:rem=true {s}/vol"
    )
    run = zfs_bed.tool(
        "rem", d, "--clear-mountpoint", "--clear-refreservation", "--filter-properties", "atime",
        "--set-properties", "compression=zstd", "--debug", now=stamp(1),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(f"{d}/{s}/fs", "canmount") == "noauto"
    assert zfs_bed.prop(f"{d}/{s}/fs", "compression") == "zstd"
    assert zfs_bed.prop(f"{d}/{s}/fs", "atime") == "on"  # filtered: the target's default
    assert zfs_bed.prop(f"{d}/{s}/vol", "refreservation") == "0"
    assert zfs_bed.prop(f"{s}/vol", "refreservation") != "0"
    vol_recv = next(
        line for line in run.stdout.splitlines() if "zfs recv" in line and "/vol" in line
    )
    assert "canmount" not in vol_recv  # not a volume property


def test_progress_shows_percent_rate_and_eta(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/slow && zfs set autobackup:rem=true {s}/slow")
    zfs_bed.write(f"{s}/slow", "blob", 4 * 1024)
    # the real clock: faketime -f also stops the monotonic clock that paces the display
    run = zfs_bed.tool("--ssh-source", LOCAL, "rem", d, "--rate", "1M", "--progress")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [
        line.split(": ", 1)[1]
        for line in run.stderr.splitlines()
        if f"[Target] {d}/{s}/slow@rem-" in line
    ]
    assert any(
        "%" in line and "/s " in line and "of 4.0 MiB" in line and "ETA" in line for line in lines
    ), lines
    # counted from what zfs recv read: the percentage grows with the (rate-limited)
    # transfer. (A line drawn before zfs send printed its size estimate has no
    # percentage yet, "18.5 KiB at 16.0 KiB/s": how many there are depends on timing)
    percents = [int(line.split("%")[0]) for line in lines if "%" in line]
    assert percents == sorted(percents) and percents[0] < 100, lines
    assert all("%" in line or " at " in line for line in lines), lines


def test_zfs_compressed_decrypt_and_encrypt(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(
        "echo 'correct horse battery' > /root/zfs.key && "
        f"zfs create -o compression=lz4 {s}/plain && zfs set autobackup:rem=true {s}/plain && "
        f"zfs create -o encryption=aes-256-gcm -o keyformat=passphrase -o keylocation=file:///root/zfs.key {s}/secret && "
        f"zfs set autobackup:dec=true {s}/secret && "
        f"zfs create -o encryption=aes-256-gcm -o keyformat=passphrase -o keylocation=file:///root/zfs.key {d}/vault"
    )
    zfs_bed.write(f"{s}/plain", "f", 128)
    zfs_bed.write(f"{s}/secret", "f", 128)
    # --zfs-compressed: blocks go as they are on disk (zfs send -c)
    run = zfs_bed.tool("rem", d, "--zfs-compressed", "--debug", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert " -c " in next(
        line for line in run.stdout.splitlines() if "zfs send" in line and "CMD >" in line
    )
    assert zfs_bed.checksum(f"{d}/{s}/plain") == zfs_bed.checksum(f"{s}/plain")
    # --decrypt: an encrypted source arrives as plain data (readable without the key)
    run = zfs_bed.tool("dec", d, "--decrypt", "--exclude-received", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(f"{d}/{s}/secret", "encryption") == "off"
    assert zfs_bed.checksum(f"{d}/{s}/secret") == zfs_bed.checksum(f"{s}/secret")
    # --encrypt: a plain source is encrypted by its encrypted target parent
    run = zfs_bed.tool("rem", f"{d}/vault", "--encrypt", "--exclude-received", now=stamp(2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(f"{d}/vault/{s}/plain", "encryption") == "aes-256-gcm"
    assert zfs_bed.prop(f"{d}/vault/{s}/plain", "encryptionroot") == f"{d}/vault"
    assert zfs_bed.checksum(f"{d}/vault/{s}/plain") == zfs_bed.checksum(f"{s}/plain@{snapname(1)}")
