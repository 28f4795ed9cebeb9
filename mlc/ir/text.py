"""Parse the IR's text form (the inverse of `print_graph`).

Golden files, `model.ir` in artifacts and hand-written test graphs are IR text;
`parse_graph(print_graph(g))` gives back a graph equal to `g`, and
`print_graph(parse_graph(t)) == t` for any `t` that `print_graph` wrote.
Malformed text fails with an `IRParseError` naming the line:

    line 7: %5 = add(%4, %9): %9 is not defined (yet)
"""
from __future__ import annotations

import ast
import math
import re

from .graph import OPS, Graph, Group, IRError, Op, Param, TensorType

_NAME = r"[\w.\-]+"
_TYPE = r"\w+\[[^\]]*\]"
_GRAPH_RE = re.compile(rf"^graph ({_NAME}) \{{$")
_INPUT_RE = re.compile(rf"^input %({_NAME}) : ({_TYPE})$")
_PARAM_RE = re.compile(rf"^param %({_NAME}) : ({_TYPE}) = (\w+\(.*\))$")
_OP_RE = re.compile(rf"^%({_NAME}) = (\w+)\(([^)]*)\)(?: \{{(.*)\}})? : ({_TYPE})$")
_OUTPUT_RE = re.compile(rf"^output (\S+) = %({_NAME})$")
_GROUP_RE = re.compile(rf"^group ({_NAME}) (\w+)\(([^)]*)\)(?: \{{(.*)\}})?$")
_TYPE_RE = re.compile(r"^(\w+)\[([^\]]*)\]$")
_VALUE_RE = re.compile(rf"^%({_NAME})$")

_FORMS = {
    "input": "input %NAME : TYPE",
    "param": "param %NAME : TYPE = INIT(ARGS)",
    "output": "output NAME = %VALUE",
    "group": "group NAME FAMILY(%A, %B, ...) {ATTRS}",
    "%": "%NAME = OP(%A, %B) {ATTRS} : TYPE",
}


class IRParseError(IRError):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


def parse_type(text: str) -> TensorType:
    m = _TYPE_RE.match(text)
    if not m or m.group(1) not in ("f32", "i32"):
        raise ValueError(f"`{text}` is not a type like f32[B,16] or i32[B]")
    dims = [d.strip() for d in m.group(2).split(",")] if m.group(2).strip() else []
    shape = []
    for d in dims:
        if re.fullmatch(r"\d+", d):
            shape.append(int(d))
        elif re.fullmatch(r"[A-Za-z_]\w*", d):
            shape.append(d)
        else:
            raise ValueError(f"`{d}` in `{text}` is neither a size nor a dimension name")
    return TensorType(m.group(1), tuple(shape))


def _literal(node: ast.AST):
    """A Python literal as `repr` writes it, plus nan and inf; nothing is evaluated."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return math.nan if node.id == "nan" else math.inf
    raise ValueError(f"`{ast.unparse(node)}` is not a literal")


def _kwargs(text: str) -> tuple[str, dict]:
    """`name(k=v, ...)` -> (name, {k: v}), values parsed as literals."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"cannot read `{text}`: {e.msg}") from None
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name) or tree.args:
        raise ValueError(f"expected `name(key=value, ...)`, got `{text}`")
    out = {}
    for kw in tree.keywords:
        if kw.arg is None or kw.arg in out:
            raise ValueError(f"bad or repeated key in `{text}`")
        out[kw.arg] = _literal(kw.value)
    return tree.func.id, out


