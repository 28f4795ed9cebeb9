"""What the language accepts: feature types, their options, sections and metrics.

One table drives checking (`passes/check.py`), defaults (`passes/defaults.py`),
`mlc explain` and docs/language.md, so they cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

INPUT_TYPES = ("number", "binary", "category", "text", "set", "bag", "date", "vector", "sequence")
OUTPUT_TYPES = ("number", "binary", "category", "set", "vector")
# Cell separators tried, in order, when a set, bag, vector or sequence column does not name one.
SEPARATORS = ("|", ";", ",", " ")

# Metrics reported for each output type; the first is the one early stopping
# and the summary lead with.
METRICS = {
    "binary": ("roc_auc", "accuracy", "f1", "loss"),
    "category": ("accuracy", "macro_f1", "loss"),
    "number": ("r2", "mae", "rmse", "loss"),
    "set": ("jaccard", "f1_micro", "f1_macro", "loss"),
    "vector": ("r2", "mae", "rmse", "loss"),
}
HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "f1": True, "macro_f1": True, "r2": True,
                    "jaccard": True, "f1_micro": True, "f1_macro": True, "mae": False, "rmse": False, "loss": False}


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

# ---- columns that are not tabular (runtime/types/ encodes each) ----------------------
TEXT_ENCODERS = {
    "bag": {"size": "int", "buckets": "int"},
    "cnn": {"size": "int", "filters": "int", "widths": "int_list"},
    "transformer": {"size": "int", "layers": "int", "heads": "int"},
}
TEXT_INPUT = {
    "encoder": OptionSpec(Choice(TEXT_ENCODERS), "bag: mean of word and hashed word-bigram embeddings (fastText); "
                          "cnn: convolutions over token embeddings, max-pooled; transformer: self-attention layers, "
                          "mean-pooled"),
    "tokenizer": OptionSpec(Choice({"word": {"vocab": "int", "min_count": "int"}, "bpe": {"vocab": "int"}}),
                            "how text becomes tokens (Hugging Face `tokenizers`, learned on the training split)"),
    "max_len": OptionSpec(Scalar("int", 1, auto=True), "tokens kept per cell; the rest are cut off"),
}
SEQUENCE_INPUT = {
    "encoder": TEXT_INPUT["encoder"],
    "separator": OptionSpec(Scalar("string"), "what separates the tokens of a cell (inferred when left out)"),
    "min_count": OptionSpec(Scalar("int", 1), "tokens seen fewer times in training map to <unknown>"),
    "max_len": TEXT_INPUT["max_len"],
}
SET_INPUT = {
    "separator": OptionSpec(Scalar("string"), "what separates the labels of a cell (inferred when left out)"),
    "encoder": OptionSpec(Choice({"sum": {"size": "int"}, "mean": {"size": "int"}}),
                          "sum or mean of the members' learned vectors (an embedding bag)"),
    "min_count": OptionSpec(Scalar("int", 1), "labels seen fewer times in training map to <unknown>"),
}
BAG_INPUT = {
    "separator": SET_INPUT["separator"],
    "encoder": OptionSpec(Choice({"sum": {"size": "int"}, "mean": {"size": "int"}}),
                          "weighted sum or mean of the labels' learned vectors"),
    "min_count": SET_INPUT["min_count"],
}
DATE_INPUT = {
    "format": OptionSpec(Scalar("string"), "a strptime format such as \"%d/%m/%Y\" (inferred when left out)"),
}
VECTOR_INPUT = {
    "separator": OptionSpec(Scalar("string"), "what separates the numbers of a cell (inferred when left out)"),
    "normalize": OptionSpec(Choice({"zscore": {}, "none": {}}), "scaling of each component"),
}
SET_OUTPUT = {
    "separator": SET_INPUT["separator"],
    "loss": OptionSpec(Choice({"binary_cross_entropy": {}}), "training loss: one sigmoid per label"),
    "weight": OptionSpec(Scalar("float", 0.0), "weight of this output's loss"),
    "threshold": OptionSpec(Scalar("float", 0.0, 1.0), "a label is predicted when its probability reaches this"),
}
VECTOR_OUTPUT = {
    "separator": VECTOR_INPUT["separator"],
    "loss": OptionSpec(Choice({"mse": {}, "mae": {}}), "training loss, averaged over the components"),
    "weight": OptionSpec(Scalar("float", 0.0), "weight of this output's loss"),
}

FEATURE_OPTIONS = {
    ("input", "number"): NUMBER_INPUT,
    ("input", "binary"): BINARY_INPUT,
    ("input", "category"): CATEGORY_INPUT,
    ("output", "binary"): BINARY_OUTPUT,
    ("output", "category"): CATEGORY_OUTPUT,
    ("output", "number"): NUMBER_OUTPUT,
    ("input", "text"): TEXT_INPUT,
    ("input", "sequence"): SEQUENCE_INPUT,
    ("input", "set"): SET_INPUT,
    ("input", "bag"): BAG_INPUT,
    ("input", "date"): DATE_INPUT,
    ("input", "vector"): VECTOR_INPUT,
    ("output", "set"): SET_OUTPUT,
    ("output", "vector"): VECTOR_OUTPUT,
}

COMBINERS = ("concat",)
COMBINER_OPTIONS = {
    "layers": OptionSpec(Scalar("int_list", 1), "hidden layer widths"),
    "activation": OptionSpec(Choice({"relu": {}, "gelu": {}, "silu": {}, "tanh": {}}), "hidden activation"),
    "dropout": OptionSpec(Scalar("float", 0.0, 0.95), "dropout after each hidden layer"),
    "norm": OptionSpec(Choice({"none": {}, "layernorm": {}}), "normalization before each activation"),
}

MAX_ENSEMBLE = 32  # members of `ensemble = K`: past this the artifact grows for no measurable gain
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
    "max_time": OptionSpec(Scalar("float", 1.0), "stop training after this many seconds, keeping the "
                           "best epoch so far"),
    "ensemble": OptionSpec(Scalar("int", 1, MAX_ENSEMBLE), "train this many members (seeds) as one "
                           "vmapped program and average their predictions"),
}

# ---- tuning (`tune { ... }`, passes/check_tune.py, runtime/tune.py) -------------------
TUNE_OPTIONS = {
    "trials": OptionSpec(Scalar("int", 1, 256), "how many configurations to train"),
    "metric": OptionSpec(Scalar("string"), "the validation metric that picks the best trial "
                         "(`val.loss` or `val.OUTPUT.METRIC`)"),
    "scheduler": OptionSpec(Choice({"halving": {}, "none": {}}), "halving: successive halving drops the "
                            "worse half of each group at rungs; none: every trial runs to its early stop"),
}
# Distributions a searched path may take, with their arguments (positional).
TUNE_DISTS = {
    "uniform": "uniform(low, high): a float, evenly",
    "loguniform": "loguniform(low, high): a float, evenly on a log scale (low > 0)",
    "int": "int(low, high): a whole number from low to high, both included",
    "choice": "choice(a, b, ...): one of the values, each as the option would take it",
}
# Paths outside `input.NAME.OPTION` that `tune` can search: path -> (the option's form, where it
# lives in the resolved program). "vmapped" paths keep every shape: trials that differ only in
# them train together on one trial axis (runtime/tune.py); the others form separate groups.
TUNE_PATHS = {
    "train.lr": (Scalar("float", 0.0), "vmapped"),
    "train.weight_decay": (Scalar("float", 0.0), "vmapped"),
    "combiner.dropout": (COMBINER_OPTIONS["dropout"].form, "vmapped"),
    "combiner.layers": (COMBINER_OPTIONS["layers"].form, "group"),
    "combiner.activation": (COMBINER_OPTIONS["activation"].form, "group"),
    "combiner.norm": (COMBINER_OPTIONS["norm"].form, "group"),
    "train.batch_size": (Scalar("int", 1), "group"),
}
VMAPPED_PATHS = tuple(p for p, (_, how) in TUNE_PATHS.items() if how == "vmapped")

SLICE_OPTIONS = {
    "weight": OptionSpec(Scalar("float", 0.0), "multiplies the loss of the slice's training rows"),
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
    slices: list[dict] = field(default_factory=list)  # {"name", "condition" (as .dml), "weight"}
    # `tune { ... }` resolved: {"trials", "metric", "scheduler", "space": [{"path", "dist", "args"}]};
    # None without a tune statement (and in a trained model's artifact)
    tune: dict | None = None

    def to_json(self) -> dict:
        out = {"data": self.data_path, "split": self.split, "inputs": self.inputs,
               "outputs": self.outputs, "combiner": self.combiner, "train": self.train,
               "blocks": self.blocks, "slices": self.slices}
        if self.tune is not None:
            out["tune"] = self.tune
        return out


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
    "pool_mean": (("tensor",), "tensor"),  # over the tokens of a text or sequence input, padding masked
    "pool_max": (("tensor",), "tensor"),
}
BLOCK_PARAM_TYPES = ("tensor", "int", "float")
# Inputs an expert block may encode alone (`input review : text { encoder = my_block(width = 64) }`):
# text and sequence give it token vectors [B, T, 64] (pool_mean / pool_max use their mask);
# set, bag and category give it their learned vectors [B, size].
BLOCK_ENCODED_TYPES = ("text", "sequence", "set", "bag", "category")
BLOCK_TOKEN_SIZE = 64
