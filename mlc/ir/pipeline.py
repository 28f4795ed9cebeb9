"""The pass manager: an ordered list of passes over the graph IR.

Each pass is one file in passes/ (imported as mlc.passes.NAME) with a docstring
saying why it exists and a pure function `run(graph) -> Graph`. `optimize` runs
them in order, times each one and counts ops before and after; it can check the
graph between passes (`verify_each`, on in tests) and keep the IR text after a
named pass (`dump_after`, for `--dump-after PASS`).

    graph, log = optimize(lower_file("examples/titanic.dml"))
    print(log.format())            # per-pass time and op counts
    print(emit(graph, "fused"))    # the IR with its kernel groups
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from .graph import Graph, IRError, print_graph, verify

PASSES = ["infer", "constfold", "simplify", "cse", "dce", "fuse"]
STAGES = {"ir": [], "opt": PASSES[:-1], "fused": PASSES}  # what `--emit STAGE` runs


@dataclass
class PassRecord:
    name: str
    seconds: float
    ops_before: int
    ops_after: int
    groups_after: int


@dataclass
class PassLog:
    records: list[PassRecord] = field(default_factory=list)
    dump: str | None = None  # IR text after the `dump_after` pass

    def format(self) -> str:
        lines = [f"{'pass':<10} {'ms':>8} {'ops':>11}  groups"]
        for r in self.records:
            lines.append(f"{r.name:<10} {1000 * r.seconds:8.2f} {r.ops_before:>4} -> {r.ops_after:<4}  {r.groups_after}")
        total = sum(r.seconds for r in self.records)
        lines.append(f"{'total':<10} {1000 * total:8.2f}")
        return "\n".join(lines) + "\n"


def get_pass(name: str):
    if name not in PASSES:
        raise ValueError(f"unknown pass `{name}`; the passes are: {', '.join(PASSES)}")
    return importlib.import_module(f"mlc.passes.{name}").run


def optimize(graph: Graph, dump_after: str | None = None, verify_each: bool = False,
             passes: list[str] | None = None, print_dump: bool = False) -> tuple[Graph, PassLog]:
    """Run the passes (all of PASSES by default) in order; returns (graph, log).

    dump_after: a pass name; the IR text after it is kept in log.dump (and printed
    when print_dump). verify_each: verify the graph before the first pass and after
    every pass, naming the pass that broke it.
    """
    names = PASSES if passes is None else list(passes)
    for n in names + ([dump_after] if dump_after else []):
        get_pass(n)
    if dump_after and dump_after not in names:
        raise ValueError(f"--dump-after {dump_after}: that pass does not run here ({', '.join(names) or 'none'})")
    log = PassLog()
    if verify_each:
        verify(graph)
    for name in names:
        run = get_pass(name)
        before = len(graph.ops)
        t0 = time.perf_counter()
        graph = run(graph)
        seconds = time.perf_counter() - t0
        if verify_each:
            try:
                verify(graph)
            except IRError as e:
                raise IRError(f"after pass {name}: {e}") from None
        log.records.append(PassRecord(name, seconds, before, len(graph.ops), len(graph.groups)))
        if name == dump_after:
            log.dump = print_graph(graph)
            if print_dump:
                print(f"# IR after {name}\n{log.dump}", end="")
    return graph, log


def emit(graph: Graph, stage: str) -> str:
    """The IR text at a stage: 'ir' (as lowered), 'opt' (optimized), 'fused' (with groups)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage `{stage}`; choose one of {', '.join(STAGES)}")
    return print_graph(optimize(graph, passes=STAGES[stage])[0])


def lower_file(path: str | Path) -> Graph:
    """The graph a .dml program lowers to (preprocessing fitted on its training split)."""
    from mlc.compile import frontend
    from mlc.ir.lower import lower
    from mlc.runtime import data as D, preprocess as P
    fe = frontend(path)
    state = P.fit(fe.resolved, D.take(fe.table, fe.splits["train"]), fe.facts)
    return lower(fe.resolved, state)


def explain_fusion(graph: Graph, optimizer: str = "adamw") -> str:
    """`mlc explain FILE --fusion`: kernel groups, refused fusions and kernel counts
    for the optimized graph (optimizer: the program's, named in the update group)."""
    from mlc.fusion import fusion_report
    return fusion_report(optimize(graph, passes=STAGES["opt"])[0], optimizer)
