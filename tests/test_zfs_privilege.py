"""Least privilege on real OpenZFS: every mode run by unprivileged users holding only the
delegations docs/security.md lists (reconcile/permissions.py's sets), the error a
missing delegation gives, and the remote guard.

In one guest, three users stand in for three machines' backup accounts: `zbsource` on
the source, `zbtarget` on the target, `zbackup` on a third host for pull+push. Each
logs in to the others with its own key (ssh to localhost), as it would between hosts.
"""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Sequence
from typing import Optional

import pytest

from reconcile import permissions
from reconcile.scripts import MOUNT_SCRIPT
from tests.zfsvm.bed import Pools, ZfsBed

pytestmark = pytest.mark.zfs

NAME = "lp"
TAG = f"zfs_autobackup:{NAME}"
USERS = ("zbsource", "zbtarget", "zbackup")
#: who may log in to whom (the backup server pulls, the source pushes, a third host both)
LOGINS = {"zbsource": ("zbtarget", "zbackup"), "zbtarget": ("zbsource", "zbackup")}

_SETUP = r"""
for u in zbsource zbtarget zbackup; do
  id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/sh "$u"
  h=/home/$u
  mkdir -p "$h/.ssh"
  [ -f "$h/.ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$u" -f "$h/.ssh/id_ed25519"
  printf 'Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' > "$h/.ssh/config"
  chown -R "$u:$u" "$h/.ssh"; chmod 700 "$h/.ssh"
done
"""


def stamp(day: int, hour: int = 0) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def snapname(day: int, hour: int = 0) -> str:
    return f"{NAME}-202601{day:02d}{hour:02d}0000"


def authorize(bed: ZfsBed, user: str, command: str = "") -> None:
    """`user`'s authorized_keys: the keys of LOGINS[user], each with `command` forced."""
    prefix = f'command="{command}",restrict ' if command else ""
    keys = " ".join(f"/home/{u}/.ssh/id_ed25519.pub" for u in LOGINS[user])
    path = f"/home/{user}/.ssh/authorized_keys"
    bed.run(
        f"for k in {keys}; do printf '%s' {shlex.quote(prefix)}; cat $k; done > {path}"
        f" && chown {user}:{user} {path} && chmod 600 {path}"
    )


@pytest.fixture
def users(zfs_bed: ZfsBed) -> ZfsBed:
    zfs_bed.run(_SETUP)
    for user in LOGINS:
        authorize(zfs_bed, user)
    return zfs_bed


def as_user(bed: ZfsBed, user: str, *args: str, now: str) -> tuple[int, str]:
    """Run the tool as `user` (not root) with a frozen clock; (exit code, output)."""
    # (from its home, as cron would start it: root's working directory is not its to read)
    argv = ["runuser", "-u", user, "--", "env", "-C", f"/home/{user}", "faketime", "-f", now]
    argv += ["zfs-autobackup", *args]
    run = bed.guest.run_argv(argv, check=False)
    return run.returncode, run.stdout + run.stderr


def grant(bed: ZfsBed, user: str, perms: Sequence[str], dataset: str) -> None:
    bed.sh("zfs", "allow", "-u", user, ",".join(perms), dataset)


MODES = {
    # mode: (who runs the tool, its ssh options)
    "local": ("zbackup", []),
    "pull": ("zbtarget", ["--ssh-source", "zbsource@localhost"]),
    "push": ("zbsource", ["--ssh-target", "zbtarget@localhost"]),
    "pull+push": (
        "zbackup",
        ["--ssh-source", "zbsource@localhost", "--ssh-target", "zbtarget@localhost"],
    ),
}


def _delegated_world(bed: ZfsBed, pools: Pools) -> tuple[str, str]:
    """src/data (selected) with a child; the target path; the documented default sets
    granted to zbsource on the source pool and to zbtarget on the target path."""
    s, d = pools.src, pools.dst
    bed.sh("zfs", "create", "-p", f"{s}/data/sub")
    bed.sh("zfs", "set", f"autobackup:{NAME}=true", f"{s}/data")
    bed.write(f"{s}/data", "f", 256)
    bed.sh("zfs", "create", f"{d}/backup")
    grant(bed, "zbsource", permissions.default_set("source"), s)
    grant(bed, "zbtarget", permissions.default_set("target"), f"{d}/backup")
    return f"{s}/data", f"{d}/backup"


