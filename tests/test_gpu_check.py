"""The prepared GPU check (benchmarks/gpu_check.py) runs as written without a GPU: under
Triton's interpreter (`--interpret --quick`, tiny shapes, correctness only) it checks every
kernel family, forward and backward, a whole training step of the generated kernels
against the jax.numpy reference, and the whole jitted step built from mlc_fused primitives
(launcher "interpret") against the XLA one, and all of them pass."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
FAMILIES = ("elementwise", "matmul_epilogue", "rowwise", "gather", "adamw_update")


@pytest.fixture(scope="module")
def interpreted_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    out = tmp / "gpu_check.json"
    env = {**os.environ, "MLC_CACHE_DIR": str(tmp / "cache"), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, str(SCRIPT), "--interpret", "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    return r, json.loads(out.read_text()) if out.exists() else None


def test_interpreted_check_passes(interpreted_run):
    r, data = interpreted_run
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert data is not None and data["ok"]
    assert "ALL PASS" in r.stdout
    failed = [(k["source"], k["kernel"], k["error"]) for k in data["kernels"] if not k["ok"]]
    assert not failed
    assert all(s["ok"] for s in data["steps"]) and {s["program"] for s in data["steps"]} == {"credit", "diamonds"}


def test_fused_step_section_runs_through_the_interpreter(interpreted_run):
    r, data = interpreted_run
    fused = data["fused_steps"]
    assert fused and all(s["ok"] and not s["skipped"] and s["launcher"] == "interpret" for s in fused), fused
    assert all(s["max_rel"] is not None and s["xla_over_fused"] is None for s in fused)
    title = "Whole jitted training step: mlc_fused (Triton kernels via jax-triton) vs XLA"
    assert title in r.stdout
    section = r.stdout.split(title)[1].split("ALL PASS")[0]
    for s in fused:
        assert any(line.split()[:3] == [s["program"], str(s["batch"]), "interpret"] and "PASS" in line.split()
                   for line in section.splitlines()), (s["program"], section)
    # timing path exercised once; no error from it
    assert all(s["error"] is None and "timing path run once" in s["note"] for s in fused)


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_fused_step_is_skipped_when_cuda_kernel_calls_are_unavailable(monkeypatch):
    jax = pytest.importorskip("jax")
    gc = _load_script()
    gc._import_mlc()
    from mlc.backends.triton import jax_call
    monkeypatch.setattr(jax_call, "cuda_kernel_calls", lambda: "no serializer here (test)")
    cfg = gc.Config(warmup=1, reps=1, inner=1)
    row = gc.fused_step_check("credit", None, 128, "triton", jax.devices("cpu")[0], None, cfg)
    assert row["skipped"] == "no serializer here (test)" and not row["ok"]
    text = "\n".join(gc.fused_section([row], interp=False))
    assert "SKIPPED" in text and "skipped: no serializer here (test)" in text


def test_table_has_a_row_per_family_forward_and_backward(interpreted_run):
    r, data = interpreted_run
    rows = {(f["family"], f["dir"]): f for f in data["families"]}
    for fam in FAMILIES[:4]:
        assert (fam, "fwd") in rows and (fam, "bwd") in rows, (fam, sorted(rows))
    assert ("rowwise", "fwd+bwd") in rows and ("adamw_update", "update") in rows
    assert all(f["ok"] and f["passed"] == f["kernels"] for f in rows.values())
    # the printed families table: one line per (family, direction), every one fully correct
    section = r.stdout.split("Families")[1].split("Training step")[0]
    for (fam, d), f in rows.items():
        assert any(line.split()[:4] == [fam, d, str(f["kernels"]), f"{f['kernels']}/{f['kernels']}"]
                   for line in section.splitlines()), (fam, d)
    # both programs' generated kernels are in the table (not only the catalog's)
    assert {k["source"] for k in data["kernels"]} == {"credit", "diamonds", "catalog"}


def test_header_names_device_versions_and_date(interpreted_run):
    r, data = interpreted_run
    meta = data["meta"]
    assert meta["mode"] == "interpreter" and "Triton interpreter" in meta["device"]
    assert {"jax", "jaxlib", "triton"} <= set(meta["versions"])
    head = r.stdout.split("Kernels")[0]
    assert meta["date"][:10] in head and "triton" in head and "jaxlib" in head and "device:" in head
    # no GPU timings under the interpreter
    assert all(k["ratio"] is None for k in data["kernels"])
