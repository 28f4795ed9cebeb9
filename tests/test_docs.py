"""docs/language.md stays true: every ```dml block in it is a complete program that
parses and checks against the example data, and the page names everything in
mlc/spec.py. Fast: no training, no JAX."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from mlc import spec
from mlc.compile import frontend
from mlc.diagnostics import MlcError
from mlc.explain import explain

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
# A fenced block: ```LANG [INFO]\n BODY ``` with both fences at the start of a line.
FENCE = re.compile(r"^```([^\s`]*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def _blocks() -> list[tuple[int, str, str, str]]:
    """(line, language, info, body) of every fenced block in the page."""
    text = DOC.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2).strip(), m.group(3))
            for m in FENCE.finditer(text)]


BLOCKS = _blocks()
DML = [(line, body) for line, lang, _, body in BLOCKS if lang == "dml"]
SETUP = [body for _, lang, info, body in BLOCKS if lang == "python" and info == "setup"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding a copy of examples/data plus what the page's setup scripts make."""
    wd = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples" / "data", wd / "data")
    cwd = os.getcwd()
    os.chdir(wd)
    try:
        for code in SETUP:
            exec(compile(code, f"{DOC}:setup", "exec"), {"__name__": "__doc_setup__"})
    finally:
        os.chdir(cwd)
    return wd


def test_page_has_examples():
    assert len(DML) >= 15, "docs/language.md should show each construct in a ```dml block"
    assert SETUP, "the page's ```python setup block (making the Parquet and split files) is missing"


@pytest.mark.parametrize("line,body", DML, ids=[f"line{line}" for line, _ in DML])
def test_dml_block_checks(workdir, line, body):
    path = workdir / f"block_{line}.dml"
    path.write_text(body, encoding="utf-8")
    try:
        fe = frontend(path)
    except MlcError as e:
        pytest.fail(f"docs/language.md line {line}: the ```dml block does not check:\n{e.render()}")
    assert fe.resolved.inputs and fe.resolved.outputs


def test_explain_example_is_current(workdir):
    """The page shows `mlc explain examples/titanic.dml`; it must match what mlc prints today."""
    shown = [body for _, body in DML if "every decision made" in body.splitlines()[0]]
    assert len(shown) == 1
    shutil.copy(ROOT / "examples" / "titanic.dml", workdir / "titanic.dml")
    live = explain(frontend(workdir / "titanic.dml").resolved)
    # The first line names the program as given on the command line.
    assert shown[0].splitlines()[1:] == live.splitlines()[1:], (
        "update the `mlc explain` example in docs/language.md (and the defaults it documents)")


def test_page_names_everything_in_the_spec():
    text = DOC.read_text(encoding="utf-8")
    names = set(spec.INPUT_TYPES) | set(spec.OUTPUT_TYPES) | set(spec.COMBINERS)
    for table in list(spec.FEATURE_OPTIONS.values()) + list(spec.SECTION_OPTIONS.values()):
        for key, option in table.items():
            names.add(key)
            if isinstance(option.form, spec.Choice):
                for value, args in option.form.calls.items():
                    names.add(value)
                    names.update(args)
    for metrics in spec.METRICS.values():
        names.update(metrics)
    missing = sorted(n for n in names if not re.search(rf"`[^`\n]*\b{re.escape(n)}\b[^`\n]*`", text))
    assert not missing, f"docs/language.md does not mention {missing}"
