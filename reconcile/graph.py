"""The snapshot graph of one source and one target host (networkx: this module owns it;
other modules hold the graph as a SnapshotGraph and ask it through the functions here).

Nodes:
  ("ds", side, name)          a filesystem or volume (attribute `dataset`)
  ("snap", side, full_name)   a snapshot (attribute `snapshot`: dataset, name, guid, ...)
Edges (attribute `kind`):
  child    dataset -> child dataset (parent/child in the name hierarchy)
  next     snapshot -> the next snapshot of the same dataset (createtxg order): an
           incremental send is possible along it
  replica  source snapshot -> target snapshot with the same guid (the same snapshot)
  clone    snapshot -> a dataset cloned from it (origin)

The latest common snapshot of a source/target pair is the newest source snapshot with a
replica edge into the target dataset.
"""

from __future__ import annotations

from typing import Optional

import networkx as nx

from reconcile.model import Dataset, HostState, Side, Snapshot

SOURCE, TARGET = Side.SOURCE, Side.TARGET


class SnapshotGraph:
    """The snapshot graph, as a value: what crosses module boundaries (not nx.DiGraph)."""

    __slots__ = ("_graph",)

    def __init__(self, graph: nx.DiGraph) -> None:
        self._graph = graph


def ds_node(side: Side, name: str) -> tuple[str, str, str]:
    return ("ds", side, name)


def snap_node(side: Side, full_name: str) -> tuple[str, str, str]:
    return ("snap", side, full_name)


def _add_host(graph: nx.DiGraph, side: Side, state: HostState) -> None:
    # bulk adds: networkx is much faster with add_*_from than with one call per item
    nodes: list[tuple[tuple[str, str, str], dict[str, object]]] = []
    edges: list[tuple[tuple[str, str, str], tuple[str, str, str], dict[str, str]]] = []
    child, nxt, clone = {"kind": "child"}, {"kind": "next"}, {"kind": "clone"}
    for ds in state:
        node = ds_node(side, ds.name)
        nodes.append((node, {"kind": "ds", "dataset": ds}))
        if ds.parent is not None and ds.parent in state.datasets:
            edges.append((ds_node(side, ds.parent), node, child))
        prev = None
        for snap in ds.snapshots:
            s_node = snap_node(side, snap.full_name)
            nodes.append((s_node, {"kind": "snap", "snapshot": snap}))
            if prev is not None:
                edges.append((prev, s_node, nxt))
            prev = s_node
        if ds.origin:
            edges.append((snap_node(side, ds.origin), node, clone))
    graph.add_nodes_from(nodes)
    graph.add_edges_from(e for e in edges if e[2] is not clone or graph.has_node(e[0]))


def build(source: HostState, target: Optional[HostState] = None) -> SnapshotGraph:
    graph = nx.DiGraph()
    _add_host(graph, SOURCE, source)
    if target is not None:
        _add_host(graph, TARGET, target)
        by_guid: dict[int, list[Snapshot]] = {}
        for ds in target:
            for snap in ds.snapshots:
                by_guid.setdefault(snap.guid, []).append(snap)
        replica = {"kind": "replica"}
        graph.add_edges_from(
            (snap_node(SOURCE, snap.full_name), snap_node(TARGET, other.full_name), replica)
            for ds in source
            for snap in ds.snapshots
            for other in by_guid.get(snap.guid, ())
        )
    return SnapshotGraph(graph)


def latest_common(
    snapshots: SnapshotGraph, source: Dataset, target: Optional[Dataset]
) -> Optional[tuple[Snapshot, Snapshot]]:
    """(source snapshot, target snapshot) of the newest snapshot both hold, by guid."""
    if target is None:
        return None
    graph = snapshots._graph
    for snap in reversed(source.snapshots):
        for _, replica, kind in graph.out_edges(snap_node(SOURCE, snap.full_name), data="kind"):
            if kind == "replica":
                other: Snapshot = graph.nodes[replica]["snapshot"]
                if other.dataset == target.name:
                    return snap, other
    return None


def latest_common_by_name(
    source: Dataset, target: Optional[Dataset]
) -> Optional[tuple[Snapshot, Snapshot]]:
    """The same by snapshot name only (--no-guid-check)."""
    if target is None:
        return None
    names = {snap.name: snap for snap in target.snapshots}
    for snap in reversed(source.snapshots):
        if snap.name in names:
            return snap, names[snap.name]
    return None
