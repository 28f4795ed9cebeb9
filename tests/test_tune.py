"""`tune { ... }`: parse, check (diagnostics), explain (round trip), run (report.json with
every trial, the chosen model written and exported), `mlc explain --fusion`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlc.compile import frontend
from mlc.diagnostics import MlcError
from mlc.explain import explain, resolved_equal
from mlc.runtime import search_space as S

ROOT = Path(__file__).resolve().parents[1]
HEAD = f"""data "{ROOT}/examples/data/titanic.csv"
input passenger_class : category
input sex : category
input age : number
output survived : binary
"""


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "prog.dml"
    p.write_text(text)
    return p


def errors(tmp_path, text: str) -> list:
    with pytest.raises(MlcError) as e:
        frontend(write(tmp_path, HEAD + text))
    return e.value.diagnostics


def test_paths_are_checked_with_did_you_mean(tmp_path):
    d = errors(tmp_path, "tune { trials = 8, train.lrr = loguniform(1e-4, 3e-2) }\n")
    assert d[0].message == "`train.lrr` is not an option `tune` can search"
    assert d[0].hint == "did you mean `train.lr`?" and (d[0].span.line, d[0].span.col) == (6, 20)
    d = errors(tmp_path, "tune { trials = 8, input.agee.encoder = choice(linear, ple) }\n")
    assert d[0].hint == "did you mean `input.age.encoder`?"
    d = errors(tmp_path, "tune { trials = 8, metric = val.survivd.roc_auc }\n")
    assert d[0].message == "`survivd` is not an output" and d[0].hint == "did you mean `survived`?"
    d = errors(tmp_path, "tune { trails = 8 }\n")
    assert [x.message for x in d] == ["unknown option `trails` for `tune`", "`tune` needs `trials`"]
    assert d[0].hint == "did you mean `trials`?"


@pytest.mark.parametrize("line, message", [
    ("train.lr = uniform(0, 0.1)", "`lr` must be above 0"),
    ("combiner.dropout = uniform(0, 1.5)", "`dropout` must be at most 0.95"),
    ("train.lr = loguniform(0.1, 0.01)", "`loguniform` needs low < high, not 0.1 and 0.01"),
    ("combiner.layers = uniform(1, 2)", "`combiner.layers` is not a number: search it with `choice(...)`"),
    ("combiner.layers = choice([256], 7)", "`layers` expects a list of whole numbers, such as [256, 128]"),
    ("combiner.dropout = 0.2", "`combiner.dropout` in `tune` needs a distribution, not `0.2`"),
    ("train.batch_size = uniform(32, 64)", "`train.batch_size` is a whole number: use `int(low, high)` or `choice(...)`"),
    ("input.age.encoder = choice(ple(bins = 0), linear)", "`bins` must be at least 1"),
    ("train.lr = gaussian(1, 2)", "unknown distribution `gaussian`"),
    ("combiner.activation = choice(relu, swish)", "unknown value `swish` for `activation`"),
])
def test_values_are_checked_by_the_options_rules(tmp_path, line, message):
    assert errors(tmp_path, f"tune {{ trials = 4, {line} }}\n")[0].message == message


def test_weight_decay_needs_adamw_and_ensemble_is_bounded(tmp_path):
    d = errors(tmp_path, "train { optimizer = adam(lr = 0.01) }\ntune { trials = 4, train.weight_decay = "
               "loguniform(1e-5, 1e-2) }\n")
    assert d[0].message == "`adam` has no weight decay to search"
    assert errors(tmp_path, "train { ensemble = 33 }\n")[0].message == "`ensemble` must be at most 32"


def test_default_space_explain_round_trip_and_sampling(tmp_path):
    fe = frontend(write(tmp_path, HEAD + "tune { trials = 16 }\n"))
    r = fe.resolved
    assert [e["path"] for e in r.tune["space"]] == ["train.lr", "train.weight_decay", "combiner.dropout",
                                                     "combiner.layers"]
    text = explain(r)
    assert "tune {" in text and "train.lr = loguniform(0.0003, 0.003)" in text and "# default space:" in text
    again = frontend(write(tmp_path, text))
    assert resolved_equal(r, again.resolved)
    trials = S.sample(r.tune["space"], 16, 0, r)
    # trial 0 is the program's own values; each choice gets its share; the ranges are covered
    assert trials[0] == {"train.lr": 0.001, "train.weight_decay": 0.0001, "combiner.dropout": 0.1,
                         "combiner.layers": [256, 256]}
    assert sum(t["combiner.layers"] == [512, 256] for t in trials) == 8
    lrs = sorted(t["train.lr"] for t in trials[1:])
    assert 3e-4 <= lrs[0] < 5e-4 and 2e-3 < lrs[-1] <= 3e-3
    assert len({S.group_key(t) for t in trials}) == 2


def test_tune_runs_reports_every_trial_and_writes_the_chosen_model(tmp_path):
    from click.testing import CliRunner
    from mlc.cli import main
    from mlc.runtime import artifact
    from mlc.runtime.run import run
    prog = write(tmp_path, HEAD + "combiner concat { layers = [16] }\ntrain { epochs = 4, batch_size = 64 }\n"
                 "tune { trials = 4, scheduler = none, train.lr = loguniform(1e-3, 1e-2),\n"
                 "       combiner.dropout = uniform(0, 0.3), input.age.encoder = choice(ple(bins = 8), linear) }\n")
    lines = []
    report = run(prog, tmp_path / "out", seed=0, log=lines.append)
    tuning = report["tuning"]
    assert len(tuning["trials"]) == 4 and len(tuning["groups"]) == 2
    for t in tuning["trials"]:
        assert set(t["values"]) == {"train.lr", "combiner.dropout", "input.age.encoder"}
        assert t["val_metric"] is not None and len(t["curve"]) == t["epochs_run"] and t["seconds"] > 0
    best = max(tuning["trials"], key=lambda t: t["val_metric"])
    assert tuning["chosen"] == best["trial"]
    assert report["metrics"]["validation"]["survived"]["roc_auc"] == pytest.approx(best["val_metric"], abs=1e-6)
    chosen = report["resolved"]
    assert "tune" not in chosen  # the model is the chosen program, not the search
    assert chosen["train"]["optimizer"]["lr"] == pytest.approx(best["values"]["train.lr"])
    assert chosen["inputs"][2]["options"]["encoder"]["name"] == best["values"]["input.age.encoder"]["name"]
    assert any("val.survived.roc_auc" in line and "trial" in line for line in lines)  # the table
    model = artifact.load(tmp_path / "out" / "model.mlc")
    preds = model.predict({"passenger_class": ["1st", "3rd"], "sex": ["female", "male"], "age": [30, 40]})
    assert preds["survived"] in (["yes", "no"], ["yes", "yes"], ["no", "no"])
    assert "chosen by tune: trial" in model.program_text
    out = CliRunner().invoke(main, ["compile", str(tmp_path / "out" / "model.mlc"), "--target", "cpu", "--out",
                                    str(tmp_path / "model.cpu.mlcc")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "model.cpu.mlcc").stat().st_size > 0
    out = CliRunner().invoke(main, ["explain", "--fusion", str(prog)])
    assert out.exit_code == 0 and "# trial axis: 4 trials in 2 vmapped programs" in out.output
    json.dumps(report)  # every entry serializable as written
