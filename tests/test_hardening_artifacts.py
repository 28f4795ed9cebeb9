"""Outputs and artifacts (issue 10, items 5-10, 14, 16): `mlc predict` never overwrites
its input and fails cleanly on a bad --out; `predict` rows are checked cell by cell
(a ValueError naming the column, or a documented conversion) and unknown values are
counted; `mlc run` checks and locks --out before training and publishes model.mlc and
report.json as one pair; malformed manifests, damaged members and zip bombs are one
ArtifactError, never a traceback or a memory blow-up."""
from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from helpers_frontend import cli_env, mlc as cli

import mlc
from mlc.diagnostics import UserError
from mlc.runtime import manifest as M
from mlc.runtime.artifact import ArtifactError
from mlc.runtime.run import run

ROOT = Path(__file__).resolve().parents[1]
TITANIC = ROOT / "examples" / "data" / "titanic.csv"
PROGRAM = """data "rich.csv" split 80/10/10 seed 7
input  sex             : binary
input  age             : number
input  passenger_class : category
input  tags            : set { separator = "|" }
input  note            : text
input  when            : date
input  vec             : vector { separator = " " }
output survived        : binary
train { epochs = 2 }
"""
ROW = {"sex": "female", "age": 29.0, "passenger_class": "1st", "tags": "female|1st",
       "note": "a female passenger in 1st class", "when": "2020-01-05", "vec": "29.0 1.0"}


def quiet(*_):
    pass


