"""Data-parallel training (runtime/devices.py): the same program trained on 1, 2 and 8
devices (forced CPU devices, in a subprocess: XLA reads XLA_FLAGS once per process) gives
the same metrics and parameters up to floating-point noise; a large embedding table is
split over the `model` axis; two processes on 127.0.0.1 reach the one-process result."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers_frontend import cli_env

PROGRAM = """data "rows.csv" split 80/10/10 seed 3
input  x1   : number
input  x2   : number
input  kind : category { encoder = embed(size = 8) }
output y    : binary
train { batch_size = 64, epochs = 3, early_stop = 100 }
"""


def write_data(folder: Path, n: int = 800) -> Path:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    kind = rng.integers(0, 40, size=n)
    y = (x1 + 0.5 * x2 + (kind % 3 == 0) + rng.normal(scale=0.5, size=n)) > 0.3
    lines = ["x1,x2,kind,y"] + [f"{a:.5f},{b:.5f},k{k},{int(c)}" for a, b, k, c in zip(x1, x2, kind, y)]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    program = folder / "p.dml"
    program.write_text(PROGRAM)
    return program


SCRIPT = """
import json, os, sys
import numpy as np
import mlc
from mlc.runtime.run import run
program, out, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
result = {}
for name, devices, shard_min in runs:
    if shard_min:
        os.environ["MLC_SHARD_MIN_BYTES"] = shard_min
    report = run(program, f"{out}/{name}", seed=0, log=lambda m: None, devices=devices)
    params = mlc.load(f"{out}/{name}/model.mlc").params
    result[name] = {"mesh": report["training"]["mesh"], "history": report["training"]["history"],
                    "test": report["metrics"]["test"],
                    "params": {k: np.asarray(v).ravel().tolist() for k, v in params.items()}}
print("RESULT" + json.dumps(result))
"""


def train_in_subprocess(program: Path, out: Path, runs: list, extra_env: dict | None = None) -> dict:
    env = {**cli_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=8", **(extra_env or {})}
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(program), str(out), json.dumps(runs)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def assert_same_training(a: dict, b: dict, tol: float = 2e-4):
    assert len(a["history"]) == len(b["history"])
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=tol, abs=tol)
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=tol, abs=tol)
    assert a["test"]["y"]["roc_auc"] == pytest.approx(b["test"]["y"]["roc_auc"], abs=2e-3)
    assert a["params"].keys() == b["params"].keys()
    for k in a["params"]:
        np.testing.assert_allclose(a["params"][k], b["params"][k], rtol=1e-3, atol=1e-3, err_msg=k)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One subprocess with 8 forced CPU devices: the program on 1, 2 and 8 (the default: all)
    devices, and on 8 with the `kind` table (41 x 8 float32) over the threshold for splitting."""
    folder = tmp_path_factory.mktemp("scale")
    program = write_data(folder)
    return program, train_in_subprocess(program, folder / "runs",
                                        [["d1", 1, None], ["d2", 2, None], ["d8", None, None], ["split", 8, "1000"]])


def test_one_two_and_eight_devices_train_the_same_model(trained):
    _, got = trained
    assert got["d1"]["mesh"]["devices"] == 1
    assert got["d2"]["mesh"]["data"] == 2
    assert got["d8"]["mesh"]["data"] == 8, "every local device is the default"
    assert got["d8"]["mesh"]["sharded"] == {}
    assert_same_training(got["d1"], got["d2"])
    assert_same_training(got["d1"], got["d8"])
    # not trivially equal: the parameters moved far from zero, by more than the tolerance
    assert any(np.abs(np.asarray(v)).max() > 0.05 for v in got["d1"]["params"].values())


def test_a_large_embedding_table_is_split_over_the_model_axis(trained):
    _, got = trained
    mesh = got["split"]["mesh"]
    assert (mesh["data"], mesh["model"]) == (4, 2), mesh
    assert list(mesh["sharded"]) == ["embed.kind"], mesh
    assert "columns split over 2 devices" in mesh["sharded"]["embed.kind"]
    assert_same_training(got["d1"], got["split"])


def test_devices_beyond_the_machine_is_a_clean_error(tmp_path):
    program = write_data(tmp_path, 300)
    p = subprocess.run([sys.executable, "-m", "mlc.cli", "run", str(program), "--out", str(tmp_path / "o"),
                        "--devices", "3"], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert "--devices 3: this machine has 1 cpu device" in p.stderr
    assert "Traceback" not in p.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(trained, tmp_path):
    """Two processes with two forced CPU devices each (4 global devices), joined through
    jax.distributed on 127.0.0.1: process 0 writes the report and the model, and they
    match a one-process run on one device."""
    program, got = trained
    single = got["d1"]
    port = free_port()
    env = {**cli_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = tmp_path / "multi"
    procs = [subprocess.Popen([sys.executable, "-m", "mlc.cli", "run", str(program), "--out", str(out),
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["mesh"]["processes"] == 2
    assert report["training"]["mesh"]["devices"] == 4
    import mlc
    params = {k: np.asarray(v).ravel().tolist() for k, v in mlc.load(out / "model.mlc").params.items()}
    assert_same_training(single, {"history": report["training"]["history"], "test": report["metrics"]["test"],
                                  "params": params})
    assert "wrote" in outs[0][0] and "wrote" not in outs[1][0], "only process 0 writes"
    assert "process 1 of 2: trained; process 0 writes" in outs[1][1]
