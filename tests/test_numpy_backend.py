"""The numpy back end (a few rows on the CPU, mlc/backends/numpy_backend.py) gives the
reference interpreter's results on random graphs, and XLA's results, to float32 rounding,
on the inference graph of every example program: a request's answer does not depend on
which of the two computed it."""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from helpers_ir import EXAMPLES, assert_close, graphs, random_values, training_graph
from hypothesis import HealthCheck, given, settings

from mlc.backends import jax_backend
from mlc.backends.numpy_backend import Plan
from mlc.ir.interp import run_graph

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    **({"database": None} if os.environ.get("MLC_HYPOTHESIS_NO_DB") == "1" else {}))


@SETTINGS
@given(graphs())
def test_the_plan_gives_the_interpreters_results_on_random_graphs(g):
    params, inputs = random_values(g, batch=3)
    assert_close(Plan(g, params, list(g.outputs)).run(inputs), run_graph(g, params, inputs))


@pytest.mark.parametrize("name", EXAMPLES + ["embed_layernorm"])
def test_the_plan_gives_xlas_predictions_for_every_example(name, tmp_path):
    graph = training_graph(name, tmp_path, dropout=None)  # dropout is the identity when predicting
    wanted = [w for w in graph.outputs if w.startswith("pred.")]
    fn = jax.jit(jax_backend.build(graph, wanted))
    for batch in (1, 7, 64):
        params, inputs = random_values(graph, seed=batch, batch=batch)
        inputs = {k: v for k, v in inputs.items() if not k.startswith("y_")}
        got = Plan(graph, params, wanted).run(inputs)
        want = jax.device_get(fn(params, inputs))
        assert_close(got, want, rtol=1e-4, atol=1e-5, what=f"{name}, {batch} rows:")
        assert all(v.dtype == np.float32 for v in got.values())


def test_the_one_hot_lookup_gives_a_zero_row_outside_the_depth():
    from mlc.backends.numpy_backend import _one_hot
    from mlc.ir.interp import _one_hot as reference
    idx = np.array([[0, 1, 2, 3], [-1, -7, 2 ** 31 - 1, -2 ** 31]], np.int32)
    for depth in (1, 3, 4):
        np.testing.assert_array_equal(_one_hot(idx, depth=depth, dtype=np.float32),
                                      reference(idx, depth=depth, dtype=np.float32))


@pytest.mark.parametrize("name", ["credit", "titanic"])
def test_a_dense_layer_reading_categories_gives_the_interpreters_results_for_any_index(name, tmp_path):
    """mlc/backends/numpy_layers.py reads a category's row of the first layer's matrix instead of
    multiplying its one-hot column: an index outside the category's range (which one_hot makes a
    zero row) must read zeros too, and the layer must be one step, not a one_hot per category."""
    graph = training_graph(name, tmp_path, dropout=None)
    wanted = [w for w in graph.outputs if w.startswith("pred.")]
    plan = Plan(graph, *random_values(graph)[:1], wanted)
    assert not any(getattr(rule, "__name__", "") == "_one_hot" for rule, _, _ in plan.steps)
    for batch in (1, 6):
        params, inputs = random_values(graph, seed=batch, batch=batch)
        for k, v in inputs.items():
            if k.startswith("cat_"):  # in range, negative, at the depth, far above it
                inputs[k] = np.array([v[0], -1, 2 ** 31 - 1, -2 ** 31, 3, 1000][:batch], np.int32)
        want = run_graph(graph, params, inputs)
        assert_close(Plan(graph, params, wanted).run(inputs), {w: want[w] for w in wanted},
                     rtol=1e-4, atol=1e-5, what=f"{name}, {batch} rows:")


def test_mlc_serve_holds_blas_on_one_thread_on_its_predict_thread(tmp_path):
    """threadpoolctl lets only the first Python thread that changed OpenBLAS's thread count
    change it again: `mlc serve` warms up on the thread that predicts, so the hold takes effect
    there (a fresh process: no earlier test has taken control)."""
    import subprocess
    import sys
    from helpers_ir import ROOT
    program = tmp_path / "t.dml"
    program.write_text((ROOT / "examples" / "titanic.dml").read_text().replace(
        'data "data/', f'data "{ROOT}/examples/data/') + "\ntrain { epochs = 1 }\n")
    code = f"""
import threading
from threadpoolctl import ThreadpoolController
import mlc
from mlc.runtime.run import run
from mlc.backends.numpy_backend import _ONE_BLAS_THREAD as hold
from mlc.serve.app import Config, Server
run({str(program)!r}, {str(tmp_path / 'out')!r}, seed=0, log=lambda *_: None)
count = lambda: [lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers]
before = count()
server = Server(mlc.load({str(tmp_path / 'out' / 'model.mlc')!r}, device="cpu"),
                Config(model="m"), "m")
def held():
    with hold:
        return count()
print(before, server.batcher.executor.submit(held).result(), count())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    before, inside, after = (eval(part + "]") for part in out.stdout.strip().splitlines()[-1].rstrip("]").split("] "))
    if max(before, default=1) < 2:
        pytest.skip("numpy's BLAS runs on one thread here anyway")
    assert inside == [1] * len(before) and after == before, out.stdout
