"""Planning cost on synthetic input: graph + desire + plan + invariant check, no ZFS.

    .venv/bin/python -m bench.planning [--datasets 2000] [--snapshots 50]

Builds a source with DATASETS datasets of SNAPSHOTS snapshots each (hourly names), a
target holding the older half of each chain, and times each step of the pure pipeline,
with the peak resident memory and networkx's share of time and memory (the graph).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import resource
import time

from planner import invariants
from planner.plan import build_plan
from reconcile import graph as snapgraph
from reconcile.desire import desire
from reconcile.job import Job, Remote, Thinning
from reconcile.model import Dataset, Host, HostState, Selection, Snapshot
from reconcile.naming import Naming
from reconcile.schedule import Schedule

START = 1_767_225_600  # 2026-01-01


def synthetic(datasets: int, snapshots: int) -> tuple[Job, HostState, HostState, float]:
    naming = Naming.create("bench", utc=True)
    names = [naming.snapshot_name(START + h * 3600) for h in range(snapshots)]
    source: dict[str, Dataset] = {}
    target: dict[str, Dataset] = {"backup": Dataset(name="backup", type="filesystem", guid=1)}
    for i in range(datasets):
        name = f"pool/ds{i:05d}"
        snaps = tuple(
            Snapshot(name, s, guid=i * 1000 + n + 10, createtxg=n + 1, creation=0)
            for n, s in enumerate(names)
        )
        sel = Selection("true", "local" if i == 0 else "inherited from pool/ds00000")
        source[name] = Dataset(
            name=name, type="filesystem", guid=i + 5, written=4096, selection=sel, snapshots=snaps
        )
        half = snaps[: snapshots // 2]
        tname = f"backup/{name}"
        target[tname] = Dataset(
            name=tname,
            type="filesystem",
            guid=i + 10**7,
            snapshots=tuple(Snapshot(tname, s.name, s.guid, s.createtxg, 0) for s in half),
        )
    parent = Dataset(name="backup/pool", type="filesystem", guid=2)
    target["backup/pool"] = parent
    job = Job(
        naming=naming,
        remote=Remote(target_path="backup"),
        thinning=Thinning(
            keep_source=Schedule.parse("10,1d1w,1w1m,1m1y"),
            keep_target=Schedule.parse("10,1d1w,1w1m,1m1y"),
        ),
    )
    now = START + snapshots * 3600.0
    return job, HostState(Host(), source), HostState(Host(), target), now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=2000)
    parser.add_argument("--snapshots", type=int, default=50)
    args = parser.parse_args()
    job, source, target, now = synthetic(args.datasets, args.snapshots)
    total_snaps = sum(len(d.snapshots) for d in source) + sum(len(d.snapshots) for d in target)
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steps: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    graph = snapgraph.build(source, target)
    steps.append(("graph (networkx)", time.perf_counter() - t0))
    rss_graph = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t1 = time.perf_counter()
    desired = desire(job, source, target, graph, now, {})
    steps.append(("desire (selection, common snapshots, thinning)", time.perf_counter() - t1))
    t2 = time.perf_counter()
    plan = build_plan(job, desired, source, target)
    steps.append(("plan (actions, DAG, order)", time.perf_counter() - t2))
    t3 = time.perf_counter()
    invariants.check(plan, job, desired)
    steps.append(("invariant check", time.perf_counter() - t3))
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"| {args.datasets} datasets, {total_snaps} snapshots on both sides | seconds |")
    print("|---|---|")
    for name, seconds in steps:
        print(f"| {name} | {seconds:.2f} |")
    print(f"| **total** | **{total:.2f}** |")
    print(f"| peak resident memory | {peak / 1024:.0f} MiB |")
    print(f"| of it, the networkx graph | {(rss_graph - rss_input) / 1024:.0f} MiB |")
    print(f"| actions in the plan | {len(plan.actions)} |")


if __name__ == "__main__":
    main()
