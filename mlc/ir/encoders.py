"""Encoders of columns that are not tabular, lowered to graph IR ops.

Each takes the column's preprocessing state and options and returns (value, width):
a [B, width] tensor the combiner concatenates with the other inputs.

    set, bag, text `bag`   embed_bag(table, ids, weights): the sum or weighted mean of
                           the rows of one table (the `embedding_bag` fusion family)
    text/sequence `cnn`    token vectors [B, T, size] -> conv1d per width -> relu ->
                           max over the unmasked positions -> [B, filters * widths]
    `transformer`          token + position vectors -> `layers` x (attention, residual,
                           layernorm, gelu MLP, residual, layernorm) -> masked mean
"""
from __future__ import annotations

from mlc import spec
from mlc.runtime.types import text as text_type

from .blocks import lower_block
from .graph import Builder, TensorType


def lower_column(b: Builder, f: dict, state: dict, r: spec.Resolved | None = None) -> tuple[str, int]:
    name, enc = f["name"], f["options"]["encoder"]
    if enc.get("block"):
        return _block_encoder(b, f, state, r)
    if f["type"] in ("set", "bag"):
        rows = len(state["vocab"]) + 1  # + <unknown>
        return _bag(b, name, rows, enc["size"], state["max_len"], enc["name"]), enc["size"]
    if enc["name"] == "bag":
        rows = text_type.table_rows(state)
        length = 2 * state["max_len"] - 1 if state["buckets"] else state["max_len"]
        return _bag(b, name, rows, enc["size"], length, "mean"), enc["size"]
    tokens, mask = _token_vectors(b, name, state, enc["size"])
    if enc["name"] == "cnn":
        return _cnn(b, name, tokens, mask, enc)
    return _transformer(b, name, tokens, mask, enc, state["max_len"])


def block_input_size(f: dict, state: dict) -> int:
    """Width of the vectors an expert block encoder receives for a set, bag or category input."""
    k = len(state["vocab"]) + 1
    return min(32, max(4, round(1.6 * k ** 0.56)))


def _block_encoder(b: Builder, f: dict, state: dict, r: spec.Resolved) -> tuple[str, int]:
    """An expert block encoding one input: token vectors [B, T, 64] with their mask (text,
    sequence), or the column's learned vectors [B, size] (set, bag, category)."""
    name, enc, mask = f["name"], f["options"]["encoder"], None
    if f["type"] in ("text", "sequence"):
        x, mask = _token_vectors(b, name, state, spec.BLOCK_TOKEN_SIZE)
    elif f["type"] in ("set", "bag"):
        x = _bag(b, name, len(state["vocab"]) + 1, block_input_size(f, state), state["max_len"],
                 "sum" if f["type"] == "set" else "mean")
    else:
        table = b.param(f"embed.{name}", (len(state["vocab"]) + 1, block_input_size(f, state)),
                        {"kind": "normal", "std": 0.1})
        x = b.op("gather", table, b.input(f"cat_{name}", TensorType("i32", ("B",))))
    block = enc["name"]
    out = lower_block(b, r.blocks[block], enc["args"], x, file=r.file, source=r.source,
                      line=r.block_lines.get(block, 1), mask=mask, scope=f"{name}.{block}")
    return out, b.graph.type_of(out).shape[-1]


def _bag(b: Builder, name: str, rows: int, size: int, length: int, mode: str) -> str:
    table = b.param(f"embed.{name}", (rows, size), {"kind": "normal", "std": 0.1})
    ids = b.input(f"bag_{name}", TensorType("i32", ("B", length)))
    weights = b.input(f"bagw_{name}", TensorType("f32", ("B", length)))
    return b.op("embed_bag", table, ids, weights, mode=mode)


def _token_vectors(b: Builder, name: str, state: dict, size: int) -> tuple[str, str]:
    rows = 1 + state["vocab_size"]
    table = b.param(f"embed.{name}", (rows, size), {"kind": "normal", "std": 0.1})
    ids = b.input(f"tok_{name}", TensorType("i32", ("B", state["max_len"])))
    mask = b.input(f"mask_{name}", TensorType("f32", ("B", state["max_len"])))
    return b.op("gather", table, ids), mask


def _cnn(b: Builder, name: str, tokens: str, mask: str, enc: dict) -> tuple[str, int]:
    pooled = []
    for width in enc["widths"]:
        w = b.param(f"{name}.conv{width}.w", (width, enc["size"], enc["filters"]), {"kind": "glorot"})
        bias = b.param(f"{name}.conv{width}.b", (enc["filters"],), {"kind": "zeros"})
        h = b.op("relu", b.op("add", b.op("conv1d", tokens, w), bias))
        pooled.append(b.op("masked_max", h, mask))
    out = pooled[0] if len(pooled) == 1 else b.op("concat", *pooled, axis=1)
    return out, enc["filters"] * len(enc["widths"])


def _dense3(b: Builder, x: str, d_in: int, d_out: int, name: str) -> str:
    w = b.param(f"{name}.w", (d_in, d_out), {"kind": "glorot"})
    bias = b.param(f"{name}.b", (d_out,), {"kind": "zeros"})
    return b.op("add", b.op("matmul", x, w), bias)


def _layernorm(b: Builder, x: str, d: int, name: str) -> str:
    g = b.param(f"{name}.g", (d,), {"kind": "ones"})
    beta = b.param(f"{name}.b", (d,), {"kind": "zeros"})
    return b.op("layernorm", x, g, beta, eps=1e-5)


def _transformer(b: Builder, name: str, tokens: str, mask: str, enc: dict, length: int) -> tuple[str, int]:
    d = enc["size"]
    pos = b.param(f"embed.{name}.position", (length, d), {"kind": "normal", "std": 0.02})
    h = b.op("add", tokens, pos)
    for i in range(enc["layers"]):
        at = f"{name}.layer{i}"
        q, k, v = (_dense3(b, h, d, d, f"{at}.{p}") for p in ("q", "k", "v"))
        attended = _dense3(b, b.op("attention", q, k, v, mask, heads=enc["heads"]), d, d, f"{at}.out")
        h = _layernorm(b, b.op("add", h, attended), d, f"{at}.ln1")
        mlp = _dense3(b, b.op("gelu", _dense3(b, h, d, 2 * d, f"{at}.mlp0")), 2 * d, d, f"{at}.mlp1")
        h = _layernorm(b, b.op("add", h, mlp), d, f"{at}.ln2")
    return b.op("masked_mean", h, mask), d
