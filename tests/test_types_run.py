"""End to end on the column types beyond the tabular three: `mlc run` on real data with
metric floors (the anchors are in benchmarks/QUALITY.md), predictions through model.mlc
and a `--target cpu` artifact that agree exactly, and dirty cells in report.json."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import mlc
from mlc.export import compile_target
from mlc.runtime import data as D
from mlc.runtime.run import run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
quiet = lambda *a, **k: None  # noqa: E731

# Floors sit a little under what the defaults reach; see benchmarks/QUALITY.md for the
# anchors (TF-IDF + logistic regression, gradient boosting on date parts, one-vs-rest).
FLOORS = {
    "reviews": ("score", "roc_auc", 0.82),
    "movies": ("genres", "jaccard", 0.50),
    "ridership": ("ridership", "r2", 0.90),
}


@pytest.fixture(scope="module")
def reports(example_run):
    """Each example trained with its defaults and seed 0 (conftest: shared with other modules)."""
    return {name: example_run(name) for name in FLOORS}


@pytest.mark.parametrize("name", list(FLOORS))
def test_example_reaches_its_floor(reports, name):
    report, _ = reports[name]
    output, metric, floor = FLOORS[name]
    assert report["metrics"]["test"][output][metric] >= floor
    assert report["timings_seconds"]["total"] < 60


def test_set_output_reports_its_metrics_and_predicts_joined_labels(reports):
    report, d = reports["movies"]
    assert set(report["metrics"]["test"]["genres"]) == {"jaccard", "f1_micro", "f1_macro", "loss"}
    model = mlc.load(d / "model.mlc")
    out = model.predict([{"title": "Love in Paris", "year": 1950, "length": 95, "budget": None,
                          "rating": 7.0, "votes": 50, "mpaa": None}])
    probs = out["genres_probabilities"][0]
    assert set(probs) == {"Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short"}
    assert out["genres"][0] == "|".join(k for k, p in probs.items() if p >= 0.5)


def _same_predictions(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if x and isinstance(x[0], dict):
            x, y = [list(v.values()) for v in x], [list(v.values()) for v in y]
        if x and isinstance(x[0], (float, list)):
            np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-5, atol=1e-6)
        else:
            assert x == y


def test_model_and_cpu_artifact_predict_the_same(reports, tmp_path):
    _, d = reports["movies"]
    rows = pacsv.read_csv(EXAMPLES / "data" / "movies.csv").slice(0, 50)
    compiled = compile_target(d / "model.mlc", "cpu", None, tmp_path / "movies.mlcc", log=quiet)
    _same_predictions(mlc.load(d / "model.mlc").predict(rows), mlc.load(compiled).predict(rows))


# ---- sequence, bag and vector columns, on real rows made into those types --------------
def _derived(tmp_path: Path) -> Path:
    """tweets as word sequences; penguins' bill and body as vectors, island and year as a bag."""
    tweets = pacsv.read_csv(EXAMPLES / "data" / "tweets.csv")
    words = [" ".join(t.split()) for t in tweets.column("text").to_pylist()]
    pacsv.write_csv(pa.table({"words": words, "created_at": tweets.column("created_at"),
                              "source": tweets.column("source")}), tmp_path / "tweet_words.csv")
    pens = pacsv.read_csv(EXAMPLES / "data" / "penguins.csv").to_pylist()
    vec = lambda *xs: None if None in xs else " ".join(str(x) for x in xs)  # noqa: E731
    pacsv.write_csv(pa.table({
        "bill": [vec(p["bill_length_mm"], p["bill_depth_mm"]) for p in pens],
        "where": [f"{p['island']}:{p['year'] - 2006}" for p in pens],
        "species": [p["species"] for p in pens],
        "body": [vec(p["flipper_length_mm"], p["body_mass_g"]) for p in pens]}), tmp_path / "penguins.csv")
    (tmp_path / "words.dml").write_text(
        'data "tweet_words.csv" split 80/10/10 seed 7\n'
        "input  words      : sequence { max_len = 32 }\n"
        "input  created_at : date\n"
        "output source     : binary\n"
        "train { epochs = 4 }\n")
    (tmp_path / "vectors.dml").write_text(
        'data "penguins.csv" split 80/10/10 seed 7\n'
        "input  bill    : vector\n"
        "input  where   : bag\n"
        "input  species : category\n"
        "output body    : vector\n")
    return tmp_path


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    folder = _derived(tmp_path_factory.mktemp("derived"))
    return {name: (run(folder / f"{name}.dml", folder / name, seed=0, log=quiet), folder)
            for name in ("words", "vectors")}


def test_sequence_and_date_program_trains_and_round_trips(derived, tmp_path):
    report, folder = derived["words"]
    assert report["metrics"]["test"]["source"]["roc_auc"] > 0.75
    assert "encoder = cnn(size = 32, filters = 64, widths = [3, 5])" in report["resolved_program"]
    rows = pacsv.read_csv(folder / "tweet_words.csv").slice(0, 40)
    compiled = compile_target(folder / "words" / "model.mlc", "cpu", None, tmp_path / "w.mlcc", log=quiet)
    _same_predictions(mlc.load(folder / "words" / "model.mlc").predict(rows), mlc.load(compiled).predict(rows))


def test_vector_output_and_bag_input(derived, tmp_path):
    report, folder = derived["vectors"]
    test = report["metrics"]["test"]["body"]
    assert set(test) == {"r2", "mae", "rmse", "loss"} and test["r2"] > 0.6
    model = mlc.load(folder / "vectors" / "model.mlc")
    out = model.predict({"bill": ["46.1 13.2"], "where": ["Biscoe:1"], "species": ["Gentoo"]})
    flipper, mass = out["body"][0]
    assert 200 < flipper < 240 and 4000 < mass < 6500  # a Gentoo: long flippers, heavy
    rows = pacsv.read_csv(folder / "penguins.csv").slice(0, 40)
    compiled = compile_target(folder / "vectors" / "model.mlc", "cpu", None, tmp_path / "v.mlcc", log=quiet)
    _same_predictions(model.predict(rows), mlc.load(compiled).predict(rows))


def test_dirty_cells_are_recorded_in_the_report(tmp_path):
    table = pacsv.read_csv(EXAMPLES / "data" / "ridership.csv").slice(0, 1500)
    dates = table.column("date").cast(pa.string()).to_pylist()
    dates[10] = "20"  # line 12 of the file
    table = table.set_column(0, "date", pa.array(dates))
    pacsv.write_csv(table, tmp_path / "r.csv")
    (tmp_path / "r.dml").write_text('data "r.csv"\ninput date : date\ninput temp : number\n'
                                    "output ridership : number\ntrain { epochs = 2 }\n")
    logged = []
    report = run(tmp_path / "r.dml", tmp_path / "out", log=logged.append)
    assert report["data_quality"] == {"date": {"count": 1, "share": 1 / 1500, "examples": [
        {"row": 11, "line": 12, "value": "20"}]}}
    assert any("1 cell of `date` do not read as `date`" in m for m in logged)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["data_quality"]["date"]["count"] == 1


def test_report_pages_for_every_output_type(reports, derived):
    """report.html builds from each report.json: one chart per plot of each output type."""
    import re

    from mlc.report.page import build
    expected = {"reviews": 1 + 3, "movies": 1 + 1, "ridership": 1 + 2}
    pages = {name: build(reports[name][0]) for name in expected}
    pages["vectors"] = build(derived["vectors"][0])
    expected["vectors"] = 1 + 2
    for name, page in pages.items():
        assert len(re.findall(r'<figure class="chart"', page)) == expected[name], name
        assert "<script" not in page
