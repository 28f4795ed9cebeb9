"""Parse .dml text into the AST with Lark (LALR, so errors point at one token)."""
from __future__ import annotations

import difflib
import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Transformer_NonRecursive, Tree, v_args

from mlc.diagnostics import Diagnostic, MlcError, Span

from . import ast

GRAMMAR_PATH = Path(__file__).with_name("dml.lark")

# What a person calls each terminal, for "expected ..." messages.
TOKEN_NAMES = {
    "NAME": "a name", "INT": "a whole number", "NUMBER": "a number", "STRING": 'a "string"',
    "COLON": "`:`", "LBRACE": "`{`", "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`",
    "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "EQUAL": "`=`", "SLASH": "`/`", "DOT": "`.`",
    "COMPARE": "a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`)",
    "$END": "end of file",
}


class _GluedKeyword(Exception):
    """A keyword that is only the start of a longer word (`inputage`)."""

    def __init__(self, token, word: str):
        super().__init__(word)
        self.token, self.word = token, word


_current = threading.local()  # the text being parsed, for the keyword callback
_WORD_REST = re.compile(r"[A-Za-z0-9_]*")


def _whole_keyword(tok):
    # Where only keywords may come, the lexer matches `input` in `inputage` and leaves
    # `age` for the next token; a keyword must be a whole word.
    source = getattr(_current, "source", None)
    if source is not None and tok.end_pos is not None:
        rest = _WORD_REST.match(source, tok.end_pos).group()
        if rest:
            raise _GluedKeyword(tok, str(tok) + rest)
    return tok


@lru_cache(maxsize=1)
def _parser_keywords() -> tuple[str, ...]:
    """Every word the grammar spells out: `data`, `split`, `on`, ..."""
    return tuple(sorted(set(re.findall(r'"([a-z]+)"', GRAMMAR_PATH.read_text()))))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR_PATH.read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False,
                lexer_callbacks={k.upper(): _whole_keyword for k in _parser_keywords()})


def _span(meta_or_tok) -> Span:
    return Span(meta_or_tok.line, meta_or_tok.column,
                getattr(meta_or_tok, "end_line", None), getattr(meta_or_tok, "end_column", None))


# How deep constructs may nest (docs/language.md, "Lexical rules"). Later stages walk
# option values, block expressions and slice conditions recursively; these limits keep
# them far from Python's recursion limit. Each list or call in an option value is one
# level; in a block expression or a slice condition each operator, unary `-`, call,
# list, `and`, `or` and `not` is one level (parentheses alone are not).
MAX_VALUE_NESTING = 32
MAX_EXPR_NESTING = 100
_VALUE_LEVELS = frozenset({"list", "call"})
_EXPR_LEVELS = frozenset({"e_add", "e_sub", "e_mul", "e_div", "e_neg", "e_call", "e_list", "c_or", "c_and", "c_not"})

# Statement keywords: in an unclosed `{` block the parser reads them as option names.
KEYWORDS = ("data", "input", "output", "combiner", "train", "block", "slice", "tune")


