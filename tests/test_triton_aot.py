"""Every generated kernel compiled ahead of time for sm_80 and sm_90 on this CPU-only
machine (Triton's bundled ptxas), and the compile cache: hit on a second call, keyed
by source, signature, constants, target and Triton version."""
import os

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is implicit

import time  # noqa: E402

import pytest  # noqa: E402

triton = pytest.importorskip("triton")

from mlc.backends.triton import aot, compile_kernels, emit_ptx, emit_triton, generate  # noqa: E402
from mlc.backends.triton import catalog as C  # noqa: E402
from mlc.backends.triton.matmul import matmul_fwd  # noqa: E402
from mlc.backends.triton.tile import tile_kernel  # noqa: E402

ARCHS = ("sm_80", "sm_90")


@pytest.fixture(scope="module")
def cache(kernel_cache):
    return kernel_cache



def _specs():
    """Every kernel an example program generates (matmul epilogue fwd and bwd, gather,
    loss group fwd/bwd/fwd_bwd, the strided matmul, AdamW), plus the families the
    examples do not reach (the elementwise chain, layer norm, embedding, the other
    losses) and bf16 variants."""
    from helpers_ir import example_graph

    from mlc.ir.pipeline import optimize
    g, _ = optimize(example_graph("penguins"))
    specs = list(generate(g).specs)
    for case, variants in [(C.elementwise_chain(53), ("fwd", "bwd")), (C.layernorm(53, "gelu"), ("fwd", "bwd")),
                           (C.embedding(11, 13), ("fwd", "bwd")), (C.assemble(), ("bwd",)),
                           (C.row_loss("bce_logits"), ("fwd_bwd",)), (C.row_loss("huber"), ("fwd_bwd",))]:
        for v in variants:
            specs.append(tile_kernel(f"cat_{case.name}_{v}", case.ops, case.inputs, case.outputs, case.types,
                                     variant=v, wrt=case.wrt if v != "fwd" else (), family=case.family))
    chain = C.elementwise_chain(53)
    specs.append(tile_kernel("cat_chain_bf16_bwd", chain.ops, chain.inputs, chain.outputs, chain.types,
                             variant="bwd", wrt=chain.wrt, io="bf16"))
    mm = C.matmul_epilogue(53, 29, "gelu")
    specs.append(matmul_fwd("cat_matmul_bf16_fwd", mm.ops, mm.inputs, mm.outputs, mm.types, io="bf16"))
    return specs


@pytest.fixture(scope="module")
def compiled(cache):
    specs = _specs()
    t0 = time.perf_counter()
    arts = compile_kernels(specs, archs=ARCHS)
    return specs, arts, time.perf_counter() - t0


def test_every_kernel_compiles_for_sm80_and_sm90(compiled):
    specs, arts, _ = compiled
    assert [a.name for a in arts] == [s.name for s in specs]
    families = {a.family for a in arts}
    assert {"elementwise", "rowwise", "gather", "matmul_epilogue", "matmul", "adamw_update"} <= families
    for a in arts:
        assert set(a.ptx) == set(ARCHS) == set(a.cubin)
        for arch in ARCHS:
            ptx = a.ptx[arch]
            assert f".target {arch}" in ptx, (a.name, arch)  # sm_90 PTX says sm_90a
            assert f".entry {a.name}(" in ptx, a.name
            assert a.cubin[arch][:4] == b"\x7fELF" and len(a.cubin[arch]) > 1000, (a.name, arch)
            assert a.metadata[arch]["num_warps"] == a.num_warps
            assert not a.cache_hits[arch]
        assert a.signature == {**{x.name: x.type for x in a.args}, **{k: "constexpr" for k in a.constexprs}}


def test_second_compile_is_a_cache_hit(compiled, monkeypatch):
    specs, first, first_seconds = compiled

    def refuse(*args, **kwargs):
        raise AssertionError("triton.compile called on a cache hit")

    monkeypatch.setattr(triton, "compile", refuse)
    t0 = time.perf_counter()
    again = compile_kernels(specs, archs=ARCHS)
    seconds = time.perf_counter() - t0
    for a, b in zip(first, again):
        assert all(b.cache_hits.values()), b.name
        assert a.ptx == b.ptx and a.cubin == b.cubin
    assert seconds < first_seconds / 5, (seconds, first_seconds)


def test_cache_key_covers_source_arch_constants_and_triton_version(compiled, monkeypatch):
    spec = compiled[0][0]
    key = aot.cache_key(spec, "sm_90")
    assert aot.cache_key(spec, "sm_80") != key
    import copy
    other = copy.deepcopy(spec)
    other.source = spec.source.replace("pid = ", "pid = 0 + ", 1)
    assert aot.cache_key(other, "sm_90") != key
    other = copy.deepcopy(spec)
    other.constexprs = {k: v * 2 for k, v in spec.constexprs.items()}
    assert aot.cache_key(other, "sm_90") != key
    monkeypatch.setattr(triton, "__version__", "0.0.0")
    assert aot.cache_key(spec, "sm_90") != key


def test_cache_lives_under_mlc_cache_dir(compiled, cache):
    specs, arts, _ = compiled
    entries = list((cache / "triton" / "aot").iterdir())
    assert len(entries) == len(specs) * len(ARCHS)
    assert all((e / "kernel.cubin").exists() and (e / "kernel.ptx").exists() for e in entries)


def test_emit_triton_and_ptx_for_an_example(cache):
    from helpers_ir import example_graph

    from mlc.ir.pipeline import optimize
    g, _ = optimize(example_graph("titanic"))
    text = emit_triton(g)
    gen = generate(g)
    assert text.count("@triton.jit") == len(gen.specs)
    for s in gen.specs:
        assert f"def {s.name}(" in text
    ptx = emit_ptx(gen, arch="sm_90")
    assert ptx.count(".target sm_90") == len(gen.specs)
    eval_gen = generate(g, mode="eval")
    assert {s.variant for s in eval_gen.specs} == {"fwd"}
    assert "tl.rand" not in emit_triton(eval_gen)  # dropout is the identity at inference
