"""`ensemble = K`: K members trained as one vmapped program, held by one artifact, averaged
by predict in one call; member 0 is the single model `mlc run` trains with the same seed."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from mlc.backends import jax_backend
from mlc.ir.lower import lower
from mlc.ir.pipeline import optimize
from mlc.runtime import artifact
from mlc.runtime.run import run

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = f"""data "{ROOT}/examples/data/penguins.csv"
input bill_length_mm : number
input flipper_length_mm : number
input island : category
output species : category
combiner concat {{ layers = [16] }}
train {{ epochs = 2, ensemble = 3 }}
"""
ROWS = {"bill_length_mm": [39.1, 47.5, 50.0], "flipper_length_mm": [181, 215, 196], "island": ["Torgersen", "Biscoe", "Dream"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ens")
    (folder / "p.dml").write_text(PROGRAM)
    single = folder / "single.dml"
    single.write_text(PROGRAM.replace("ensemble = 3", "ensemble = 1"))
    return (run(folder / "p.dml", folder / "out", seed=0, log=lambda m: None),
            run(single, folder / "single", seed=0, log=lambda m: None), folder)


def test_artifact_holds_every_member_and_predict_averages_them(trained):
    report, single, folder = trained
    assert report["ensemble"]["members"] == 3 and report["ensemble"]["seeds"] == [0, 1, 2]
    assert report["resolved"]["train"]["ensemble"] == 3
    model = artifact.load(folder / "out" / "model.mlc")
    names = set(model.params)
    assert {n.split(".")[0] for n in names} == {"member0", "member1", "member2"}
    encoded = model.encode(artifact.rows_to_table(ROWS, model.resolved, model.state))
    together = model.forward(encoded)["species"]
    # each member alone, on the member graph with its own parameters
    member_r = dataclasses.replace(model.resolved, train={**model.resolved.train, "ensemble": 1})
    graph, _ = optimize(lower(member_r, model.state))
    fn = jax.jit(jax_backend.build(graph, ["pred.species"]))
    alone = [np.asarray(fn({k.split(".", 1)[1]: v for k, v in model.params.items() if k.startswith(f"member{m}.")},
                           encoded)["pred.species"]) for m in range(3)]
    np.testing.assert_allclose(together, np.mean(alone, axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(alone[0], alone[1])  # the members differ (their seeds)
    preds = model.predict(ROWS)
    assert len(preds["species"]) == 3 and set(preds["species"]) <= {"Adelie", "Chinstrap", "Gentoo"}


def test_member_zero_is_the_single_model(trained):
    report, single, folder = trained
    model = artifact.load(folder / "out" / "model.mlc")
    alone = artifact.load(folder / "single" / "model.mlc")
    for name, value in alone.params.items():
        np.testing.assert_allclose(model.params[f"member0.{name}"], value, rtol=1e-3, atol=1e-4)
    assert report["ensemble"]["val_metric"][0] == pytest.approx(
        single["training"]["history"][single["training"]["best_epoch"] - 1]["val.species.accuracy"], abs=1e-6)