def _rich_csv(folder: Path) -> None:
    """Titanic's rows with a set, a text, a date and a vector column made from them."""
    rows = pacsv.read_csv(TITANIC).to_pylist()
    for i, r in enumerate(rows):
        r["tags"] = f"{r['sex']}|{r['passenger_class']}"
        r["note"] = f"a {r['sex']} passenger in {r['passenger_class']} class"
        r["when"] = (dt.date(2020, 1, 1) + dt.timedelta(days=i % 300)).isoformat()
        r["vec"] = None if r["age"] is None else f"{r['age']} {i % 3}.0"
    pacsv.write_csv(pa.Table.from_pylist(rows), folder / "rich.csv")
    (folder / "rich.dml").write_text(PROGRAM)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder holding rich.csv, rich.dml and out/ (model.mlc, report.json) of a 2-epoch run."""
    folder = tmp_path_factory.mktemp("hardening")
    _rich_csv(folder)
    run(folder / "rich.dml", folder / "out", seed=0, log=quiet)
    return folder


@pytest.fixture(scope="module")
def model(trained):
    return mlc.load(trained / "out" / "model.mlc")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_traceback(r):
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, (r.returncode, r.stderr)


# ---- 5, 10: mlc predict --out -----------------------------------------------------
def _predict_files(tmp_path: Path, trained: Path) -> tuple[Path, Path]:
    data = tmp_path / "rows.csv"
    data.write_bytes((trained / "rich.csv").read_bytes())
    return trained / "out" / "model.mlc", data


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink", "model"])
def test_predict_refuses_to_overwrite_its_data_or_model(tmp_path, trained, spelling):
    artifact, data = _predict_files(tmp_path, trained)
    before_data, before_model = _sha(data), _sha(artifact)
    out = {"same": "rows.csv", "dot": "./sub/../rows.csv", "symlink": "link.csv", "hardlink": "hard.csv",
           "model": str(artifact)}[spelling]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to("rows.csv")
    os.link(data, tmp_path / "hard.csv")
    r = cli(tmp_path, "predict", str(artifact), "--data", "rows.csv", "--out", out)
    _no_traceback(r)
    what = "model" if spelling == "model" else "data file"
    assert f"is the {what} `" in r.first and "predictions would overwrite it" in r.first, r.stderr
    assert _sha(data) == before_data and _sha(artifact) == before_model


@pytest.mark.parametrize("case", ["missing folder", "file as folder", "folder as out", "read-only folder",
                                  "system folder"])
def test_predict_out_that_cannot_be_written_is_a_clean_error(tmp_path, trained, case):
    artifact, data = _predict_files(tmp_path, trained)
    if case == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o555)
    if case == "system folder" and (not Path("/sys").is_dir() or os.access("/sys", os.W_OK)):
        pytest.skip("no read-only /sys here")
    out, message = {"missing folder": ("nowhere/p.csv", "the folder `nowhere` of --out does not exist"),
                    "file as folder": ("rows.csv/p.csv", "`rows.csv` is not a folder"),
                    "folder as out": ("sub", "is a folder; give --out a file name"),
                    "read-only folder": ("ro/p.csv", "cannot write to the folder `ro`"),
                    "system folder": ("/sys/p.csv", "cannot write to the folder `/sys`")}[case]
    (tmp_path / "sub").mkdir()
    r = cli(tmp_path, "predict", str(artifact), "--data", "rows.csv", "--out", out)
    _no_traceback(r)
    assert r.first.startswith("error: ") and message in r.first, r.stderr


def test_predict_writes_the_whole_file_or_nothing(tmp_path, trained):
    artifact, data = _predict_files(tmp_path, trained)
    (tmp_path / "bad.csv").write_text("sex,age,passenger_class,tags,note,when,vec\nmale,abc,1st,,,,\n")
    (tmp_path / "p.csv").write_text("earlier predictions\n")
    r = cli(tmp_path, "predict", str(artifact), "--data", "bad.csv", "--out", "p.csv")
    _no_traceback(r)
    assert "column `age` is a number input" in r.first
    assert (tmp_path / "p.csv").read_text() == "earlier predictions\n"  # untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---- 6: rows sent to predict ------------------------------------------------------------
def _rows(**change):
    return {k: [v] for k, v in {**ROW, **change}.items()}


@pytest.mark.parametrize("rows,message", [
    (dict(ROW), "column `sex` is the single value 'female', not a list of values"),
    ({k: 3 if k == "age" else [v] for k, v in ROW.items()}, "column `age` is the single value 3 (an int)"),
    ([{}], "row 1 lacks input column(s) sex, age, passenger_class"),
    ([dict(ROW), "female"], "row 2 is 'female' (a str), not a dict of column values"),
    (_rows(age=True), "column `age` is a number input, but row 1 holds True (a bool)"),
    (_rows(age="1,5"), "column `age` is a number input but holds `1,5` (row 1)"),
    (_rows(age="abc"), "column `age` is a number input but holds text such as \"abc\" (row 1)"),
    (_rows(age=[29]), "column `age` is a number input, but row 1 holds [29] (a list)"),
    (_rows(passenger_class=1), "column `passenger_class` is a category input, but row 1 holds 1 (an int); "
                               "the model's values are text such as"),
    (_rows(passenger_class=["1st"]), "column `passenger_class` is a category input, but row 1 holds ['1st']"),
    (_rows(passenger_class={"a": 1}), "column `passenger_class` is a category input, but row 1 holds {'a': 1}"),
    (_rows(sex=True), "column `sex` is a binary input, but row 1 holds True (a bool)"),
    (_rows(note=["a", "b"]), "column `note` is a text input, but row 1 holds ['a', 'b']"),
    (_rows(tags=["fe|male"]), "each member is text without the separator '|'"),
    (_rows(vec=["x", 1]), "a vector is a list of numbers"),
    (_rows(when=1.5), "column `when` is a date input, but row 1 holds 1.5 (a float)"),
    ({**_rows(), "age": [1, 2]}, "their lengths differ: `sex` 1, `age` 2"),
])
def test_predict_rows_mistakes_are_value_errors_naming_the_column(model, rows, message):
    with pytest.raises(ValueError) as e:
        model.predict(rows)
    assert message in str(e.value)
    assert isinstance(e.value, UserError)  # the CLI prints it as `error: ...`


def test_predict_rows_documented_conversions(model):
    """Each conversion gives exactly the prediction of the value written as a data file has it."""
    import pandas as pd
    base = model.predict(_rows())
    same = [
        _rows(age="29"), _rows(age=np.float32(29.0)), _rows(when=dt.date(2020, 1, 5)),
        _rows(when=dt.datetime(2020, 1, 5)), _rows(when=np.datetime64("2020-01-05")),
        _rows(tags=["female", "1st"]), _rows(tags=("female", "1st")), _rows(vec=[29.0, 1]),
        _rows(vec=np.array([29.0, 1.0])), {k: np.array(v, dtype=object) for k, v in _rows().items()},
        pd.DataFrame(_rows()), pa.table(_rows()), [dict(ROW)], _rows(age=decimal.Decimal("29")),
        pa.table({**_rows(), "tags": pa.array([["female", "1st"]]), "vec": pa.array([[29.0, 1.0]])}),  # Parquet lists
    ]
    for rows in same:
        assert model.predict(rows) == base, rows
    missing = model.predict(_rows(age=None))
    assert model.predict(_rows(age=float("nan"))) == missing == model.predict(_rows(age=pd.NA))
    # a date column mixing text and datetimes; numeric text with thousands separators
    two = model.predict({**{k: v * 2 for k, v in _rows().items()}, "when": ["2020-01-05", dt.datetime(2020, 1, 5)]})
    assert two["survived_probability"][0] == pytest.approx(two["survived_probability"][1], abs=1e-7)
    a, b = model.predict(_rows(age="1,234")), model.predict(_rows(age=1234))
    assert a == b
    assert model.predict([]) == {"survived": [], "survived_probability": []}


def test_predict_table_columns_of_the_wrong_kind_are_value_errors(model):
    table = pa.table({**_rows(), "age": pa.array([True])})
    with pytest.raises(ValueError, match="column `age` is a number input, but holds booleans"):
        model.predict(table)
    table = pa.table({**_rows(), "passenger_class": pa.array([["1st"]])})
    with pytest.raises(ValueError, match="column `passenger_class` is a category input, but holds list"):
        model.predict(table)


# ---- 7: unknown values, counted ---------------------------------------------------------
def test_unknown_values_are_counted_in_metadata(model):
    rows = {k: [v] * 4 for k, v in ROW.items()}
    rows["passenger_class"] = ["1st", "9th", None, "crew"]
    rows["sex"] = ["female", "Female", "male", None]
    rows["tags"] = ["female|1st", "female|zzz", "yyy|zzz", None]
    rows["note"] = ["a female passenger", "a flying saucer", None, "passenger"]
    out = model.predict(rows)
    assert isinstance(out, dict) and len(out["survived"]) == 4 and set(out) == {"survived", "survived_probability"}
    meta = out.metadata
    assert meta["rows"] == 4
    assert meta["unknown"] == {"sex": 1, "passenger_class": 2}  # missing cells are not unknown
    assert meta["unknown_tokens"]["tags"] == {"unknown": 3, "total": 6}
    assert meta["unknown_tokens"]["note"] == {"unknown": 2, "total": 7}  # "flying", "saucer"
    assert set(meta["unknown_tokens"]) == {"tags", "note"}
    assert json.loads(json.dumps(out)) == dict(out)  # still a plain dict of columns to callers


def test_cli_predict_summary_counts_unknown_values(tmp_path, trained):
    rows = pacsv.read_csv(trained / "rich.csv").slice(0, 4).to_pylist()
    rows[0]["passenger_class"], rows[1]["passenger_class"], rows[2]["sex"] = "9th", "crew", "robot"
    pacsv.write_csv(pa.Table.from_pylist(rows), tmp_path / "rows.csv")
    r = cli(tmp_path, "predict", str(trained / "out" / "model.mlc"), "--data", "rows.csv", "--out", "p.csv")
    assert r.returncode == 0, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("wrote 4 predictions to p.csv; read as <unknown>: ")
    assert "sex 1 of 4 (25.0%)" in line and "passenger_class 2 of 4 (50.0%)" in line
    assert "unknown tokens: tags 0 of 8, note 0 of" in line


# ---- 8, 9: mlc run --out -----------------------------------------------------------------
def _pair_matches(out: Path) -> str:
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["sha256"] == _sha(out / "model.mlc")
    return report["model"]["sha256"]


def test_artifact_save_uses_a_temporary_name_of_its_own(tmp_path, trained):
    """The old fixed name model.mlc.tmp: a folder there (or another writer's file) broke saving."""
    from mlc.runtime import artifact
    m = mlc.load(trained / "out" / "model.mlc")
    (tmp_path / "model.mlc.tmp").mkdir()
    artifact.save(tmp_path / "model.mlc", m.resolved, m.state, m.graph, m.params, m.program_text)
    assert mlc.load(tmp_path / "model.mlc").predict(_rows()) == m.predict(_rows())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mlc", "model.mlc.tmp"]


def test_a_second_run_into_a_busy_out_is_refused_and_the_pair_matches(tmp_path, trained):
    env = cli_env()
    cmd = [sys.executable, "-m", "mlc.cli", "run", str(trained / "rich.dml"), "--out", str(tmp_path / "o")]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "o" / ".mlc").glob("run-*")):  # made once the lock is held
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # it holds the lock while the second one tries
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    _no_traceback(second)
    assert f"error: `{tmp_path / 'o'}` is in use by another `mlc run` (process {first.pid})" in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    _pair_matches(tmp_path / "o")
    assert mlc.load(tmp_path / "o" / "model.mlc").predict(_rows())["survived"]


