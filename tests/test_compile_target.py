"""`mlc compile SOURCE --target gpu|cpu|tpu` (mlc/export.py) on this CPU-only machine:
a gpu artifact with the exported cuda program and Triton kernels (PTX + cubin for
sm_80 and sm_90), a cpu artifact of a trained model that `mlc.load` runs with the
same predictions as the model.mlc (and that a fresh process runs with jax alone),
a tpu export, the refusal of an artifact this machine cannot run, and clean errors
for a bad SOURCE."""
import os

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is implicit

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pytest  # noqa: E402

import mlc  # noqa: E402
from mlc.diagnostics import MlcError, UserError  # noqa: E402
from mlc.export import FORMAT, compile_target, emit, read_program  # noqa: E402
from mlc.runtime.artifact import ArtifactError  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
quiet = lambda *a: None  # noqa: E731


def _manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("manifest.json"))


@pytest.fixture(scope="module")
def cache(kernel_cache):
    """A fresh Triton kernel cache, so the gpu test compiles for real."""
    return kernel_cache



@pytest.fixture(scope="module")
def trained(example_run):
    """A penguins model trained with `mlc run` (conftest: the run test_run.py also reads),
    and the same model compiled for cpu."""
    _, out = example_run("penguins")
    compiled = compile_target(out / "model.mlc", "cpu", None, None, log=quiet)
    return out / "model.mlc", compiled


@pytest.fixture(scope="module")
def titanic_gpu(cache, tmp_path_factory):
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("titanic") / "titanic.gpu.mlcc"
    return compile_target(EXAMPLES / "titanic.dml", "gpu", None, out, log=quiet)


def test_gpu_artifact_lists_cuda_and_kernels_for_sm_90(titanic_gpu):
    m = _manifest(titanic_gpu)
    assert m["format"] == FORMAT and m["target"] == "gpu" and m["platforms"] == ["cuda"]
    assert m["archs"] == ["sm_80", "sm_90"] and m["source"]["kind"] == "program"
    assert m["versions"]["jax"] and m["versions"]["jaxlib"] and m["versions"]["triton"]
    assert {i["name"]: i["shape"] for i in m["inputs"]} == {"x_num": ["b", 17], "cat_passenger_class": ["b"]}
    families = {k["family"] for k in m["kernels"]}
    assert {"gather", "matmul_epilogue", "rowwise", "adamw_update"} <= families
    with zipfile.ZipFile(titanic_gpu) as z:
        names = set(z.namelist())
        assert {"inference.jax", "train_step.jax", "init.jax", "program.dml", "model.ir"} <= names
        for k in m["kernels"]:
            assert k["archs"] == ["sm_80", "sm_90"]
            for arch in k["archs"]:
                ptx = z.read(k["files"]["ptx"][arch]).decode()
                assert f".target {arch}" in ptx and len(ptx) == k["sizes"][arch]["ptx"]
                assert z.read(k["files"]["cubin"][arch])[:4] == b"\x7fELF"  # a CUDA ELF binary
            assert "@triton.jit" in z.read(k["files"]["source"]).decode()
    for name in ("inference", "train_step", "init"):
        assert read_program(titanic_gpu, name).platforms == ("cuda",)
    step = read_program(titanic_gpu, "train_step")
    assert str(step.in_avals[-2].shape[0]) == "b"  # the batch dimension is symbolic


def test_gpu_training_step_calls_the_triton_kernels(titanic_gpu, cuda_kernel_calls):
    """train_step.ARCH.jax: the step with every fused group a jax-triton kernel call,
    one program per architecture, for the program's batch size (64 for titanic)."""
    m = _manifest(titanic_gpu)
    assert m["kernels_in_programs"] == ["train_step.sm_80", "train_step.sm_90"]
    assert m["versions"]["jax-triton"] and "Triton kernel call" in m["note"]
    for arch in ("sm_80", "sm_90"):
        entry = m["programs"][f"train_step.{arch}"]
        # 5 forwards (the loss one fused with its gradient) + 3 epilogue backwards + 3 dW
        # + 2 dX (the first layer's dX feeds no parameter: dead, removed) + 1 AdamW update
        assert entry["triton_kernel_calls"] == 14 and entry["arch"] == arch
        step = read_program(titanic_gpu, f"train_step.{arch}")
        assert step.platforms == ("cuda",)
        assert step.in_avals[-2].shape[0] == 64  # kernel launches are planned for the batch size
        text = step.mlir_module()
        assert text.count("stablehlo.custom_call @triton_kernel_call") == 14 and "dot_general" not in text
        # the same signature as train_step.jax: init.jax's optimizer state feeds it
        xla = read_program(titanic_gpu, "train_step")
        n = len(xla.in_avals) - len(m["programs"]["train_step"]["batch"]) - 1  # params and optimizer state
        assert [a.shape for a in step.in_avals[:n]] == [a.shape for a in xla.in_avals[:n]]