@pytest.mark.parametrize(
    "mode",
    # (push as a delegated user is also run in CI by the guard's test below; local, by the
    # take-over test below: one delegated user with both default sets, incremental runs
    # and thinning; pull, by pull+push, which pulls as the same user, resume included:
    # those with --slow here, to keep CI under an hour)
    [m if m == "pull+push" else pytest.param(m, marks=pytest.mark.slow) for m in MODES],
)
def test_every_mode_as_unprivileged_users(users: ZfsBed, pools: Pools, mode: str) -> None:
    """Full, incremental, holds, bookmarks, thinning on both sides, and (pulling) a
    resumed transfer, with nothing but the documented default delegations."""
    bed = users
    source, target_path = _delegated_world(bed, pools)
    user, ssh = MODES[mode]
    if mode == "local":  # (one user, both sets)
        grant(bed, user, permissions.default_set("source"), pools.src)
        grant(bed, user, permissions.default_set("target"), target_path)
    # (--exclude-received: both "hosts" are this guest, which holds the received copies)
    args = [*ssh, NAME, target_path, "--verbose", "--no-progress", "--exclude-received",
            "--keep-source=1", "--keep-target=1"]  # fmt: skip
    target = f"{target_path}/{source}"
    tag = bed.prop(target_path, "guid")

    rc, out = as_user(bed, user, *args, now=stamp(1))
    assert rc == 0, out
    assert f"{target}@{snapname(1)}: receiving full" in out
    assert "not mounted: only root mounts on Linux" in out
    assert bed.prop(target, "mounted") == "no"
    assert bed.guids(target) == bed.guids(source)
    assert bed.holds(f"{target}@{snapname(1)}") == [TAG]
    assert bed.bookmarks(source) == [f"{snapname(1)}__{tag}"]
    # the selection property arrived (userprop), the parent was made unmountable
    assert bed.prop(target, f"autobackup:{NAME}") == "true"
    assert bed.prop(f"{target_path}/{pools.src}", "canmount") == "off"

    days = [2]
    if mode in ("pull", "pull+push"):
        # a transfer cut short leaves a resume token; the next run resumes it
        bed.write(source, "big", 16 * 1024)
        cut = [*args, "--send-pipe", "head -c 12000000"]
        rc, out = as_user(bed, user, *cut, now=stamp(2))
        assert rc == 1, out
        assert bed.prop(target, "receive_resume_token") not in ("", "-")
        rc, out = as_user(bed, user, *args, now=stamp(2, 1))
        assert rc == 0, out
        assert f"{target}@{snapname(2)}: resuming" in out
        days = [3]
    for day in days:
        bed.write(source, f"g{day}", 64)
        rc, out = as_user(bed, user, *args, now=stamp(day))
        assert rc == 0, out
        assert f"{target}@{snapname(day)}: receiving incremental" in out
        assert "FAILED" not in out and "permission denied" not in out
    # thinned on both sides by the delegated user; the hold and the bookmark moved on
    last = snapname(days[-1])
    assert bed.snapshots(source) == bed.snapshots(target) == [last]
    assert bed.guids(target) == bed.guids(source)
    assert bed.checksum(f"{target}@{last}") == bed.checksum(f"{source}@{last}")
    assert bed.holds(f"{target}@{last}") == [TAG]
    assert bed.bookmarks(source) == [f"{last}__{tag}"]
    # (the child had no changes: its one snapshot stays, on both sides)
    assert bed.snapshots(f"{target}/sub") == bed.snapshots(f"{source}/sub") == [snapname(1)]


