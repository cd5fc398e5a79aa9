"""Plan files, drift detection and plan tables, pure."""

from __future__ import annotations

import json

import attrs
import pytest

from planner.compile import Facts, compile_plan
from planner.drift import Assumptions, assumptions, drift
from planner.plan import build_plan
from planner.planfile import VERSION, PlanFileError, SavedPlan, dumps, loads
from planner.show import NO_CHANGES, render, summary
from tests.builders import dataset, job, run_desire, state

TAG = "zfs_autobackup:bak"
KEY = b"0123456789abcdef"
FEATURES = frozenset({"large_blocks", "embedded_data", "extensible_dataset"})


def _saved() -> SavedPlan:
    j = job(keep_target="0", set_properties=("canmount=noauto",))
    src = state(
        [
            dataset(
                "p",
                ("bak-20260101120000", "bak-20260102120000"),
                selection=("true", "local"),
                written=4,
            ),
            dataset(
                "p/c", ("bak-20260101120000",), selection=("true", "inherited from p"), written=4
            ),
        ]
    )
    tgt = state(
        [
            dataset("backup"),
            dataset(
                "backup/p",
                ("bak-20260101120000",),
                lineage="p",
                holds={"bak-20260101120000": (TAG,)},
            ),
        ]
    )
    now = j.naming.timestamp("bak-20260103120000")
    assert now is not None
    desired = run_desire(j, src, tgt, now)
    plan = build_plan(j, desired, src, tgt)
    compiled = compile_plan(
        plan,
        j.transfer_recipe,
        j.snapshotting,
        Facts(features={"source": {"p": FEATURES}, "target": {"backup": FEATURES}}),
    )
    return SavedPlan(j, plan, compiled, assumptions(desired, src, tgt), now, "host1", "0.1.0")


def test_plan_file_round_trips_and_is_json() -> None:
    saved = _saved()
    text = dumps(saved, KEY)
    data = json.loads(text)
    assert data["format"] == "zfs-reconcile-plan" and data["version"] == VERSION
    assert {a["kind"] for a in data["plan"]["actions"]} >= {"snapshot", "send", "hold", "destroy"}
    assert loads(text, key=KEY) == saved


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t[: len(t) // 2], "invalid JSON"),
        (lambda t: "", "invalid JSON"),
        (lambda t: "[1, 2]", "not a zfs-reconcile plan file"),
        (lambda t: t.replace(f'"version": {VERSION}', '"version": 99'), "plan format version 99"),
        (
            lambda t: t.replace(f'"version": {VERSION}', '"version": 1'),
            f"has plan format version 1; this zfs-autobackup reads version {VERSION}",
        ),
        (
            lambda t: t.replace("bak-20260103120000", "bak-20260104120000"),
            "changed after it was saved",
        ),
        (
            lambda t: t.replace('"format": "zfs-reconcile-plan"', '"format": "terraform"'),
            "not a zfs-reconcile plan file",
        ),
    ],
)
def test_bad_plan_files_are_one_clear_error(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanFileError, match=message) as info:
        loads(mangle(dumps(_saved(), KEY)), "p.json", KEY)
    assert "\n" not in str(info.value)


def test_schema_violations_with_a_valid_checksum_are_refused() -> None:
    from planner import planfile

    data = json.loads(dumps(_saved(), KEY))
    data.pop(planfile.SIGNATURE)
    data["plan"]["actions"][0]["kind"] = "format-the-disk"
    data[planfile.SIGNATURE] = planfile._digest(data, KEY)
    with pytest.raises(PlanFileError, match="does not fit the plan format"):
        loads(json.dumps(data), key=KEY)


