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
