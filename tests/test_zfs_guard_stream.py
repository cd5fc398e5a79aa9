"""The guard judges what a stream does, on real OpenZFS 2.3 (#30).

Every kind of stream the tool sends passes a target guard byte for byte and is received;
each attack of the issue, run as the forced command of a delegated user holding the
documented delegations (tests/test_zfs_privilege.py's users), is refused, and what is
asserted is the outcome: no secret bytes out, nothing received, no child destroyed, no
clone of a snapshot outside the target path, nothing the host would mount. Where an
attack needs a forged stream or token, it is first shown to work against zfs itself
(as root, without the guard): the refusal is what stops it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import pytest

from reconcile import permissions
from tests.test_zfs_privilege import NAME, as_user, authorize, grant, snapname, stamp, users
from tests.zfsvm.bed import GUARD_PREFIX, Pools, ZfsBed

pytestmark = pytest.mark.zfs

__all__ = ["users"]  # (the fixture, used by name)

NO_BOOT = "-x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by"
SECRET = "TOPSECRET-a1b2c3d4e5f6"

#: python3 in the guest: a resume token with its toguid replaced (argv: token, guid), and
#: its position set to the stream's start.
#: A token is 1-<fletcher4 of the compressed nvlist>-<packed length>-<hex of zlib>; the
#: nvlist is packed natively: the value of "toguid" follows its name padded to 8 bytes.
_FORGE_TOKEN = r"""
import struct, sys, zlib
token, guid = sys.argv[1], int(sys.argv[2])
version, _, length, data = token.split("-", 3)
packed = bytearray(zlib.decompress(bytes.fromhex(data)))
for name, value in ((b"toguid", guid), (b"object", 0), (b"offset", 0), (b"bytes", 0)):
    at = packed.index(name + b"\0") + 8
    packed[at:at + 8] = struct.pack("<Q", value)
