"""What a generated kernel is: its source text, its arguments and how to launch it.

A `KernelSpec` is everything a caller needs without reading the source: the
`@triton.jit` module text (what gets compiled, and what `--emit triton` prints),
the arguments in order with the role each plays and the IR value it holds, the
compile-time constants, and the launch grid as expressions over the size
arguments. Buffers marked `zero_init` are accumulated with atomics: the caller
zeroes them before the launch.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field

HEADER = "import triton\nimport triton.language as tl\n"


class Unsupported(Exception):
    """A group (or op) this back end has no generator for; the message says why."""


@dataclass(frozen=True)
class KernelArg:
    name: str  # the parameter's name in the kernel
    type: str  # Triton signature type: "*fp32", "*bf16", "*i32", "i32", "fp32"
    role: str  # input | output | grad_output (upstream gradient) | grad_input | size | seed | scalar
    value: str | None = None  # the IR value it holds (or whose gradient it holds)
    shape: tuple = ()  # that value's IR shape ("B" for the batch)
    zero_init: bool = False  # accumulated with atomics: zero it before the launch

    @property
    def is_pointer(self) -> bool:
        return self.type.startswith("*")


@dataclass
class KernelSpec:
    name: str  # the @triton.jit function's name, unique per kernel
    family: str  # elementwise | rowwise | gather | reduce | matmul_epilogue | matmul | adamw_update
    variant: str  # fwd | bwd | fwd_bwd | epilogue_bwd | matmul | update
    source: str  # the whole module text
    args: list[KernelArg]
    constexprs: dict[str, int]
    grid: tuple[str, ...]  # Python expressions over size args and constexprs (cdiv available)
    num_warps: int = 4
    group: str | None = None  # the fusion group this kernel implements
    doc: str = ""  # one line: what the kernel computes
    extra: dict = field(default_factory=dict)  # generator-specific facts (e.g. the flat layout)

    @property
    def signature(self) -> dict[str, str]:
        """Triton's signature, in parameter order (constexprs last, as in the source)."""
        sig = {a.name: a.type for a in self.args}
        sig.update({k: "constexpr" for k in self.constexprs})
        return sig

    def grid_for(self, **values) -> tuple[int, ...]:
        """The launch grid for these argument values (sizes; constexprs default to the spec's)."""
        env = {**self.constexprs, **values, "cdiv": lambda a, b: -(-a // b)}
        return tuple(int(eval(e, {"__builtins__": {}}, env)) for e in self.grid)  # noqa: S307 (our own expressions)

    @property
    def key(self) -> str:
        """A hash of what determines the compiled code (arch and Triton version are added by aot.py)."""
        blob = json.dumps({"source": self.source, "name": self.name, "signature": self.signature,
                           "constexprs": self.constexprs, "num_warps": self.num_warps}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def describe(self) -> str:
        """A comment block naming the arguments, for `--emit triton`."""
        group = f" (group {self.group})" if self.group else ""
        lines = [f"# kernel {self.name}: {self.family} {self.variant}{group}"]
        if self.doc:
            lines.append(f"#   {self.doc}")
        for a in self.args:
            what = f"%{a.value}" if a.value is not None else ""
            shape = f"[{','.join(str(d) for d in a.shape)}]" if a.shape else ""
            zero = "  (zero before launch: accumulated with atomics)" if a.zero_init else ""
            lines.append(f"#   {a.name:<18} {a.type:<6} {a.role:<12} {what}{shape}{zero}")
        lines.append(f"#   constexprs {self.constexprs}; grid ({', '.join(self.grid)},); num_warps {self.num_warps}")
        return "\n".join(lines)


# ---- small helpers shared by the generators ----------------------------------------
def pow2(n: int) -> int:
    """The smallest power of two >= n (>= 1)."""
    return 1 if n <= 1 else 1 << math.ceil(math.log2(n))


def ident(name: str) -> str:
    """A Python identifier for an IR value name (values are '12', 'x_num', 'combiner.0.w')."""
    s = re.sub(r"\W", "_", str(name))
    return s if s and not s[0].isdigit() else f"_{s}"


def flit(x: float) -> str:
    """A float literal for the source."""
    x = float(x)
    if math.isinf(x):
        return "float('inf')" if x > 0 else "float('-inf')"
    return repr(x)


class Src:
    """Lines of a function body, with indentation."""

    def __init__(self, indent: int = 1):
        self.lines: list[str] = []
        self.indent = indent

    def __call__(self, line: str = ""):
        self.lines.append("    " * self.indent + line if line else "")

    def text(self) -> str:
        return "\n".join(self.lines)


def ptr_type(dtype: str) -> str:
    """IR dtype ('f32', 'i32') or I/O dtype ('fp32', 'bf16') -> Triton pointer type."""
    return {"f32": "*fp32", "fp32": "*fp32", "bf16": "*bf16", "i32": "*i32"}[dtype]


def function_text(name: str, params: list[str], body: str, doc: str = "") -> str:
    """One @triton.jit function."""
    sig = ",\n        ".join(params)
    doc_line = f'    """{doc}"""\n' if doc else ""
    return f"@triton.jit\ndef {name}(\n        {sig}):\n{doc_line}{body}\n"