@pytest.mark.slow  # (CI's time: the lock file's takeover by another user is test_lock.py's
# root-only tests, with real users; delegated runs are test_every_mode_as_unprivileged_users)
def test_a_job_run_by_root_is_taken_over_by_a_delegated_user(users: ZfsBed, pools: Pools) -> None:
    """#31: root's run leaves a root-owned 0644 lock file in /run/lock (sticky, world
    writable); the delegated user who takes the job over locks that same file (read-only:
    flock needs no more) instead of failing with a traceback, twice. The other way round,
    root locks a lock file the user made (with fs.protected_regular, root's O_CREAT open
    of another user's file in a sticky folder is refused: it is opened without).
    (--clear-mountpoint: root's receive would mount the target, the user's can't.)"""
    bed = users
    source, target_path = _delegated_world(bed, pools)
    grant(bed, "zbackup", permissions.default_set("source"), pools.src)
    grant(bed, "zbackup", permissions.default_set("target"), target_path)
    locks = f"/run/lock/zfs-autobackup-{NAME}-*.lock"
    bed.run(f"rm -f {locks}")
    args = [NAME, target_path, "--verbose", "--no-progress", "--exclude-received",
            "--clear-mountpoint", "--keep-source=1", "--keep-target=1"]  # fmt: skip
    target = f"{target_path}/{source}"

    run = bed.tool(*args, now=stamp(1))  # (as root)
    assert run.returncode == 0, run.stdout + run.stderr
    owners = bed.run(f"stat -c '%U %a' /run/lock {locks}").stdout.splitlines()
    assert owners == ["root 1777", "root 644"]  # (one lock file, root's)
    for day in (2, 3):
        bed.write(source, f"g{day}", 64)
        rc, out = as_user(bed, "zbackup", *args, now=stamp(day))
        assert rc == 0 and "Traceback" not in out, out
        assert f"{target}@{snapname(day)}: receiving incremental" in out
    assert bed.snapshots(source) == bed.snapshots(target) == [snapname(3)]
    assert bed.guids(target) == bed.guids(source)
    assert bed.run(f"stat -c '%U %a' {locks}").stdout.split() == ["root", "644"]

    # the other way round (snapshot-only runs: the lock is the same whatever the flags)
    bed.run(f"rm -f {locks}")
    bed.write(source, "g4", 64)
    rc, out = as_user(bed, "zbackup", *args, "--no-send", now=stamp(4))
    assert rc == 0, out
    assert bed.run(f"stat -c '%U %a' {locks}").stdout.split() == ["zbackup", "644"]
    bed.write(source, "g5", 64)
    run = bed.tool(*args, "--no-send", now=stamp(5))
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert bed.snapshots(source)[-1] == snapname(5)


def test_a_missing_delegation_names_its_grant_and_the_rest_goes_on(
    users: ZfsBed, pools: Pools
) -> None:
    """zbsource may send src/a but not src/b: src/b fails with one line that names the
    dataset, the permission and the `zfs allow` that grants it; src/a arrives; that very
    line, run by root, lets the next run send src/b."""
    bed = users
    s, d = pools.src, pools.dst
    for name in ("a", "b"):
        bed.sh("zfs", "create", f"{s}/{name}")
        bed.sh("zfs", "set", f"autobackup:{NAME}=true", f"{s}/{name}")
        bed.write(f"{s}/{name}", "f", 64)
    bed.sh("zfs", "create", f"{d}/backup")
    everything = permissions.default_set("source")
    grant(bed, "zbsource", everything, f"{s}/a")
    grant(bed, "zbsource", [p for p in everything if p != "send"], f"{s}/b")
    grant(bed, "zbtarget", permissions.default_set("target"), f"{d}/backup")
    args = ["--ssh-source", "zbsource@localhost", NAME, f"{d}/backup", "--verbose",
            "--no-progress", "--exclude-received"]  # fmt: skip

    rc, out = as_user(bed, "zbtarget", *args, now=stamp(1))
    assert rc == 1, out
    (line,) = [line for line in out.splitlines() if "FAILED" in line]
    expected = (
        f"! [Target] {d}/backup/{s}/b: FAILED: permission denied: zfs send needs the "
        f"delegated permission send on {s}/b (grant it: zfs allow -u zbsource send {s}/b)"
    )
    assert line == expected
    assert bed.snapshots(f"{d}/backup/{s}/a") == [snapname(1)]
    assert f"{d}/backup/{s}/b" not in bed.names(f"{d}/backup")

    bed.run(line.split("(grant it: ", 1)[1].rstrip(")"))  # as the admin would
    bed.write(f"{s}/b", "g", 64)
    rc, out = as_user(bed, "zbtarget", *args, now=stamp(2))
    assert rc == 0, out
    assert bed.snapshots(f"{d}/backup/{s}/b") == [snapname(1), snapname(2)]