compressed = zlib.compress(bytes(packed))
a = 0
for (word,) in struct.iter_unpack("<I", compressed[: len(compressed) // 4 * 4]):
    a = (a + word) % 2**64
print(f"{version}-{a:x}-{len(packed):x}-{compressed.hex()}")
"""

#: python3 in the guest: stdin's plain stream with its BEGIN's fromguid replaced (argv:
#: guid), every record's checksum computed again as zfs send writes it (fletcher-4,
#: running from the BEGIN record; an END record carries it twice)
_FORGE_FROMGUID = rf"""
import struct, sys
sys.path.insert(0, {GUARD_PREFIX!r})
from executors.guard import send_stream as ss
data, out = sys.stdin.buffer.read(), bytearray()
state = [0, 0, 0, 0]
def fletcher(chunk):
    a, b, c, d = state
    for (w,) in struct.iter_unpack("<I", chunk):
        a = (a + w) % 2**64; b = (b + a) % 2**64; c = (c + b) % 2**64; d = (d + c) % 2**64
    state[:] = [a, b, c, d]
order, at = ss.byte_order(data[:ss.RECORD]), 0
while at < len(data):
    record = bytearray(data[at:at + ss.RECORD])
    kind, size = ss.record_type(bytes(record), order), ss.payload_size(bytes(record), order)
    if kind == ss.BEGIN:
        record[48:56] = struct.pack("<Q", int(sys.argv[1]))
    elif kind == ss.END:
        record[8:40] = struct.pack("<4Q", *state)
    fletcher(record[:280])
    if kind != ss.BEGIN:
        record[280:312] = struct.pack("<4Q", *state)
    fletcher(record[280:312])
    payload = data[at + ss.RECORD:at + ss.RECORD + size]
    fletcher(payload)
    out += record + payload
    at += ss.RECORD + size
sys.stdout.buffer.write(bytes(out))
"""


def _py(bed: ZfsBed, script: str, *args: str, stdin: str = "") -> str:
    redirect = f" < {shlex.quote(stdin)}" if stdin else ""
    argv = shlex.join(["python3", "-c", script, *args])
    return bed.run(argv + redirect).stdout.strip()


def _via_guard(bed: ZfsBed, line: str, stdin: str = "", user: str = "zbsource") -> tuple[int, str]:
    """`line` sent over ssh by `user` to the other account's forced command (the guard),
    with the file `stdin` as the stream; (exit code, stderr). Stdout goes to /tmp/out."""
    login = {"zbsource": "zbtarget@localhost", "zbtarget": "zbsource@localhost"}[user]
    ssh = shlex.join(["runuser", "-u", user, "--", "env", "-C", f"/home/{user}", "ssh",
                      "-o", "BatchMode=yes", login, line])  # fmt: skip
    redirect = f" < {shlex.quote(stdin)}" if stdin else " < /dev/null"
    run = bed.run(f"{ssh}{redirect} > /tmp/out", check=False)
    return run.returncode, run.stderr


def _world(bed: ZfsBed, *pools: str) -> str:
    """Everything a receive could change, and what is mounted."""
    roots = " ".join(pools)
    return bed.run(f"zfs list -H -p -t all -o name,guid,origin,canmount,mounted -r {roots}").stdout


def _source_tree(bed: ZfsBed, pools: Pools) -> dict[str, str]:
    """s/a (selected, with a child and a bookmark), four snapshots of ours and a manual
    one between the third and fourth; an encrypted s/e; a clone s/c of s/a's first; a
    16 MiB s/big; an unselected s/x holding the secret. Returns the streams' files."""
    s, d = pools.src, pools.dst
    script = f"""
set -e
zfs create -p {s}/a/child
zfs set autobackup:{NAME}=true {s}/a
for i in 1 2 3 4; do
  dd if=/dev/urandom of=/mnt/{s}/a/f$i bs=1k count=200 status=none
  mkdir -p /mnt/{s}/a/d$i; for j in 1 2 3 4 5 6 7 8; do echo small$j > /mnt/{s}/a/d$i/s$j; done
  ln -sf f$i /mnt/{s}/a/l$i; zpool sync {s}
  [ $i = 4 ] && zfs snapshot {s}/a@manual
  zfs snapshot -r {s}/a@{NAME}-2026010${{i}}000000
done
zfs bookmark {s}/a@{snapname(1)} '{s}/a#{snapname(1)}__1'
echo password123 | zfs create -o encryption=on -o keyformat=passphrase {s}/e
zfs set autobackup:{NAME}=true {s}/e
dd if=/dev/urandom of=/mnt/{s}/e/f bs=1k count=200 status=none; zpool sync {s}
zfs snapshot {s}/e@{snapname(1)}; echo more > /mnt/{s}/e/g; zpool sync {s}
zfs snapshot {s}/e@{snapname(2)}
zfs clone {s}/a@{snapname(1)} {s}/c; echo c > /mnt/{s}/c/cf; zpool sync {s}
zfs snapshot {s}/c@{snapname(2)}
zfs create {s}/big; zfs set autobackup:{NAME}=true {s}/big
dd if=/dev/urandom of=/mnt/{s}/big/f bs=1M count=16 status=none; zpool sync {s}
zfs snapshot {s}/big@{snapname(1)}
zfs create {s}/x; echo {SECRET} > /mnt/{s}/x/file; zpool sync {s}
zfs snapshot {s}/x@secret
zfs create {d}/private; echo private > /mnt/{d}/private/p; zpool sync {d}
zfs snapshot {d}/private@s
mkdir -p /tmp/st; rm -f /tmp/st/*; chmod 755 /tmp/st
"""
    bed.run(script)
    a, e = f"{s}/a", f"{s}/e"
    sends = {
        "full": f"zfs send -L -e -p {a}@{snapname(1)}",
        "bookmark": f"zfs send -L -e -p -i '{a}#{snapname(1)}__1' {a}@{snapname(2)}",
        "intermediates": f"zfs send -L -e -c -p -I @{snapname(2)} {a}@{snapname(3)}",
        "decrypted-I": f"zfs send -I @{snapname(1)} {a}@{snapname(3)}",
        "manual-I": f"zfs send -L -e -p -I @{snapname(3)} {a}@{snapname(4)}",
        "raw": f"zfs send -w -p {e}@{snapname(1)}",
        "raw-incremental": f"zfs send -w -p -i @{snapname(1)} {e}@{snapname(2)}",
        "clone": f"zfs send -L -e -p -i {a}@{snapname(1)} {s}/c@{snapname(2)}",
        "plain-clone": f"zfs send -i {a}@{snapname(1)} {s}/c@{snapname(2)}",
        "replication": f"zfs send -R {a}@{snapname(3)}",
        "big": f"zfs send -p {s}/big@{snapname(1)}",
    }
    bed.run("\n".join(f"{cmd} > /tmp/st/{name}" for name, cmd in sends.items()))
    bed.run("chmod 644 /tmp/st/*")
    return {name: f"/tmp/st/{name}" for name in sends}


def _target_guard(bed: ZfsBed, pools: Pools, *options: str) -> str:
    target_path = f"{pools.dst}/backup"
    bed.run(f"zfs list {target_path} >/dev/null 2>&1 || zfs create {target_path}")
    grant(bed, "zbtarget", permissions.default_set("target"), target_path)
    authorize(bed, "zbtarget", shlex.join(["zfs-autobackup-guard", NAME, "--target-path",
                                           target_path, *options]))  # fmt: skip
    return target_path


def _recv(target: str, *more: str) -> str:
    return (
        shlex.join(["zfs", "recv", "-u", "-s", *more]) + f" {NO_BOOT} -o canmount=noauto " + target
    )


def _refused_leaking_nothing(bed: ZfsBed, cases: Sequence[tuple[str, str]]) -> None:
    """Each forced command (as zbtarget) is refused for its reason and writes not a byte
    to /tmp/out; the secret is nowhere in it."""
    for line, reason in cases:
        rc, err = _via_guard(bed, line, user="zbtarget")
        assert rc == 126 and reason in err, (line, err)
        assert bed.run("wc -c < /tmp/out").stdout.strip() == "0", line
    assert bed.run(f"grep -c {SECRET} /tmp/out", check=False).stdout.strip() == "0"


def test_every_stream_the_tool_sends_passes_the_target_guard_and_arrives(
    users: ZfsBed, pools: Pools
) -> None:
    """Full, from a bookmark, -I of ours (with -p and decrypted without), raw full and
    incremental, compressed blocks, a clone of our snapshot, and a resumed transfer: each
    through `zfs-autobackup-guard lp --target-path` as zbtarget's forced command; the
    received snapshots have the source's guids and files."""
    bed = users
    files = _source_tree(bed, pools)
    s = pools.src
    target_path = _target_guard(bed, pools)
    a, t = f"{s}/a", f"{target_path}/{s}/a"
    bed.sh("zfs", "create", "-o", "canmount=off", f"{target_path}/{s}")
    for name, target in (
        ("full", t),
        ("bookmark", t),
        ("intermediates", t),
        ("raw", f"{target_path}/{s}/e"),
        ("raw-incremental", f"{target_path}/{s}/e"),
        ("clone", f"{target_path}/{s}/c"),
        ("full", f"{target_path}/a"),  # (--strip-path 1: pool/a lands as backup/a)
        ("decrypted-I", f"{target_path}/a"),
    ):
        rc, err = _via_guard(bed, _recv(target), files[name])
        # (zfs may warn of a received property the delegation does not cover: exit 0)
        assert rc == 0 and "refused" not in err, (name, rc, err)
    assert bed.guids(t) == bed.guids(a)[:3]
    assert bed.snapshots(f"{target_path}/a") == [snapname(1), snapname(2), snapname(3)]
    assert bed.guids(f"{target_path}/{s}/e") == bed.guids(f"{s}/e")
    assert bed.prop(f"{target_path}/{s}/c", "origin") == f"{t}@{snapname(1)}"
    for source, copy in ((a, t), (f"{s}/c", f"{target_path}/{s}/c")):
        assert bed.checksum(f"{copy}@{snapname(2)}") == bed.checksum(f"{source}@{snapname(2)}")
    # an interrupted transfer through the guard, resumed with zfs send -t
    bed.run(f"head -c 12000000 {files['big']} > /tmp/st/cut && chmod 644 /tmp/st/cut")
    big = f"{target_path}/{s}/big"
    rc, err = _via_guard(bed, _recv(big), "/tmp/st/cut")
    assert rc != 0 and "checksum mismatch or incomplete stream" in err, err
    token = bed.prop(big, "receive_resume_token")
    assert token.startswith("1-"), token
    bed.run(f"zfs send -t {token} > /tmp/st/resumed && chmod 644 /tmp/st/resumed")
    rc, err = _via_guard(bed, _recv(big), "/tmp/st/resumed")
    assert rc == 0 and "refused" not in err, err
    assert bed.guids(big) == bed.guids(f"{s}/big")
    assert bed.checksum(f"{big}@{snapname(1)}") == bed.checksum(f"{s}/big@{snapname(1)}")
    assert bed.prop(t, "canmount") == "noauto"


def test_what_a_forged_stream_would_do_the_target_guard_refuses(
    users: ZfsBed, pools: Pools
) -> None:
    """A replication stream (a child with canmount=on), the same with -F after our hold
    was released (it would destroy a child), a clone of the host's own private snapshot
    (the stream's fromguid rewritten), systemd's wanted-by through -o, a name with '..':
    each refused, nothing received, destroyed or mountable."""
    bed = users
    files = _source_tree(bed, pools)
    s, d = pools.src, pools.dst
    target_path = _target_guard(bed, pools, "--allow-destroy")
    t = f"{target_path}/{s}/a"
    bed.sh("zfs", "create", "-o", "canmount=off", f"{target_path}/{s}")
    # what is there before: s/a with its child, received by root (as a -R once made it)
    bed.run(f"zfs send -R {s}/a@{snapname(1)} | zfs recv -u -o canmount=noauto {t}")
    assert bed.prop(f"{t}/child", "canmount") == "on"  # (-o is not inherited by children)
    private = bed.prop(f"{d}/private@s", "guid")
    bed.run(f"python3 -c {shlex.quote(_FORGE_FROMGUID)} {private} < {files['plain-clone']}"
            " > /tmp/st/forged-clone && chmod 644 /tmp/st/forged-clone")  # fmt: skip
    # (the forged clone works against zfs itself: a clone of the host's private data)
    bed.run(f"zfs recv -u {d}/proof < /tmp/st/forged-clone")
    assert bed.prop(f"{d}/proof", "origin") == f"{d}/private@s"
    bed.sh("zfs", "destroy", "-r", f"{d}/proof")
    bed.run(f"zfs destroy -r {s}/a/child && zfs snapshot {s}/a@{NAME}-20260105000000")
    bed.run(f"zfs send -R -I @{snapname(1)} {s}/a@{NAME}-20260105000000 > /tmp/st/gone")
    bed.run("chmod 644 /tmp/st/gone")
    attacks = [
        (_recv(f"{target_path}/a"), files["replication"], "a replication stream (zfs send -R)"),
        (_recv(t, "-F"), "/tmp/st/gone", "a replication stream (zfs send -R)"),
        (_recv(f"{target_path}/{s}/c"), "/tmp/st/forged-clone",
         f"a clone of snapshot guid {private}, which is not a snapshot under the target path"),
        (_recv(f"{target_path}/{s}/w").replace(" -o canmount=noauto ",
         " -o canmount=noauto -o org.openzfs.systemd:wanted-by=multi-user.target "),
         files["full"], "zfs recv: -o org.openzfs.systemd:wanted-by=..."),
        (_recv(f"{target_path}/{s}/.."), files["full"], "is not a dataset name"),
        (_recv(t), files["manual-I"], f"snapshot '{s}/a@manual' is not one of ours"),
    ]  # fmt: skip
    bed.run("zfs mount -a")
    before = _world(bed, s, d)
    for line, stream, reason in attacks:
        rc, err = _via_guard(bed, line, stream)
        assert rc == 126 and err.startswith("zfs-autobackup-guard: refused: "), (line, err)
        assert reason in err and err.count("\n") == 1, (line, err)
    bed.run("zfs mount -a")
    # (no child destroyed, no dataset received, no clone, nothing more mounted)
    assert _world(bed, s, d) == before
    assert bed.names(f"{t}/child") == [f"{t}/child", f"{t}/child@{snapname(1)}"]


def test_a_forged_resume_token_and_a_foreign_snapshot_in_I_send_no_byte(
    users: ZfsBed, pools: Pools
) -> None:
    """The source guard (--read-only): a resume token whose toname is ours and whose
    toguid is the unselected s/x@secret (zfs would send the secret: shown as root), and
    `-I` across a snapshot not ours: refused, and the stream carries nothing."""
    bed = users
    files = _source_tree(bed, pools)
    s, d = pools.src, pools.dst
    bed.run(f"head -c 12000000 {files['big']} | zfs recv -s -u {d}/cut", check=False)
    token = bed.prop(f"{d}/cut", "receive_resume_token")
    forged = _py(bed, _FORGE_TOKEN, token, bed.prop(f"{s}/x@secret", "guid"))
    # (against zfs itself, the forged token sends the secret)
    said = bed.run(f"zfs send -nv -t {forged}").stdout
    assert f"toname = {s}/big@{snapname(1)}" in said and f"full send of {s}/x@secret" in said
    assert bed.run(f"zfs send -t {forged} | grep -c {SECRET}", check=False).stdout.strip() == "1"
    # (zfs send -I takes temporary holds: measured, it needs `hold` as well)
    grant(bed, "zbsource", [*permissions.default_set("source"), "hold"], s)
    authorize(bed, "zbsource", f"zfs-autobackup-guard {NAME} --read-only")
    allowed = f"zfs send -L -e -p -I @{snapname(1)} {s}/a@{snapname(3)}"
    _refused_leaking_nothing(bed, (
        (f"zfs send -t {forged}",
         f"zfs send -t: the token names '{s}/big@{snapname(1)}' but sends '{s}/x@secret'"),
        (f"zfs send -L -e -p -I @{snapname(3)} {s}/a@{snapname(4)}",
         f"zfs send -I: snapshot '{s}/a@manual' is not one of ours"),
        (f"zfs send -p {s}/x@secret", f"zfs send: snapshot '{s}/x@secret' is not one of ours"),
    ))  # fmt: skip
    # the same shapes, done right, pass: the real token, and -I of ours only
    rc, err = _via_guard(bed, f"zfs send -t {token}", user="zbtarget")
    assert rc == 0, err
    rc, err = _via_guard(bed, allowed, user="zbtarget")
    assert rc == 0 and int(bed.run("wc -c < /tmp/out").stdout) > 100_000, err


def test_a_guarded_pull_of_a_clone_of_a_templates_base_snapshot(
    users: ZfsBed, pools: Pools
) -> None:
    """#31: a Proxmox-like template s/tmpl (selected) whose @__base__ is not a snapshot
    of ours, and its selected clone s/vm-101: a pull through the source's --read-only
    guard sends the origin first, and the clone arrives as a clone of it, with the
    source's files. The template's other snapshot, and the origin of an unselected
    template (whose selected clone s/vm-102 is sent in full), are refused: no byte out."""
    bed = users
    s, d = pools.src, pools.dst
    bed.run(f"""
set -e
zfs create {s}/tmpl; zfs set autobackup:{NAME}=true {s}/tmpl
dd if=/dev/urandom of=/mnt/{s}/tmpl/image bs=1k count=512 status=none; zpool sync {s}
zfs snapshot {s}/tmpl@__base__
echo later > /mnt/{s}/tmpl/later; zpool sync {s}; zfs snapshot {s}/tmpl@other
zfs clone {s}/tmpl@__base__ {s}/vm-101; zfs set autobackup:{NAME}=true {s}/vm-101
echo delta > /mnt/{s}/vm-101/delta; zpool sync {s}
zfs create {s}/priv; echo {SECRET} > /mnt/{s}/priv/file; zpool sync {s}
zfs snapshot {s}/priv@__base__
zfs clone {s}/priv@__base__ {s}/vm-102; zfs set autobackup:{NAME}=true {s}/vm-102
zfs create {d}/backup
""")
    target_path = f"{d}/backup"
    grant(bed, "zbsource", permissions.default_set("source"), s)
    grant(bed, "zbtarget", permissions.default_set("target"), target_path)
    authorize(bed, "zbsource", f"zfs-autobackup-guard {NAME} --read-only")
    cron = bed.tool(NAME, "--keep-source=2", now=stamp(1))  # (the source's own snapshots)
    assert cron.returncode == 0, cron.stdout + cron.stderr
    pull = ["--ssh-source", "zbsource@localhost", NAME, target_path, "--verbose",
            "--no-progress", "--exclude-received", "--keep-target=1", "--read-only-source"]  # fmt: skip
    rc, out = as_user(bed, "zbtarget", *pull, now=stamp(1, 1))
    assert rc == 0 and "refused" not in out, out
    t = f"{target_path}/{s}"
    assert f"{t}/tmpl@__base__: receiving full" in out, out
    assert f"{t}/vm-101@{snapname(1)}: receiving incremental (a clone of {s}/tmpl@__base__)" in out
    assert bed.prop(f"{t}/vm-101", "origin") == f"{t}/tmpl@__base__"
    assert bed.prop(f"{t}/vm-102", "origin") == "-"  # (in full: its origin is not selected)
    for name in ("tmpl@__base__", f"vm-101@{snapname(1)}"):
        assert bed.checksum(f"{t}/{name}") == bed.checksum(f"{s}/{name}"), name
    # what the tool sent, the guard allows on its own; its neighbours leak nothing
    rc, err = _via_guard(bed, f"zfs send -p {s}/tmpl@__base__", user="zbtarget")
    assert rc == 0 and int(bed.run("wc -c < /tmp/out").stdout) > 500_000, err
    _refused_leaking_nothing(bed, (
        (f"zfs send -p {s}/tmpl@other",
         f"zfs send: snapshot '{s}/tmpl@other' is not one of ours"),
        (f"zfs send -p -i @__base__ {s}/tmpl@other",
         f"zfs send: snapshot '{s}/tmpl@other' is not one of ours"),
        (f"zfs send -p {s}/priv@__base__", f"zfs send: dataset '{s}/priv' is not selected"),
    ))  # fmt: skip


def test_systemd_properties_of_a_source_never_mount_a_backup_at_boot(
    users: ZfsBed, pools: Pools
) -> None:
    """A source dataset that systemd mounts at boot (canmount=noauto, wanted-by): backed
    up locally, and pushed through the guard, its copies keep the value only as the
    received one, and zfs-mount-generator, run over a zfs-list.cache of the target pool,
    wants no mount of them. (Control: the same dataset with the value set locally is
    wanted by its target.)"""
    bed = users
    s, d = pools.src, pools.dst
    bed.run(f"zfs create -o canmount=noauto -o mountpoint=/srv/{s}-boot "
            f"-o org.openzfs.systemd:wanted-by=multi-user.target "
            f"-o org.openzfs.systemd:required-by=local-fs.target {s}/boot && "
            f"zfs set autobackup:{NAME}=true {s}/boot && "
            f"zfs mount {s}/boot && echo x > /srv/{s}-boot/f && zpool sync {s}")  # fmt: skip
    bed.sh("zfs", "create", f"{d}/local")
    local = bed.tool(NAME, f"{d}/local", "--clear-mountpoint", "--no-bookmarks",
                     "--exclude-received", now=stamp(1))  # fmt: skip
    assert local.returncode == 0, local.stdout + local.stderr
    target_path = _target_guard(bed, pools)
    grant(bed, "zbsource", permissions.default_set("source"), s)
    push = ["runuser", "-u", "zbsource", "--", "env", "-C", "/home/zbsource", "faketime", "-f",
            stamp(2), "zfs-autobackup", "--ssh-target", "zbtarget@localhost", NAME, target_path,
            "--clear-mountpoint", "--exclude-received", "--no-progress"]  # fmt: skip
    pushed = bed.guest.run_argv(push, check=False)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    copies = [f"{d}/local/{s}/boot", f"{target_path}/{s}/boot"]
    for copy in copies:
        row = bed.sh("zfs", "get", "-H", "-o", "value,received",
                     "org.openzfs.systemd:wanted-by", copy)  # fmt: skip
        assert row.split() == ["-", "multi-user.target"], (copy, row)
    bed.sh("zfs", "create", "-o", "canmount=noauto", "-o", f"mountpoint=/srv/{d}-ctl",
           "-o", "org.openzfs.systemd:wanted-by=multi-user.target", f"{d}/control")  # fmt: skip
    props = ("name,mountpoint,canmount,atime,relatime,devices,exec,readonly,setuid,nbmand,"
             "encroot,keylocation,org.openzfs.systemd:requires,"
             "org.openzfs.systemd:requires-mounts-for,org.openzfs.systemd:before,"
             "org.openzfs.systemd:after,org.openzfs.systemd:wanted-by,"
             "org.openzfs.systemd:required-by,org.openzfs.systemd:nofail,"
             "org.openzfs.systemd:ignore")  # fmt: skip
    wanted = bed.run(
        f"mkdir -p /etc/zfs/zfs-list.cache && zfs list -H -t filesystem -o {props} -r {d}"
        f" > /etc/zfs/zfs-list.cache/{d} && rm -rf /tmp/gen && mkdir /tmp/gen && "
        "/usr/lib/systemd/system-generators/zfs-mount-generator /tmp/gen /tmp/gen /tmp/gen && "
        f"rm /etc/zfs/zfs-list.cache/{d} && "
        "find /tmp/gen '(' -path '*.wants/*' -o -path '*.requires/*' ')' -printf '%f\\n'"
    ).stdout.split()
    assert f"srv-{d}\\x2dctl.mount" in wanted, wanted  # (the control)
    assert f"srv-{s}\\x2dboot.mount" not in wanted, wanted
