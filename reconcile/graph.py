"""The snapshot graph of one source and one target host (networkx: this module owns it;
other modules hold the graph as a SnapshotGraph and ask it through the functions here).

Nodes:
  ("ds", side, name)                a filesystem or volume (attribute `dataset`)
  ("snap", side, dataset, name)     a snapshot (the Snapshot is its dataset's, found by
                                    name: not stored on the node)
Edges (no attributes: an edge's kind follows from its ends, dataset or snapshot, and
their sides):
  child    dataset -> child dataset (parent/child in the name hierarchy)
  next     snapshot -> the next snapshot of the same dataset (createtxg order): an
           incremental send is possible along it
  replica  source snapshot -> target snapshot with the same guid (the same snapshot)
  clone    snapshot -> a dataset cloned from it (origin)

The latest common snapshot of a source/target pair is the newest source snapshot with a
replica edge into the target dataset.

At a million snapshots a side the graph's size is what planning costs, so nodes are
tuples of the strings the model already holds and nothing is stored that the ends of an
edge or the model already say.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Optional, Union

import networkx as nx

from reconcile.gcpause import paused
from reconcile.model import Dataset, HostState, Side, Snapshot

SOURCE, TARGET = Side.SOURCE, Side.TARGET

DsNode = tuple[str, Side, str]
SnapNode = tuple[str, Side, str, str]
Node = Union[DsNode, SnapNode]


class SnapshotGraph:
    """The snapshot graph, as a value: what crosses module boundaries (not nx.DiGraph)."""

    __slots__ = ("_graph",)

    def __init__(self, graph: nx.DiGraph) -> None:
        self._graph = graph


def ds_node(side: Side, name: str) -> DsNode:
    return ("ds", side, name)


def snap_node(side: Side, dataset: str, name: str) -> SnapNode:
    return ("snap", side, dataset, name)


def _add_host(graph: nx.DiGraph, side: Side, state: HostState) -> None:
    # bulk adds: networkx is much faster with add_*_from than with one call per item
    datasets: list[tuple[DsNode, dict[str, object]]] = []
    edges: list[tuple[Node, Node]] = []
    clones: list[tuple[SnapNode, DsNode]] = []
    singles: list[SnapNode] = []
    for ds in state:
        node = ds_node(side, ds.name)
        datasets.append((node, {"dataset": ds}))
        if ds.parent is not None and ds.parent in state.datasets:
            edges.append((ds_node(side, ds.parent), node))
        chain = [("snap", side, snap.dataset, snap.name) for snap in ds.snapshots]
        if len(chain) == 1:
            singles.append(chain[0])
        edges.extend(pairwise(chain))  # (adding an edge adds its ends)
        if ds.origin:
            dataset, _, name = ds.origin.partition("@")
            clones.append((snap_node(side, dataset, name), node))
    graph.add_edges_from(edges)
    graph.add_nodes_from(singles)
    graph.add_nodes_from(datasets)
    graph.add_edges_from(e for e in clones if graph.has_node(e[0]))


@paused
def build(source: HostState, target: Optional[HostState] = None) -> SnapshotGraph:
    graph = nx.DiGraph()
    _add_host(graph, SOURCE, source)
    if target is not None:
        _add_host(graph, TARGET, target)
        by_guid: dict[int, list[Snapshot]] = {}
        for ds in target:
            for snap in ds.snapshots:
                by_guid.setdefault(snap.guid, []).append(snap)
        graph.add_edges_from(
            (
                ("snap", SOURCE, snap.dataset, snap.name),
                ("snap", TARGET, other.dataset, other.name),
            )
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
    succ = snapshots._graph.succ
    for snap in reversed(source.snapshots):
        for other in succ.get(("snap", SOURCE, snap.dataset, snap.name), ()):
            if other[1] is TARGET and other[0] == "snap" and other[2] == target.name:
                found = target.snapshot(other[3])
                if found is not None:
                    return snap, found
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
