"""The result of fusion: kernel groups, the plan that chooses them, and the report.

`plan(graph)` partitions the ops into kernels. It starts from one kernel per op and
tries candidate fusions best first (cost.py's score): a producer into the kernel
of its consumer (vertical), and two kernels that read the same value (siblings).
A fusion happens when legality.py allows it and cost.py finds it worth it; every
candidate left unfused keeps a one-line reason. Elementwise chains are not picked
from a menu: they appear wherever consecutive legal fusions connect them.

Groups are annotations (`Graph.groups`): the ops stay in `graph.ops`, so the
interpreter and the JAX back end compute exactly what they computed before.
`kernels(graph)` turns the annotations into a schedule of `Kernel`s (ops, inputs,
outputs) for code generators; `run_kernels` executes that schedule kernel by kernel
with the interpreter, which tests use to check that every group is self-contained.
The optimizer update is not in the forward graph; it is described by one group over
every param (family `<optimizer>_update`), which a back end implements as one kernel.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from mlc.ir.graph import Graph, Group, Op, TensorType, clone, consumers

from . import cost, legality

MAX_SIBLINGS = 16  # consumers of one value considered pairwise for sibling fusion


@dataclass
class Kernel:
    name: str  # the group's name, or the op's value for an unfused op
    family: str
    ops: list[Op]  # in graph order (constants it reads are not listed; see subgraph)
    inputs: list[str]  # values read from memory: inputs, params, other kernels' outputs
    outputs: list[str]  # values other kernels or the graph's outputs read


@dataclass
class Plan:
    groups: list[Group]  # op groups (2+ ops) in schedule order, then the optimizer group
    refusals: list[str]  # one line each
    saved: dict[str, cost.Benefit] = field(default_factory=dict)  # group name -> what fusing saved


@dataclass(frozen=True)
class _Candidate:
    kind: str  # "edge": b reads a (as argument `via`); "siblings": a and b both read value `via`
    a: str
    b: str
    via: int | str
    benefit: cost.Benefit


def _types(g: Graph) -> dict[str, TensorType]:
    return {**g.inputs, **{n: p.type for n, p in g.params.items()}, **{op.result: op.type for op in g.ops}}


class _Partition:
    def __init__(self, g: Graph):
        self.ops = {op.result: op for op in g.ops if op.opcode != "const"}
        self.index = {r: i for i, r in enumerate(self.ops)}
        self.consts = {op.result for op in g.ops if op.opcode == "const"}
        self.users = {v: [u for u in us if u in self.ops] for v, us in consumers(g).items()}
        self.outputs = set(g.outputs.values())
        self.types = _types(g)
        self.gid = {r: r for r in self.ops}
        self.members = {r: {r} for r in self.ops}
        self.saved = {r: cost.Benefit(0, 0) for r in self.ops}
        # each group's first and last op in graph order, to bound path searches
        self.first = dict(self.index)
        self.last = dict(self.index)

    def succ(self, group: str) -> set[str]:
        return {self.gid[u] for m in self.members[group] for u in self.users.get(m, ())} - {group}

    def path_via_other(self, a: str, b: str) -> bool:
        """Is there a path a -> X -> ... -> b with X another kernel? (merging would close a cycle)

        Every op a group reaches comes after that group's first op in graph order, so a
        group whose first op is after b's last op cannot reach b: the search stays near
        a and b instead of walking the rest of the graph (linear planning on deep graphs)."""
        limit = self.last[b]
        stack, seen = [x for x in self.succ(a) if x != b], set()
        while stack:
            x = stack.pop()
            if x == b:
                return True
            if x not in seen and self.first[x] <= limit:
                seen.add(x)
                stack.extend(self.succ(x))
        return False

    def n_inputs(self, merged: set[str]) -> int:
        """Distinct tensors the kernel reads from memory (constants are literals)."""
        return len({a for r in merged for a in self.ops[r].args if a not in merged and a not in self.consts})

    def check(self, cand: _Candidate) -> str | None:
        """None if the candidate fusion should happen, else the reason it does not."""
        ga, gb = self.gid[cand.a], self.gid[cand.b]
        merged = self.members[ga] | self.members[gb]
        if cand.kind == "edge":
            err = legality.edge_error(self.ops[cand.a], self.ops[cand.b], cand.via, self.users[cand.a],
                                      merged, self.outputs)
            if err:
                return err
        err = legality.group_error(merged, self.ops, self.users, self.outputs, self.types,
                                   focus=cand.b if cand.kind == "edge" else None, index=self.index)
        if err:
            return err
        if self.path_via_other(ga, gb) or self.path_via_other(gb, ga):
            return "another kernel lies on a path between them; fusing would make kernels depend on each other in a cycle"
        return cost.decline(cand.benefit, len(merged), self.n_inputs(merged))

    def merge(self, cand: _Candidate):
        ga, gb, benefit = self.gid[cand.a], self.gid[cand.b], cand.benefit
        keep, drop = sorted((ga, gb), key=self.index.__getitem__)
        self.members[keep] |= self.members.pop(drop)
        self.first[keep] = min(self.first[keep], self.first.pop(drop))
        self.last[keep] = max(self.last[keep], self.last.pop(drop))
        b1, b2 = self.saved[keep], self.saved.pop(drop)
        self.saved[keep] = cost.Benefit(b1.bytes_saved + b2.bytes_saved + benefit.bytes_saved,
                                        b1.kernels_saved + b2.kernels_saved + benefit.kernels_saved)
        for r in self.members[keep]:
            self.gid[r] = keep


def plan(graph: Graph, optimizer: str = "adamw") -> Plan:
    """Choose kernel groups for a graph (its existing groups are ignored)."""
    part = _Partition(graph)
    cands, seen = [], set()
    for c in part.ops.values():
        for i, a in enumerate(c.args):
            if a in part.ops and (a, c.result) not in seen:
                seen.add((a, c.result))
                cands.append(_Candidate("edge", a, c.result, i, cost.vertical(part.types[a], a in part.outputs)))
    for v, us in part.users.items():
        us = us[:MAX_SIBLINGS]
        for j in range(len(us)):
            for k in range(j + 1, len(us)):
                cands.append(_Candidate("siblings", us[j], us[k], v, cost.sibling(part.types[v])))
    cands.sort(key=lambda c: -c.benefit.score)  # best first; stable, so ties stay in graph order

    changed = True
    while changed:  # a merge can make an earlier-refused candidate legal: repeat until none fires
        changed = False
        for cand in cands:
            if part.gid[cand.a] != part.gid[cand.b] and part.check(cand) is None:
                part.merge(cand)
                changed = True

    refusals = []
    for cand in sorted(cands, key=lambda c: (part.index[c.b], part.index[c.a])):
        if part.gid[cand.a] == part.gid[cand.b]:
            continue
        if cand.kind == "siblings":
            fams = {legality.family([part.ops[r] for r in part.members[part.gid[z]]]) for z in (cand.a, cand.b)}
            if fams & {"matmul_epilogue", "other"}:
                continue  # matmuls read their operands tile by tile: no sibling fusion to explain
            refusals.append(f"%{cand.a} + %{cand.b} (both read %{cand.via}) refused: {part.check(cand)}")
        else:
            refusals.append(f"%{cand.a} -> %{cand.b} refused: {part.check(cand)}")

    order = _schedule([sorted(m, key=part.index.__getitem__) for m in part.members.values()], part.ops)
    groups, saved = [], {}
    for members in order:
        if len(members) < 2:
            continue
        name = f"k{len(groups)}"
        groups.append(Group(name, legality.family([part.ops[r] for r in members]), tuple(members)))
        saved[name] = part.saved[part.gid[members[0]]]
    if graph.params:
        groups.append(Group("opt", f"{optimizer}_update", tuple(graph.params)))
    return Plan(groups, refusals, saved)


def _schedule(member_lists: list[list[str]], ops: dict[str, Op]) -> list[list[str]]:
    """Kernels in an order where each runs after the kernels it reads (ties: graph order)."""
    index = {r: i for i, r in enumerate(ops)}
    of = {r: k for k, ms in enumerate(member_lists) for r in ms}
    deps = {k: {of[a] for r in ms for a in ops[r].args if a in of and of[a] != k}
            for k, ms in enumerate(member_lists)}
    waiting = {k: len(d) for k, d in deps.items()}
    readers: dict[int, list[int]] = {}
    for k, d in deps.items():
        for j in d:
            readers.setdefault(j, []).append(k)
    ready = [(index[member_lists[k][0]], k) for k, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out = []
    while ready:  # Kahn's algorithm, the earliest ready kernel (in graph order) first
        _, k = heapq.heappop(ready)
        out.append(member_lists[k])
        for j in readers.get(k, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (index[member_lists[j][0]], j))
    if len(out) < len(member_lists):
        raise ValueError("kernel groups depend on each other in a cycle")
    return out


def annotate(graph: Graph, optimizer: str = "adamw") -> Graph:
    """A copy of the graph with the planned groups attached."""
    g = clone(graph)
    g.groups = plan(graph, optimizer).groups
    return g


# ---- reading groups back: the schedule of kernels ---------------------------------
def kernels(graph: Graph) -> list[Kernel]:
    """Every kernel the annotated graph runs, in order: one per op group and one per
    ungrouped op (constants are literals, not kernels). The optimizer group is not here."""
    ops = {op.result: op for op in graph.ops}
    grouped = {}
    member_lists, families, names = [], [], []
    for grp in graph.groups:
        ms = [m for m in grp.members if m in ops]
        if ms:
            member_lists.append(ms)
            families.append(grp.family)
            names.append(grp.name)
            grouped.update({m: grp.name for m in ms})
    for op in graph.ops:
        if op.result not in grouped and op.opcode != "const":
            member_lists.append([op.result])
            families.append(legality.kind(op) if legality.kind(op) != "other" else op.opcode)
            names.append(f"%{op.result}")
    order = _schedule(member_lists, {op.result: op for op in graph.ops if op.opcode != "const"})
    pos = {id(ms): k for k, ms in enumerate(member_lists)}
    users = consumers(graph)
    outputs = set(graph.outputs.values())
    result = []
    for ms in order:
        k = pos[id(ms)]
        mset = set(ms)
        kops = [op for op in graph.ops if op.result in mset]
        ins = []
        for op in kops:
            for a in op.args:
                if a not in mset and a not in ins and not (a in ops and ops[a].opcode == "const"):
                    ins.append(a)
        outs = [r for r in ms if r in outputs or any(u not in mset for u in users.get(r, ()))]
        result.append(Kernel(names[k], families[k], kops, ins, outs))
    return result


def subgraph(graph: Graph, kernel: Kernel) -> Graph:
    """One kernel as a standalone graph: what it reads becomes inputs, what it writes outputs."""
    types = _types(graph)
    sub = Graph(kernel.name)
    for v in kernel.inputs:
        sub.inputs[v] = types[v]
    mset = {op.result for op in kernel.ops}
    consts = [op for op in graph.ops if op.opcode == "const" and op.result not in mset
              and any(op.result in k.args for k in kernel.ops)]
    sub.ops = [Op(o.result, o.opcode, o.args, dict(o.attrs), o.type) for o in consts + kernel.ops]
    sub.outputs = {v: v for v in kernel.outputs}
    return sub


def run_kernels(graph: Graph, params: dict, inputs: dict, wanted: list[str] | None = None, **kw) -> dict:
    """Run the annotated graph one kernel at a time through the interpreter."""
    from mlc.ir.interp import run_graph
    env = {**params, **inputs}
    for k in kernels(graph):
        sub = subgraph(graph, k)
        env.update(run_graph(sub, {}, {v: env[v] for v in k.inputs}, **kw))
    wanted = list(graph.outputs) if wanted is None else wanted
    return {w: env[graph.outputs[w]] for w in wanted}


# ---- the human-readable report -------------------------------------------------------
def fusion_report(graph: Graph, optimizer: str = "adamw") -> str:
    """Kernel groups with their ops, refused fusions with reasons, kernel counts."""
    p = plan(graph, optimizer)
    g = clone(graph)
    g.groups = p.groups
    ks = kernels(g)
    before = sum(1 for op in g.ops if op.opcode != "const")
    lines = [f"fusion of graph {g.name}: {before} kernels unfused -> {len(ks)} fused "
             f"(unfused: one per op, not counting inputs, params and constants)"]
    opt = [grp for grp in p.groups if grp.family.endswith("_update")]
    if opt:
        lines.append(f"optimizer: one {opt[0].family} kernel over all {len(opt[0].members)} params "
                     f"(unfused: one update per param)")
    lines.append("")
    lines.append("kernels, in execution order:")
    for k in ks:
        body = ", ".join(f"%{op.result} {op.opcode}" for op in k.ops)
        io = f"reads {_vals(k.inputs)}; writes {_vals(k.outputs)}"
        if len(k.ops) > 1:
            b = p.saved.get(k.name)
            saves = f"; saves {b.kernels_saved} kernel{'s' if b.kernels_saved != 1 else ''}, " \
                    f"{cost.human(b.bytes_saved)} of traffic" if b else ""
            lines.append(f"  {k.name} {k.family}: {body}")
            lines.append(f"      {io}{saves}")
        else:
            lines.append(f"  {body} (unfused): {io}")
    if opt:
        lines.append(f"  {opt[0].name} {opt[0].family}: {_vals(opt[0].members)}")
    lines.append("")
    lines.append(f"refused fusions ({len(p.refusals)}):" if p.refusals else "refused fusions: none")
    lines += [f"  {r}" for r in p.refusals]
    return "\n".join(lines) + "\n"


def _vals(vs) -> str:
    return ", ".join(f"%{v}" for v in vs) if vs else "nothing"