class _BadEscape(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _unquote(tok, file: str = "<input>") -> str:
    """The text of a STRING token; `\\"` and `\\\\` are its only escapes."""
    body = str(tok[1:-1])
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]  # the grammar guarantees a character after a backslash
            if nxt not in "\\\"":
                col = tok.column + 1 + i
                raise _BadEscape(Diagnostic(
                    f"unknown escape `\\{nxt}` in a string", Span(tok.line, col, tok.line, col + 2), file,
                    'write `\\\\` for a backslash and `\\"` for a quote; paths can use `/`'))
            out.append(nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):  # builds the AST without recursion, however deep the tree
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
            elif isinstance(s, ast.Block):
                prog.blocks.append(s)
            elif isinstance(s, ast.Slice):
                prog.slices.append(s)
            elif isinstance(s, ast.Tune):
                prog.tunes.append(s)
            else:
                prog.sections.append(s)
        return prog

    # values
    def number(self, meta, c):
        text = str(c[0])
        num = int(text) if text.lstrip("+-").isdigit() else float(text)
        return ast.Num(num, _span(c[0]))

    def string(self, meta, c):
        return ast.Str(_unquote(c[0], self.file), _span(c[0]))

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
        return ast.Data(_unquote(c[0], self.file), _span(c[0]), c[1] if len(c) > 1 else None)

    def _feature(self, role, c):
        opts = c[2] if len(c) > 2 else []
        return ast.Feature(role, str(c[0]), str(c[1]), opts, _span(c[0]), _span(c[1]))

    def input_stmt(self, meta, c):
        return self._feature("input", c)

    def output_stmt(self, meta, c):
        return self._feature("output", c)

    def combiner_stmt(self, meta, c):
        args = next((x for x in c[1:] if isinstance(x, tuple)), None)
        options = next((x for x in c[1:] if isinstance(x, list)), [])
        return ast.Section("combiner", str(c[0]), options, _span(c[0]), args[1] if args else None)

    def block_args(self, meta, c):
        return ("args", list(c))  # a tuple tells it apart from the options list

    # expert blocks
    def block_stmt(self, meta, c):
        name, rest = c[0], c[1:]
        params = [x for x in rest if isinstance(x, ast.BlockParam)]
        body = [x for x in rest if isinstance(x, ast.Assign)]
        text = self.source[meta.start_pos:meta.end_pos]
        return ast.Block(str(name), params, body, rest[-1], _span(name), text, meta.line)

    def param(self, meta, c):
        type_ = next((str(t) for t in c[1:] if not isinstance(t, (ast.Num, ast.Str, ast.Name, ast.Call,
                                                                     ast.List))), None)
        default = next((v for v in c[1:] if isinstance(v, (ast.Num, ast.Str, ast.Name, ast.Call, ast.List))),
                       None)
        return ast.BlockParam(str(c[0]), type_, default, _span(c[0]))

    def assign(self, meta, c):
        return ast.Assign(str(c[0]), c[1], _span(c[0]))

    def _binary(op):  # noqa: N805 - a rule factory, used at class creation
        def rule(self, meta, c):
            return ast.EOp(op, list(c), _span(meta))
        return rule

    e_add, e_sub, e_mul, e_div = _binary("add"), _binary("sub"), _binary("mul"), _binary("div")

    def e_neg(self, meta, c):
        return ast.EOp("neg", list(c), _span(meta))

    def e_num(self, meta, c):
        text = str(c[0])
        return ast.ENum(int(text) if text.lstrip("+-").isdigit() else float(text), _span(c[0]))

    def e_var(self, meta, c):
        return ast.EVar(str(c[0]), _span(c[0]))

    def e_kwarg(self, meta, c):
        return ("kw", str(c[0]), c[1])

    def e_call(self, meta, c):
        args = [a for a in c[1:] if not isinstance(a, tuple)]
        kwargs = {a[1]: a[2] for a in c[1:] if isinstance(a, tuple)}
        return ast.ECall(str(c[0]), args, kwargs, _span(c[0]))

    def e_list(self, meta, c):
        return ast.EList(list(c), _span(meta))

    def train_stmt(self, meta, c):
        return ast.Section("train", None, c[0], _span(meta))

    # tuning
    def tune_stmt(self, meta, c):
        return ast.Tune(c[0], _span(meta))

    def tune_options(self, meta, c):
        return list(c)

    def tune_option(self, meta, c):
        path, span = c[0]
        return ast.TuneOption(path, c[1], span)

    def t_path(self, meta, c):
        return ast.Path([str(t) for t in c], _span(meta))

    def t_dist(self, meta, c):
        return ast.Dist(str(c[0]), list(c[1:]), _span(c[0]))

    # slices
    def slice_stmt(self, meta, c):
        return ast.Slice(str(c[0]), c[1], c[2] if len(c) > 2 else [], _span(c[0]))

    def c_compare(self, meta, c):
        return ast.Cond("compare", _span(meta), str(c[0]), str(c[1]), [c[2]])

    def c_in(self, meta, c):
        return ast.Cond("in", _span(meta), str(c[0]), values=list(c[1:]))

    def c_missing(self, meta, c):
        return ast.Cond("missing", _span(meta), str(c[0]))

    def c_present(self, meta, c):
        return ast.Cond("present", _span(meta), str(c[0]))

    def c_and(self, meta, c):
        return ast.Cond("and", _span(meta), parts=list(c))

    def c_or(self, meta, c):
        return ast.Cond("or", _span(meta), parts=list(c))

    def c_not(self, meta, c):
        return ast.Cond("not", _span(meta), parts=list(c))