# --- the guard ------------------------------------------------------------------------

_HOSTILE_RUNNER = r"""
import json, subprocess, sys
results = []
for user, login, line in json.load(sys.stdin):
    argv = ["runuser", "-u", user, "--", "env", "-C", "/home/" + user, "ssh", "-o",
            "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPersist=30", "-o",
            "ControlPath=/tmp/hostile-%r-%C", login]
    if line is not None:
        argv.append(line)
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    results.append([proc.returncode, proc.stderr, proc.stdout])
print(json.dumps(results))
"""


def _world_state(bed: ZfsBed, *roots: str) -> str:
    """Everything a command could change: datasets, snapshots, bookmarks, guids, holds,
    the selection property, and files a shell would have created."""
    listing = bed.run(
        "zfs list -H -p -t all -o name,guid,userrefs,written,autobackup:lp -r " + " ".join(roots)
    ).stdout
    return "\n".join([listing, bed.all_holds(*roots), bed.run("ls /tmp/pwned* 2>&1; true").stdout])


def _hostile(bed: ZfsBed, commands: Sequence[tuple[str, str, Optional[str]]]) -> list[list]:
    """Each (user, login, command line) sent over ssh as `user` (one multiplexed
    connection per login): [exit code, stderr, stdout] each."""
    import json

    out = bed.guest.run_argv(["python3", "-c", _HOSTILE_RUNNER], input=json.dumps(commands))
    return json.loads(out.stdout)


