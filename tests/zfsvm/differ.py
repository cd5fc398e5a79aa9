"""Differential testing against zfs-autobackup 3.3 itself, on real ZFS.

One story, two identical worlds in the guest: a source and a target pool for
zfs-autobackup 3.3, and a source and a target pool for this tool. Every step does the
same to both worlds (datasets created, selected with every kind of value, written,
cloned, snapshotted by another tool, snapshots destroyed behind the tools' backs, data
written into the target, interrupted transfers), and a run step runs 3.3 in its world
and this tool in the other, at the same frozen time, with the same options. After every
run both worlds are read back and compared, with the pool names replaced by their roles
(S1, S2, T): the exit codes, the datasets, the snapshot names of each, the holds on
each snapshot, and which datasets have a resume token. Guids and data differ between
the worlds (they are different pools), names and holds must not.

Both worlds share one host, and both tools consider every pool of it: each world
selects with its own property (`--property-format`, {P} in a step), so neither tool
ever sees the other world's datasets as selected. Snapshot names and hold tags are the
same in both (backup name "dif").

A step is one guest script (both worlds, both runs, both readings), so a step costs one
ssh round trip plus the two tool runs.

Stories come from `random_story(seed)` (generated step by step from the state read
back, so every operation is valid) or are written by hand (the 3.3 regression scenarios
in tests/test_zfs_differential.py). The first divergence ends a story: after it the
worlds differ and every later comparison would only repeat it.
"""

from __future__ import annotations

import json
import random
import shlex
import time
from collections.abc import Iterator, Sequence
from typing import Callable, Optional

import attrs

from tests.zfsvm.bed import ZfsBed

BACKUP = "dif"
#: the selection property in a step; each world has its own (World.prop)
PROP = "{P}"
TAG = f"zfs_autobackup:{BACKUP}"
#: the two tools, as run in the guest
#: (ours with --no-bookmarks: 3.3's behaviour, which the harness compares)
TOOLS = {"3.3": ("zfs-autobackup-3.3",), "ours": ("zfs-autobackup", "--no-bookmarks")}
START = 1_767_225_600  # 2026-01-01 00:00:00 (the guest's clock is UTC)


#: the pools of a world, by role: two source pools and a target pool (3.3's test layout:
#: test_source1, test_source2, test_target1)
ROLES = ("S1", "S2", "T")


@attrs.frozen
class World:
    """One tool's pools: role -> pool name."""

    tool: str
    pools: dict[str, str]

    @property
    def prop_format(self) -> str:
        """Its own selection property, named after its target pool: no other world (and
        no pool an earlier story left behind) ever has it."""
        return f"select-{self.pools['T']}:{{}}"

    @property
    def prop(self) -> str:
        return self.prop_format.format(BACKUP)

    def fill(self, text: str) -> str:
        for role, pool in self.pools.items():
            text = text.replace("{" + role + "}", pool)
        return text.replace("{P}", self.prop)

    def normal(self, name: str) -> str:
        """The name with this world's pools as their roles, wherever they appear (a
        target dataset holds its source pool's name too)."""
        names = {pool: role for role, pool in self.pools.items()}
        ds, at, snap = name.partition("@")
        return "/".join(names.get(part, part) for part in ds.split("/")) + at + snap

    def roots(self) -> str:
        return " ".join(self.pools[r] for r in ROLES)


def tpl(normal: str) -> str:
    """A normalized name as a step template ({S1}, {T}, ... for the pools)."""
    ds, at, snap = normal.partition("@")
    return "/".join("{" + p + "}" if p in ROLES else p for p in ds.split("/")) + at + snap


@attrs.frozen
class Step:
    """What both worlds get: shell lines ({S1}, {S2}, {T}: the world's pools), then maybe
    a run of the tool (`args`, the same placeholders) at `now` (seconds since the epoch)."""

    what: str
    ops: tuple[str, ...] = ()
    args: Optional[tuple[str, ...]] = None
    now: int = START


