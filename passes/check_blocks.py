"""Check expert blocks and the combiner that calls one, before any data is read.

Names must be defined before use, functions must exist and get the right kinds
of arguments (tensor, int, number, list). Shapes need the data's widths and are
checked when the block is lowered (mlc/ir/blocks.py), at the same source lines.
"""
from __future__ import annotations

from mlc import spec
from mlc.diagnostics import did_you_mean
from mlc.grammar import ast


def check_blocks(program: ast.Program, error) -> dict[str, ast.Block]:
    """error(message, span, hint=None, notes=()) records a diagnostic."""
    blocks: dict[str, ast.Block] = {}
    for b in program.blocks:
        if b.name in blocks:
            error(f"duplicate block `{b.name}`", b.span, "give each block its own name",
                  [(blocks[b.name].span, "first defined here")])
            continue
        if b.name in spec.COMBINERS:
            error(f"`{b.name}` is a built-in combiner; a block needs another name", b.span)
            continue
        blocks[b.name] = b
        _check_block(b, error)
    return blocks


def param_kind(p: ast.BlockParam, first: bool) -> str:
    if p.type:
        return p.type
    if first and p.default is None:
        return "tensor"
    if isinstance(p.default, ast.Num):
        return "int" if isinstance(p.default.value, int) else "float"
    return "tensor"


def _check_block(b: ast.Block, error):
    env: dict[str, str] = {}
    for i, p in enumerate(b.params):
        if p.type is not None and p.type not in spec.BLOCK_PARAM_TYPES:
            error(f"unknown parameter type `{p.type}`", p.span, did_you_mean(p.type, spec.BLOCK_PARAM_TYPES))
            continue
        kind = param_kind(p, i == 0)
        if i == 0 and kind != "tensor":
            error(f"the first parameter of block `{b.name}` is its input tensor", p.span,
                  f"write `block {b.name}(x, ...)`")
        elif i > 0 and kind == "tensor":
            error(f"block `{b.name}` takes one tensor, its first parameter", p.span,
                  "give other parameters a type and a default, like `width: int = 256`")
        if p.default is not None and kind in ("int", "float"):
            if not isinstance(p.default, ast.Num) or (kind == "int" and not isinstance(p.default.value, int)):
                error(f"the default of `{p.name}` must be {'a whole number' if kind == 'int' else 'a number'}",
                      p.default.span)
        if p.name in env:
            error(f"duplicate parameter `{p.name}`", p.span)
        env[p.name] = kind
    if not b.params:
        error(f"block `{b.name}` needs an input parameter", b.span, f"write `block {b.name}(x)`")
    for a in b.body:
        env[a.name] = expr_kind(a.expr, env, error) or "tensor"
    kind = expr_kind(b.result, env, error)
    if kind not in (None, "tensor"):
        error(f"block `{b.name}` must return a tensor, not {_a(kind)}", b.result.span)


def expr_kind(e, env: dict[str, str], error) -> str | None:
    """The kind of an expression (tensor, int, float, list), or None after an error."""
    if isinstance(e, ast.ENum):
        return "int" if isinstance(e.value, int) else "float"
    if isinstance(e, ast.EVar):
        if e.name not in env:
            error(f"`{e.name}` is not defined", e.span, did_you_mean(e.name, env))
            return None
        return env[e.name]
    if isinstance(e, ast.EList):
        for item in e.items:
            k = expr_kind(item, env, error)
            if k not in (None, "int"):
                error("list items must be whole numbers", item.span)
        return "list"
    if isinstance(e, ast.EOp):
        kinds = [expr_kind(x, env, error) for x in e.operands]
        if None in kinds:
            return None
        if e.op == "neg":
            return kinds[0]
        a, b = kinds
        if "list" in kinds:
            error(f"cannot apply `{_SYMBOL[e.op]}` to a list", e.span)
            return None
        if e.op == "div" and b == "tensor":
            error("a tensor can only be divided by a number", e.span, "multiply instead, or divide by a constant")
            return None
        if "tensor" in kinds:
            return "tensor"
        return "float" if "float" in kinds or e.op == "div" else "int"
    if isinstance(e, ast.ECall):
        if e.name not in spec.BLOCK_FUNCTIONS:
            error(f"unknown function `{e.name}`", e.span, did_you_mean(e.name, spec.BLOCK_FUNCTIONS))
            return None
        if e.kwargs:
            key = next(iter(e.kwargs))
            error(f"`{e.name}` takes its arguments by position, not `{key} =`", e.kwargs[key].span)
            return None
        want, result = spec.BLOCK_FUNCTIONS[e.name]
        variadic = want[-1] == "..."
        fixed = want[:-1] if variadic else want
        if len(e.args) < len(fixed) or (not variadic and len(e.args) > len(fixed)):
            count = f"at least {len(fixed)}" if variadic else str(len(fixed))
            error(f"`{e.name}` takes {count} argument{'s' if len(fixed) != 1 else ''} "
                  f"({', '.join(fixed)}), got {len(e.args)}", e.span)
            return None
        ok = True
        for i, arg in enumerate(e.args):
            need = fixed[min(i, len(fixed) - 1)]
            got = expr_kind(arg, env, error)
            if got is None:
                ok = False
            elif not (got == need or (need == "number" and got in ("int", "float"))):
                error(f"argument {i + 1} of `{e.name}` must be {_a(need)}, not {_a(got)}", arg.span)
                ok = False
        return result if ok else None
    raise TypeError(e)  # pragma: no cover - the grammar makes no other expression


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def check_block_call(section: ast.Section, block: ast.Block, error, usage: str = "combiner") -> dict:
    """`combiner NAME(args)` (or `encoder = NAME(args)`, usage "encoder ="): every argument known,
    of the right kind; returns them as Python values."""
    params = {p.name: (param_kind(p, i == 0), p) for i, p in enumerate(block.params)}
    given: dict = {}
    for a in section.args or []:
        if a.key not in params or params[a.key][0] == "tensor":
            settable = [n for n, (k, _) in params.items() if k != "tensor"]
            error(f"block `{block.name}` has no parameter `{a.key}`", a.span, did_you_mean(a.key, settable))
            continue
        kind = params[a.key][0]
        if not isinstance(a.value, ast.Num) or (kind == "int" and not isinstance(a.value.value, int)):
            error(f"`{a.key}` expects {'a whole number' if kind == 'int' else 'a number'}", a.value.span)
            continue
        given[a.key] = a.value.value if kind == "int" else float(a.value.value)
    for name, (kind, p) in list(params.items())[1:]:
        if name not in given and p.default is None:
            error(f"block `{block.name}` needs a value for `{name}`", section.span,
                  f"write `{usage} {block.name}({name} = ...)`")
    if section.options:
        error(f"a block combiner takes its settings as arguments, not options", section.options[0].span,
              f"write `combiner {block.name}({section.options[0].key} = ...)` and give the block that parameter")
    return given

