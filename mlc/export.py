"""`mlc compile SOURCE --target gpu|cpu|tpu`: a compiled artifact (`.mlcc`) to ship.

SOURCE is a `.dml` program (the artifact holds the training step, an initializer
and the inference function, for a team that compiles once and trains elsewhere)
or a trained `model.mlc` (the artifact holds inference with the weights, ready to
embed in a service). The programs are serialized with `jax.export` for the
target's platform; nothing is pickled.

    target  platforms   Triton kernels
    gpu     ("cuda",)   PTX + cubin for each arch (default sm_80, sm_90; --arch picks one)
    cpu     ("cpu",)    none
    tpu     ("tpu",)    none

A `.mlcc` file is a zip archive:

    manifest.json          format "mlc-compiled/1", source, target, platforms, archs,
                           versions (mlc, jax, jaxlib, optax, triton), each program's
                           inputs and outputs (shapes with the symbolic batch "b",
                           dtypes), the kernels (family, name, archs, files, sizes),
                           the resolved program and the preprocessing state
    inference.jax          model: inference(inputs) -> {output: prediction}; the trained
                           weights are closed over as constants, so a service calls it
                           with the encoded inputs only.
                           program: inference(params, inputs) -> {output: prediction}
    train_step.ARCH.jax    gpu program only: the same step calling the Triton kernels
    train_step.jax         program only: train_step(params, opt_state, batch, key)
                           -> (params, opt_state, loss); one optimizer step (forward,
                           gradient, optax update) with dropout on; opt_state is the
                           optax state as a flat list of arrays (its tree structure
                           holds optax classes, which jax.export does not serialize)
    init.jax               program only: init(key) -> (params, opt_state), the
                           initializer and optimizer state `mlc run` starts from
    program.dml, model.ir  the resolved program and the optimized graph, for people
    kernels/NAME.py        gpu only: the generated Triton source of each kernel
    kernels/NAME.ARCH.ptx, kernels/NAME.ARCH.cubin

`inputs` are the encoded arrays the preprocessing produces (`x_num`: float32[b, W],
`cat_NAME`: int32[b]); `batch` adds the encoded targets `y_NAME`; `key` is a raw
`jax.random.PRNGKey` (uint32[2]). Every batch size b >= 1 runs the same program.

Triton kernels in the programs: for `gpu` from a `.dml`, `train_step.ARCH.jax` (one
per architecture) is the same step with every fused group an `mlc_fused` primitive
and the AdamW update the `mlc_adamw` primitive (on the same optax state), lowered
through jax-triton: a `triton_kernel_call` custom call per kernel launch. Kernel
launches are planned for one batch size, so these programs take the program's batch
size; `train_step.jax` and `inference.jax` stay XLA programs for any
batch size (inference is not the hot loop). Writing kernel calls needs JAX's CUDA
kernel-call serializer (`jax_call.cuda_kernel_calls`); without it the gpu artifact
holds XLA programs only and `manifest.programs.train_step.kernel_calls.why` says why.
Every kernel also ships as PTX and cubin with its launch metadata.

`mlc.load(PATH.mlcc)` returns a `CompiledModel` for an artifact compiled from a
model (runtime/compiled.py, which a service imports without this compiler): it encodes
rows with the stored preprocessing state and runs the deserialized `inference.jax`. An
artifact for a platform this machine lacks is refused with an ArtifactError that says why.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from mlc.diagnostics import Diagnostic, MlcError, UserError
from mlc.runtime.artifact import COMPILED_FORMAT as FORMAT
from mlc.runtime.compiled import CompiledModel, available_platforms, load_compiled, read_program, runnable_device

SUFFIX = ".mlcc"
TARGETS = {"gpu": ("cuda",), "cpu": ("cpu",), "tpu": ("tpu",)}
DEFAULT_ARCHS = ("sm_80", "sm_90")


def _versions() -> dict:
    from mlc.runtime.artifact import versions
    out = versions()
    for pkg in ("triton", "jax-triton", "flatbuffers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


# ---- reading SOURCE ---------------------------------------------------------------
@dataclass
class Source:
    kind: str  # "program" (a .dml) | "model" (a trained model.mlc)
    path: Path
    resolved: object  # spec.Resolved
    state: dict  # preprocessing state
    graph: object  # the optimized Graph (what `mlc run` trains)
    program_text: str
    params: dict | None = None  # model only: the trained weights
    n_train: int | None = None  # program only: rows in the training split
    model_manifest: dict | None = None  # model only


def _artifact_format(path: Path) -> str | None:
    from mlc.runtime.manifest import ManifestError, read_manifest
    try:
        with zipfile.ZipFile(path) as z:
            fmt = read_manifest(z).get("format")  # bounded: a damaged archive cannot exhaust memory
            return fmt if isinstance(fmt, str) else None
    except (zipfile.BadZipFile, ManifestError, OSError, EOFError):
        return None


def source_kind(source: str | Path) -> str:
    """'program' or 'model'; a clean user error for anything else."""
    from mlc.runtime.artifact import FORMAT as MODEL_FORMAT
    p = Path(source)
    if not p.exists():
        raise MlcError(Diagnostic("no such file", file=str(p),
                                  hint="SOURCE is a .dml program or a model.mlc written by `mlc run`"))
    if p.is_dir():
        raise MlcError(Diagnostic("this is a folder, not a .dml program or a model.mlc", file=str(p)))
    if p.suffix == ".dml":
        return "program"
    fmt = _artifact_format(p)
    if fmt == MODEL_FORMAT:
        return "model"
    if fmt == FORMAT:
        raise MlcError(Diagnostic("this is already a compiled artifact", file=str(p),
                                  hint="compile the .dml program or the model.mlc it was made from"))
    raise MlcError(Diagnostic("not a .dml program or a trained model.mlc" +
                              (f" (an archive of format {fmt!r})" if fmt else ""), file=str(p),
                              hint="SOURCE is a .dml program or a model.mlc written by `mlc run`"))


def read_source(source: str | Path, log=None) -> Source:
    from mlc.ir.pipeline import optimize
    p = Path(source)
    kind = source_kind(p)
    if kind == "model":
        from mlc.runtime import artifact
        if log:
            log(f"loading the trained model {p}")
        m = artifact.load(p)
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        return Source("model", p, m.resolved, m.state, m.graph, m.program_text,
                      params={k: np.asarray(v) for k, v in m.params.items()},
                      model_manifest={**{k: m.manifest.get(k) for k in ("format", "created", "versions")},
                                      "sha256": digest})
    from mlc.compile import frontend
    from mlc.explain import explain
    from mlc.ir.lower import lower
    from mlc.runtime import data as D, preprocess as P
    if log:
        log(f"checking {p} and fitting preprocessing on its training split")
    fe = frontend(p)
    state = P.fit(fe.resolved, D.take(fe.table, fe.splits["train"]), fe.facts)  # as pipeline.lower_file does
    graph, _ = optimize(lower(fe.resolved, state))
    return Source("program", p, fe.resolved, state, graph, explain(fe.resolved), n_train=len(fe.splits["train"]))


# ---- the exported programs --------------------------------------------------------
def _sds(t, b):
    import jax
    import jax.numpy as jnp
    shape = tuple(b if d == "B" else int(d) for d in t.shape)
    return jax.ShapeDtypeStruct(shape, {"f32": jnp.float32, "i32": jnp.int32}[t.dtype])


def _describe(avals) -> list[dict]:
    """[{name, shape, dtype}] for a dict of avals (shapes with the symbolic batch as "b")."""
    return [{"name": k, "shape": [d if isinstance(d, int) else str(d) for d in v.shape], "dtype": str(v.dtype)}
            for k, v in avals.items()]


def _out_avals(exp) -> dict:
    import jax
    return jax.tree_util.tree_unflatten(exp.out_tree, exp.out_avals)


def _inference_inputs(graph, wanted) -> list[str]:
    from mlc.ir.graph import live_ops
    used = {a for op in live_ops(graph, wanted) for a in op.args}
    used |= {graph.outputs[w] for w in wanted}
    return [n for n in graph.inputs if n in used]


def export_programs(src: Source, platforms: tuple[str, ...], log=print,
                    archs: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """({file name: serialized program}, {program name: description for the manifest})."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax import export

    from mlc.backends import jax_backend
    from mlc.runtime.train import fused_update, make_optimizer

    g = src.graph
    b, = export.symbolic_shape("b")
    outputs = [f["name"] for f in src.resolved.outputs]
    wanted = [f"pred.{o}" for o in outputs]
    forward = jax_backend.build(g, wanted)
    in_names = _inference_inputs(g, wanted)
    in_specs = {n: _sds(g.inputs[n], b) for n in in_names}
    pspecs = {n: _sds(p.type, b) for n, p in g.params.items()}
    files, programs = {}, {}
    where = ", ".join(platforms)

    if src.kind == "model":
        weights = {k: jnp.asarray(v) for k, v in src.params.items()}

        def inference(inputs):  # weights closed over: embedded in the program as constants
            preds = forward(weights, inputs)
            return {o: preds[f"pred.{o}"] for o in outputs}
        log(f"exporting inference (trained weights as constants) for {where}")
        exp = export.export(jax.jit(inference), platforms=platforms)(in_specs)
        programs["inference"] = {"file": "inference.jax", "call": "inference(inputs) -> {output: prediction}",
                                 "weights": "constants", "inputs": _describe(in_specs),
                                 "outputs": _describe(_out_avals(exp))}
        files["inference.jax"] = exp.serialize()
        return files, programs

    def inference(params, inputs):
        preds = forward(params, inputs)
        return {o: preds[f"pred.{o}"] for o in outputs}
    log(f"exporting inference (parameters as arguments) for {where}")
    exp = export.export(jax.jit(inference), platforms=platforms)(pspecs, in_specs)
    programs["inference"] = {"file": "inference.jax", "call": "inference(params, inputs) -> {output: prediction}",
                             "weights": "arguments", "params": _describe(pspecs), "inputs": _describe(in_specs),
                             "outputs": _describe(_out_avals(exp))}
    files["inference.jax"] = exp.serialize()

    # One optimizer step, as runtime/train.py takes it (the schedule's length from the
    # training split's size, as `mlc run` computes it).
    cfg = src.resolved.train
    batch_size = min(cfg["batch_size"], src.n_train)
    steps_per_epoch = max(1, src.n_train // batch_size)
    total_steps = steps_per_epoch * cfg["epochs"]
    optimizer = make_optimizer(cfg, total_steps)
    opt_tree = jax.tree_util.tree_structure(jax.eval_shape(optimizer.init, pspecs))
    loss_fn = jax_backend.build(g, ["loss"])
    batch_specs = {n: _sds(t, b) for n, t in g.inputs.items()}
    key_spec = jax.ShapeDtypeStruct((2,), jnp.uint32)

    def train_step_of(loss_fn, fused=None):
        def train_step(params, opt_state, batch, key):
            state = jax.tree_util.tree_unflatten(opt_tree, opt_state)
            loss, grads = jax.value_and_grad(lambda p: loss_fn(p, batch, key, True)["loss"])(params)
            if fused is not None:  # the mlc_adamw primitive on the same optax state
                params, state = fused.update(grads, state, params)
            else:
                updates, state = optimizer.update(grads, state, params)
                params = optax.apply_updates(params, updates)
            return params, jax.tree_util.tree_leaves(state), loss
        return train_step
    train_step = train_step_of(loss_fn)

    def init(key):
        params = jax_backend.init_params(g, key)
        return params, jax.tree_util.tree_leaves(optimizer.init(params))

    log(f"exporting init and train_step ({cfg['optimizer']['name']}, {total_steps} scheduled steps) for {where}")
    exp_init = export.export(jax.jit(init), platforms=platforms)(key_spec)
    opt_specs = jax.tree_util.tree_unflatten(exp_init.out_tree, exp_init.out_avals)[1]
    exp_step = export.export(jax.jit(train_step), platforms=platforms)(pspecs, opt_specs, batch_specs, key_spec)
    opt_desc = [{"name": str(i), "shape": list(a.shape), "dtype": str(a.dtype)} for i, a in enumerate(opt_specs)]
    files["init.jax"] = exp_init.serialize()
    files["train_step.jax"] = exp_step.serialize()
    programs["init"] = {"file": "init.jax", "call": "init(key) -> (params, opt_state)",
                        "inputs": [{"name": "key", "shape": [2], "dtype": "uint32"}],
                        "outputs": {"params": _describe(pspecs), "opt_state": opt_desc}}
    programs["train_step"] = {
        "file": "train_step.jax", "call": "train_step(params, opt_state, batch, key) -> (params, opt_state, loss)",
        "params": _describe(pspecs), "opt_state": opt_desc, "opt_state_tree": str(opt_tree),
        "batch": _describe(batch_specs), "key": {"shape": [2], "dtype": "uint32"},
        "outputs": {"loss": {"shape": [], "dtype": "float32"}},
        "optimizer": cfg["optimizer"], "schedule": cfg["schedule"], "grad_clip": cfg["grad_clip"],
        "batch_size": batch_size, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "dropout": "on (train mode); the key seeds it"}
    if "cuda" in platforms and archs:
        kernel_steps(g, archs, train_step_of, (pspecs, opt_specs, batch_size, key_spec), files, programs, log,
                     update_of=lambda cc: fused_update(cfg, total_steps, g, compute_capability=cc))
    return files, programs


def kernel_steps(g, archs, train_step_of, specs, files: dict, programs: dict, log=print, update_of=lambda cc: None):
    """train_step.ARCH.jax for each arch: the same step with every fused group a
    Triton kernel call (the `mlc_fused` primitive lowered through jax-triton). Kernel
    launches are planned for one batch size (the program's), so these programs take
    exactly that many rows; train_step.jax stays the XLA program for any batch.
    update_of(cc): the optimizer step as the `mlc_adamw` primitive (None: optax's)."""
    import jax
    from jax import export

    from mlc.backends.triton import jax_call, primitive

    why = jax_call.cuda_kernel_calls()
    if why is not None:
        log(f"the cuda train_step calls no Triton kernels: {why}")
        programs["train_step"]["kernel_calls"] = {"embedded": False, "why": why}
        return
    pspecs, opt_specs, rows, key_spec = specs
    batch_specs = {n: _sds(t, rows) for n, t in g.inputs.items()}
    for arch in archs:
        cc = int(arch[3:])
        step = train_step_of(primitive.build(g, ["loss"], launcher="triton", compute_capability=cc), update_of(cc))
        log(f"exporting train_step with Triton kernel calls for cuda {arch} (batch {rows})")
        exp = export.export(jax.jit(step), platforms=["cuda"],
                            disabled_checks=[export.DisabledSafetyCheck.custom_call("triton_kernel_call")])(
            pspecs, opt_specs, batch_specs, key_spec)
        name = f"train_step.{arch}.jax"
        files[name] = exp.serialize()
        n_calls = exp.mlir_module().count("stablehlo.custom_call @triton_kernel_call")
        programs[f"train_step.{arch}"] = {
            "file": name, "call": programs["train_step"]["call"], "arch": arch, "batch": _describe(batch_specs),
            "triton_kernel_calls": n_calls,
            "note": "custom calls with no compatibility guarantee: run it with the jax, jaxlib, jax-triton and "
                    "triton versions in the manifest"}
    programs["train_step"]["kernel_calls"] = {"embedded": True, "programs": [f"train_step.{a}.jax" for a in archs]}


# ---- Triton kernels -----------------------------------------------------------------
def _archs(target: str, arch: str | None) -> tuple[str, ...]:
    if arch is None:
        return DEFAULT_ARCHS if target == "gpu" else ()
    if target != "gpu":
        raise UserError(f"--arch applies to --target gpu only (not --target {target})")
    from mlc.backends.triton.aot import arch_name
    try:
        name = arch_name(arch)
    except ValueError as e:
        raise UserError(str(e)) from None
    if int(name[3:]) < 70:
        raise UserError(f"Triton needs a GPU architecture sm_70 or newer, not `{arch}`")
    return (name,)


def _need_triton():
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is implicit
    try:
        import triton  # noqa: F401
    except ImportError:
        raise UserError("--target gpu compiles Triton kernels and needs triton: pip install 'mlc[gpu]'") from None


def compile_gpu_kernels(src: Source, archs: tuple[str, ...], log=print) -> tuple[dict, list, list]:
    """({zip path: bytes}, [manifest entries], [skipped groups]) for the optimized graph:
    training kernels (forward, backward, fused loss, optimizer update) for a program,
    inference forwards for a model."""
    _need_triton()
    from mlc.backends.triton import compile_kernels, generate
    gen = generate(src.graph, mode="train" if src.kind == "program" else "eval")
    log(f"compiling {len(gen.specs)} Triton kernels for {', '.join(archs)} (cached by source and target)")
    try:
        arts = compile_kernels(gen, archs=archs)
    except Exception as e:
        if tuple(archs) == DEFAULT_ARCHS:  # tested in the suite: a failure here is a bug, keep its traceback
            raise
        raise UserError(f"Triton could not compile the kernels for {', '.join(archs)}: {e}") from e
    files, entries = {}, []
    for a in arts:
        e = a.manifest_entry()
        src_path = f"kernels/{a.name}.py"
        files[src_path] = a.source.encode()
        e["files"] = {"source": src_path, "ptx": {}, "cubin": {}}
        e["sizes"] = {"source": len(files[src_path])}
        for arch in sorted(a.ptx):
            ptx, cubin = a.ptx[arch].encode(), a.cubin[arch]
            e["files"]["ptx"][arch] = f"kernels/{a.name}.{arch}.ptx"
            e["files"]["cubin"][arch] = f"kernels/{a.name}.{arch}.cubin"
            files[e["files"]["ptx"][arch]], files[e["files"]["cubin"][arch]] = ptx, cubin
            e["sizes"][arch] = {"ptx": len(ptx), "cubin": len(cubin)}
        entries.append(e)
    skipped = [{"group": n, "reason": why} for n, why in gen.skipped]
    for s in skipped:
        log(f"  no Triton kernel for {s['group']}: {s['reason']} (it runs on the XLA path)")
    return files, entries, skipped


# ---- compile_target ---------------------------------------------------------------
def _kernels_note(target: str, programs: dict) -> str:
    if target != "gpu":
        return "XLA programs (the jax.numpy lowering of the graph); no Triton kernels."
    with_calls = sorted(n for n, p in programs.items() if p.get("triton_kernel_calls"))
    if with_calls:
        return (f"{', '.join(with_calls)}: the training step with each fused group a Triton kernel call "
                "(jax-triton custom calls, one program per arch, for the batch size shown); the other programs "
                "are XLA programs for any batch size. The kernels' PTX and cubin are also shipped alongside.")
    why = programs.get("train_step", {}).get("kernel_calls", {}).get("why", "a model artifact holds inference only")
    return ("The exported programs are XLA programs; the Triton kernels are compiled ahead of time and shipped "
            f"alongside with their launch metadata, not called by the programs ({why}).")


def compile_target(source: Path, target: str, arch: str | None = None, out: Path | None = None,
                   log=print) -> Path:
    """Compile SOURCE (.dml or model.mlc) for `target` into a .mlcc archive; returns its path."""
    from mlc.ir.graph import print_graph
    if target not in TARGETS:
        raise UserError(f"unknown target `{target}`; choose one of: {', '.join(TARGETS)}")
    archs = _archs(target, arch)
    if target == "gpu":
        _need_triton()
    source = Path(source)
    src = read_source(source, log)
    platforms = TARGETS[target]
    default_name = f"{source.stem}.{target}{SUFFIX}"
    out = source.with_name(default_name) if out is None else Path(out)
    if out.is_dir():
        out = out / default_name

    files, programs = export_programs(src, platforms, log, archs)
    kernels, skipped = [], []
    if target == "gpu":
        kfiles, kernels, skipped = compile_gpu_kernels(src, archs, log)
        files.update(kfiles)

    main = programs["inference"]
    manifest = {
        "format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"kind": src.kind, "file": source.name, **({"model": src.model_manifest} if src.model_manifest else {})},
        "target": target, "platforms": list(platforms), "archs": list(archs),
        "versions": _versions(),
        "inputs": main["inputs"], "outputs": main["outputs"],
        "programs": programs,
        "kernels": kernels, "kernels_skipped": skipped,
        "kernels_in_programs": sorted(n for n, p in programs.items() if p.get("triton_kernel_calls")),
        "note": _kernels_note(target, programs),
        "file": src.resolved.file, "resolved": src.resolved.to_json(), "preprocessing": src.state,
    }
    from mlc.runtime.manifest import describe_members
    members = {"program.dml": src.program_text.encode(), "model.ir": print_graph(src.graph).encode(),
               **{name: bytes(data) for name, data in files.items()}}
    manifest["members"] = describe_members(members)  # sizes bound reading; sha256 catches damage
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(manifest, indent=1))
            for name, data in members.items():
                z.writestr(name, data)
        tmp.replace(out)  # never leave a half-written artifact behind
    finally:
        tmp.unlink(missing_ok=True)
    n_bin = sum(len(e["archs"]) for e in kernels)
    log(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {', '.join(f for f in files if f.endswith('.jax'))} "
        f"for {', '.join(platforms)}" + (f"; {len(kernels)} Triton kernels ({n_bin} PTX + cubin)" if kernels else ""))
    return out


def emit(source: str | Path, what: str, arch: str | None = None) -> str:
    """`--emit triton|ptx`: the generated kernels' source, or their PTX for one
    architecture (default sm_90). Training kernels for a .dml, inference ones for a model."""
    if what not in ("triton", "ptx"):
        raise UserError(f"unknown --emit `{what}`; choose triton or ptx")
    src = read_source(source)
    mode = "train" if src.kind == "program" else "eval"
    from mlc.backends.triton import emit_ptx, emit_triton
    if what == "triton":
        return emit_triton(src.graph, mode=mode)
    _need_triton()
    name = _archs("gpu", arch or "sm_90")[0]
    return emit_ptx(src.graph, arch=name, mode=mode)


__all__ = ["FORMAT", "SUFFIX", "TARGETS", "DEFAULT_ARCHS", "CompiledModel", "Source", "available_platforms",
           "compile_target", "emit", "load_compiled", "read_program", "read_source", "runnable_device", "source_kind"]