def test_a_run_killed_while_publishing_leaves_the_last_pair_and_no_lock(tmp_path, trained):
    out = tmp_path / "o"
    run(trained / "rich.dml", out, seed=0, log=quiet)
    before = _pair_matches(out)
    # Killed at the worst moment: both new files written, about to replace the old pair.
    code = ("import os, sys\n"
            "real = os.replace\n"
            "def replace(src, dst, *a, **k):\n"
            "    if str(dst).endswith(os.sep + 'current'):\n"
            "        os._exit(9)\n"
            "    return real(src, dst, *a, **k)\n"
            "os.replace = replace\n"
            "from mlc.runtime.run import run\n"
            "run(sys.argv[1], sys.argv[2], seed=1, log=lambda m: None)\n")
    r = subprocess.run([sys.executable, "-c", code, str(trained / "rich.dml"), str(out)], env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    assert _pair_matches(out) == before  # the previous run's model and report, together
    assert len(list((out / ".mlc").glob("run-*"))) == 2  # the dead run's unpublished folder
    # The lock died with the process: the next run goes ahead, and clears what the dead one left.
    run(trained / "rich.dml", out, seed=2, log=quiet)
    assert _pair_matches(out) != before
    assert len(list((out / ".mlc").glob("run-*"))) == 1


def test_run_into_an_unwritable_out_fails_before_training(tmp_path, trained):
    (tmp_path / "file").write_text("")
    calls = []
    places = [tmp_path / "file" / "out", tmp_path / "file"]
    if Path("/sys").is_dir() and not os.access("/sys", os.W_OK):
        places.append(Path("/sys/mlc-out"))
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o555)
        places.append(tmp_path / "ro" / "out")
    for place in places:
        with pytest.raises(UserError, match="output folder|is a file, not a folder"):
            run(trained / "rich.dml", place, progress=lambda *a: calls.append(a), log=quiet)
    assert calls == []  # refused before training started
    r = cli(tmp_path, "run", str(trained / "rich.dml"), "--out", "file/out")
    _no_traceback(r)
    assert r.first == "error: cannot create the output folder `file/out`: `file` is a file"


