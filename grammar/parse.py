"""Parse .dml text into the AST with Lark (LALR, so errors point at one token)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Transformer, v_args

from mlc.diagnostics import Diagnostic, MlcError, Span

from . import ast

GRAMMAR_PATH = Path(__file__).with_name("dml.lark")

# What a person calls each terminal, for "expected ..." messages.
TOKEN_NAMES = {
    "NAME": "a name", "INT": "a whole number", "NUMBER": "a number", "STRING": 'a "string"',
    "COLON": "`:`", "LBRACE": "`{`", "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`",
    "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "EQUAL": "`=`", "SLASH": "`/`", "DOT": "`.`",
    "$END": "end of file",
}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR_PATH.read_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=False)


def _span(meta_or_tok) -> Span:
    return Span(meta_or_tok.line, meta_or_tok.column,
                getattr(meta_or_tok, "end_line", None), getattr(meta_or_tok, "end_column", None))


def _unquote(tok) -> str:
    return bytes(tok[1:-1], "utf-8").decode("unicode_escape") if "\\" in tok else str(tok[1:-1])


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, file: str, source: str):
        super().__init__()
        self.file, self.source = file, source

    def start(self, meta, stmts):
        prog = ast.Program(self.file, self.source)
        for s in stmts:
            if isinstance(s, ast.Data):
                prog.data.append(s)
            elif isinstance(s, ast.Feature):
                prog.features.append(s)
            else:
                prog.sections.append(s)
        return prog

    # values
    def number(self, meta, c):
        text = str(c[0])
        num = int(text) if text.lstrip("+-").isdigit() else float(text)
        return ast.Num(num, _span(c[0]))

    def string(self, meta, c):
        return ast.Str(_unquote(c[0]), _span(c[0]))

    def name(self, meta, c):
        return ast.Name(str(c[0]), _span(c[0]))

    def kwarg(self, meta, c):
        return ast.KwArg(str(c[0]), c[1], _span(c[0]))

    def call(self, meta, c):
        return ast.Call(str(c[0]), list(c[1:]), _span(c[0]))

    def list(self, meta, c):
        return ast.List(list(c), _span(meta))

    def dotted(self, meta, c):
        return [str(t) for t in c], _span(meta)

    def on_clause(self, meta, c):
        return c[0]

    def option(self, meta, c):
        opt = ast.Option(str(c[0]), c[1], _span(c[0]))
        if len(c) > 2:
            opt.on, opt.on_span = c[2]
        return opt

    def options(self, meta, c):
        return list(c)

    # statements
    def ratio(self, meta, c):
        return [int(t) for t in c]

    def split_ratio(self, meta, c):
        return ast.SplitRatio(c[0], int(c[1]) if len(c) > 1 else None, _span(meta))

    def split_by(self, meta, c):
        return ast.SplitBy(str(c[0]), _span(c[0]))

    def data_stmt(self, meta, c):
        return ast.Data(_unquote(c[0]), _span(c[0]), c[1] if len(c) > 1 else None)

    def _feature(self, role, c):
        opts = c[2] if len(c) > 2 else []
        return ast.Feature(role, str(c[0]), str(c[1]), opts, _span(c[0]), _span(c[1]))

    def input_stmt(self, meta, c):
        return self._feature("input", c)

    def output_stmt(self, meta, c):
        return self._feature("output", c)

    def combiner_stmt(self, meta, c):
        return ast.Section("combiner", str(c[0]), c[1] if len(c) > 1 else [], _span(c[0]))

    def train_stmt(self, meta, c):
        return ast.Section("train", None, c[0], _span(meta))


def parse(source: str, file: str = "<input>") -> ast.Program:
    """Parse a program; raise MlcError with a located diagnostic on bad syntax."""
    try:
        tree = _parser().parse(source)
    except lark.exceptions.UnexpectedCharacters as e:
        ch = source[e.pos_in_stream] if e.pos_in_stream is not None and e.pos_in_stream < len(source) else "?"
        hint = None
        if ch == "'":
            hint = 'strings use double quotes: "like this"'
        elif ch in "-" :
            hint = "names may hold letters, digits and `_`, not `-`"
        raise MlcError(Diagnostic(f"unexpected character `{ch}`", Span(e.line, e.column), file, hint),
                       source) from None
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            line = source.count("\n") + 1
            col = len(source.rsplit("\n", 1)[-1]) + 1
            what = "end of file"
            if source.endswith("\n"):
                line, col = max(1, line - 1), len(source.splitlines()[-1]) + 1 if source.strip() else 1
        else:
            line, col, what = tok.line, tok.column, f"`{tok}`"
        expected = sorted({TOKEN_NAMES.get(t, f"`{_literal(t)}`") for t in e.expected})
        hint = "expected " + _join(expected) if expected else None
        if tok.type == "$END" and "`}`" in expected:
            hint = "a `{` block is not closed: add `}`"
        raise MlcError(Diagnostic(f"unexpected {what}", Span(line, col, line,
                                  col + (len(str(tok)) if tok.type != "$END" else 1)), file, hint),
                       source) from None
    except lark.exceptions.UnexpectedEOF as e:  # pragma: no cover - LALR reports UnexpectedToken
        raise MlcError(Diagnostic("unexpected end of file", None, file), source) from None
    return _ToAst(file, source).transform(tree)


def _literal(terminal: str) -> str:
    """Keyword terminals are named like DATA or __ANON; show their text."""
    try:
        pattern = _parser().get_terminal(terminal).pattern
        return pattern.value
    except Exception:  # noqa: BLE001 - best effort naming only
        return terminal.lower()


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
