"""Diagnostics: every user mistake becomes `FILE:LINE:COL: error: ...` with the
source line, a caret under the culprit and, where we know one, a hint.

Stages raise `MlcError` with one or more diagnostics; the CLI prints them and
exits with status 1. Nothing a user can cause should reach them as a traceback.
"""
from __future__ import annotations

import difflib
import unicodedata
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
        where = self.file or ("<input>" if self.span is not None else "")
        if self.span is not None:
            where += f":{self.span.line}:{self.span.col}"
        message = _clean(self.message)
        out = [f"{where}: {self.severity}: {message}" if where else f"{self.severity}: {message}"]
        if self.span is not None and source is not None:
            out += _excerpt(source, self.span)
        for span, note in self.notes:
            out.append(f"{self.file or '<input>'}:{span.line}:{span.col}: note: {note}")
            if source is not None:
                out += _excerpt(source, span)
        if self.hint:
            out.append(f"  hint: {_clean(self.hint)}")
        return "\n".join(out)


def _excerpt(source: str, span: Span) -> list[str]:
    # Lines as the parser counts them: only "\n" ends a line (not \f, \v, \x1c, U+2028...).
    lines = source.split("\n")
    if source.endswith("\n"):
        lines.pop()
    if not 1 <= span.line <= len(lines):
        return []
    text = "".join(_shown(ch) for ch in lines[span.line - 1].rstrip("\r"))
    width = 1
    if span.end_line == span.line and span.end_col and span.end_col > span.col:
        width = span.end_col - span.col
    # One display cell per column the parser counts, two for wide characters.
    pad = "".join("  " if _wide(ch) else " " for ch in lines[span.line - 1][:max(0, span.col - 1)])
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * len(gutter) + pad + "^" * width]


def _clean(text: str) -> str:
    """Names in messages come from the user's files: show control characters as escapes."""
    return "".join(f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def _shown(ch: str) -> str:
    """A source character as printed in an excerpt: control characters become spaces."""
    return " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


class UserError(Exception):
    """A mistake in the user's files or rows without a source location (a data
    file, an artifact, rows sent to predict). The CLI prints it as `error: ...`."""


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