def test_gpu_artifact_is_refused_on_a_cpu_machine(titanic_gpu):
    with pytest.raises(ArtifactError) as e:
        mlc.load(titanic_gpu)
    msg = str(e.value)
    assert "compiled for cuda (sm_80, sm_90)" in msg and "this machine has only cpu" in msg
    assert "--target cpu" in msg


def test_emit_triton_and_ptx(cache, titanic_gpu):
    src = emit(EXAMPLES / "titanic.dml", "triton")
    assert "@triton.jit" in src and "model_opt_update" in src
    ptx = emit(EXAMPLES / "titanic.dml", "ptx", "sm_90")  # from the kernel cache the gpu compile filled
    assert ".target sm_90" in ptx and "// kernel model_k0_fwd" in ptx


def test_cpu_artifact_of_a_trained_model_predicts_the_same(trained):
    model_path, compiled = trained
    m = _manifest(compiled)
    assert m["platforms"] == ["cpu"] and m["kernels"] == [] and m["source"]["kind"] == "model"
    assert m["programs"]["inference"]["weights"] == "constants"
    rows = pacsv.read_csv(EXAMPLES / "data" / "penguins.csv")
    before, after = mlc.load(model_path), mlc.load(compiled)
    assert type(after).__name__ == "CompiledModel"
    a, b = before.predict(rows), after.predict(rows)
    assert a["species"] == b["species"]
    np.testing.assert_allclose(b["species_probability"], a["species_probability"], atol=1e-5)
    ra, rb = before.predict_raw(rows), after.predict_raw(rows.slice(0, 7))  # another batch size, same program
    np.testing.assert_allclose(rb["species"], ra["species"][:7], atol=1e-5)
    one = after.predict([{"island": "Biscoe", "bill_length_mm": 50.0, "bill_depth_mm": 15.0,
                          "flipper_length_mm": 220, "body_mass_g": 5500, "sex": "male", "year": 2008}])
    assert one["species"] == ["Gentoo"]


FRESH = textwrap.dedent("""
    import sys, zipfile
    import jax, numpy as np
    blob = zipfile.ZipFile(sys.argv[1]).read("inference.jax")
    exp = jax.export.deserialize(bytearray(blob))
    with np.load(sys.argv[2]) as f:
        inputs = {k: f[k] for k in f.files}
    out = exp.call(inputs)
    np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in out.items()})
    print("mlc" in sys.modules)
""")