def parse(source: str, file: str = "<input>") -> ast.Program:
    """Parse a program; raise MlcError with a located diagnostic on bad syntax."""
    _current.source = source
    try:
        tree = _parser().parse(source)
    except _GluedKeyword as e:
        raise MlcError(_glued(source, file, e), source) from None
    except lark.exceptions.UnexpectedCharacters as e:
        raise MlcError(_bad_character(source, file, e), source) from None
    except lark.exceptions.UnexpectedToken as e:
        raise MlcError(_bad_token(source, file, e), source) from None
    except lark.exceptions.LarkError as e:  # pragma: no cover - LALR reports the two above
        raise MlcError(Diagnostic(f"cannot parse the program: {e}", Span(1, 1), file), source) from None
    finally:
        _current.source = None
    _check_nesting(tree, source, file)
    try:
        return _ToAst(file, source).transform(tree)
    except lark.exceptions.VisitError as e:
        if isinstance(e.orig_exc, _BadEscape):
            raise MlcError(e.orig_exc.diagnostic, source) from None
        raise


def _check_nesting(tree: Tree, source: str, file: str) -> None:
    """Refuse option values and expressions nested deeper than the documented limits,
    at the first construct past the limit (an iterative walk: no depth is too deep here)."""
    stack = [(tree, 0, 0)]
    while stack:
        node, values, exprs = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data in _VALUE_LEVELS:
            values += 1
            if values > MAX_VALUE_NESTING:
                raise MlcError(Diagnostic(
                    f"this value nests more than {MAX_VALUE_NESTING} levels of lists and calls",
                    _start(node), file, f"option values may nest at most {MAX_VALUE_NESTING} levels deep"), source)
        elif node.data in _EXPR_LEVELS:
            exprs += 1
            if exprs > MAX_EXPR_NESTING:
                if node.data.startswith("c_"):
                    what, hint = "condition", "test many values at once with `column in [...]`, or split it"
                elif node.data in ("e_add", "e_sub", "e_mul", "e_div"):
                    what, hint = "expression", ("each `+ - * /` in a chain nests one level; sum the terms in parts "
                                                "(`a = x1 + x2 + ...`, then `a + ...`)")
                else:
                    what, hint = "expression", "give inner parts a name first (`h = relu(x)`, then `relu(h)`)"
                raise MlcError(Diagnostic(f"this {what} nests more than {MAX_EXPR_NESTING} levels deep",
                                          _start(node), file, hint), source)
        stack.extend((c, values, exprs) for c in node.children)


def _start(node: Tree) -> Span:
    """Where a construct starts: a call's name, else its first character."""
    first = node.children[0] if node.children else None
    if node.data in ("call", "e_call") and isinstance(first, lark.Token):
        return Span(first.line, first.column, first.line, first.column + len(first))
    meta = node.meta
    if getattr(meta, "empty", True):  # pragma: no cover - every nesting rule matches at least one token
        return Span(1, 1)
    return Span(meta.line, meta.column, meta.line, meta.column + 1)


def _glued(source: str, file: str, e: _GluedKeyword) -> Diagnostic:
    tok, word = e.token, e.word
    rest = word[len(str(tok)):]
    if len(rest) <= 2 and rest.isalpha() and rest not in _parser_keywords():  # `inputs`, `datas`
        hint = f"did you mean `{tok}`?"
    else:
        hint = f"put a space after `{tok}`: `{tok} {rest}`"
    return Diagnostic(f"unexpected `{word}`", Span(tok.line, tok.column, tok.line, tok.column + len(word)),
                      file, hint)


def _bad_character(source: str, file: str, e) -> Diagnostic:
    pos = e.pos_in_stream
    ch = source[pos] if pos is not None and 0 <= pos < len(source) else ""
    hint = None
    if ch == "'":
        hint = 'strings use double quotes: "like this"'
    elif ch and ch in "\u201c\u201d\u2018\u2019":
        hint = 'use straight double quotes: "like this"'
    elif ch == '"':
        hint = 'a string must end with `"` on the same line'
    elif ch == "-":
        hint = "names may hold letters, digits and `_`, not `-`"
    elif ch.isalpha() or ch.isdigit():
        hint = "names may hold only the letters A-Z and a-z, digits and `_`"
    else:
        expected = _expected(e, getattr(e, "allowed", None))
        hint = "expected " + _join(expected) if expected else None
    return Diagnostic(f"unexpected character {_show_char(ch)}", Span(e.line, e.column), file, hint)