@pytest.mark.slow  # (CI's time: a pull through a source guard is test_a_pull_through_a_read_only_guard,
# every stream through a target guard and the attacks are test_zfs_guard_stream.py, the
# hostile commands test_guard.py's tables)
def test_pull_and_push_through_the_guard_and_what_it_refuses(users: ZfsBed, pools: Pools) -> None:
    """The backup keys are pinned to zfs-autobackup-guard (standard library only): a pull
    through a source guard and a push through a target guard run every command the tool
    sends (snapshots, holds, bookmarks, thinning, receives); 39 hostile commands, each
    refused with one line on stderr and in the journal, change nothing."""
    bed = users
    source, target_path = _delegated_world(bed, pools)
    s, d = pools.src, pools.dst
    bed.sh("zfs", "create", f"{s}/secret")  # (not selected)
    authorize(bed, "zbsource", f"zfs-autobackup-guard {NAME} --allow-destroy")
    authorize(bed, "zbtarget", f"zfs-autobackup-guard {NAME} --target-path {target_path}")
    pull = ["--ssh-source", "zbsource@localhost", NAME, target_path, "--verbose",
            "--no-progress", "--exclude-received", "--keep-source=1", "--keep-target=1"]  # fmt: skip
    target = f"{target_path}/{source}"
    for day in (1, 2):
        bed.write(source, f"f{day}", 64)
        rc, out = as_user(bed, "zbtarget", *pull, now=stamp(day))
        assert rc == 0, out
        assert "refused" not in out
    assert bed.snapshots(source) == bed.snapshots(target) == [snapname(2)]
    assert bed.bookmarks(source) == [f"{snapname(2)}__{bed.prop(target_path, 'guid')}"]

    # push into another target path through the target guard (--clear-mountpoint: the
    # guard lets nothing through that the host would mount)
    pushed = f"{d}/pushed"
    bed.sh("zfs", "create", pushed)
    grant(bed, "zbtarget", permissions.default_set("target"), pushed)
    authorize(bed, "zbtarget", f"zfs-autobackup-guard {NAME} --target-path {pushed}")
    push = ["--ssh-target", "zbtarget@localhost", NAME, pushed, "--verbose", "--no-progress",
            "--exclude-received", "--clear-mountpoint", "--keep-target=1",
            "--no-snapshot", "--no-thinning"]  # fmt: skip
    rc, out = as_user(bed, "zbsource", *push, now=stamp(2, 1))
    assert rc == 0, out
    assert bed.snapshots(f"{pushed}/{source}") == [snapname(2)]
    assert bed.prop(f"{pushed}/{source}", "canmount") == "noauto"
    # without --clear-mountpoint the target guard refuses the receive (nothing arrives)
    again = f"{pushed}/again"
    bed.sh("zfs", "create", again)
    unsafe = [a for a in push if a != "--clear-mountpoint"]
    rc, out = as_user(bed, "zbsource", *[again if a == pushed else a for a in unsafe],
                      now=stamp(2, 2))  # fmt: skip
    assert rc != 0 and "refused: zfs recv without -o canmount=noauto" in out, out
    assert not [n for n in bed.names(again) if "@" in n]  # (only its unmountable parent)

    ours = f"{source}@{snapname(2)}"
    bed.sh("zfs", "snapshot", f"{source}@manual", f"{s}/secret@{snapname(2)}")
    bed.sh("zfs", "hold", "zfs_autobackup:other", ours)
    bed.sh("zfs", "bookmark", f"{source}@manual", f"{source}#foreign")
    theirs = f"{target}@{snapname(2)}"
    src_login, dst_login = ("zbtarget", "zbsource@localhost"), ("zbsource", "zbtarget@localhost")
    mount = shlex.join(("sh", "-c", MOUNT_SCRIPT, "sh", target))
    at_source = [
        f"zfs destroy -r {s}",
        f"zfs destroy {source}",
        f"zfs destroy {source}@manual",
        f"zfs destroy {source}@{snapname(1)}%{snapname(3)}",
        f"zfs destroy '{source}#foreign'",
        f"zfs release zfs_autobackup:other {ours}",
        f"zfs hold keep {ours}",
        f"zfs send -R {ours}",
        f"zfs send -- -R {ours}",
        f"zfs send {s}/secret@{snapname(2)}",
        f"zfs send {source}@manual",
        f"zfs send -p {ours} | nc localhost 22",
        f"zfs send -p {ours} | sh -c 'cat > /tmp/pwned1'",
        "sh -c 'touch /tmp/pwned2'",
        "zfs list; touch /tmp/pwned3",
        "zfs list && touch /tmp/pwned4",
        "zfs list $(touch /tmp/pwned5)",
        "zfs list `touch /tmp/pwned6`",
        "zfs list\ntouch /tmp/pwned7",
        "zfs list > /tmp/pwned8",
        f"zfs set autobackup:{NAME}=false {source}",
        f"zfs allow -u zbtarget destroy {s}",
        f"zfs rename {source} {s}/gone",
        f"zfs rollback {ours}",
        "/sbin/zfs list",
        f"zfs recv -u {s}/evil",
        f"zfs snapshot {source}@evil",
        f"zfs create {s}/evil",
        None,  # an interactive login
    ]
    at_target = [
        f"zfs recv -u -o canmount=noauto {d}/elsewhere",
        f"zfs recv -u -o canmount=noauto {target_path}2",
        f"zfs recv -u -s {target_path}/x",
        f"zfs recv -u -F -o canmount=noauto {target}",
        f"zfs recv -u -o canmount=noauto -o origin={theirs} {target_path}/x",
        f"zfs destroy {target}",
        f"zfs rollback {theirs}",
        mount,
        f"zfs send {theirs}",
        f"zfs list -H -o name {target}",  # (allowed: the control that the guard answers)
    ]
    authorize(bed, "zbtarget", f"zfs-autobackup-guard {NAME} --target-path {target_path}")
    commands = [(*src_login, c) for c in at_source] + [(*dst_login, c) for c in at_target]
    since = bed.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    before = _world_state(bed, s, d)
    results = _hostile(bed, commands)
    after = _world_state(bed, s, d)
    assert after == before
    refused = [
        (user, line, err) for (user, _, line), (rc, err, out) in zip(commands, results)
        if not (rc == 126 and err.startswith("zfs-autobackup-guard: refused: ")
                and err.count("\n") == 1 and out == "")
    ]  # fmt: skip
    assert refused == [("zbsource", at_target[-1], "")], refused
    assert results[-1][2] == target + "\n"
    assert len(commands) - 1 >= 25
    journal = bed.run(f"journalctl -q -t zfs-autobackup-guard --since '{since}'").stdout
    assert journal.count("refused: ") == len(commands) - 1, journal


