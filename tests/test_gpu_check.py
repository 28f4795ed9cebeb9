"""The prepared GPU check (benchmarks/gpu_check.py) runs as written without a GPU: under
Triton's interpreter (`--interpret --quick`, tiny shapes, correctness only) it checks every
kernel family, forward and backward, and a whole training step of the generated kernels
against the jax.numpy reference, and all of them pass."""
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
