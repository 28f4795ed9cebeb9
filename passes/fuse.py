"""Fusion: annotate the graph with kernel groups (mlc/fusion/).

Why: each op run as its own kernel writes its result to memory and the next reads
it back; fused kernels keep intermediates in registers and launch less often.
This pass only attaches `Graph.groups` (the ops are unchanged, so results are
unchanged); mlc.fusion.fusion_report explains the choice. Run it last: passes
that rewrite ops drop stale groups.
"""
from __future__ import annotations

from mlc.fusion import annotate
from mlc.ir.graph import Graph


def run(graph: Graph) -> Graph:
    return annotate(graph)
