"""Diagnostics: every user mistake becomes `FILE:LINE:COL: error: ...` with the
source line, a caret under the culprit and, where we know one, a hint.

Stages raise `MlcError` with one or more diagnostics; the CLI prints them and
exits with status 1. Nothing a user can cause should reach them as a traceback.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

# Output stays proportional to what a person can read, whatever the input's size:
MAX_PER_FILE = 50  # diagnostics shown per file; a note counts the rest
MAX_NAME = 64  # a longer name quoted in a message (`like this`) is cut to this many characters
MAX_WORD = 240  # ... and so is any longer run of characters without a space (a path, a value)
MAX_MESSAGE = 1000  # characters of a message or hint
MAX_LINE = 4000  # a source line up to this many display columns is shown whole under a message;
EXCERPT_WIDTH = 120  # a longer one (machine-made) as a window of this many columns around the caret


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
        where = _shorten(where, 2 * EXCERPT_WIDTH)
        out = [f"{where}: {self.severity}: {message}" if where else f"{self.severity}: {message}"]
        if self.span is not None and source is not None:
            out += _excerpt(source, self.span)
        for span, note in self.notes:
            out.append(f"{_shorten(self.file or '<input>', 2 * EXCERPT_WIDTH)}:{span.line}:{span.col}: "
                       f"note: {_clean(note)}")
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
    line = lines[span.line - 1].rstrip("\r")
    start = max(0, min(span.col - 1, len(line)))  # the caret's first character
    width = 1
    if span.end_line == span.line and span.end_col and span.end_col > span.col:
        width = span.end_col - span.col
    # A long line is shown as a window around the caret, `...` marking what is left out.
    lo, hi = 0, len(line)
    if len(line) > MAX_LINE and _cells(line) > MAX_LINE:
        lo = max(0, start - EXCERPT_WIDTH // 3)
        hi = lo
        while hi < len(line) and _cells(line[lo:hi + 1]) <= EXCERPT_WIDTH:
            hi += 1
    before = "..." if lo > 0 else ""
    after = "..." if hi < len(line) else ""
    text = before + "".join(_shown(ch) for ch in line[lo:hi]) + after
    # One display cell per column the parser counts, two for wide characters.
    pad = " " * len(before) + "".join("  " if _wide(ch) else " " for ch in line[lo:start])
    width = max(1, min(width, hi - start)) if start < hi else 1
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * len(gutter) + pad + "^" * width]


def _cells(text: str) -> int:
    return sum(2 if _wide(ch) else 1 for ch in text)


_LONG_NAME = re.compile(r"`([^`\n]{%d,})`" % (MAX_NAME + 1))
_LONG_WORD = re.compile(r"\S{%d,}" % (MAX_WORD + 1))


def _cut(text: str, limit: int) -> str:
    """The start and the end of a long name, its length between: the end of a path is its file name."""
    head = (limit - 2) // 2
    return text[:head] + f"...({len(text)} characters)..." + text[-(limit - 3 - head):]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _clean(text: str) -> str:
    """Names in messages come from the user's files: show control characters as escapes,
    and cut very long names (and the message itself) so nothing is echoed in full."""
    text = shorten_text(text)
    return "".join(f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def _shown(ch: str) -> str:
    """A source character as printed in an excerpt: control characters become spaces."""
    return " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


class UserError(Exception):
    """A mistake in the user's files or rows without a source location (a data
    file, an artifact, rows sent to predict). The CLI prints it as `error: ...`;
    its text has long names cut like a diagnostic's."""

    def __str__(self) -> str:
        # Paths in these messages are quoted too: they keep about 200 characters (under MAX_WORD,
        # so the cut name is not cut again as a long word).
        return shorten_text(super().__str__(), name_limit=MAX_WORD - 40)


def shorten_text(text: str, name_limit: int = MAX_NAME) -> str:
    """Very long names and runs without spaces cut (a count of their characters kept),
    and the whole text to at most MAX_MESSAGE characters; newlines stay."""
    text = _LONG_NAME.sub(lambda m: f"`{_cut(m.group(1), name_limit)}`" if len(m.group(1)) > name_limit
                          else m.group(), text)
    text = _LONG_WORD.sub(lambda m: _cut(m.group(), MAX_WORD), text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


class MlcError(Exception):
    """A user-facing error made of diagnostics; `source` lets us print the line."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic, source: str | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return render_all(self.diagnostics, self.source)


def render_all(diagnostics: list[Diagnostic], source: str | None = None) -> str:
    """The diagnostics as printed: at most MAX_PER_FILE per file, then a note counting
    the ones left out (by severity)."""
    out, shown, left = [], Counter(), {}
    for d in diagnostics:
        key = d.file or ""
        if shown[key] < MAX_PER_FILE:
            shown[key] += 1
            out.append(d.render(source))
        else:
            left.setdefault(key, Counter())[d.severity] += 1
    for key, counts in left.items():
        more = " and ".join(f"{n} more {sev}{'' if n == 1 else 's'}" for sev, n in counts.items())
        where = f"{_shorten(key, 2 * EXCERPT_WIDTH)}: " if key else ""
        out.append(f"{where}note: {more} not shown (the first {MAX_PER_FILE} of the file are above)")
    return "\n".join(out)


def did_you_mean(word: str, choices) -> str | None:
    """A hint naming the closest valid spelling, or listing the choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if len(choices) <= 12:
        return "expected one of: " + ", ".join(f"`{c}`" for c in choices)
    return None
