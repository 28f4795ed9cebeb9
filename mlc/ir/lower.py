"""Lower a resolved program (plus fitted preprocessing) to the graph IR.

The graph holds the whole model: per-input encoders, the combiner MLP, one head
per output, the per-output losses and their weighted sum. Outputs are named
`pred.NAME` (probabilities or standardized values), `loss.NAME` and `loss`.
"""
from __future__ import annotations

import math

from mlc import spec
from mlc.runtime.preprocess import input_width

from .blocks import lower_block
from .encoders import lower_column
from .graph import Builder, Graph, TensorType


def _dense(b: Builder, x: str, width_in: int, width_out: int, name: str, bias_init: dict | None = None) -> str:
    w = b.param(f"{name}.w", (width_in, width_out), {"kind": "glorot"})
    bias = b.param(f"{name}.b", (width_out,), bias_init or {"kind": "zeros"})
    return b.op("add", b.op("matmul", x, w), bias)


def lower(r: spec.Resolved, state: dict, name: str = "model") -> Graph:
    if r.train.get("ensemble", 1) > 1:  # K members averaged in one graph (runtime/ensemble.py)
        import dataclasses
        from mlc.runtime.ensemble import ensemble_graph
        member = dataclasses.replace(r, train={**r.train, "ensemble": 1})
        return ensemble_graph(lower(member, state, name), r.train["ensemble"])
    b = Builder(name)
    parts, width = [], 0
    dense_width = input_width(r, state)
    if dense_width:
        parts.append(b.input("x_num", TensorType("f32", ("B", dense_width))))
        width += dense_width
    for f in r.inputs:
        if f["type"] in ("text", "sequence", "set", "bag"):
            value, w = lower_column(b, f, state["inputs"][f["name"]], r)
            parts.append(value)
            width += w
            continue
        if f["type"] != "category":
            continue
        vocab = len(state["inputs"][f["name"]]["vocab"]) + 1  # + <unknown>
        enc = f["options"]["encoder"]
        if enc.get("block"):
            value, w = lower_column(b, f, state["inputs"][f["name"]], r)
            parts.append(value)
            width += w
            continue
        idx = b.input(f"cat_{f['name']}", TensorType("i32", ("B",)))
        if enc["name"] == "onehot":
            parts.append(b.op("one_hot", idx, depth=vocab))
            width += vocab
        else:
            table = b.param(f"embed.{f['name']}", (vocab, enc["size"]), {"kind": "normal", "std": 0.1})
            parts.append(b.op("gather", table, idx))
            width += enc["size"]
    h = parts[0] if len(parts) == 1 else b.op("concat", *parts, axis=1)

    if r.combiner.get("block"):
        name = r.combiner["name"]
        h = lower_block(b, r.blocks[name], r.combiner["args"], h, file=r.file, source=r.source,
                        line=r.block_lines.get(name, 1))
        width = b.graph.type_of(h).shape[-1]
    c = r.combiner["options"]
    for i, layer in enumerate(c.get("layers", [])):
        h = _dense(b, h, width, layer, f"combiner.{i}")
        if c["norm"]["name"] == "layernorm":
            g = b.param(f"combiner.{i}.ln.g", (layer,), {"kind": "ones"})
            beta = b.param(f"combiner.{i}.ln.b", (layer,), {"kind": "zeros"})
            h = b.op("layernorm", h, g, beta, eps=1e-5)
        h = b.op(c["activation"]["name"], h)
        if c["dropout"] > 0:
            h = b.op("dropout", h, rate=float(c["dropout"]))
        width = layer

    total = None
    # Slices with a weight: each training row's loss is multiplied by its weight (runtime/slices.py).
    row_weight = b.input("row_weight", TensorType("f32", ("B",))) if any(
        s["weight"] != 1.0 for s in r.slices) else None
    for f in r.outputs:
        name, opts, st = f["name"], f["options"], state["outputs"][f["name"]]
        y_type = TensorType("i32", ("B",)) if f["type"] == "category" else TensorType("f32", ("B",))
        if f["type"] == "set":
            y_type = TensorType("f32", ("B", len(st["labels"])))
        elif f["type"] == "vector":
            y_type = TensorType("f32", ("B", st["size"]))
        y = b.input(f"y_{name}", y_type)
        if f["type"] == "set":
            k = len(st["labels"])
            out = _dense(b, h, width, k, f"head.{name}",
                         {"kind": "const", "values": [math.log(p / (1 - p)) for p in st["priors"]]})
            b.output(f"pred.{name}", b.op("sigmoid", out))
            per_row = b.op("multi_bce", out, y)
        elif f["type"] == "vector":
            out = _dense(b, h, width, st["size"], f"head.{name}")
            b.output(f"pred.{name}", out)
            per_row = b.op("vec_squared_error" if opts["loss"]["name"] == "mse" else "vec_abs_error", out, y)
        elif f["type"] == "binary":
            prior = st.get("prior", 0.5)
            logit = math.log(prior / (1 - prior))
            out = _dense(b, h, width, 1, f"head.{name}", {"kind": "const", "values": [logit]})
            b.output(f"pred.{name}", b.op("sigmoid", out))
            per_row = b.op("bce_logits", out, y)
        elif f["type"] == "category":
            k = len(st["classes"])
            priors = st.get("priors") or [1.0 / k] * k
            out = _dense(b, h, width, k, f"head.{name}",
                         {"kind": "const", "values": [math.log(max(p, 1e-6)) for p in priors]})
            b.output(f"pred.{name}", b.op("softmax", out))
            per_row = b.op("softmax_ce", out, y, smoothing=float(opts["loss"]["label_smoothing"]))
        else:
            out = _dense(b, h, width, 1, f"head.{name}")
            b.output(f"pred.{name}", out)
            loss = opts["loss"]
            if loss["name"] == "mse":
                per_row = b.op("squared_error", out, y)
            elif loss["name"] == "mae":
                per_row = b.op("abs_error", out, y)
            else:
                per_row = b.op("huber", out, y, delta=float(loss["delta"]))
        if row_weight is not None:
            per_row = b.op("mul", per_row, row_weight)
        loss_value = b.op("mean", per_row)
        b.output(f"loss.{name}", loss_value)
        weighted = b.op("scale", loss_value, factor=float(opts["weight"]))
        total = weighted if total is None else b.op("add", total, weighted)
    b.output("loss", total)
    return b.graph
