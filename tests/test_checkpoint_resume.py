"""Checkpoints and `mlc run --resume` (runtime/checkpoint.py): a run killed with SIGKILL
in the middle of training resumes from its last checkpoint and ends with the parameters
of an uninterrupted run; a changed program, data file or seed is refused, naming it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mlc
from helpers_frontend import cli_env
from mlc.runtime.run import run

PROGRAM = """data "rows.csv" split 80/10/10 seed 3
input  x1   : number
input  x2   : number
input  kind : category
output y    : binary
train { batch_size = 32, epochs = 14, early_stop = 100, optimizer = adamw(lr = 0.003) }
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(1)
    n = 6000
    x1, x2, kind = rng.normal(size=n), rng.normal(size=n), rng.integers(0, 30, size=n)
    y = (x1 - x2 + (kind % 4 == 0) + rng.normal(scale=0.7, size=n)) > 0
    lines = ["x1,x2,kind,y"] + [f"{a:.5f},{b:.5f},k{k},{int(c)}" for a, b, k, c in zip(x1, x2, kind, y)]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    (folder / "p.dml").write_text(PROGRAM)
    return folder / "p.dml"


def steps(out: Path) -> list[int]:
    folder = out / ".mlc" / "checkpoint"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def mlc_run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlc.cli", "run", *args], env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_a_killed_run_resumes_to_the_uninterrupted_result(program, tmp_path):
    whole = tmp_path / "whole"
    run(program, whole, seed=0, log=lambda m: None)
    killed = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "mlc.cli", "run", str(program), "--out", str(killed)],
                         env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    try:  # kill it once it has a checkpoint, in the middle of the next epochs
        while time.time() < deadline and p.poll() is None and not steps(killed):
            time.sleep(0.02)
        time.sleep(0.4)
        assert p.poll() is None, "the run ended before it could be killed: " + p.stderr.read()[-2000:]
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    at = steps(killed)
    assert len(at) == 1 and 1 <= at[0] < 14, at  # one complete checkpoint, kept; no model yet
    assert not (killed / "model.mlc").exists()
    r = mlc_run(str(program), "--out", str(killed), "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming after epoch {at[0]}" in r.stderr
    a, b = (json.loads((d / "report.json").read_text()) for d in (whole, killed))
    assert b["training"]["resumed_from_epoch"] == at[0]
    assert a["training"]["history"] == b["training"]["history"]
    assert a["metrics"] == b["metrics"]
    pa, pb = mlc.load(whole / "model.mlc").params, mlc.load(killed / "model.mlc").params
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(np.asarray(pa[k]), np.asarray(pb[k]), err_msg=k)


def test_resume_refuses_a_changed_program_data_or_seed(program, tmp_path):
    out = tmp_path / "o"
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "rows.csv").write_bytes((program.parent / "rows.csv").read_bytes())
    (folder / "p.dml").write_text(PROGRAM.replace("epochs = 14", "epochs = 6"))
    prog = folder / "p.dml"
    assert mlc_run(str(prog), "--out", str(out)).returncode == 0
    r = mlc_run(str(prog), "--out", str(out), "--resume", "--seed", "5")
    assert r.returncode == 1 and "cannot resume: the seed changed (checkpoint 0, now 5)" in r.stderr, r.stderr
    with (folder / "rows.csv").open("a") as f:
        f.write("0.1,0.2,k1,1\n")
    r = mlc_run(str(prog), "--out", str(out), "--resume")
    assert r.returncode == 1 and "cannot resume: the data `rows.csv` changed" in r.stderr, r.stderr
    prog.write_text(PROGRAM.replace("epochs = 14", "epochs = 7"))
    r = mlc_run(str(prog), "--out", str(out), "--resume")
    assert "the program" in r.stderr and "changed" in r.stderr and "run without --resume" in r.stderr
    assert "Traceback" not in r.stderr
    r = mlc_run(str(prog), "--out", str(tmp_path / "empty"), "--resume")
    assert r.returncode == 1 and "nothing to resume" in r.stderr and "Traceback" not in r.stderr
