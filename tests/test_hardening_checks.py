"""Problems found before training (issue 10): inputs whose encoding carries no information
are warned about (check and run) and recorded in report.json; a model too large for
memory is refused at the option that makes it large; odd paths get clean errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_frontend import mlc, write_files

from mlc.compile import frontend
from mlc.diagnostics import MlcError
from mlc.passes import check_model
from mlc.runtime import data as D

ROOT = Path(__file__).resolve().parents[1]
TITANIC = (ROOT / "examples" / "data" / "titanic.csv").read_text()


def test_an_id_like_category_with_an_empty_vocabulary_is_warned_about(tmp_path):
    rows = "".join(f"id{i},{i % 5},{'yes' if i % 3 else 'no'}\n" for i in range(600))
    write_files(tmp_path, {"d.csv": "ticket,x,y\n" + rows,
                           "p.dml": 'data "d.csv"\ninput ticket : category\ninput x : number\noutput y : binary\n'})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 0, r.stderr
    assert ("p.dml:2:7: warning: input `ticket` has no value seen 3 times or more in the 480 training rows: "
            "its vocabulary is empty and every value maps to <unknown>") in r.stderr
    assert "hint: lower `min_count`, or leave the column out if it is an id" in r.stderr


def test_a_number_empty_in_every_training_row_is_warned_about_and_reported(tmp_path):
    rows = "".join(f"{'' if i % 10 < 8 else i},{i % 7},{('train', 'validation', 'test')[min(2, max(0, i % 10 - 7))]},"
                   f"{'yes' if i % 3 else 'no'}\n" for i in range(300))
    write_files(tmp_path, {"d.csv": "late,x,part,y\n" + rows,
                           "p.dml": 'data "d.csv" split by part\ninput late : number\ninput x : number\n'
                                    "output y : binary\ntrain { epochs = 2 }\n"})
    r = mlc(tmp_path, "run", "p.dml", "--out", "out")
    assert r.returncode == 0, r.stderr
    assert ("p.dml:2:7: warning: input `late` is empty in every training row: it is encoded as a constant"
            in r.stderr)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["data_quality"]["late"]["no_information"].startswith("is empty in every training row")


@pytest.mark.parametrize("option,where,blame", [
    ("combiner concat { layers = [100000, 100000] }", "5:19", "`combiner.1.w` [100000, 100000]"),
    ("input fare : category { encoder = embed(size = 2147483647) }", "4:36", "`embed.fare` [4, 2147483647]"),
])
def test_a_model_too_large_for_memory_is_refused_at_its_option(tmp_path, option, where, blame):
    program = 'data "t.csv"\ninput sex : binary\ninput age : number\n' + option.replace("fare", "passenger_class") \
        + "\noutput survived : binary\n" if "input" in option else \
        'data "t.csv"\ninput sex : binary\ninput age : number\noutput survived : binary\n' + option + "\n"
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": program})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.first.startswith(f"p.dml:{where}: error: this model needs about")
    assert blame.replace("fare", "passenger_class") in r.first


def test_a_block_width_too_large_is_refused_before_training(tmp_path):
    block = "block big(x, w: int = 8) {\n  return dense(x, w)\n}\ncombiner big(w = 99999999999999999999)\n"
    write_files(tmp_path, {"t.csv": TITANIC,
                           "p.dml": 'data "t.csv"\ninput sex : binary\noutput survived : binary\n' + block})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.first.startswith("p.dml:7:10: error: this model needs about")


def test_memory_budget_is_a_share_of_this_machine():
    assert 1 << 28 < check_model.machine_memory() < 1 << 50


def test_a_data_path_too_long_for_the_file_system(tmp_path):
    write_files(tmp_path, {"p.dml": f'data "{"b" * 300}.csv"\ninput sex : binary\noutput survived : binary\n'})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.first.startswith("p.dml:1:6: error: cannot open `bbbb") and r.first.endswith("File name too long")


def test_an_unreadable_data_file_names_permissions(tmp_path, monkeypatch):
    # The tests run as root here, which reads any file: os.access is what mlc asks, so
    # it stands in for a file the user may not read.
    (tmp_path / "t.csv").write_text(TITANIC)
    monkeypatch.setattr(D.os, "access", lambda path, mode: False)
    with pytest.raises(D.DataError) as e:
        D.read_table(tmp_path / "t.csv")
    assert e.value.message == "cannot read `t.csv`: permission denied"
    assert "permissions" in e.value.hint


def test_frontend_keeps_the_fitted_state_for_the_run(tmp_path):
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": 'data "t.csv"\ninput age : number\noutput survived : binary\n'})
    fe = frontend(tmp_path / "p.dml")
    assert fe.state["inputs"]["age"]["indicator"] and not fe.uninformative
    with pytest.raises(MlcError):
        check_model.check_memory(fe.checked, fe.resolved, __import__("mlc.ir.lower", fromlist=["lower"]).lower(
            fe.resolved, fe.state), budget=1000)