def test_a_failed_run_leaves_no_folder_it_created(tmp_path):
    (tmp_path / "p.dml").write_text('data "missing.csv"\ninput a : number\noutput b : binary\n')
    with pytest.raises(Exception):
        run(tmp_path / "p.dml", tmp_path / "runs" / "p", log=quiet)
    assert not (tmp_path / "runs").exists()


# ---- 14, 16: damaged and hostile artifacts -------------------------------------------------
def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return path


def _deep_block(m: dict) -> None:
    m["resolved"]["blocks"] = {"deep": "block deep(x) {\n  return " + "relu(" * 1000 + "x" + ")" * 1000 + "\n}"}
    m["resolved"]["combiner"] = {"name": "deep", "block": True, "args": {}, "options": {}}


MANIFEST_DAMAGE = {
    "a list": (lambda m: [1, 2], "manifest.json holds a list, not an object"),
    "a string": (lambda m: "model", 'manifest.json holds the text "model", not an object'),
    "no preprocessing": (lambda m: m.pop("preprocessing") and m, "manifest.json lacks `preprocessing`"),
    "no resolved": (lambda m: m.pop("resolved") and m, "manifest.json lacks `resolved`"),
    "activation a number": (lambda m: m["resolved"]["combiner"]["options"].update(activation=5) or m,
                            "`resolved.combiner.options.activation` is the number 5; expected a choice"),
    "activation unknown": (lambda m: m["resolved"]["combiner"]["options"].update(activation={"name": "x"}) or m,
                           "`resolved.combiner.options.activation.name` is the text \"x\"; expected one of relu"),
    "layers text": (lambda m: m["resolved"]["combiner"]["options"].update(layers="big") or m,
                    "`resolved.combiner.options.layers` is the text \"big\""),
    "block nested 1000 deep": (lambda m: _deep_block(m) or m, ""),
    "vocabulary of numbers": (lambda m: m["preprocessing"]["inputs"]["passenger_class"].update(vocab=[1]) or m,
                              "`preprocessing.inputs.passenger_class.vocab[0]` is the number 1; expected text"),
    "bin edges not increasing": (lambda m: m["preprocessing"]["inputs"]["age"].update(edges=[1, 1]) or m,
                                 "`preprocessing.inputs.age.edges` is a list; expected increasing numbers"),
    "text vocabulary size off by one": (
        lambda m: m["preprocessing"]["inputs"]["note"].update(vocab_size=m["preprocessing"]["inputs"]["note"][
            "vocab_size"] + 1) or m, "`preprocessing.inputs.note.vocab_size` is the number"),
    "a column without state": (lambda m: m["preprocessing"]["inputs"].pop("note") and m,
                               "`preprocessing.inputs` lacks the column `note`"),
    "unknown type": (lambda m: m["resolved"]["inputs"][0].update(type="picture") or m,
                     "`resolved.inputs[0].type` is the text \"picture\""),
    "nested 100000 deep": (None, "manifest.json is nested deeper than mlc reads"),
}