def test_exported_inference_runs_in_a_fresh_process_with_jax_alone(trained, tmp_path):
    from mlc.runtime import preprocess as P
    model_path, compiled = trained
    model = mlc.load(model_path)
    rows = pacsv.read_csv(EXAMPLES / "data" / "penguins.csv").slice(0, 33)
    enc = P.encode_inputs(model.resolved, model.state, rows)
    np.savez(tmp_path / "in.npz", **{i["name"]: enc[i["name"]] for i in _manifest(compiled)["inputs"]})
    r = subprocess.run([sys.executable, "-c", FRESH, str(compiled), str(tmp_path / "in.npz"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"  # served without importing mlc
    with np.load(tmp_path / "out.npz") as f:
        np.testing.assert_allclose(f["species"], model.predict_raw(rows)["species"], atol=1e-5)


def test_program_artifact_trains_and_infers_in_a_fresh_process(tmp_path):
    """A .dml compiled for cpu: init, a few train steps (the loss falls), inference."""
    out = compile_target(EXAMPLES / "penguins.dml", "cpu", None, tmp_path / "p.cpu.mlcc", log=quiet)
    m = _manifest(out)
    assert m["source"]["kind"] == "program" and set(m["programs"]) == {"inference", "train_step", "init"}
    from mlc.compile import frontend
    from mlc.runtime import data as D, preprocess as P
    from mlc.runtime.artifact import resolved_from_json
    fe = frontend(EXAMPLES / "penguins.dml")
    resolved = resolved_from_json(m["resolved"], m["file"])
    rows = D.take(fe.table, fe.splits["train"][:64])
    batch = {**P.encode_inputs(resolved, m["preprocessing"], rows), **P.encode_targets(resolved, m["preprocessing"], rows)}
    np.savez(tmp_path / "batch.npz", **{b["name"]: batch[b["name"]] for b in m["programs"]["train_step"]["batch"]})
    script = textwrap.dedent("""
        import sys, zipfile
        import jax, numpy as np
        z = zipfile.ZipFile(sys.argv[1])
        init, step, infer = (jax.export.deserialize(bytearray(z.read(n + ".jax")))
                             for n in ("init", "train_step", "inference"))
        with np.load(sys.argv[2]) as f:
            batch = {k: f[k] for k in f.files}
        params, opt = init.call(jax.random.PRNGKey(0))
        losses = []
        for i in range(30):
            params, opt, loss = step.call(params, opt, batch, jax.random.PRNGKey(i + 1))
            losses.append(float(loss))
        preds = infer.call(params, {k: v for k, v in batch.items() if not k.startswith("y_")})
        p = np.asarray(preds["species"])
        assert p.shape == (64, 3) and np.allclose(p.sum(1), 1, atol=1e-5), p.shape
        print(losses[0], losses[-1])
    """)
    r = subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "batch.npz")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first, last = map(float, r.stdout.split())
    assert np.isfinite(first) and last < first
    with pytest.raises(ArtifactError, match="holds no trained weights"):
        mlc.load(out)


def test_tpu_target_exports_for_tpu(trained, tmp_path):
    model_path, _ = trained
    out = compile_target(model_path, "tpu", None, tmp_path, log=quiet)  # --out a folder: the default name in it
    assert out == tmp_path / "model.tpu.mlcc"
    m = _manifest(out)
    assert m["target"] == "tpu" and m["platforms"] == ["tpu"] and m["kernels"] == [] and m["archs"] == []
    assert read_program(out, "inference").platforms == ("tpu",)
    with pytest.raises(ArtifactError, match="compiled for tpu and this machine has only cpu"):
        mlc.load(out)


def test_default_output_is_next_to_the_source(trained):
    model_path, compiled = trained
    assert compiled == model_path.with_name("model.cpu.mlcc") and compiled.is_file()


def test_bad_source_and_options_are_clean_user_errors(tmp_path, trained):
    with pytest.raises(MlcError, match="no such file"):
        compile_target(tmp_path / "missing.dml", "cpu", None, None, log=quiet)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(MlcError, match="not a .dml program or a trained model.mlc"):
        compile_target(csv, "cpu", None, None, log=quiet)
    broken = tmp_path / "model.mlc"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MlcError, match="not a .dml program or a trained model.mlc"):
        compile_target(broken, "cpu", None, None, log=quiet)
    with pytest.raises(MlcError, match="already a compiled artifact"):
        compile_target(trained[1], "cpu", None, None, log=quiet)
    with pytest.raises(UserError, match="unknown target `fpga`"):
        compile_target(EXAMPLES / "penguins.dml", "fpga", None, None, log=quiet)
    with pytest.raises(UserError, match="--arch applies to --target gpu only"):
        compile_target(EXAMPLES / "penguins.dml", "cpu", "sm_90", None, log=quiet)
    with pytest.raises(UserError, match="unknown GPU architecture"):
        compile_target(EXAMPLES / "penguins.dml", "gpu", "volta", None, log=quiet)
    with pytest.raises(UserError, match="choose triton or ptx"):
        emit(EXAMPLES / "penguins.dml", "sass")
