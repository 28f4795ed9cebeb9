"""From a graph's kernel groups to generated kernels, PTX and cubin.

The groups come from the middle end (mlc/fusion: `Graph.groups`, read back as a
schedule of `Kernel`s by `mlc.fusion.kernels`); a graph without groups is
planned here with `mlc.fusion.annotate`. Each family maps to a generator:

    elementwise, rowwise, gather, reduce  -> tile.py    (fwd; bwd; fwd_bwd when it ends in a loss)
    matmul_epilogue, matmul               -> matmul.py  (fwd; epilogue bwd + the strided matmul)
    embedding_bag (or a lone embed_bag)   -> embedding_bag.py (fwd; bwd: scatter-add into the table)
    adamw_update, adam_update             -> adamw.py   (one update over the flat parameter buffer)

A group no generator handles is listed in `Generation.skipped` with the reason
(and in `emit_triton`'s output); it runs on the XLA path. So is every group that
touches a value of rank > 2 (a sequence [B, T, D], a conv1d kernel [K, D, F]): the
generators walk [B] and [B, w] rows, and say so rather than index a deeper value wrongly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlc.ir.graph import Graph

from . import aot
from .adamw import adamw_kernel, flat_layout
from .embedding_bag import bag_kernel
from .matmul import epilogue_bwd, matmul_fwd, matmul_kernel
from .spec import KernelArg, KernelSpec, Unsupported, ident
from .tile import tile_kernel

ROW_FAMILIES = ("elementwise", "rowwise", "gather", "reduce")
DEFAULT_ARCHS = ("sm_80", "sm_90")


@dataclass
class Generation:
    specs: list[KernelSpec]
    skipped: list[tuple[str, str]]  # (group or op, why no kernel)
    graph: Graph | None = None


@dataclass
class KernelArtifact:
    name: str
    family: str
    source: str
    ptx: dict[str, str]  # arch ("sm_90") -> PTX text
    cubin: dict[str, bytes]  # arch -> cubin
    signature: dict[str, str]
    variant: str = ""
    group: str | None = None
    args: list[KernelArg] = field(default_factory=list)
    constexprs: dict = field(default_factory=dict)
    grid: tuple[str, ...] = ()
    num_warps: int = 4
    metadata: dict[str, dict] = field(default_factory=dict)  # arch -> shared memory, num_warps, ...
    cache_hits: dict[str, bool] = field(default_factory=dict)

    def manifest_entry(self) -> dict:
        """A JSON-ready description (no binaries): what a runtime needs to launch it."""
        return {"name": self.name, "family": self.family, "variant": self.variant, "group": self.group,
                "archs": sorted(self.ptx), "signature": self.signature, "constexprs": self.constexprs,
                "grid": list(self.grid), "num_warps": self.num_warps,
                "shared": {a: m.get("shared") for a, m in self.metadata.items()},
                "args": [{"name": a.name, "type": a.type, "role": a.role, "value": a.value,
                          "shape": [str(d) for d in a.shape], "zero_init": a.zero_init} for a in self.args]}


def _graph_types(g: Graph) -> dict:
    return {**g.inputs, **{n: p.type for n, p in g.params.items()}, **{op.result: op.type for op in g.ops}}


def check_ranks(k, types: dict) -> None:
    """Unsupported when the kernel reads or computes a value of rank > 2."""
    for v in list(k.inputs) + [op.result for op in k.ops]:
        if len(types[v].shape) > 2:
            op = next((o for o in k.ops if o.result == v), None)
            what = f"%{v} ({op.opcode})" if op is not None else f"%{v}"
            raise Unsupported(f"{what} is {types[v]}, rank {len(types[v].shape)}; the Triton kernels walk "
                              f"[B] and [B, width] rows (a sequence op runs on the XLA path)")


def generate(graph: Graph, *, mode: str = "train", dtype: str = "fp32") -> Generation:
    """Kernel specs for every group of the graph. mode 'train': forward (dropout on, the
    matmul product saved), backward and fused loss kernels, and the optimizer update;
    mode 'eval': inference forwards only. dtype: 'fp32' or 'bf16' for activations."""
    from mlc.fusion import annotate, kernels

    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', not {mode!r}")
    train = mode == "train"
    g = graph if graph.groups else annotate(graph)
    types = _graph_types(g)
    ops = {op.result: op for op in g.ops}
    consts = {r: float(op.attrs["value"]) for r, op in ops.items()
              if op.opcode == "const" and isinstance(op.attrs.get("value"), (int, float))}
    prefix = ident(g.name).lstrip("_") or "g"
    specs: list[KernelSpec] = []
    skipped: list[tuple[str, str]] = []
    need_matmul = False

    for k in kernels(g):
        kname = f"{prefix}_{ident(k.name.lstrip('%')).lstrip('_')}" if not k.name.startswith("%") \
            else f"{prefix}_op{ident(k.name[1:]).lstrip('_')}"
        used_consts = [a for op in k.ops for a in op.args if a in consts]
        inputs = list(k.inputs) + list(dict.fromkeys(used_consts))
        wrt = [v for v in k.inputs if types[v].dtype == "f32" and v not in g.inputs] if train else []
        family = k.family
        is_matmul = any(op.opcode == "matmul" for op in k.ops)
        made: list[KernelSpec] = []  # all of a group's kernels, or none (then it is skipped)
        try:
            check_ranks(k, types)
            if family == "embedding_bag" or any(op.opcode == "embed_bag" for op in k.ops):
                common = dict(consts=consts, io=dtype, train=train, group=k.name)
                made = [bag_kernel(f"{kname}_fwd", k.ops, inputs, k.outputs, types, variant="fwd", **common)]
                if train and wrt:
                    made.append(bag_kernel(f"{kname}_bwd", k.ops, inputs, k.outputs, types, variant="bwd",
                                           wrt=wrt, **common))
            elif is_matmul:
                made.append(matmul_fwd(f"{kname}_fwd", k.ops, inputs, k.outputs, types, consts=consts,
                                       io=dtype, train=train, group=k.name))
                if train:
                    eb = epilogue_bwd(f"{kname}_bwd", k.ops, inputs, k.outputs, types, wrt=wrt, consts=consts,
                                      io=dtype, train=train, group=k.name)
                    if eb is not None:
                        made.append(eb)
            elif family in ROW_FAMILIES or family in {op.opcode for op in k.ops}:
                fam = family if family in ROW_FAMILIES else "elementwise"
                common = dict(consts=consts, io=dtype, train=train, family=fam, group=k.name)
                made.append(tile_kernel(f"{kname}_fwd", k.ops, inputs, k.outputs, types, variant="fwd", **common))
                if train and wrt:
                    made.append(tile_kernel(f"{kname}_bwd", k.ops, inputs, k.outputs, types, variant="bwd",
                                            wrt=wrt, **common))
                    ends_in_loss = any(types[o].shape == () for o in k.outputs)
                    if ends_in_loss and any(types[v].shape[:1] == ("B",) for v in k.inputs):
                        made.append(tile_kernel(f"{kname}_fwd_bwd", k.ops, inputs, k.outputs, types,
                                                variant="fwd_bwd", wrt=wrt, **common))
            else:
                raise Unsupported(f"family `{family}` has no Triton generator")
            specs.extend(made)
            need_matmul = need_matmul or (is_matmul and train)
        except Unsupported as e:
            skipped.append((k.name, str(e)))
    if need_matmul:
        specs.append(matmul_kernel(f"{prefix}_matmul", io=dtype))
    if train:
        for grp in g.groups:
            if grp.family in ("adamw_update", "adam_update"):
                spec = adamw_kernel(f"{prefix}_{ident(grp.name).lstrip('_')}_update", group=grp.name,
                                    grad_dtype=dtype)
                layout = flat_layout({p: tuple(g.params[p].type.shape) for p in grp.members if p in g.params})
                spec.extra = {"order": layout.order, "offsets": layout.offsets, "n_decay": layout.n_decay,
                              "size": layout.size, "weight_decay": grp.family == "adamw_update"}
                specs.append(spec)
            elif grp.family.endswith("_update"):
                skipped.append((grp.name, f"optimizer `{grp.family}` has no Triton kernel"))
    return Generation(specs, skipped, g)


def _specs(graph_or_groups, **kw) -> Generation:
    """A Graph (its groups, or groups planned here), a Generation, or a list of KernelSpec."""
    if isinstance(graph_or_groups, Generation):
        return graph_or_groups
    if isinstance(graph_or_groups, Graph):
        return generate(graph_or_groups, **kw)
    specs = list(graph_or_groups)
    if not all(isinstance(s, KernelSpec) for s in specs):
        raise TypeError("expected a Graph, a Generation or a list of KernelSpec")
    return Generation(specs, [])


def compile_kernels(graph_or_groups, archs=DEFAULT_ARCHS, **kw) -> list[KernelArtifact]:
    """Every kernel of the graph (or the given specs), compiled for each architecture.
    Keyword arguments go to `generate` (mode='train'|'eval', dtype='fp32'|'bf16')."""
    gen = _specs(graph_or_groups, **kw)
    out = []
    for spec in gen.specs:
        art = KernelArtifact(spec.name, spec.family, spec.source, {}, {}, spec.signature, spec.variant, spec.group,
                             list(spec.args), dict(spec.constexprs), tuple(spec.grid), spec.num_warps)
        for arch in archs:
            c = aot.compile_spec(spec, arch)
            art.ptx[c.arch] = c.ptx
            art.cubin[c.arch] = c.cubin
            art.metadata[c.arch] = c.metadata
            art.cache_hits[c.arch] = c.cache_hit
        out.append(art)
    return out


def emit_triton(graph_or_groups, **kw) -> str:
    """All generated kernel sources, each under a comment naming its arguments."""
    gen = _specs(graph_or_groups, **kw)
    parts = [f"# {len(gen.specs)} Triton kernels" + (f" for graph {gen.graph.name}" if gen.graph else "")]
    for spec in gen.specs:
        parts.append(spec.describe() + "\n" + spec.source)
    if gen.skipped:
        parts.append("# groups left to the XLA path:\n" + "\n".join(f"#   {n}: {why}" for n, why in gen.skipped))
    return "\n\n".join(parts) + "\n"


def emit_ptx(graph_or_groups, arch="sm_90", **kw) -> str:
    """The PTX of every kernel for one architecture."""
    gen = _specs(graph_or_groups, **kw)
    parts = []
    for spec in gen.specs:
        c = aot.compile_spec(spec, arch)
        parts.append(f"// kernel {spec.name} ({spec.family} {spec.variant}) for {c.arch}\n{c.ptx}")
    return "\n".join(parts)