@pytest.mark.parametrize("case", list(MANIFEST_DAMAGE))
def test_malformed_manifest_is_one_clean_error(tmp_path, trained, case):
    members = _members(trained / "out" / "model.mlc")
    change, message = MANIFEST_DAMAGE[case]
    if change is None:  # deeper than json's own recursion limit
        text = '{"format": "mlc-model/1", "x": ' + "[" * 100000 + "]" * 100000 + "}"
    else:
        text = json.dumps(change(json.loads(members["manifest.json"])))
    path = _write(tmp_path / "m.mlc", {**members, "manifest.json": text})
    with pytest.raises(ArtifactError) as e:
        mlc.load(path)
    assert str(e.value).startswith(f"`{path}`: ") and message in str(e.value)


def test_malformed_manifest_from_the_cli(tmp_path, trained):
    members = _members(trained / "out" / "model.mlc")
    _write(tmp_path / "m.mlc", {**members, "manifest.json": "[]"})
    (tmp_path / "rows.csv").write_bytes((trained / "rich.csv").read_bytes())
    r = cli(tmp_path, "predict", "m.mlc", "--data", "rows.csv", "--out", "p.csv")
    _no_traceback(r)
    assert r.first == "error: `m.mlc`: manifest.json holds a list, not an object with `format`, `resolved` and " \
                      "`preprocessing`"


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x10
    return bytes(b)


