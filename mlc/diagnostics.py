"""Diagnostics: every user mistake becomes `FILE:LINE:COL: error: ...` with the
source line, a caret under the culprit and, where we know one, a hint.

Stages raise `MlcError` with one or more diagnostics; the CLI prints them and
exits with status 1. Nothing a user can cause should reach them as a traceback.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of a source file, 1-based lines and columns (end exclusive)."""

    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None


@dataclass
class Diagnostic:
    message: str
    span: Span | None = None
    file: str | None = None
    hint: str | None = None
    severity: str = "error"
    notes: list[tuple[Span, str]] = field(default_factory=list)

    def render(self, source: str | None = None) -> str:
        where = self.file or "<input>"
        if self.span is not None:
            where += f":{self.span.line}:{self.span.col}"
        out = [f"{where}: {self.severity}: {self.message}"]
        if self.span is not None and source is not None:
            out += _excerpt(source, self.span)
        for span, note in self.notes:
            out.append(f"{self.file or '<input>'}:{span.line}:{span.col}: note: {note}")
            if source is not None:
                out += _excerpt(source, span)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


def _excerpt(source: str, span: Span) -> list[str]:
    lines = source.splitlines()
    if not 1 <= span.line <= len(lines):
        return []
    text = lines[span.line - 1].expandtabs(1)
    width = 1
    if span.end_line == span.line and span.end_col and span.end_col > span.col:
        width = span.end_col - span.col
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) + span.col - 1) + "^" * width]


class MlcError(Exception):
    """A user-facing error made of diagnostics; `source` lets us print the line."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic, source: str | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.source) for d in self.diagnostics)


def did_you_mean(word: str, choices) -> str | None:
    """A hint naming the closest valid spelling, or listing the choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if len(choices) <= 12:
        return "expected one of: " + ", ".join(f"`{c}`" for c in choices)
    return None
