"""Safety invariants over random histories (hypothesis), checked by *executing* each plan
against a small in-memory model of both sides, with random failures injected.

For every example:
- the newest common snapshot is never lost: at every step of the execution the two
  sides still share a snapshot (if they shared one before), whichever actions failed;
- an incremental send always has its base on both sides; a destroy never hits a held
  snapshot (zfs would refuse it: the plan must release first);
- only snapshots of this backup are destroyed (incompatible ones only with the flag);
- nothing is rolled back or force-received without the flag;
- with bookmarks: a send from a bookmark has it on the source and its snapshot on the
  target; a bookmark is made of a snapshot that is there (or copied from a bookmark
  whose guid is on the target); only ours are destroyed; the
  chain counts a source bookmark as common (the source may have lost the snapshots);
- the plan passes the planner's own invariant check.

The number of examples follows the hypothesis profile (HYPOTHESIS_PROFILE=thorough: 10,000).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from planner import invariants
from planner.actions import (
    SOURCE,
    Bookmark,
    CreateSnapshots,
    Destroy,
    DestroyBookmark,
    Hold,
    Release,
    Rollback,
    Send,
)
from planner.plan import build_plan
from tests.builders import dataset, guid, job, run_desire, state

settings.register_profile("default", max_examples=300, deadline=None)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TAG = "zfs_autobackup:bak"
HOUR = 3600
SCHEDULES = ["", "0", "1", "3", "10,1d1w,1w1m,1m1y", "2,1h1d", "1d1w", "1h2d,1d1w", "5,1h3h"]


@st.composite
def histories(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(0, 12))
    hours = sorted(draw(st.sets(st.integers(0, 24 * 20), min_size=n, max_size=n)))
    naming = job().naming
    chain = []
    for i, h in enumerate(hours):
        ours = draw(st.booleans()) or draw(st.booleans())
        if ours:
            chain.append(naming.snapshot_name(1_767_225_600 + h * HOUR))
        else:
            chain.append(f"manual-{i}")
    has_target = draw(st.booleans())
    common_at = draw(st.integers(-1, len(chain) - 1)) if chain else -1
    target: list[str] = []
    if has_target and common_at >= 0:
        target = [s for s in chain[: common_at + 1] if draw(st.booleans())]
        if chain[common_at] not in target:
            target.append(chain[common_at])
    extra = draw(
        st.sampled_from([[], ["stray"], [naming.snapshot_name(1_767_225_600 + 99 * 24 * HOUR)]])
    )
    if has_target and draw(st.booleans()):
        target = target + extra
    held_common = draw(st.booleans())
    foreign = draw(st.sets(st.sampled_from(chain), max_size=2)) if chain else set()
    # bookmarks: ours for this target, ours for another target, someone else's; some of
    # their snapshots are gone
    tag = str(guid("backup", ""))
    marks: dict[str, str] = {}
    for snap in draw(st.sets(st.sampled_from(chain), max_size=3)) if chain else set():
        kind = draw(st.sampled_from(["ours", "ours", "other-target", "foreign"]))
        name = {"ours": f"{snap}__{tag}", "other-target": f"{snap}__42", "foreign": f"x{snap}"}
        marks[name[kind]] = snap
    lost = draw(st.sets(st.sampled_from(sorted(marks.values())), max_size=3)) if marks else set()
    if target and common_at >= 0 and draw(st.booleans()):
        # the newest common snapshot is gone, its bookmark keeps the chain
        marks[f"{chain[common_at]}__{tag}"] = chain[common_at]
        lost.add(chain[common_at])
    last = hours[-1] if hours else 0
    return {
        "chain": chain,
        "has_target": has_target,
        "target": target,
        "held_common": held_common,
        "foreign": foreign,
        "marks": marks,
        "lost": lost,
        "now": 1_767_225_600 + (last + draw(st.integers(0, 24 * 40))) * HOUR,
        "written": draw(st.sampled_from([0, 1, 100_000])),
    }


@st.composite
def flag_sets(draw: st.DrawFn) -> dict[str, object]:
    return {
        "keep_source": draw(st.sampled_from(SCHEDULES)),
        "keep_target": draw(st.sampled_from(SCHEDULES)),
        "snapshot": draw(st.booleans()),
        "send": draw(st.booleans()) or draw(st.booleans()),
        "holds": draw(st.booleans()) or draw(st.booleans()),
        "other_snapshots": draw(st.booleans()),
        "destroy_incompatible": draw(st.booleans()),
        "rollback": draw(st.booleans()),
        "min_change": draw(st.sampled_from([0, 1, 1000])),
        "bookmarks": draw(st.booleans()),
    }


def _common(
    src: set[str],
    tgt: set[str],
    guids: dict[str, int],
    tguids: dict[str, int],
    marks: dict[str, int],
) -> bool:
    """The sides share a snapshot (on the source: or a bookmark of it)."""
    return bool(({guids[s] for s in src} | set(marks.values())) & {tguids[t] for t in tgt})


@given(history=histories(), flags=flag_sets(), failures=st.sets(st.integers(0, 40), max_size=4))
def test_plans_never_lose_the_common_snapshot(
    history: dict[str, object], flags: dict[str, object], failures: set[int]
) -> None:
    chain: list[str] = history["chain"]  # type: ignore[assignment]
    target_snaps: list[str] = history["target"]  # type: ignore[assignment]
    foreign: set[str] = history["foreign"]  # type: ignore[assignment]
    rollback = bool(flags["rollback"]) or bool(flags["destroy_incompatible"])
    j = job(**{**flags, "rollback": rollback})
    common_name = next((s for s in reversed(chain) if s in target_snaps), None)
    src_holds = dict.fromkeys(foreign, ("user",))
    tgt_holds: dict[str, tuple[str, ...]] = {}
    if history["held_common"] and common_name:
        src_holds[common_name] = (*src_holds.get(common_name, ()), TAG)
        tgt_holds[common_name] = (TAG,)
    marks: dict[str, str] = history["marks"]  # type: ignore[assignment]
    lost: set[str] = history["lost"]  # type: ignore[assignment]
    src_ds = dataset(
        "p", chain, selection=("true", "local"), written=int(history["written"]),  # type: ignore[arg-type]
        holds=src_holds, bookmarks=marks, lost=lost,
    )  # fmt: skip
    datasets = [dataset("backup")]
    if history["has_target"]:
        datasets.append(dataset("backup/p", target_snaps, lineage="p", holds=tgt_holds))
    source, target = state([src_ds]), state(datasets)
    now = float(history["now"])  # type: ignore[arg-type]
    desired = run_desire(j, source, target, now)
    plan = build_plan(j, desired, source, target)
    invariants.check(plan, j, desired)

    # the in-memory model: names present per side, their guids, holds, source bookmarks
    src = set(chain) - lost
    src_marks = {b.name: b.guid for b in src_ds.bookmarks}
    tag = str(guid("backup", ""))
    tgt = set(target_snaps) if history["has_target"] else set()
    tgt_exists = bool(history["has_target"])
    guids = {s.name: s.guid for s in src_ds.snapshots}
    tguids = {s.name: s.guid for ds in datasets[1:] for s in ds.snapshots}
    held = {(SOURCE, s): set(t) for s, t in src_holds.items()}
    held.update({("target", s): set(t) for s, t in tgt_holds.items()})
    incompatible = set(desired.pairs[0].incompatible) if desired.pairs else set()
    had_common = _common(src, tgt, guids, tguids, src_marks)

    broken: set[int] = set()
    #: the source chain in order (destroyed snapshots stay: -I needs the order only)
    chain_now = [s for s in chain if s not in lost]
    for index, action in enumerate(plan.actions):
        if index in failures or any(d in broken for d in plan.depends[index]):
            broken.add(index)
            continue
        if isinstance(action, CreateSnapshots):
            src.add(action.snapshot)
            chain_now.append(action.snapshot)
            guids[action.snapshot] = 10**12 + index
        elif isinstance(action, Send):
            assert set(action.snapshots) <= src
            if action.base is None:
                assert not tgt_exists or not tgt or action.force
                assert not action.intermediates
            elif action.from_bookmark:
                event("a send from a bookmark")
                assert not action.intermediates
                assert action.base in src_marks, "bookmark base missing"
                assert src_marks[action.base] in {tguids[t] for t in tgt}, "base not on target"
            else:
                assert action.base in src and action.base in tgt, "incremental base missing"
            if action.intermediates:
                # -I sends every snapshot between base and snapshot: all must be wanted
                between = chain_now[
                    chain_now.index(action.base) + 1 : chain_now.index(action.snapshot)
                ]
                assert list(action.intermediates) == between, (action, chain_now)
            for name in action.snapshots:
                tgt.add(name)
                tguids[name] = guids[name]
            tgt_exists = True
        elif isinstance(action, Destroy):
            side_set = src if action.side == SOURCE else tgt
            for name in action.snapshots:
                assert not held.get((action.side, name)), f"destroying held {action.side} {name}"
                assert j.naming.is_ours(name) or (
                    action.side == "target"
                    and j.transfer.destroy_incompatible
                    and name in incompatible
                )
                side_set.discard(name)
        elif isinstance(action, Bookmark) and action.copy_of is not None:
            # (a copy of someone else's bookmark the chain rests on: its guid is on the target)
            assert j.transfer.bookmarks and action.copy_of in src_marks, action
            assert action.bookmark == f"{action.snapshot}__{tag}"
            assert src_marks[action.copy_of] in {tguids[t] for t in tgt}, action
            src_marks[action.bookmark] = src_marks[action.copy_of]
            event("a bookmark copied")
        elif isinstance(action, Bookmark):
            assert j.transfer.bookmarks and action.snapshot in src, action
            assert action.bookmark == f"{action.snapshot}__{tag}"
            src_marks[action.bookmark] = guids[action.snapshot]
            event("a bookmark made")
        elif isinstance(action, DestroyBookmark):
            assert action.bookmark.endswith(f"__{tag}"), f"not ours: {action}"
            del src_marks[action.bookmark]
            event("a superseded bookmark destroyed")
        elif isinstance(action, Hold):
            held.setdefault((action.side, action.snapshot), set()).add(action.tag)
        elif isinstance(action, Release):
            held.get((action.side, action.snapshot), set()).discard(action.tag)
        elif isinstance(action, Rollback):
            assert j.transfer.rollback
        if had_common:
            assert _common(src, tgt, guids, tguids, src_marks), f"chain lost after {action}"
    assert not any(isinstance(a, Send) and a.force for a in plan.actions)