def test_a_pull_through_a_read_only_guard(users: ZfsBed, pools: Pools) -> None:
    """The source's key may only list and send (`--read-only`): its own cron job (here
    root, in snapshot-only mode) takes and thins the snapshots, and the backup server
    pulls with --read-only-source, changing nothing there. Without that option the
    writes it tries on the source (here the bookmarks after the sends) are refused by
    the guard, and each counts as a failed dataset."""
    bed = users
    source, target_path = _delegated_world(bed, pools)
    authorize(bed, "zbsource", f"zfs-autobackup-guard {NAME} --read-only")
    pull = ["--ssh-source", "zbsource@localhost", NAME, target_path, "--verbose",
            "--no-progress", "--exclude-received", "--keep-target=1"]  # fmt: skip
    target = f"{target_path}/{source}"

    cron = bed.tool(NAME, "--keep-source=2", now=stamp(1))  # the source's cron job
    assert cron.returncode == 0, cron.stdout + cron.stderr
    rc, out = as_user(bed, "zbtarget", *pull, now=stamp(1, 1))
    assert rc == 2, out
    assert out.count("refused (read-only): zfs bookmark: the guard is --read-only") == 2, out
    assert out.count("pull with --read-only-source)") == 2, out
    assert bed.bookmarks(source) == []

    for day in (1, 2):
        if day == 2:
            bed.write(source, "g", 64)
            cron = bed.tool(NAME, "--keep-source=2", now=stamp(2))
            assert cron.returncode == 0, cron.stdout + cron.stderr
        mine = bed.run(f"zfs list -H -t all -o name,userrefs -r {source}").stdout
        rc, out = as_user(bed, "zbtarget", *pull, "--read-only-source", now=stamp(day, 2))
        assert rc == 0, out
        assert "[Source] Read-only (--read-only-source)" in out
        # nothing on the source changed: no snapshot, hold, bookmark or destroy
        assert bed.run(f"zfs list -H -t all -o name,userrefs -r {source}").stdout == mine
    assert bed.snapshots(source) == [snapname(1), snapname(2)]
    assert bed.snapshots(target) == [snapname(2)]
    assert bed.guids(target) == bed.guids(source)[1:]
    assert bed.holds(f"{target}@{snapname(2)}") == [TAG]


# --- the sets are minimal -------------------------------------------------------------

_GRANT = re.compile(r"zfs allow -u zbackup (\S+) ")


def _named(out: str) -> set[str]:
    """The permissions the run's output asks to grant."""
    return {p for perms in _GRANT.findall(out) for p in perms.split(",")}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # (about 50 tool runs)
