"""Check the resolved program against its fitted preprocessing and lowered graph, before
any training: inputs whose encoding carries no information (warnings), and a model
that cannot fit in memory (an error at the option that makes it large).

Runs after `defaults`; `mlc check`, `mlc explain` and `mlc run` all see the result.
"""
from __future__ import annotations

import math
import os

from mlc import spec
from mlc.diagnostics import Diagnostic, MlcError, Span
from mlc.ir.graph import Graph

from .check import Checked

# Bytes per parameter while training: the value, its gradient and two Adam moments.
TRAIN_BYTES_PER_PARAM = 16
# Share of the machine's memory a model may plan to use.
MEMORY_SHARE = 0.5


def no_information(checked: Checked, resolved: spec.Resolved, state: dict, rows: int) -> dict[str, str]:
    """Input -> why its encoding carries no information on the training split."""
    out = {}
    for f in resolved.inputs:
        st, t, name = state["inputs"].get(f["name"], {}), f["type"], f["name"]
        if t == "number" and st.get("constant"):
            out[name] = (f"is empty in every training row" if st.get("empty") else
                         f"has one value in every training row") + ": it is encoded as a constant"
        elif t == "binary" and len(st.get("values", [])) < 2:
            out[name] = "has one value in every training row: it is encoded as a constant"
        elif t in ("category", "set", "bag", "sequence") and "vocab" in st and not st["vocab"]:
            minimum = f["options"].get("min_count", 1)
            out[name] = (f"has no value seen {minimum} times or more in the {rows} training rows: its "
                         "vocabulary is empty and every value maps to <unknown>")
        elif t == "text" and st.get("tokenizer") == "word" and not st.get("vocab"):
            out[name] = "has no word seen twice or more in training: its vocabulary is empty"
    return out


def information_warnings(checked: Checked, reasons: dict[str, str]) -> list[Diagnostic]:
    hints = {"category": "lower `min_count`, or leave the column out if it is an id",
             "number": "leave the column out, or check that the file holds its values"}
    out = []
    for name, why in reasons.items():
        f = checked.features[name]
        out.append(Diagnostic(f"input `{name}` {why}", f.span, checked.program.file,
                              hints.get(f.type), severity="warning"))
    return out


def machine_memory() -> int:
    """Bytes of memory of this machine (8 GiB if the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_memory(checked: Checked, resolved: spec.Resolved, graph: Graph, budget: int | None = None) -> None:
    """Refuse a model whose training would need more than MEMORY_SHARE of the machine:
    parameters (with gradients and Adam moments) and one batch's activations."""
    budget = int(MEMORY_SHARE * machine_memory()) if budget is None else budget
    sizes = {n: math.prod(p.type.shape) for n, p in graph.params.items()}
    batch = resolved.train["batch_size"]
    activations = sum(math.prod(batch if isinstance(d, str) else d for d in op.type.shape)
                      for op in graph.ops) * 4 * 2  # forward values kept for the backward pass
    need = TRAIN_BYTES_PER_PARAM * sum(sizes.values()) + activations
    if need <= budget:
        return
    biggest = max(sizes, key=sizes.get) if sizes else None
    if biggest == "combiner.0.w":
        # The first layer is large because an input's encoding is wide: blame that input.
        tables = {n: graph.params[n].type.shape[-1] for n in sizes if n.startswith("embed.")}
        widest = max(tables, key=tables.get) if tables else None
        if widest and tables[widest] * 4 > graph.params[biggest].type.shape[1]:
            biggest = widest
    detail = (f"; `{biggest}` {list(graph.params[biggest].type.shape)} alone holds "
              f"{_human(4 * sizes[biggest])}" if biggest else "")
    span, hint = _blame(checked, biggest or "")
    raise MlcError(Diagnostic(
        f"this model needs about {_human(need)} to train ({sum(sizes.values()):.3g} parameters{detail}), "
        f"more than the {_human(budget)} mlc allows on this machine (half its memory)",
        span, checked.program.file, hint), checked.program.source)


def _blame(checked: Checked, param: str) -> tuple[Span, str]:
    """The option that makes a parameter large, and what to do."""
    spans, program = checked.option_spans, checked.program
    head = param.split(".")[0]
    if head == "combiner":
        return (spans.get("combiner.layers") or _section(checked, "combiner") or Span(1, 1),
                "use narrower layers, such as layers = [256, 256]")
    if head == "block":
        return _section(checked, "combiner") or Span(1, 1), "use smaller widths in the block"
    name = param.split(".")[1] if head in ("embed", "head") else head
    f = checked.features.get(name)
    if f is not None:
        where = f"{f.role}.{f.name}"
        return (spans.get(f"{where}.encoder") or f.span,
                "use a smaller encoder `size`" if f.role == "input" else "this output has too many values")
    return Span(1, 1), "use smaller sizes"


def _section(checked: Checked, keyword: str) -> Span | None:
    return next((s.span for s in checked.program.sections if s.keyword == keyword), None)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return str(n)