def test_an_edited_plan_with_a_recomputed_unkeyed_checksum_is_refused() -> None:
    """#9: a pre-snapshot command edited into the job, and the file "fixed" the way an
    unkeyed checksum could be: the signature under this user's key does not match."""
    import hashlib

    from planner import planfile

    data = json.loads(dumps(_saved(), KEY))
    data.pop(planfile.SIGNATURE)
    data["job"]["snapshotting"]["pre_cmds"] = [["sh", "-c", "zfs destroy -r rpool"]]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data[planfile.SIGNATURE] = hashlib.sha256(canonical.encode()).hexdigest()
    with pytest.raises(PlanFileError, match="its signature does not match"):
        loads(json.dumps(data), "p.json", KEY)
    with pytest.raises(PlanFileError, match="its signature does not match"):
        loads(json.dumps(data), "p.json", b"another users key")


def test_drift_names_each_change() -> None:
    saved = _saved()
    old = saved.assumptions
    assert drift(old, old) == []
    prints = {(p.side, p.name): p for p in old.datasets}
    tgt = prints[("target", "backup/p")]
    changed = attrs.evolve(
        tgt,
        snapshots={**tgt.snapshots, "manual": 7},
        holds={"bak-20260101120000": (TAG, "user")},
        resume_token="1-abc",
    )
    source_p = prints[("source", "p")]
    base_gone = attrs.evolve(
        source_p, snapshots={"bak-20260102120000": source_p.snapshots["bak-20260102120000"]}
    )
    new = Assumptions(
        selected=("p", "p/new"),
        datasets=(
            base_gone,
            changed,
            *(
                p
                for k, p in prints.items()
                if k not in {("target", "backup/p"), ("source", "p"), ("source", "p/c")}
            ),
        ),
    )
    texts = {(c.side, c.dataset, c.change) for c in drift(old, new)}
    assert ("source", "p", "snapshot @bak-20260101120000 was destroyed") in texts
    assert ("source", "p/c", "no longer selected (or destroyed)") in texts
    assert ("source", "p/new", "newly selected (or created)") in texts
    assert ("target", "backup/p", "snapshot @manual appeared") in texts
    assert ("target", "backup/p", "hold 'user' appeared on @bak-20260101120000") in texts
    assert ("target", "backup/p", "a resume token appeared (an interrupted receive)") in texts


def test_tables_and_summary() -> None:
    saved = _saved()
    text = render(saved.plan, {"source": "local", "target": "local: backup"})
    assert text.splitlines()[0] == "Source (local):"
    assert "Target (local: backup):" in text
    assert "send incremental" in text and "@bak-20260103120000 from @bak-20260101120000" in text
    assert "send full" in text
    assert text.endswith(summary(saved.plan))
    assert summary(saved.plan) == (
        "Plan: 2 snapshots to create, 2 to send, 0 to destroy on source, 1 on target, 4 holds to move."
    )
    empty = attrs.evolve(saved.plan, actions=(), depends=(), problems=())
    assert summary(empty) == NO_CHANGES


def test_a_plan_file_keeps_the_retry_options_and_loads_without_them() -> None:
    saved = _saved()
    saved = attrs.evolve(
        saved,
        job=attrs.evolve(
            saved.job, transfer=attrs.evolve(saved.job.transfer, retries=5, retry_delay=2.5)
        ),
    )
    data = json.loads(dumps(saved, KEY))
    assert (data["job"]["transfer"]["retries"], data["job"]["transfer"]["retry_delay"]) == (5, 2.5)
    sends = [s for s in data["compiled"]["steps"] if s["kind"] == "send"]
    assert sends and all(s["resume"]["token"]["argv"][:2] == ["zfs", "get"] for s in sends)
    assert loads(dumps(saved, KEY), key=KEY) == saved
    # a plan without the retry options (a file of version 7 had them at job.retries):
    # the defaults, no retry step data
    del data["job"]["transfer"]["retries"], data["job"]["transfer"]["retry_delay"]
    for step in data["compiled"]["steps"]:
        step.pop("resume", None)
    data.pop("hmac_sha256")
    old = loads(json.dumps(data))
    assert (old.job.transfer.retries, old.job.transfer.retry_delay) == (3, 10.0)
    assert all(step.resume is None for step in old.compiled.steps)