def _show_char(ch: str) -> str:
    if not ch:
        return "at end of file"
    if ch.isprintable() and not ch.isspace() and ch != "`":
        return f"`{ch}`"
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name.lower()})" if name else "")


def _expected(e, fallback) -> list[str]:
    """What could come next, as a person would write it."""
    try:  # the interactive parser knows exactly; the table's lookaheads are merged (LALR)
        names = e.interactive_parser.accepts()
    except Exception:  # noqa: BLE001 - older Lark or no parser state: use the table
        names = fallback or ()
    return sorted({TOKEN_NAMES.get(t, f"`{_literal(t)}`") for t in names})


def _bad_token(source: str, file: str, e) -> Diagnostic:
    tok = e.token
    expected = _expected(e, e.expected)
    hint = "expected " + _join(expected) if expected else None
    at_end = tok.type == "$END"
    offset = len(source) if at_end else tok.start_pos
    tokens = _scan(source)
    brace = _unclosed_brace(tokens)
    if brace is not None and brace[0] < offset:
        before = [t for t in tokens if t[0] < offset and t[1] not in ("space", "comment")]
        prev = before[-1] if before else None
        # In an open block a keyword reads as an option name, so the parser gives up on the
        # next statement: blame the `{`, not the statement.
        if at_end or (prev is not None and prev[3] > brace[1]
                      and difflib.get_close_matches(prev[2], KEYWORDS, n=1, cutoff=0.8)):
            return Diagnostic("`{` is not closed", Span(brace[1], brace[2], brace[1], brace[2] + 1),
                              file, "add `}` after the last option of this block")
    if at_end:
        if getattr(tok, "end_line", None):  # Lark puts $END at the last token
            line, col = tok.end_line, tok.end_column
        else:
            line, col = 1, 1
        return Diagnostic("unexpected end of file", Span(line, col, line, col + 1), file, hint)
    text = str(tok)
    if text == "-" and tok.start_pos and re.match(r"[A-Za-z0-9_]", source[tok.start_pos - 1]):
        # `my-age`: `-` is an operator only inside blocks; here it glues a name.
        return Diagnostic("unexpected character `-`", Span(tok.line, tok.column, tok.line, tok.column + 1),
                          file, "names may hold letters, digits and `_`, not `-`")
    if tok.type == "NAME":
        words = [w.strip("`") for w in expected if w.strip("`") in _parser_keywords()]
        close = difflib.get_close_matches(text, words, n=1, cutoff=0.6)
        following = [t for t in tokens if t[0] >= tok.end_pos and t[1] not in ("space", "comment")]
        if close:
            hint = f"did you mean `{close[0]}`?"
        elif following and following[0][2] == ":" and {"input", "output"} <= set(words):
            hint = f"a feature line starts with `input` or `output`: `input {text} : ...`"
    shown = text if len(text) <= 40 else text[:37] + "..."
    return Diagnostic(f"unexpected `{shown}`", Span(tok.line, tok.column, tok.line, tok.column + len(text)),
                      file, hint)


_SCAN = re.compile(r'(?P<space>[ \t\f\r\n]+)|(?P<comment>#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*")'
                   r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>.)", re.S)


def _scan(source: str) -> list[tuple[int, str, str, int, int]]:
    """A rough token list (offset, kind, text, line, column) for placing syntax errors."""
    out, line, line_start = [], 1, 0
    for m in _SCAN.finditer(source):
        out.append((m.start(), m.lastgroup, m.group(), line, m.start() - line_start + 1))
        if "\n" in m.group():
            line += m.group().count("\n")
            line_start = m.start() + m.group().rindex("\n") + 1
    return out


def _unclosed_brace(tokens) -> tuple[int, int, int] | None:
    """(offset, line, column) of the first `{` that no `}` closes, if any."""
    stack = []
    for offset, kind, text, line, col in tokens:
        if kind == "other" and text == "{":
            stack.append((offset, line, col))
        elif kind == "other" and text == "}" and stack:
            stack.pop()
    return stack[0] if stack else None


def _literal(terminal: str) -> str:
    """Keyword terminals are named like DATA or __ANON; show their text."""
    try:
        pattern = _parser().get_terminal(terminal).pattern
        return pattern.value
    except Exception:  # noqa: BLE001 - best effort naming only
        return terminal.lower()


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