def test_every_permission_of_the_default_sets_is_needed(users: ZfsBed, pools: Pools) -> None:
    """The default sets are minimal: a steady-state run (snapshot, an incremental send of
    two snapshots, -I, after a snapshot-only run, a new dataset under a new unmountable
    parent, holds moved, bookmark made and superseded, thinning on both sides) with any
    one permission taken away from the source or the target does not get through: the
    permission is named with its grant. With the whole sets (before, between and after)
    nothing is named and the run succeeds. The source's hold is needed by zfs send -I
    (its temporary holds); release with --no-bookmarks only, and once more when
    bookmarks come back (that run releases the source's hold)."""
    bed = users
    s, d = pools.src, pools.dst
    source, target_path = f"{s}/data", f"{d}/backup"
    bed.sh("zfs", "create", source)
    bed.sh("zfs", "set", f"autobackup:{NAME}=true", source)
    bed.sh("zfs", "create", target_path)
    sets = {s: permissions.default_set("source"), target_path: permissions.default_set("target")}
    for dataset, perms in sets.items():
        grant(bed, "zbackup", perms, dataset)
    args = [NAME, target_path, "--verbose", "--no-progress", "--exclude-received",
            "--keep-source=2", "--keep-target=2"]  # fmt: skip
    run = 0

    def backup(*more: str) -> tuple[int, str]:
        nonlocal run
        run += 1
        day, hour = 1 + run // 24, run % 24
        # half an hour before, a snapshot-only run: the target keeps both, and the source
        # its newest two, so the send is -I from the last one sent (not from a bookmark)
        before = datetime.datetime(2026, 1, day, hour) - datetime.timedelta(minutes=30)
        bed.write(source, f"e{run}", 64)
        rc, out = as_user(bed, "zbackup", *args, "--no-send", "--no-thinning", *more,
                          now=before.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
        assert rc == 0 or _named(out), out
        bed.write(source, f"f{run}", 64)
        # a new selected dataset under a new parent that is not (the target creates the
        # parent unmountable and receives the dataset in full, with the selection
        # property that is set on it: userprop; an incremental stream's unchanged
        # properties need no permission, measured)
        bed.sh("zfs", "create", "-o", f"autobackup:{NAME}=child", f"{s}/p{run}")
        bed.sh("zfs", "create", "-o", f"autobackup:{NAME}=true", f"{s}/p{run}/x")
        return as_user(bed, "zbackup", *args, *more, now=stamp(day, hour))

    def last() -> str:
        return snapname(1 + run // 24, run % 24)

    for _ in range(2):  # full, then the steady state
        rc, out = backup()
        assert rc == 0 and not _named(out), out
    missed = []
    for dataset, perms in sets.items():
        # (hold first: its -I needs the steady state that a run refused by a missing
        # permission breaks; after one, the snapshots between go as single sends)
        for perm in sorted(perms, key=lambda p: p != "hold" or dataset != s):
            bed.sh("zfs", "unallow", "-u", "zbackup", perm, dataset)
            rc, out = backup()
            grant(bed, "zbackup", [perm], dataset)
            if perm not in _named(out):
                missed.append((dataset, perm, rc, out))
    assert not missed, missed

    # --no-bookmarks holds the source's common snapshot instead (hold is granted, for
    # zfs send -I), and the next such run releases it: release
    rc, out = backup("--no-bookmarks")
    assert rc == 0 and not _named(out), out
    rc, out = backup("--no-bookmarks")  # (which releases the previous run's hold)
    assert "release" in _named(out), out
    grant(bed, "zbackup", ["release"], s)
    rc, out = backup("--no-bookmarks")
    assert rc == 0 and not _named(out), out
    assert bed.holds(f"{source}@{last()}") == [TAG]
    # back to bookmarks with the default set: the source's hold cannot be released;
    # granted release, the next run releases it (and thins its snapshot)
    bed.sh("zfs", "unallow", "-u", "zbackup", "release", s)
    rc, out = backup()
    assert _named(out) == {"release"}, out
    grant(bed, "zbackup", ["release"], s)
    rc, out = backup()
    assert rc == 0 and not _named(out), out
    assert TAG not in bed.all_holds(source)
    assert bed.snapshots(source)[-1] == bed.snapshots(f"{target_path}/{source}")[-1] == last()
    assert bed.guids(f"{target_path}/{source}")[-2:] == bed.guids(source)[-2:]
    assert bed.bookmarks(source) == [f"{last()}__{bed.prop(target_path, 'guid')}"]
    for n in range(1, run + 1):
        assert bed.guids(f"{target_path}/{s}/p{n}/x") == bed.guids(f"{s}/p{n}/x")