@attrs.frozen
class State:
    """One world read back, pool names normalized."""

    datasets: tuple[str, ...]
    snapshots: dict[str, tuple[str, ...]]
    holds: dict[str, tuple[str, ...]]
    tokens: tuple[str, ...]
    userrefs: dict[str, int]
    written: dict[str, int]
    mounted: dict[str, bool]


@attrs.frozen
class Outcome:
    step: Step
    codes: dict[str, int]
    states: dict[str, State]
    outputs: dict[str, str]

    def differences(self) -> list[str]:
        a, b = self.states["3.3"], self.states["ours"]
        found = []
        if self.codes["3.3"] != self.codes["ours"]:
            found.append(f"exit code: 3.3 {self.codes['3.3']}, ours {self.codes['ours']}")
        for name in sorted(set(a.datasets) ^ set(b.datasets)):
            found.append(f"dataset {name}: only {'3.3' if name in a.datasets else 'ours'} has it")
        for name in sorted(set(a.datasets) & set(b.datasets)):
            sa, sb = a.snapshots.get(name, ()), b.snapshots.get(name, ())
            if sa != sb:
                found.append(
                    f"{name} snapshots: 3.3 has {_diff(sa, sb)}, ours has {_diff(sb, sa)}"
                    f" (3.3: {' '.join(sa) or '-'}; ours: {' '.join(sb) or '-'})"
                )
        for snap in sorted(set(a.holds) | set(b.holds)):
            ha, hb = a.holds.get(snap, ()), b.holds.get(snap, ())
            if ha != hb:
                found.append(f"holds on {snap}: 3.3 {list(ha)}, ours {list(hb)}")
        if a.tokens != b.tokens:
            found.append(f"resume tokens: 3.3 on {list(a.tokens)}, ours on {list(b.tokens)}")
        # received filesystems are mounted where 3.3 mounts them (target pool only: the
        # sources are the story's own)
        for name in sorted(set(a.mounted) & set(b.mounted)):
            if name.startswith("T/") and a.mounted[name] != b.mounted[name]:
                found.append(
                    f"{name}: mounted by 3.3: {a.mounted[name]}, by ours: {b.mounted[name]}"
                )
        return found


def _diff(x: Sequence[str], y: Sequence[str]) -> str:
    only = [s for s in x if s not in y]
    return " ".join(only) or "nothing else"


_READ = (
    "zfs list -H -p -o name,type,userrefs,receive_resume_token,written,mounted "
    "-t filesystem,volume,snapshot -s createtxg -r {ROOTS}; echo '#holds'; "
    "zfs list -H -p -o name,userrefs -t snapshot -r {ROOTS} | "
    "awk -F'\\t' '$2 > 0 {print $1}' | xargs -r zfs holds -H"
)


def _parse(world: World, text: str) -> State:
    listing, _, holds_text = text.partition("#holds\n")
    datasets, tokens = [], []
    snaps: dict[str, list[str]] = {}
    userrefs: dict[str, int] = {}
    written: dict[str, int] = {}
    mounted: dict[str, bool] = {}
    for line in listing.splitlines():
        cols = line.split("\t")
        if len(cols) != 6:
            continue
        name, kind, refs, token, wr, mnt = cols
        name = world.normal(name)
        written[name] = int(wr) if wr.isdigit() else 0
        if kind == "snapshot":
            ds, _, short = name.partition("@")
            snaps.setdefault(ds, []).append(short)
            userrefs[name] = int(refs) if refs.isdigit() else 0
        else:
            datasets.append(name)
            mounted[name] = mnt == "yes"
            if token not in ("-", ""):
                tokens.append(name)
    held: dict[str, list[str]] = {}
    for line in holds_text.splitlines():
        cols = line.split("\t")
        if len(cols) >= 2:
            held.setdefault(world.normal(cols[0]), []).append(cols[1])
    return State(
        datasets=tuple(sorted(datasets)),
        snapshots={k: tuple(v) for k, v in snaps.items()},
        holds={k: tuple(sorted(v)) for k, v in held.items()},
        tokens=tuple(sorted(tokens)),
        userrefs=userrefs,
        written=written,
        mounted=mounted,
    )


