"""Helpers for the front-end tests: run the real CLI on files in a folder, and
print a parsed program back as .dml (for round-trip properties)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mlc.grammar import ast

# A small data set that every diagnostic test can use: 20 rows, each column
# made for one kind of mistake.
CSV_ROWS = [
    # age, sex, pclass, survived, grade, note, part, flat, empty
    ("22", "male", "1st", "yes", "a", "1", "train", "same", ""),
    ("38", "female", "2nd", "no", "b", "2", "validation", "same", ""),
    ("26", "female", "3rd", "yes", "c", "oops", "test", "same", ""),
    ("35", "male", "1st", "no", "d", "4", "train", "same", ""),
    ("54", "male", "2nd", "yes", "e", "5", "validation", "same", ""),
]
CSV = "age,sex,pclass,survived,grade,note,part,flat,empty\n" + "".join(
    ",".join(row) + "\n" for row in CSV_ROWS * 4)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    @property
    def first(self) -> str:
        """The first line of the first diagnostic."""
        return self.errors[0] if self.errors else (self.lines[0] if self.lines else "")

    @property
    def errors(self) -> list[str]:
        return [line for line in self.lines if ": error: " in line or line.startswith("error: ")]

    @property
    def hint(self) -> str | None:
        hints = self.hints
        return hints[0] if hints else None

    @property
    def hints(self) -> list[str]:
        return [line[len("  hint: "):] for line in self.lines if line.startswith("  hint: ")]


def cli_env(width: int | None = 1000) -> dict:
    env = dict(os.environ)
    env.pop("MLC_DEVICE", None)
    env["JAX_PLATFORMS"] = "cpu"
    # The CLI prints through Rich, which wraps at the terminal width (80 without a
    # terminal). A wide COLUMNS keeps each diagnostic on its line; see
    # test_diagnostics.test_long_diagnostic_is_not_wrapped for the bug itself.
    if width is None:
        env.pop("COLUMNS", None)
    else:
        env["COLUMNS"] = str(width)
    return env


def mlc(cwd: Path, *args: str, width: int | None = 1000, timeout: float = 120) -> Result:
    """Run `python -m mlc.cli ARGS` in `cwd` and return what it printed."""
    p = subprocess.run([sys.executable, "-m", "mlc.cli", *args], cwd=cwd, env=cli_env(width),
                       capture_output=True, text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


# ---- printing an AST back as .dml ------------------------------------------
def program_to_dml(p: ast.Program) -> str:
    """Canonical text of a parsed program (the parser keeps no layout)."""
    out = []
    for d in p.data:
        line = f"data {ast.Str(d.path, None).to_dml()}"
        if isinstance(d.split, ast.SplitRatio):
            line += " split " + "/".join(str(x) for x in d.split.parts)
            if d.split.seed is not None:
                line += f" seed {d.split.seed}"
        elif isinstance(d.split, ast.SplitBy):
            line += f" split by {d.split.column}"
        out.append(line)
    for f in p.features:
        out.append(f"{f.role} {f.name} : {f.type}" + _options(f.options))
    for s in p.sections:
        head = s.keyword + (f" {s.name}" if s.name is not None else "")
        out.append(head + _options(s.options, required=s.keyword == "train"))
    return "\n".join(out) + "\n"


def _options(options: list[ast.Option], required: bool = False) -> str:
    if not options:
        return " {}" if required else ""
    rows = []
    for o in options:
        text = f"{o.key} = {o.value.to_dml()}"
        if o.on is not None:
            text += " on " + ".".join(o.on)
        rows.append("  " + text)
    return " {\n" + "\n".join(rows) + "\n}"


def shape(node):
    """An AST as plain data without spans: equal shapes mean the same program."""
    if isinstance(node, ast.Program):
        return ("program", [shape(d) for d in node.data], [shape(f) for f in node.features],
                [shape(s) for s in node.sections])
    if isinstance(node, list):
        return [shape(x) for x in node]
    if isinstance(node, (ast.Num, ast.Str, ast.Name)):
        return (type(node).__name__, type(node.value).__name__, node.value)
    if isinstance(node, ast.Call):
        return ("call", node.name, [(a.key, shape(a.value)) for a in node.args])
    if isinstance(node, ast.List):
        return ("list", [shape(x) for x in node.items])
    if isinstance(node, ast.Option):
        return ("option", node.key, shape(node.value), node.on)
    if isinstance(node, ast.Data):
        return ("data", node.path, shape(node.split) if node.split is not None else None)
    if isinstance(node, ast.SplitRatio):
        return ("ratio", node.parts, node.seed)
    if isinstance(node, ast.SplitBy):
        return ("by", node.column)
    if isinstance(node, ast.Feature):
        return ("feature", node.role, node.name, node.type, shape(node.options))
    if isinstance(node, ast.Section):
        return ("section", node.keyword, node.name, shape(node.options))
    raise TypeError(type(node))
