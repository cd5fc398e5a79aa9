"""The listing cache (#36): its rules, its file, and what it serves over the fake zfs
(which keeps `snapshots_changed` as OpenZFS 2.3 was measured to; docs/performance.md).
The same stories on real ZFS are in tests/test_zfs_cache.py."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from executors.console import Console
from executors.listing_store import Store, cache_path
from executors.options import build_parser, job_from_args
from executors.runner import kernel_clock
from executors.session import Prepared, prepare
from planner.actions import Destroy, Send
from planner.compile import Options
from reconcile.listing_cache import Cache, CorruptCache, Entry, dumps, host_key, loads
from reconcile.model import Host, Snapshot
from tests import fakecli
from tests.fakezfs import FakeError, FakeRunner, FakeZfs

JOB = ["bak", "dst"]


def _snap(dataset: str, name: str, guid: int, txg: int) -> Snapshot:
    return Snapshot(dataset, name, guid, txg, 1_000 + txg, userrefs=0, written=5, clones=("x/y",))


def _entry(**changes: object) -> Entry:
    name = str(changes.get("name", "pool/a"))
    fields: dict[str, object] = {
        "host": "local",
        "pool_guid": 7,
        "guid": 11,
        "name": name,
        "origin": None,
        "changed": 1_000,
        "read_at": 1_002,
        "snapshots": (_snap(name, "s1", 21, 5), _snap(name, "s2", 22, 9)),
    }
    fields.update(changes)
    return Entry(**fields)  # type: ignore[arg-type]


# --- the rules ------------------------------------------------------------------------


def test_an_entry_serves_only_while_nothing_can_have_changed_since_it_was_read() -> None:
    entry = _entry(changed=1_000, read_at=1_002)
    assert entry.serves("pool/a", None, 1_000)
    assert not entry.serves("pool/a", None, 1_001), "snapshots_changed moved"
    assert not entry.serves("pool/a", None, None), "snapshots_changed unknown"
    assert not entry.serves("pool/b", None, 1_000), "renamed"
    assert not entry.serves("pool/a", "pool/o@s", 1_000), "another origin (a promote)"
    # read in the same second as the change, or the next: a change after the read could
    # carry the same value (whole seconds, and ZFS's coarse clock): never served
    assert not _entry(changed=1_000, read_at=1_000).serves("pool/a", None, 1_000)
    assert not _entry(changed=1_000, read_at=1_001).serves("pool/a", None, 1_000)


def test_the_file_says_exactly_what_was_saved() -> None:
    cache = Cache({e.key: e for e in (_entry(), _entry(guid=12, name="pool/b", origin="p@s"))})
    assert loads(dumps(cache)) == cache


@pytest.mark.parametrize(
    "change",
    [
        lambda d: "not json{",
        lambda d: json.dumps([]),
        lambda d: json.dumps({**d, "format": 2}),
        lambda d: json.dumps({**d, "entries": {}}),
        lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "guid": "11"}]}),
        lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "changed": True}]}),
        lambda d: json.dumps({**d, "entries": [{**d["entries"][0], "read_at": 1.5}]}),
        lambda d: json.dumps(
            {**d, "entries": [{k: v for k, v in d["entries"][0].items() if k != "pool_guid"}]}
        ),
        lambda d: json.dumps({**d, "entries": d["entries"] * 2}),
        lambda d: json.dumps(
            {**d, "entries": [{**d["entries"][0], "snapshots": [["s@x", 1, 1, 1, 0, 0, []]]}]}
        ),
        lambda d: json.dumps(
            {**d, "entries": [{**d["entries"][0], "snapshots": [["s", 1, 1, 1, 0, 0]]}]}
        ),
        lambda d: json.dumps(
            {**d, "entries": [{**d["entries"][0], "snapshots": d["entries"][0]["snapshots"][::-1]}]}
        ),
        lambda d: json.dumps(
            {**d, "entries": [{**d["entries"][0], "snapshots": [["s", 1, 1, 1, 0, 0, [3]]]}]}
        ),
    ],
    ids=[
        "not-json",
        "a-list",
        "format",
        "entries-not-a-list",
        "guid-a-string",
        "a-bool",
        "a-float",
        "a-field-missing",
        "twice",
        "a-bad-name",
        "six-fields",
        "out-of-order",
        "a-clone-not-a-name",
    ],
)
def test_a_file_that_is_not_exactly_what_the_tool_writes_is_corrupt(change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(dumps(Cache({_entry().key: _entry()})))
    with pytest.raises(CorruptCache):
        loads(change(data))


def test_the_kernel_clock_is_this_machines_and_never_ahead_of_it() -> None:
    before = time.time()
    kernel = kernel_clock()
    assert kernel is not None
    assert before - 2 <= kernel <= time.time()


# --- over the fake zfs ------------------------------------------------------------------


class World:
    """fakecli's world (src with children, all selected; dst), backed up once, with a
    listing cache file of its own."""

    def __init__(self) -> None:
        self.zfs, self.runner = fakecli.world()
        self.job = job_from_args(build_parser().parse_args(JOB))
        self.path = cache_path(self.job)
        self.warnings: list[str] = []
        self.debug: list[str] = []
        assert fakecli.run(JOB, self.runner) == 0

    def store(self) -> Store:
        return Store.load(self.path, self.warnings.append, self.debug.append)

    def prepare(self, *, cached: bool = True, **kw: object) -> Prepared:
        store = self.store() if cached else None
        return prepare(self.job, self.runner, float(self.zfs.now), Options(), store=store, **kw)  # type: ignore[arg-type]

    def tick(self, seconds: int = 10) -> None:
        self.zfs.now += seconds

    def listed(self, start: int) -> list[str]:
        """The snapshot listings since history line `start`: the datasets each read."""
        return [
            line for line in self.runner.history[start:] if " snapshot" in line and "list" in line
        ]


@pytest.fixture
def world() -> World:
    w = World()
    w.tick()
    w.prepare()  # (reads all, and keeps it: the next run may be served)
    w.tick()
    return w


def test_a_second_run_is_served_from_the_cache_and_sees_the_same(world: World) -> None:
    start = len(world.runner.history)
    cached = world.prepare()
    assert cached.source.served == {"src", "src/data", "src/data/a", "src/data/b", "src/other"}
    assert {"dst/src", "dst/src/data"} <= cached.target.served  # type: ignore[union-attr]
    assert not any("-d 1 src" in line for line in world.listed(start))
    fresh = world.prepare(cached=False)
    assert cached.source.datasets == fresh.source.datasets
    assert cached.target.datasets == fresh.target.datasets  # type: ignore[union-attr]
    assert cached.plan == fresh.plan


def test_a_snapshot_made_or_destroyed_behind_the_tools_back_is_seen(world: World) -> None:
    world.zfs.snapshot(["src/data@manual"])
    first = world.zfs.datasets["src/other"].snaps[0].name
    world.zfs.command(["zfs", "destroy", f"src/other@{first}"])
    world.tick()
    seen = world.prepare()
    assert seen.source.datasets["src/data"].snapshot("manual") is not None
    assert seen.source.datasets["src/other"].snapshot(first) is None
    assert "src/data" not in seen.source.served and "src/other" not in seen.source.served
    assert "src/data/a" in seen.source.served


def test_a_change_in_the_same_second_as_the_read_is_seen() -> None:
    world = World()
    world.tick()
    # someone snapshots, the tool reads, someone snapshots again: all in one second
    world.zfs.snapshot(["src/data@first"])
    world.prepare()
    world.zfs.snapshot(["src/data@second"])
    world.tick(60)
    seen = world.prepare()
    assert seen.source.datasets["src/data"].snapshot("second") is not None
    assert "src/data" not in seen.source.served


def test_a_dataset_destroyed_and_made_again_is_not_served_from_the_old_entry(
    world: World,
) -> None:
    old = world.zfs.datasets["src/data/b"]
    stamp = old.changed
    del world.zfs.datasets["src/data/b"]
    world.zfs.now, now = stamp, world.zfs.now  # type: ignore[assignment]
    world.zfs.create("src/data/b")
    world.zfs.snapshot(["src/data/b@other"])
    world.zfs.now = now
    new = world.zfs.datasets["src/data/b"]
    assert new.changed == stamp and new.guid != old.guid  # (only the guid tells them apart)
    seen = world.prepare()
    assert [s.name for s in seen.source.datasets["src/data/b"].snapshots] == ["other"]
    assert "src/data/b" not in seen.source.served


def test_a_promoted_clone_is_read_again(world: World) -> None:
    snap = world.zfs.datasets["src/data/a"].snaps[-1].name
    world.zfs.clone(f"src/data/a@{snap}", "src/data/c")
    world.tick()
    world.prepare()
    world.tick()
    world.zfs.command(["zfs", "promote", "src/data/c"])
    world.tick()
    seen = world.prepare()
    # (the promoted clone gained the snapshots, and its snapshots_changed did not move)
    assert [s.name for s in seen.source.datasets["src/data/c"].snapshots] == [snap]
    assert "src/data/c" not in seen.source.served


def test_a_corrupt_cache_is_a_warning_and_a_full_listing(world: World) -> None:
    world.path.write_text('{"format": 1, "entries": [{"host": 3}]}')
    start = len(world.runner.history)
    seen = world.prepare()
    assert len(world.warnings) == 1 and str(world.path) in world.warnings[0]
    assert "reading every snapshot" in world.warnings[0]
    assert not seen.source.served
    assert any("-t filesystem,volume,snapshot,bookmark -r src" in line
               for line in world.runner.history[start:])  # fmt: skip
    world.tick()
    assert world.prepare().source.served, "the file was written again, whole"


def test_a_cache_that_cannot_be_read_is_a_warning(world: World) -> None:
    world.path.unlink()
    world.path.mkdir()
    assert not world.prepare().source.served
    assert any("can't be used" in w for w in world.warnings)


def test_a_zfs_without_snapshots_changed_is_read_whole_without_an_error() -> None:
    class OldZfs(FakeZfs):
        def _zfs_list(self, args: list[str]) -> object:
            if "snapshots_changed" in args[args.index("-o") + 1]:
                raise FakeError("bad property list: invalid property 'snapshots_changed'", 2)
            return super()._zfs_list(args)

    zfs = OldZfs()
    for name in (*fakecli.SOURCES, "dst"):
        zfs.create(name)
    zfs.datasets["src"].local_props["autobackup:bak"] = "true"
    zfs.now = fakecli.START
    runner = FakeRunner({None: zfs})
    for hour in (1, 2):
        zfs.now += 3600
        zfs.write("src/data")
        assert fakecli.main(JOB, fakecli.deps(runner, now=fakecli.START + hour * 3600)) == 0
    assert len(zfs.datasets["dst/src/data"].snaps) == 2


def test_a_pool_whose_guid_cannot_be_read_is_read_whole_without_an_error(world: World) -> None:
    class NoGuid(FakeZfs):
        def command(self, argv: Sequence[str], stream: object = None) -> object:
            if argv[0] == "zpool" and "guid" in argv[5].split(","):
                raise FakeError("cannot open 'src': permission denied")
            return super().command(argv, stream)  # type: ignore[arg-type]

    world.zfs.__class__ = NoGuid
    seen = world.prepare()
    assert not seen.source.served and seen.source.entries == ()
    assert seen.plan == world.prepare(cached=False).plan


def test_a_hold_made_behind_the_tools_back_is_read_before_a_destroy(world: World) -> None:
    """A hold changes no snapshots_changed: the cached entry says "not held". Thinning
    wants the snapshot gone; the dataset is read again first, and the hold is seen."""
    for hour in (2, 3, 4):
        world.tick(3600)
        world.zfs.write("src/data")
        deps = fakecli.deps(world.runner, now=fakecli.START + hour * 3600)
        assert fakecli.main(JOB, deps) == 0
    world.tick(3600)
    world.prepare()  # (a run that is only planned: what it read is kept)
    world.tick()
    snaps = world.zfs.datasets["src/data"].snaps
    assert len(snaps) == 4
    held = snaps[0].name
    world.zfs.command(["zfs", "hold", "someone", f"src/data@{held}"])
    world.job = job_from_args(build_parser().parse_args([*JOB, "--keep-source=1"]))
    unheld = world.prepare(cached=False)
    start = len(world.runner.history)
    seen = world.prepare()
    destroys = [a for a in seen.plan.actions if isinstance(a, Destroy) and a.dataset == "src/data"]
    assert destroys and all(held not in a.snapshots for a in destroys), destroys
    assert any(line.endswith("-d 1 src/data") for line in world.listed(start))
    assert seen.plan == unheld.plan


def test_the_tools_own_changes_are_read_again_after_the_run(world: World) -> None:
    later = fakecli.deps(world.runner, now=fakecli.START + 7200)
    assert fakecli.main([*JOB, "--allow-empty"], later) == 0
    # (both sides are on this host: one listing reads what the run changed on each)
    last = [line for line in world.runner.history if line.startswith("zfs ")][-1]
    assert " -d 1 " in last and " src/data " in last and " dst/src/data " in last, last
    saved = loads(world.path.read_text())
    entry = saved.get(host_key(Host()), world.zfs.datasets["dst"].guid + 7,
                      world.zfs.datasets["dst/src/data"].guid)  # fmt: skip
    assert entry is not None
    on_target = [s.name for s in world.zfs.datasets["dst/src/data"].snaps]
    assert [s.name for s in entry.snapshots] == on_target


def test_a_send_reads_its_source_again_only_when_the_run_wrote_there(world: World) -> None:
    """(A send only reads its source: a run that sends what an earlier run snapshotted,
    with neither bookmarks nor holds on the source, reads only its target again.)"""
    later = fakecli.deps(world.runner, now=fakecli.START + 7200)
    assert fakecli.main([*JOB, "--no-send", "--allow-empty"], later) == 0
    world.tick()
    world.prepare()  # (the cache now holds the source with its new snapshots)
    world.tick()
    start = len(world.runner.history)
    later = fakecli.deps(world.runner, now=fakecli.START + 7200)
    assert fakecli.main([*JOB, "--no-snapshot", "--no-holds", "--no-bookmarks"], later) == 0
    sent = [line for line in world.runner.history[start:] if "zfs send" in line]
    assert sent, "nothing was sent"
    after = world.runner.history[start:]
    reads = [line.split(" -d 1 ", 1)[1] for line in after if line.startswith("zfs list")
             and " -d 1 " in line]  # fmt: skip
    read = {name for line in reads for name in line.split()}
    assert read and all(name.startswith("dst/") for name in read), read


def test_a_run_that_sends_reads_each_hosts_pools_once(world: World) -> None:
    """The listing cache reads each pool's guid: its features (what the sends need) come
    in the same `zpool get`, not in one more per host once something is sent; without
    the cache they are read as before, only when something is sent."""
    later = fakecli.deps(world.runner, now=fakecli.START + 7200)
    for flags, pool_reads in (([], ["guid,feature@"] * 2), (["--no-cache"], ["feature@"] * 2)):
        world.zfs.write("src/data")
        start = len(world.runner.history)
        assert fakecli.main([*JOB, *flags, "--allow-empty"], later) == 0
        later = fakecli.deps(world.runner, now=fakecli.START + 10800)
        after = world.runner.history[start:]
        assert any("zfs send" in line for line in after), "nothing was sent"
        reads = [line.split()[5] for line in after if line.startswith("zpool get")]
        assert [r.partition("large_blocks")[0] for r in reads] == pool_reads, reads


def test_a_pool_that_cannot_bookmark_and_sends_nothing_is_planned_as_without_the_cache() -> None:
    """With the cache, every listed pool's features are known (they come with its guid);
    a pool the run neither sends from nor bookmarks in must weigh as it does with
    --no-cache, where they are not read: not at all."""
    w = World()
    w.zfs.create("old")
    w.zfs.create("old/x")
    w.zfs.datasets["old"].local_props["autobackup:bak"] = "true"
    later = fakecli.deps(w.runner, now=fakecli.START + 7200)
    assert fakecli.main(JOB, later) == 0
    w.zfs.disabled_features["old"] = {"feature@bookmarks", "feature@bookmark_v2"}
    w.zfs.write("src/data")
    w.tick()
    cached, fresh = w.prepare(), w.prepare(cached=False)
    assert any(isinstance(a, Send) and a.source_dataset == "src/data" for a in cached.plan.actions)
    assert "old" in cached.source.features_read and "old" not in fresh.source.features_read
    assert cached.plan == fresh.plan


def test_a_failed_read_after_the_run_fails_nothing(world: World) -> None:
    """(The link went down at the end of the run: the next run reads what it changed.)"""
    world.zfs.write("src/data")
    lists = [0]

    def down() -> None:
        raise_next = world.runner.run

        def failing(host: Host, argv: Sequence[str], **kw: object) -> object:
            if "-d" in argv and "snapshots_changed" in argv[argv.index("-o") + 1]:
                lists[0] += 1
                return raise_next(host, ["zfs", "frobnicate"], **kw)  # type: ignore[arg-type]
            return raise_next(host, argv, **kw)  # type: ignore[arg-type]

        world.runner.run = failing  # type: ignore[method-assign]

    down()
    deps = fakecli.deps(world.runner, now=fakecli.START + 7200)
    assert fakecli.main(JOB, deps) == 0
    assert lists[0] == 1  # (the read after the run failed: one for both sides' host)
    saved = loads(world.path.read_text())
    assert not any(e.name == "src/data" for e in saved.entries.values())


def test_no_cache_reads_everything_and_writes_no_file(tmp_path: Path) -> None:
    zfs, runner = fakecli.world()
    job = job_from_args(build_parser().parse_args(JOB))
    for _ in range(2):
        zfs.now += 3600
        assert fakecli.run([*JOB, "--no-cache"], runner) == 0
    assert not cache_path(job).exists()
    assert not any("snapshots_changed" in line for line in runner.history)


def test_debug_says_what_was_served(world: World) -> None:
    out = io.StringIO()

    def console(options: object) -> Console:
        return Console(out=out, err=out, verbose=True, debug=True, color=False)

    deps = fakecli.deps(world.runner, console=console, now=fakecli.START + 7200)  # type: ignore[arg-type]
    assert fakecli.main([*JOB, "--debug"], deps) == 0
    text = out.getvalue()
    assert "# [Source] Served from the listing cache (5): src, src/data, src/data/a" in text, text
