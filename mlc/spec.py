"""What the language accepts: feature types, their options, sections and metrics.

One table drives checking (`passes/check.py`), defaults (`passes/defaults.py`),
`mlc explain` and docs/language.md, so they cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

INPUT_TYPES = ("number", "binary", "category")
OUTPUT_TYPES = ("number", "binary", "category")

# Metrics reported for each output type; the first is the one early stopping
# and the summary lead with.
METRICS = {
    "binary": ("roc_auc", "accuracy", "f1", "loss"),
    "category": ("accuracy", "macro_f1", "loss"),
    "number": ("r2", "mae", "rmse", "loss"),
}
HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "f1": True, "macro_f1": True, "r2": True,
                    "mae": False, "rmse": False, "loss": False}


@dataclass(frozen=True)
class Choice:
    """An option whose value is a name, or a call `name(arg = value, ...)`.

    `calls` maps each accepted name to the keyword arguments it takes, with the
    kind of each ("int", "float", "bool").
    """

    calls: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Scalar:
    kind: str  # "int" | "float" | "string" | "int_list"
    minimum: float | None = None
    maximum: float | None = None
    auto: bool = False  # `auto` is accepted and resolved by the defaults pass


@dataclass(frozen=True)
class OptionSpec:
    form: Choice | Scalar
    doc: str
    applies_if: str | None = None


NUMBER_INPUT = {
    "normalize": OptionSpec(Choice({"robust": {}, "zscore": {}, "minmax": {}, "none": {}}),
                            "scaling of the raw value"),
    "missing": OptionSpec(Choice({"median": {}, "mean": {}, "zero": {}}), "fill for empty cells"),
    "encoder": OptionSpec(Choice({"ple": {"bins": "int"}, "linear": {}}),
                          "ple: piecewise-linear encoding over quantile bins, plus the scaled value"),
}
BINARY_INPUT: dict[str, OptionSpec] = {}
CATEGORY_INPUT = {
    "encoder": OptionSpec(Choice({"embed": {"size": "int"}, "onehot": {}}), "how a category becomes a vector"),
    "min_count": OptionSpec(Scalar("int", 1), "values seen fewer times in training map to <unknown>"),
}
BINARY_OUTPUT = {
    "loss": OptionSpec(Choice({"binary_cross_entropy": {}}), "training loss"),
    "weight": OptionSpec(Scalar("float", 0.0), "weight of this output's loss"),
    "positive": OptionSpec(Scalar("string"), "the value that counts as the positive class"),
}
CATEGORY_OUTPUT = {
    "loss": OptionSpec(Choice({"cross_entropy": {"label_smoothing": "float"}}), "training loss"),
    "weight": OptionSpec(Scalar("float", 0.0), "weight of this output's loss"),
}
NUMBER_OUTPUT = {
    "loss": OptionSpec(Choice({"mse": {}, "huber": {"delta": "float"}, "mae": {}}), "training loss"),
    "weight": OptionSpec(Scalar("float", 0.0), "weight of this output's loss"),
}

FEATURE_OPTIONS = {
    ("input", "number"): NUMBER_INPUT,
    ("input", "binary"): BINARY_INPUT,
    ("input", "category"): CATEGORY_INPUT,
    ("output", "binary"): BINARY_OUTPUT,
    ("output", "category"): CATEGORY_OUTPUT,
    ("output", "number"): NUMBER_OUTPUT,
}

COMBINERS = ("concat",)
COMBINER_OPTIONS = {
    "layers": OptionSpec(Scalar("int_list", 1), "hidden layer widths"),
    "activation": OptionSpec(Choice({"relu": {}, "gelu": {}, "silu": {}, "tanh": {}}), "hidden activation"),
    "dropout": OptionSpec(Scalar("float", 0.0, 0.95), "dropout after each hidden layer"),
    "norm": OptionSpec(Choice({"none": {}, "layernorm": {}}), "normalization before each activation"),
}

TRAIN_OPTIONS = {
    "optimizer": OptionSpec(Choice({
        "adamw": {"lr": "float", "weight_decay": "float", "b1": "float", "b2": "float"},
        "adam": {"lr": "float", "b1": "float", "b2": "float"},
        "sgd": {"lr": "float", "momentum": "float"},
    }), "optimizer (optax)"),
    "schedule": OptionSpec(Choice({"cosine": {"warmup": "float"}, "constant": {}}),
                           "learning-rate schedule; warmup is a fraction of all steps"),
    "batch_size": OptionSpec(Scalar("int", 1, auto=True), "rows per step"),
    "epochs": OptionSpec(Scalar("int", 1, auto=True), "passes over the training split"),
    "early_stop": OptionSpec(Scalar("int", 1), "stop after this many epochs without improvement "
                             "`on` a validation metric"),
    "grad_clip": OptionSpec(Scalar("float", 0.0), "clip the global gradient norm (0: off)"),
}

SECTION_OPTIONS = {"combiner": COMBINER_OPTIONS, "train": TRAIN_OPTIONS}


@dataclass
class Resolved:
    """A program with every decision made: what the later stages consume."""

    file: str
    data_path: str  # as written, relative to the program
    split: dict  # {"kind": "ratio", "parts": [...], "seed": n} | {"kind": "column", "column": c}
    inputs: list[dict]  # {"name", "type", "options": {...}}
    outputs: list[dict]
    combiner: dict  # {"name", "options": {...}}
    train: dict
    reasons: dict[str, str] = field(default_factory=dict)  # "input.age.normalize" -> why
    blocks: dict[str, str] = field(default_factory=dict)  # expert block name -> its source text
    source: str | None = None  # the program's text, for diagnostics while lowering blocks
    block_lines: dict[str, int] = field(default_factory=dict)  # block name -> its line in the program

    def to_json(self) -> dict:
        return {"data": self.data_path, "split": self.split, "inputs": self.inputs,
                "outputs": self.outputs, "combiner": self.combiner, "train": self.train,
                "blocks": self.blocks}


# ---- expert blocks -------------------------------------------------------------
# Functions usable inside `block NAME(x, ...) { ... return EXPR }`: name -> the kinds of
# their positional arguments ("..." repeats the last kind) and the kind they return.
# "number" is an int or a float known at compile time.
BLOCK_FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "dense": (("tensor", "int"), "tensor"),
    "matmul": (("tensor", "tensor"), "tensor"),
    "relu": (("tensor",), "tensor"),
    "gelu": (("tensor",), "tensor"),
    "silu": (("tensor",), "tensor"),
    "tanh": (("tensor",), "tensor"),
    "sigmoid": (("tensor",), "tensor"),
    "exp": (("tensor",), "tensor"),
    "log": (("tensor",), "tensor"),
    "softmax": (("tensor",), "tensor"),
    "layernorm": (("tensor",), "tensor"),
    "dropout": (("tensor", "number"), "tensor"),
    "concat": (("tensor", "tensor", "..."), "tensor"),
    "sum": (("tensor",), "tensor"),
    "mean": (("tensor",), "tensor"),
    "reshape": (("tensor", "list"), "tensor"),
    "dim": (("tensor",), "int"),
}
BLOCK_PARAM_TYPES = ("tensor", "int", "float")
