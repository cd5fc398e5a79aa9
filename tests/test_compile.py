"""The compile stage, pure: the exact commands a plan becomes, and the steps around them."""

from __future__ import annotations

from planner.actions import SOURCE, TARGET
from planner.compile import (
    CHECK_HELPERS,
    POST_SNAPSHOT,
    PRE_SNAPSHOT,
    Compiled,
    Facts,
    Options,
    compile_plan,
    estimate_argv,
)
from planner.cover import present_sides
from planner.plan import build_plan
from reconcile.pipes import TransferOptions
from tests.builders import dataset, job, run_desire, state

ALL = frozenset({"large_blocks", "embedded_data", "extensible_dataset"})
OLD = "bak-20260101120000"
NEW = "bak-20260102120000"


DEFAULT = Options()


def _compile(j, source, target, features=True, options=DEFAULT) -> tuple[Compiled, object]:  # type: ignore[no-untyped-def]
    now = j.naming.timestamp(NEW)
    plan = build_plan(j, run_desire(j, source, target, now), source, target)
    feats = {SOURCE: {"p": ALL}, TARGET: {"backup": ALL}} if features else {}
    facts = Facts(features=feats, present=present_sides(plan, j, source, target))
    return compile_plan(plan, j.transfer_recipe, j.snapshotting, facts, options), plan


def _lines(compiled: Compiled) -> list[tuple[str, list[str]]]:
    return [(s.kind, [" ".join(c.argv) for c in s.commands]) for s in compiled.steps]


def test_a_first_backup_of_a_tree() -> None:
    source = state(
        [
            dataset("p", (OLD,), selection=("true", "local"), written=9),
            dataset("p/a", (OLD,), selection=("true", "inherited from p"), written=9),
        ]
    )
    compiled, _ = _compile(job(), source, state([dataset("backup")]))
    assert _lines(compiled) == [
        ("snapshot", [f"zfs snapshot p@{NEW} p/a@{NEW}"]),
        (
            "send",
            [
                f"zfs send -L -e -p p@{OLD}",
                "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p",
            ],
        ),
        (
            "send",
            [
                f"zfs send -L -e -p -i @{OLD} p@{NEW}",
                "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p",
            ],
        ),
        (
            "send",
            [
                f"zfs send -L -e -p p/a@{OLD}",
                "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/a",
            ],
        ),
        (
            "send",
            [
                f"zfs send -L -e -p -i @{OLD} p/a@{NEW}",
                "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/a",
            ],
        ),
        # every descendant's @NEW is held too: one recursive hold per side
        ("hold", [f"zfs hold -r zfs_autobackup:bak backup/p@{NEW}"]),
        ("hold", [f"zfs hold -r zfs_autobackup:bak p@{NEW}"]),
        ("mount", ["sh -c " + compiled.steps[-2].commands[0].argv[2] + " sh backup/p"]),
        ("mount", ["sh -c " + compiled.steps[-1].commands[0].argv[2] + " sh backup/p/a"]),
    ]
    sends = [s for s in compiled.steps if s.kind == "send"]
    assert len({s.group for s in sends}) == 1 and sends[0].group > 0  # may run side by side
    # the child's full send needs the parent's
    assert compiled.steps.index(sends[0]) in sends[2].needs
    hold = compiled.steps[5]
    assert [" ".join(a.commands[0].argv) for a in hold.fallback] == [
        f"zfs hold zfs_autobackup:bak backup/p@{NEW}",
        f"zfs hold zfs_autobackup:bak backup/p/a@{NEW}",
    ]
    assert all(s.soft for s in compiled.steps if s.kind == "mount")


def test_send_flags_follow_the_pools_and_the_job() -> None:
    source = state([dataset("p", (OLD,), selection=("true", "local"), encryption="aes-256-gcm")])
    raw, _ = _compile(job(snapshot=False, zfs_compressed=True), source, state([dataset("backup")]))
    assert _lines(raw)[0] == (
        "send",
        [
            f"zfs send -L -c -w -p p@{OLD}",
            "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p",
        ],
    )
    decrypted, _ = _compile(
        job(snapshot=False, decrypt=True), source, state([dataset("backup")]), features=False
    )
    # no pool features observed: no -L -e, no resumable receive
    assert _lines(decrypted)[0] == (
        "send",
        [
            f"zfs send p@{OLD}",
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p",
        ],
    )
    estimate = estimate_argv(raw.steps[0].commands[0].argv)
    assert " ".join(estimate) == f"zfs send -n -P -L -c -w -p p@{OLD}"


def test_the_transfer_pipeline_and_its_helpers() -> None:
    transfer = TransferOptions.create("zstd-fast", "64M", "10M", ["pv -q"], [], chunk_size="256k")
    j = job(snapshot=False, transfer=transfer, ignore_transfer_errors=True)
    source = state([dataset("p", (OLD,), selection=("true", "local"))])
    compiled, _ = _compile(j, source, state([dataset("backup")]))
    assert compiled.steps[0].kind == CHECK_HELPERS and not compiled.steps[0].writes
    assert compiled.steps[0].commands[0].argv[-3:] == ("mbuffer", "pv", "zstd")
    send = next(s for s in compiled.steps if s.kind == "send")
    assert [" ".join(c.argv) for c in send.commands] == [
        f"zfs send -L -e -p p@{OLD}",
        "pv -q",
        "zstd -T0 -3",
        "mbuffer -q -s256k -m64M -R10M",
        "zstd -dc",
        "mbuffer -q -s256k -m64M",  # (a second buffer: something sits between the ends)
        "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p",
    ]
    assert send.arrived is not None and send.arrived.argv[-1] == f"backup/p@{OLD}"


def test_thinning_destroys_fall_back_one_by_one_and_snapshot_commands_wrap_the_snapshot() -> None:
    snaps = ("bak-20260101100000", "bak-20260101110000", OLD)
    source = state([dataset("p", snaps, selection=("true", "local"), written=9)])
    j = job(target_path=None, keep_source="1", pre_snapshot_cmds=(("sync",), ("true",)),
            post_snapshot_cmds=(("echo", "done"),))  # fmt: skip
    compiled, _ = _compile(j, source, None)
    kinds = [s.kind for s in compiled.steps]
    assert kinds == [PRE_SNAPSHOT, PRE_SNAPSHOT, "snapshot", POST_SNAPSHOT, "destroy"]
    _, second, snapshot = compiled.steps[:3]
    assert second.needs == (0,) and snapshot.needs == (0, 1)
    destroy = compiled.steps[-1]
    assert destroy.soft and destroy.commands[0].argv == ("zfs", "destroy", "p@" + ",".join(snaps))
    assert [a.commands[0].argv[-1] for a in destroy.fallback] == [f"p@{s}" for s in snaps]


def test_the_same_input_compiles_to_the_same_steps() -> None:
    source = state([dataset("p", (OLD,), selection=("true", "local"), written=9)])
    a, _ = _compile(job(), source, state([dataset("backup")]))
    b, _ = _compile(job(), source, state([dataset("backup")]))
    assert a == b
    c, _ = _compile(job(), source, state([dataset("backup")]), options=Options(progress=True))
    assert a != c and "-P" in next(s for s in c.steps if s.kind == "send").commands[0].argv