def _stamp(now: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))


def _world_script(world: World, step: Step) -> str:
    lines = ["{ " + world.fill(op) + "; } >/dev/null 2>&1" for op in step.ops]
    if step.args is not None:
        argv = ["faketime", "-f", _stamp(step.now), *TOOLS[world.tool], BACKUP]
        argv += [world.fill(a) for a in step.args]
        argv.append(f"--property-format={world.prop_format}")
        lines.append(f'{shlex.join(argv)} > /tmp/dif.out 2>&1; echo "#rc $?"; cat /tmp/dif.out')
    lines.append("echo '#state'")
    lines.append(_READ.replace("{ROOTS}", world.roots()))
    return "\n".join(lines)


def run_step(bed: ZfsBed, worlds: Sequence[World], step: Step) -> Outcome:
    """Both worlds, one guest script; returns what each run did and each world's state."""
    marker = "#### world "
    script = "\n".join(f"echo '{marker}{w.tool}'\n{_world_script(w, step)}" for w in worlds)
    out = bed.run(f"export TZ=UTC\n{script}", check=False, timeout=1800).stdout
    codes: dict[str, int] = {}
    states: dict[str, State] = {}
    outputs: dict[str, str] = {}
    for chunk in out.split(marker)[1:]:
        tool, _, body = chunk.partition("\n")
        run_part, _, state_part = body.partition("#state\n")
        if step.args is not None:
            rc_line, _, text = run_part.partition("\n")
            codes[tool] = int(rc_line.split()[1]) if rc_line.startswith("#rc ") else -1
            outputs[tool] = text
        world = next(w for w in worlds if w.tool == tool)
        states[tool] = _parse(world, state_part)
    return Outcome(step, codes or {"3.3": 0, "ours": 0}, states, outputs)


@attrs.define
class Report:
    """What a story did: every run compared, and the divergence that ended it (if any)."""

    name: str
    runs: int = 0
    steps: list[str] = attrs.Factory(list)
    divergence: Optional[list[str]] = None
    outputs: dict[str, str] = attrs.Factory(dict)

    def text(self) -> str:
        lines = [f"story {self.name}: {self.runs} runs compared"]
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.steps)]
        if self.divergence:
            lines.append("DIVERGENCE after the last step:")
            lines += [f"  - {d}" for d in self.divergence]
            for tool, text in self.outputs.items():
                tail = "\n    ".join(text.strip().splitlines()[-25:])
                lines.append(f"  {tool} said:\n    {tail}")
        return "\n".join(lines)


StepSource = Callable[[Optional[State]], Optional[Step]]


def play(bed: ZfsBed, worlds: Sequence[World], name: str, steps: StepSource) -> Report:
    """Run steps (each chosen from the state after the previous one) until the source
    has none left or the worlds diverge."""
    report = Report(name)
    state: Optional[State] = None
    while True:
        step = steps(state)
        if step is None:
            return report
        outcome = run_step(bed, worlds, step)
        args = " ".join(step.args) if step.args is not None else ""
        line = f"{step.what}" + (f" [{_stamp(step.now)}] {args}" if args else "")
        if step.args is not None:
            line += f" -> exit 3.3 {outcome.codes['3.3']}, ours {outcome.codes['ours']}"
        report.steps.append(line)
        state = outcome.states["3.3"]
        if step.args is None:
            continue
        report.runs += 1
        found = outcome.differences()
        if found:
            report.divergence = found
            report.outputs = outcome.outputs
            return report


def fixed(steps: Sequence[Step]) -> StepSource:
    """A hand-written story."""
    todo: Iterator[Step] = iter(steps)
    return lambda _state: next(todo, None)


# --- random stories ---------------------------------------------------------------------

