"""Defaults for the columns that are not tabular (text, sequence, set, bag, date, vector),
each with its reason. Called by passes/defaults.py for every such column."""
from __future__ import annotations

import math

TEXT_ENCODER_ARGS = {"bag": {"size": 64, "buckets": 32768}, "cnn": {"size": 64, "filters": 64, "widths": [3, 4, 5]},
                     "transformer": {"size": 64, "layers": 1, "heads": 4}}


def _embed_size(k: int) -> int:
    return min(32, max(4, round(1.6 * max(k, 1) ** 0.56)))


def _pow2(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(x, 1))))


def _separator(pick, where: str, given: dict, fact: dict) -> str:
    sep = fact.get("separator", " ")
    shown = "a space" if sep == " " else f"`{sep}`"
    return pick(where, given, "separator", sep, f"{shown} separates the values in the data")


def _filled(value: dict, defaults: dict) -> dict:
    for k, v in defaults.get(value["name"], {}).items():
        value.setdefault(k, v)
    return value


def input_options(type_: str, where: str, given: dict, fact: dict, pick) -> dict:
    opts: dict = {}
    if type_ == "text":
        words = fact.get("distinct_words", 0)
        buckets = min(131072, max(4096, _pow2(2 * words)))
        enc = pick(where, given, "encoder", {"name": "bag", "size": 64, "buckets": buckets},
                   "fastText: the mean of word and hashed word-bigram vectors is strong on small data "
                   f"without a pretrained model (Joulin et al., 2016); {buckets} bigram buckets for "
                   f"{words} distinct words")
        opts["encoder"] = _filled(enc, TEXT_ENCODER_ARGS)
        opts["tokenizer"] = _filled(pick(where, given, "tokenizer", {"name": "word", "vocab": 30000, "min_count": 2},
                                         "words (lower case, punctuation marks apart) seen at least twice "
                                         "in training, at most 30000: a word seen once cannot generalize"),
                                    {"word": {"vocab": 30000, "min_count": 2}, "bpe": {"vocab": 8000}})
        opts["max_len"] = pick(where, given, "max_len", "auto",
                               f"{fact.get('tokens_per_row', 0):.0f} tokens per row on average: keep the 95th "
                               f"percentile of the training rows whole (at most "
                               f"{512 if opts['encoder']['name'] == 'bag' else 256})")
    elif type_ == "sequence":
        _separator_opt(opts, pick, where, given, fact)
        enc = pick(where, given, "encoder", {"name": "cnn", "size": 32, "filters": 64, "widths": [3, 5]},
                   "order matters in a sequence: convolutions see local order, train fast on a CPU and "
                   "are strong on short sequences (a transformer costs the square of the length)")
        opts["encoder"] = _filled(enc, TEXT_ENCODER_ARGS)
        k = fact.get("labels", 0)
        opts["min_count"] = pick(where, given, "min_count", 1 if k <= 50 else 2,
                                 "few tokens: keep each" if k <= 50 else
                                 f"{k} tokens: tokens seen once share the <unknown> vector")
        opts["max_len"] = pick(where, given, "max_len", "auto",
                               f"{fact.get('members_per_row', 0):.0f} tokens per row on average: keep the 95th "
                               "percentile of the training rows whole (at most 256)")
    elif type_ in ("set", "bag"):
        _separator_opt(opts, pick, where, given, fact)
        k = fact.get("labels", 0)
        size = _embed_size(k)
        if type_ == "set":
            enc = pick(where, given, "encoder", {"name": "sum", "size": size},
                       f"{k} labels: the sum of the members' vectors of size min(32, 1.6*k^0.56) is a dense "
                       "layer over the multi-hot row, nothing lost")
        else:
            enc = pick(where, given, "encoder", {"name": "mean", "size": size},
                       f"{k} labels: the weighted mean of their vectors (size min(32, 1.6*k^0.56)); "
                       "rows with large counts do not dominate")
        opts["encoder"] = _filled(enc, {"sum": {"size": size}, "mean": {"size": size}})
        opts["min_count"] = pick(where, given, "min_count", 1 if k <= 50 else 3,
                                 "few labels: keep each" if k <= 50 else
                                 f"{k} labels: labels seen under 3 times share the <unknown> vector")
    elif type_ == "date":
        if given.get("format") is not None:
            opts["format"] = pick(where, given, "format", None, "")
        else:
            opts["format"] = pick(where, given, "format", fact.get("format", "ISO 8601"),
                                  "the format that reads the most cells of the data")
    elif type_ == "vector":
        _separator_opt(opts, pick, where, given, fact)
        opts["normalize"] = pick(where, given, "normalize", {"name": "zscore"},
                                 f"{fact.get('size', 0)} numbers per cell, each scaled to mean 0 and deviation 1")
    return opts


def _separator_opt(opts: dict, pick, where: str, given: dict, fact: dict):
    opts["separator"] = _separator(pick, where, given, fact)


def output_options(type_: str, where: str, given: dict, fact: dict, pick) -> dict:
    opts: dict = {}
    _separator_opt(opts, pick, where, given, fact)
    if type_ == "set":
        opts["loss"] = pick(where, given, "loss", {"name": "binary_cross_entropy"},
                            f"{fact.get('labels', 0)} labels, each present or not: one sigmoid per label")
        opts["threshold"] = pick(where, given, "threshold", 0.5, "a label is predicted when more likely than not")
    else:
        opts["loss"] = pick(where, given, "loss", {"name": "mse"},
                            "squared error on each standardized component matches r2 and rmse")
    opts["weight"] = pick(where, given, "weight", 1.0, "every output counts the same")
    return opts


def encoded_width(f: dict, fact: dict) -> int:
    """Rough width of a column's encoding, for the training-cost estimate."""
    t, enc = f["type"], f["options"].get("encoder", {})
    if t in ("text", "sequence"):
        if enc.get("name") == "cnn":
            return enc["filters"] * len(enc["widths"])
        return enc.get("size", 64)
    if t in ("set", "bag"):
        return enc.get("size", 16)
    if t == "date":
        return 30
    if t == "vector":
        return fact.get("size", 1) + 1
    return 1


def output_width(f: dict, fact: dict) -> int:
    return fact.get("labels", 1) if f["type"] == "set" else fact.get("size", 1)


def encoder_macs(f: dict, fact: dict) -> float:
    """Multiply-adds per row of a sequence encoder (cnn, transformer), for the cost estimate."""
    enc = f["options"].get("encoder", {})
    if f["type"] not in ("text", "sequence") or enc.get("name") not in ("cnn", "transformer"):
        return 0.0
    length = min(256, 1.5 * max(1.0, fact.get("tokens_per_row", fact.get("members_per_row", 16))))
    if enc["name"] == "cnn":
        return length * enc["size"] * enc["filters"] * sum(enc["widths"])
    return enc["layers"] * length * (12 * enc["size"] ** 2 + 2 * length * enc["size"])