def test_damaged_members_are_refused(tmp_path, trained):
    members = _members(trained / "out" / "model.mlc")
    w = members["weights.npz"]
    path = _write(tmp_path / "m.mlc", {**members, "weights.npz": _flip(w, len(w) // 2)})  # a weight, not the header
    with pytest.raises(ArtifactError, match="weights.npz is damaged: its sha256 differs"):
        mlc.load(path)


def test_bit_flipped_compiled_inference_is_refused(tmp_path, trained):
    from mlc.export import compile_target
    compiled = compile_target(trained / "out" / "model.mlc", "cpu", None, tmp_path / "m.mlcc", log=quiet)
    members = _members(compiled)
    blob = members["inference.jax"]
    for at in (len(blob) // 2, 480):  # inside the weights (a silent change), inside the program
        path = _write(tmp_path / f"f{at}.mlcc", {**members, "inference.jax": _flip(blob, at)})
        with pytest.raises(ArtifactError, match="inference.jax is damaged: its sha256 differs"):
            mlc.load(path)
    # Written before digests were recorded: a program that fails inside XLA is still an ArtifactError.
    manifest = json.loads(members["manifest.json"])
    del manifest["members"]
    refused = []
    for at in range(400, 2400, 40):  # the exported header, then the StableHLO bytecode (fails inside XLA)
        path = _write(tmp_path / "old.mlcc", {**members, "manifest.json": json.dumps(manifest),
                                              "inference.jax": _flip(blob, at)})
        try:
            mlc.load(path).predict(_rows())
        except ArtifactError as e:
            refused.append(str(e))
            if "inference.jax cannot run" in str(e):
                break
    assert "the file is damaged or was written by an incompatible jax" in refused[-1], refused


def _bomb(path: Path, members: dict, name: str, size: int) -> Path:
    """`members` with `name` replaced by `size` zero bytes, deflated (a few hundred KB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            if n != name:
                z.writestr(n, d)
        with z.open(name, "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
    return path


def test_zip_bomb_members_are_refused_before_reading(tmp_path, trained, monkeypatch):
    members = _members(trained / "out" / "model.mlc")
    path = _bomb(tmp_path / "bomb.mlc", members, "weights.npz", 256 << 20)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactError, match=r"weights.npz would expand to 256.0 MiB, more than the .* "
                                                r"manifest.json records; the file is damaged"):
            mlc.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    # Without recorded sizes (older artifacts): bounded by what the program's parameters need.
    manifest = json.loads(members["manifest.json"])
    del manifest["members"]
    path = _bomb(tmp_path / "old.mlc", {**members, "manifest.json": json.dumps(manifest)}, "weights.npz", 64 << 20)
    with pytest.raises(ArtifactError, match="weights.npz would expand to 64.0 MiB, more than the .* this "
                                            "program's parameters need"):
        mlc.load(path)
    # An array inside weights.npz that expands past its parameter's size.
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        for n in zipfile.ZipFile(io.BytesIO(members["weights.npz"])).namelist():
            z.writestr(n, bytes(8 << 20))
    path = _write(tmp_path / "inner.mlc", {**members, "manifest.json": json.dumps(manifest),
                                           "weights.npz": inner.getvalue()})
    with pytest.raises(ArtifactError, match=r"\.npy would expand to 8.0 MiB, more than the .* parameter"):
        mlc.load(path)
    # The manifest itself, past the cap on manifests.
    monkeypatch.setattr(M, "MAX_MANIFEST_BYTES", 1 << 20)
    path = _bomb(tmp_path / "manifest.mlc", members, "manifest.json", 4 << 20)
    with pytest.raises(ArtifactError, match="manifest.json would expand to 4.0 MiB, more than the 1.0 MiB"):
        mlc.load(path)


def _with_weights(tmp_path: Path, trained: Path, change) -> Path:
    """model.mlc with its weights changed by `change(name, array)` and the manifest resealed:
    what a buggy writer or a careful tamperer would leave, which digests cannot catch."""
    members = _members(trained / "out" / "model.mlc")
    with zipfile.ZipFile(io.BytesIO(members["weights.npz"])) as z:
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False) for n in z.namelist()}
    first = sorted(arrays)[0]
    arrays[first] = change(arrays[first])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    manifest = json.loads(members["manifest.json"])
    members["weights.npz"] = buf.getvalue()
    manifest["members"]["weights.npz"] = M.describe_members({"weights.npz": buf.getvalue()})["weights.npz"]
    members["manifest.json"] = json.dumps(manifest)
    return _write(tmp_path / "m.mlc", members)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_refused_at_load(tmp_path, trained, value):
    def poison(a):
        a = a.copy()
        a.flat[0] = value
        return a
    path = _with_weights(tmp_path, trained, poison)
    with pytest.raises(ArtifactError, match="1 NaN or infinite values"):
        mlc.load(path)
    r = cli(tmp_path, "predict", str(path), "--data", str(trained / "rich.csv"), "--out", "p.csv")
    assert r.returncode == 1 and "NaN or infinite" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.csv").exists()


def test_weights_that_are_not_numbers_are_refused(tmp_path, trained):
    path = _with_weights(tmp_path, trained, lambda a: a.astype(bool))
    with pytest.raises(ArtifactError, match="values, not numbers"):
        mlc.load(path)


def test_non_finite_scores_are_refused_not_decoded(model):
    """Scores that overflow (here: the forward pass made to return NaN for one row) never
    become a label: predict refuses the batch and says how many rows, whichever back end
    computed them (numpy for a few rows on the CPU, XLA for a batch)."""
    def nan_for_second_row(real):
        def forward(computed):
            out = real(computed)
            return {k: np.where(np.arange(len(v)).reshape(-1, *([1] * (v.ndim - 1))) == 1, np.nan, v)
                    for k, v in out.items()}
        return forward
    model.finish, model.forward_few = nan_for_second_row(model.finish), nan_for_second_row(model.forward_few)
    try:
        with pytest.raises(ArtifactError, match="on 1 of 3 rows"):
            model.predict([ROW, ROW, ROW])
        with pytest.raises(ArtifactError, match="on 1 of 300 rows"):
            model.predict([ROW] * 300)
    finally:
        del model.finish, model.forward_few