#: options a run may get (each run draws a few); all mean the same in 3.3 and here
RUN_FLAGS = (
    "--no-snapshot",
    "--no-send",
    "--no-holds",
    "--allow-empty",
    "--min-change=70000",
    "--other-snapshots",
    "--no-thinning",
    "--rollback",
    "--destroy-incompatible",
    "--destroy-missing=1d",
    "--clear-mountpoint",
    "--test",
    "--keep-source=0",
    "--keep-target=1",
    "--resume",
)
KEEP_SOURCE = ("3", "10,1d1w", "2,1h1d,1d1w", "1,1d1w")
KEEP_TARGET = ("5", "10,1d1w,1w1m", "1d1w,1w1m", "2,1h1d")
STEPS = (60, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)
#: 3.3's test tree: S1/fs1 (true) with fs1/sub, S2/fs2 (child) with fs2/sub, and
#: S2/fs3/sub (not selected)
SETUP = (
    "zfs create -p {S1}/fs1/sub",
    "zfs create -p {S2}/fs2/sub",
    "zfs create -p {S2}/fs3/sub",
    f"zfs set {PROP}=true {{S1}}/fs1",
    f"zfs set {PROP}=child {{S2}}/fs2",
)


def _write(dataset: str, kib: int, name: str) -> str:
    return (
        f'dd if=/dev/urandom of="$(zfs get -H -o value mountpoint {dataset})/{name}" '
        f"bs=1k count={kib} status=none && zpool sync {dataset.split('/', maxsplit=1)[0]}"
    )


