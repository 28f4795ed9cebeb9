"""AST of a .dml program. Every node carries the span it came from so that
later stages can point at the exact source of a mistake."""
from __future__ import annotations

from dataclasses import dataclass, field

from mlc.diagnostics import Span


# ---- values: the right-hand side of `key = value` -------------------------
@dataclass
class Num:
    value: float | int
    span: Span

    def to_dml(self) -> str:
        return format_number(self.value)


@dataclass
class Str:
    value: str
    span: Span

    def to_dml(self) -> str:
        return '"' + self.value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Name:
    value: str
    span: Span

    def to_dml(self) -> str:
        return self.value


@dataclass
class KwArg:
    key: str
    value: "Value"
    span: Span


@dataclass
class Call:
    name: str
    args: list[KwArg]
    span: Span

    def to_dml(self) -> str:
        inner = ", ".join(f"{a.key} = {a.value.to_dml()}" for a in self.args)
        return f"{self.name}({inner})"

    def arg(self, key: str):
        return next((a for a in self.args if a.key == key), None)


@dataclass
class List:
    items: list["Value"]
    span: Span

    def to_dml(self) -> str:
        return "[" + ", ".join(v.to_dml() for v in self.items) + "]"


Value = Num | Str | Name | Call | List


def format_number(x: float | int) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if x == int(x) and abs(x) < 1e6:
        return f"{x:.1f}"
    return repr(float(x))


# ---- statements ------------------------------------------------------------
@dataclass
class Option:
    key: str
    value: Value
    span: Span  # the key
    on: list[str] | None = None  # `early_stop = 5 on val.churn.roc_auc`
    on_span: Span | None = None


@dataclass
class SplitRatio:
    parts: list[int]
    seed: int | None
    span: Span


@dataclass
class SplitBy:
    column: str
    span: Span


@dataclass
class Data:
    path: str
    span: Span  # the path string
    split: SplitRatio | SplitBy | None = None


@dataclass
class Feature:
    role: str  # "input" | "output"
    name: str
    type: str
    options: list[Option]
    span: Span  # the name
    type_span: Span


@dataclass
class Section:
    """`combiner NAME(args) { ... }` or `train { ... }`."""

    keyword: str
    name: str | None
    options: list[Option]
    span: Span
    args: list[KwArg] | None = None  # `combiner residual_mlp(width = 512)`: arguments of a block


# ---- expert blocks ---------------------------------------------------------
@dataclass
class ENum:
    value: float | int
    span: Span


@dataclass
class EVar:
    name: str
    span: Span


@dataclass
class EOp:
    """`a + b`, `a - b`, `a * b`, `a / b`, `-a` (op "neg", one operand)."""

    op: str
    operands: list["Expr"]
    span: Span


@dataclass
class ECall:
    name: str
    args: list["Expr"]
    kwargs: dict[str, "Expr"]
    span: Span


@dataclass
class EList:
    items: list["Expr"]
    span: Span


Expr = ENum | EVar | EOp | ECall | EList


@dataclass
class BlockParam:
    name: str
    type: str | None  # "tensor" | "int" | "float" or None (tensor for the first, else from default)
    default: Value | None
    span: Span


@dataclass
class Assign:
    name: str
    expr: Expr
    span: Span


@dataclass
class Block:
    name: str
    params: list[BlockParam]
    body: list[Assign]
    result: Expr
    span: Span  # the name
    text: str  # the block's source, `block` to `}`, for explain and the artifact
    line: int  # where `block` stands in its file


# ---- slices ------------------------------------------------------------------
@dataclass
class Cond:
    """A condition on one row: op "compare" (column, operator, values[0]), "in" (column,
    values), "missing" / "present" (column), or "and" / "or" / "not" (parts)."""

    op: str
    span: Span
    column: str | None = None
    operator: str | None = None
    values: list = field(default_factory=list)  # Num | Str
    parts: list["Cond"] = field(default_factory=list)

    def columns(self) -> list["Cond"]:
        """The column conditions inside, in source order."""
        return [self] if self.column is not None else [c for p in self.parts for c in p.columns()]

    def to_dml(self, top: bool = True) -> str:
        if self.op == "compare":
            return f"{self.column} {self.operator} {self.values[0].to_dml()}"
        if self.op == "in":
            return f"{self.column} in [{', '.join(v.to_dml() for v in self.values)}]"
        if self.op in ("missing", "present"):
            return f"{self.column} is {'not ' if self.op == 'present' else ''}missing"
        if self.op == "not":
            return f"not {self.parts[0].to_dml(False)}"
        text = f" {self.op} ".join(p.to_dml(False) for p in self.parts)
        return text if top else f"({text})"


@dataclass
class Slice:
    name: str
    cond: Cond
    options: list[Option]
    span: Span  # the name


# ---- tuning ------------------------------------------------------------------
@dataclass
class Dist:
    """`loguniform(1e-4, 3e-2)`, `choice([256], [512, 256])`: a search distribution,
    written with positional arguments (only in `tune`)."""

    name: str
    args: list["Value"]
    span: Span  # the name

    def to_dml(self) -> str:
        return f"{self.name}({', '.join(a.to_dml() for a in self.args)})"


@dataclass
class Path:
    """`val.churn.roc_auc`: a dotted name as a value (only in `tune`)."""

    parts: list[str]
    span: Span

    def to_dml(self) -> str:
        return ".".join(self.parts)


@dataclass
class TuneOption:
    path: list[str]  # `train.lr` -> ["train", "lr"]
    value: "Value | Dist | Path"
    span: Span  # the whole key


@dataclass
class Tune:
    options: list[TuneOption]
    span: Span  # the keyword


@dataclass
class Program:
    file: str
    source: str
    data: list[Data] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    tunes: list[Tune] = field(default_factory=list)

    @property
    def inputs(self) -> list[Feature]:
        return [f for f in self.features if f.role == "input"]

    @property
    def outputs(self) -> list[Feature]:
        return [f for f in self.features if f.role == "output"]
