"""Lower an expert block to graph IR ops, the same ops the built-in combiner uses,
so the optimizer fuses and differentiates it like any other part of the model.

Shapes are known here (the input width comes from the fitted preprocessing), so
shape mistakes are reported at the block's own source line.
"""
from __future__ import annotations

from dataclasses import replace

from mlc.diagnostics import Diagnostic, MlcError, Span
from mlc.grammar import ast

from .graph import Builder, IRError


class _Tensor(str):
    """An IR value name, told apart from compile-time numbers."""


def parse_block(text: str) -> ast.Block:
    from mlc.grammar.parse import parse  # lark only for programs with blocks: mlc.load stays light
    return parse(text, "<block>").blocks[0]


def lower_block(b: Builder, text: str, args: dict, x: str, *, file: str = "<block>", source: str | None = None,
                line: int = 1, mask: str | None = None, scope: str | None = None) -> str:
    """Emit the block's ops into `b`, applied to tensor `x`; returns the result value.
    mask: the token mask [B, T] of a text or sequence input the block encodes (pool_mean and
    pool_max need it); scope: a name for its parameters when one block encodes several inputs."""
    block = parse_block(text)
    lowering = _Lowering(b, scope or block.name, file, source, line - 1)
    lowering.mask = mask
    env: dict = {block.params[0].name: _Tensor(x)}
    env.update(args)
    for a in block.body:
        env[a.name] = lowering.expr(a.expr, env)
    out = lowering.expr(block.result, env)
    if b.graph.type_of(out).shape[0] != "B" or len(b.graph.type_of(out).shape) != 2:
        lowering.fail(f"block `{block.name}` must return one row per example, [B, width]; "
                      f"it returns {b.graph.type_of(out)}", block.result.span,
                      "use reshape(x, [width]) to flatten")
    return out


class _Lowering:
    def __init__(self, b: Builder, name: str, file: str, source: str | None, line_offset: int):
        self.b, self.name, self.file, self.source, self.offset = b, name, file, source, line_offset
        self.count = 0
        self.mask: str | None = None

    def fail(self, message: str, span: Span, hint: str | None = None):
        where = replace(span, line=span.line + self.offset,
                        end_line=span.end_line + self.offset if span.end_line else None)
        raise MlcError(Diagnostic(message, where, self.file, hint), self.source)

    def fresh(self, kind: str) -> str:
        self.count += 1
        return f"block.{self.name}.{kind}{self.count}"

    def width(self, v: str) -> int:
        return self.b.graph.type_of(v).shape[-1]

    def op(self, span: Span, opcode: str, *args, **attrs) -> _Tensor:
        try:
            return _Tensor(self.b.op(opcode, *args, **attrs))
        except IRError as e:
            self.fail(f"shape error: {e}", span)

    def expr(self, e, env: dict):
        if isinstance(e, ast.ENum):
            return e.value
        if isinstance(e, ast.EVar):
            return env[e.name]
        if isinstance(e, ast.EList):
            return [self.expr(i, env) for i in e.items]
        if isinstance(e, ast.EOp):
            vals = [self.expr(x, env) for x in e.operands]
            return self.arith(e, vals)
        return self.call(e, [self.expr(a, env) for a in e.args])

    def arith(self, e: ast.EOp, vals: list):
        if e.op == "neg":
            v = vals[0]
            return self.op(e.span, "neg", v) if isinstance(v, _Tensor) else -v
        a, b = vals
        if not isinstance(a, _Tensor) and not isinstance(b, _Tensor):
            if e.op == "div":
                if b == 0:
                    self.fail("division by zero", e.span)
                return a / b
            return {"add": a + b, "sub": a - b, "mul": a * b}[e.op]
        if e.op == "mul" and not isinstance(a, _Tensor):
            a, b = b, a  # 2 * x -> scale(x, 2)
        if e.op in ("mul", "div") and not isinstance(b, _Tensor):
            if e.op == "div" and b == 0:
                self.fail("division by zero", e.span)
            return self.op(e.span, "scale", a, factor=float(b if e.op == "mul" else 1.0 / b))
        a, b = (self.const(v) for v in (a, b))
        return self.op(e.span, e.op, a, b)

    def const(self, v):
        return v if isinstance(v, _Tensor) else _Tensor(self.b.op("const", value=float(v)))

    def call(self, e: ast.ECall, args: list):
        name, span, b = e.name, e.span, self.b
        if name == "dim":
            return self.width(args[0])
        if name == "dense":
            x, width = args
            if width < 1:
                self.fail(f"dense needs a width of at least 1, not {width}", e.args[1].span)
            w = b.param(self.fresh("dense") + ".w", (self.width(x), width), {"kind": "glorot"})
            bias = b.param(w[:-2] + ".b", (width,), {"kind": "zeros"})
            return self.op(span, "add", self.op(span, "matmul", x, w), bias)
        if name == "layernorm":
            x = args[0]
            base = self.fresh("ln")
            g = b.param(base + ".g", (self.width(x),), {"kind": "ones"})
            beta = b.param(base + ".b", (self.width(x),), {"kind": "zeros"})
            return self.op(span, "layernorm", x, g, beta, eps=1e-5)
        if name == "dropout":
            rate = float(args[1])
            if not 0.0 <= rate < 1.0:
                self.fail(f"a dropout rate is between 0 and 1, not {rate}", e.args[1].span)
            return self.op(span, "dropout", args[0], rate=rate)
        if name == "concat":
            ranks = {len(b.graph.type_of(a).shape) for a in args}
            if len(ranks) != 1:
                self.fail("concat needs tensors of the same rank", span)
            return self.op(span, "concat", *args, axis=ranks.pop() - 1)
        if name in ("sum", "mean"):
            return self.op(span, "row_" + name, args[0])
        if name in ("pool_mean", "pool_max"):
            if self.mask is None:
                self.fail(f"{name} pools the tokens of a text or sequence input; this block gets none", span,
                          "use it in a block that encodes a text or sequence input: "
                          "`input review : text { encoder = my_block() }`")
            return self.op(span, "masked_" + name[5:], args[0], self.mask)
        if name == "reshape":
            return self.op(span, "reshape", args[0], shape=[int(d) for d in args[1]])
        if name == "matmul":
            return self.op(span, "matmul", *args)
        return self.op(span, name, args[0])  # relu, gelu, silu, tanh, sigmoid, exp, log, softmax