class RandomStory:
    """Steps drawn at random, each valid in the state read back after the last one."""

    def __init__(self, seed: int, runs: int) -> None:
        self.rng = random.Random(seed)
        self.runs_left = runs
        self.now = START
        self.counter = 0
        self.keep = [
            f"--keep-source={self.rng.choice(KEEP_SOURCE)}",
            f"--keep-target={self.rng.choice(KEEP_TARGET)}",
        ]
        #: 3.3's tests receive into the target pool itself; a path below it as often
        self.target = self.rng.choice(("{T}", "{T}/bak"))
        self.started = False
        #: a dataset given an invalid value: the next step runs into it, then it is fixed
        self.invalid: Optional[str] = None
        self.fix: Optional[str] = None

    def _n(self) -> int:
        self.counter += 1
        return self.counter

    def __call__(self, state: Optional[State]) -> Optional[Step]:
        rng = self.rng
        if not self.started:
            self.started = True
            extra = ("zfs create {T}/bak",) if self.target != "{T}" else ()
            return Step("set up 3.3's test tree", (*SETUP, *extra))
        assert state is not None
        if self.invalid:
            # an invalid value: one run into it (both must stop before changing
            # anything), then it is put right again
            ds, self.invalid = self.invalid, None
            self.fix = ds
            return self._run(state)
        if self.fix:
            ds, self.fix = self.fix, None
            return Step(f"inherit {PROP} on {ds}", (f"zfs inherit {PROP} {ds}",))
        if self.runs_left <= 0:
            return None
        if rng.random() < 0.45:
            return self._run(state)
        return self._interfere(state)

    def _run(self, state: State, extra: Sequence[str] = ()) -> Step:
        self.runs_left -= 1
        self.now += self.rng.choice(STEPS)
        flags = self.rng.sample(RUN_FLAGS, self.rng.choice((0, 0, 1, 1, 2, 3)))
        keep = [k for k in self.keep if not any(f.startswith(k.split("=")[0]) for f in flags)]
        args = (self.target, "--verbose", *keep, *flags, *extra)
        return Step("run", args=args, now=self.now)

    def _sources(self, state: State) -> list[str]:
        return [d for d in state.datasets if d.split("/")[0] in ("S1", "S2") and "/" in d]

    def _targets(self, state: State) -> list[str]:
        """Target datasets that are finished receives with snapshots."""
        prefix = self.target.replace("{T}", "T") + "/"
        return [
            d
            for d in state.datasets
            if d.startswith(prefix) and state.snapshots.get(d) and d not in state.tokens
        ]

    def _interfere(self, state: State) -> Step:
        rng = self.rng
        sources = self._sources(state)
        targets = self._targets(state)
        choices: list[Callable[[], Step]] = [
            lambda: self._write(rng.choice(sources)),
            lambda: self._write(rng.choice(sources)),
            lambda: self._create(rng.choice(sources)),
            lambda: self._select(rng.choice(sources)),
            lambda: self._foreign_snapshot(rng.choice(sources)),
            lambda: self._interrupted(state, rng.choice(sources)),
        ]
        ours = [
            (ds, snap)
            for ds, snaps in state.snapshots.items()
            if ds.split("/")[0] in ("S1", "S2")
            for snap in snaps
            if snap.startswith(f"{BACKUP}-") and not state.userrefs.get(f"{ds}@{snap}")
        ]
        if ours:
            choices.append(lambda: self._destroy_behind(rng.choice(ours)))
        if targets:
            choices += [
                lambda: self._foreign_snapshot(rng.choice(targets)),
                lambda: self._target_write(rng.choice(targets)),
                lambda: self._clone_target(state, rng.choice(targets)),
            ]
        return rng.choice(choices)()

    def _write(self, ds: str) -> Step:
        kib = self.rng.choice((16, 64, 96))
        return Step(f"write {kib} KiB into {ds}", (_write(tpl(ds), kib, f"f{self._n()}"),))

    def _create(self, ds: str) -> Step:
        name = f"{ds}/n{self._n()}"
        return Step(f"create {name}", (f"zfs create {tpl(name)}",))

    def _select(self, ds: str) -> Step:
        value = self.rng.choice(("true", "false", "child", "parent", "inherit", "inherit", "yes"))
        if value == "inherit":
            return Step(f"inherit {PROP} on {ds}", (f"zfs inherit {PROP} {tpl(ds)}",))
        if value == "yes":
            self.invalid = tpl(ds)
        return Step(f"set {PROP}={value} on {ds}", (f"zfs set {PROP}={value} {tpl(ds)}",))

    def _foreign_snapshot(self, ds: str) -> Step:
        name = f"{ds}@other-{self._n()}"
        return Step(f"another tool snapshots {name}", (f"zfs snapshot {tpl(name)}",))

    def _destroy_behind(self, pick: tuple[str, str]) -> Step:
        name = f"{pick[0]}@{pick[1]}"
        return Step(f"someone destroys {name}", (f"zfs destroy {tpl(name)}",))

    def _target_write(self, ds: str) -> Step:
        t = tpl(ds)
        mount = f'[ "$(zfs get -H -o value mounted {t})" = yes ] || zfs mount {t}'
        return Step(f"someone writes into {ds}", (f"{mount}; {_write(t, 8, f't{self._n()}')}",))

    def _clone_target(self, state: State, ds: str) -> Step:
        snap = self.rng.choice(state.snapshots[ds])
        name = f"T/restore{self._n()}"
        return Step(
            f"someone clones {ds}@{snap} as {name}",
            (f"zfs clone {tpl(f'{ds}@{snap}')} {tpl(name)}",),
        )

    def _interrupted(self, state: State, ds: str) -> Step:
        """3 MiB written, then a run whose transfers stop after 1 MB (a resume token stays
        where the stream was longer)."""
        self.runs_left -= 1
        step = self._run(state, ("--send-pipe", "head -c 1000000"))
        self.runs_left += 1  # (counted by _run)
        return attrs.evolve(
            step,
            what=f"write 3 MiB into {ds}, then an interrupted run",
            ops=(_write(tpl(ds), 3072, f"big{self._n()}"),),
        )


def worlds_for(pools: Sequence[str]) -> list[World]:
    """Six pools (3.3's S1 S2 T, then ours) -> the two worlds."""
    return [
        World("3.3", dict(zip(ROLES, pools[:3]))),
        World("ours", dict(zip(ROLES, pools[3:6]))),
    ]


def summary(reports: Sequence[Report]) -> str:
    runs = sum(r.runs for r in reports)
    diverged = [r for r in reports if r.divergence]
    return json.dumps({"stories": len(reports), "runs": runs, "diverged": len(diverged)})