def _values(text: str, what: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    out = []
    for part in text.split(","):
        m = _VALUE_RE.match(part.strip())
        if not m:
            raise ValueError(f"{what}: `{part.strip()}` is not a value like %name")
        out.append(m.group(1))
    return tuple(out)


def parse_graph(text: str, check_types: bool = True) -> Graph:
    """Read IR text into a Graph; checks SSA form and (by default) each op's type."""
    lines = text.splitlines()
    body = [(i + 1, ln.strip()) for i, ln in enumerate(lines)
            if ln.strip() and not ln.strip().startswith("#")]
    if not body:
        raise IRParseError(1, "empty text: expected `graph NAME {`")
    n, first = body[0]
    m = _GRAPH_RE.match(first)
    if not m:
        raise IRParseError(n, f"expected `graph NAME {{`, got `{first}`")
    g = Graph(m.group(1))
    defined: set[str] = set()
    closed = False
    for n, line in body[1:]:
        if closed:
            raise IRParseError(n, f"text after the closing `}}`: `{line}`")
        if line == "}":
            closed = True
            continue
        try:
            _parse_line(g, line, defined, check_types)
        except (ValueError, IRError) as e:
            raise IRParseError(n, str(e)) from None
    if not closed:
        raise IRParseError(len(lines) + 1, "missing the closing `}`")
    return g


def _define(name: str, defined: set[str]):
    if name in defined:
        raise ValueError(f"%{name} is defined twice")
    defined.add(name)


def _parse_line(g: Graph, line: str, defined: set[str], check_types: bool) -> None:
    keyword = "%" if line.startswith("%") else line.split(" ", 1)[0]
    if keyword not in _FORMS:
        raise ValueError(f"expected one of input, param, %VALUE = ..., output, group; got `{line}`")
    if keyword == "input":
        m = _INPUT_RE.match(line)
        if m:
            _define(m.group(1), defined)
            g.inputs[m.group(1)] = parse_type(m.group(2))
            return
    elif keyword == "param":
        m = _PARAM_RE.match(line)
        if m:
            kind, init = _kwargs(m.group(3))
            _define(m.group(1), defined)
            g.params[m.group(1)] = Param(m.group(1), parse_type(m.group(2)), {"kind": kind, **init})
            return
    elif keyword == "%":
        m = _OP_RE.match(line)
        if m:
            result, opcode, args_text, attrs_text, type_text = m.groups()
            if opcode not in OPS:
                raise ValueError(f"unknown op `{opcode}`")
            args = _values(args_text, opcode)
            for a in args:
                if a not in defined:
                    raise ValueError(f"%{result} = {opcode}(...): %{a} is not defined (yet)")
            arity = OPS[opcode][0]
            if arity is not None and len(args) != arity:
                raise ValueError(f"{opcode} takes {arity} arguments, got {len(args)}")
            attrs = _kwargs(f"f({attrs_text})")[1] if attrs_text is not None else {}
            type_ = parse_type(type_text)
            if check_types:
                try:
                    expected = OPS[opcode][1]([g.type_of(a) for a in args], attrs)
                except (KeyError, IndexError, TypeError) as e:
                    raise ValueError(f"{opcode}: bad attributes or arguments ({type(e).__name__}: {e})") from None
                if expected != type_:
                    raise ValueError(f"%{result}: written as {type_} but {opcode} gives {expected}")
            _define(result, defined)
            g.ops.append(Op(result, opcode, args, attrs, type_))
            return
    elif keyword == "output":
        m = _OUTPUT_RE.match(line)
        if m:
            if m.group(2) not in defined:
                raise ValueError(f"output {m.group(1)} refers to undefined %{m.group(2)}")
            if m.group(1) in g.outputs:
                raise ValueError(f"output {m.group(1)} is named twice")
            g.outputs[m.group(1)] = m.group(2)
            return
    elif keyword == "group":
        m = _GROUP_RE.match(line)
        if m:
            name, family, members_text, attrs_text = m.groups()
            members = _values(members_text, f"group {name}")
            ops = {op.result for op in g.ops}
            taken = {mm for grp in g.groups for mm in grp.members if mm in ops}
            for mm in members:
                if mm not in ops and mm not in g.params:
                    raise ValueError(f"group {name}: %{mm} is neither an op nor a param")
                if mm in taken:
                    raise ValueError(f"group {name}: %{mm} is already in another group")
            attrs = _kwargs(f"f({attrs_text})")[1] if attrs_text is not None else {}
            g.groups.append(Group(name, family, members, attrs))
            return
    raise ValueError(f"malformed {keyword} line; expected `{_FORMS[keyword]}`, got `{line}`")
