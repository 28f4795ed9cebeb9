"""Small, JSON-ready summaries of predictions for the report: curves and matrices.

`mlc run` stores them in report.json under `curves.<split>.<output>`, so report.html
can be rebuilt from report.json alone (`mlc report DIR`). Each summary is bounded in
size whatever the number of rows: at most 101 curve points, 10 calibration bins, 20
classes, 1,000 sampled points.
"""
from __future__ import annotations

import numpy as np

from mlc import spec

MAX_POINTS = 1000
MAX_CLASSES = 20


def _thin(xs: np.ndarray, ys: np.ndarray, n: int = 101) -> tuple[list, list]:
    if len(xs) > n:
        keep = np.unique(np.linspace(0, len(xs) - 1, n).round().astype(int))
        xs, ys = xs[keep], ys[keep]
    return [round(float(x), 5) for x in xs], [round(float(y), 5) for y in ys]


def binary_curves(y: np.ndarray, p: np.ndarray) -> dict:
    y = np.asarray(y).astype(bool)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    tp, fp = np.cumsum(ys), np.cumsum(~ys)
    pos, neg = max(int(ys.sum()), 1), max(int((~ys).sum()), 1)
    fpr, tpr = _thin(np.concatenate([[0], fp / neg]), np.concatenate([[0], tp / pos]))
    recall, precision = _thin(tp / pos, tp / np.maximum(tp + fp, 1))
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
    calibration = [{"predicted": float(p[which == b].mean()), "observed": float(y[which == b].mean()),
                    "rows": int((which == b).sum())} for b in range(10) if (which == b).any()]
    return {"roc": {"fpr": fpr, "tpr": tpr}, "pr": {"recall": recall, "precision": precision},
            "calibration": calibration, "base_rate": float(y.mean()) if len(y) else 0.0}


def category_curves(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    pred = probs.argmax(axis=1)
    k = len(classes)
    shown = list(np.argsort(-np.bincount(y, minlength=k))[:MAX_CLASSES]) if k > MAX_CLASSES else list(range(k))
    matrix = [[int(((y == a) & (pred == b)).sum()) for b in shown] for a in shown]
    return {"classes": [classes[i] for i in shown], "confusion": matrix, "classes_left_out": k - len(shown)}


def _sample(n: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.sort(np.random.default_rng(0).choice(n, MAX_POINTS, False))


def number_curves(y: np.ndarray, pred: np.ndarray) -> dict:
    idx = _sample(len(y))
    return {"actual": [float(v) for v in y[idx]], "predicted": [float(v) for v in pred[idx]]}


def output_curves(resolved: spec.Resolved, preds: dict, targets: dict, state: dict) -> dict:
    """Curves of every output for one split (predictions in the user's units)."""
    out = {}
    for f in resolved.outputs:
        name, st = f["name"], state["outputs"][f["name"]]
        p, y = np.asarray(preds[f"pred.{name}"], np.float64), np.asarray(targets[f"y_{name}"])
        if f["type"] == "binary":
            out[name] = binary_curves(y, p[:, 0])
        elif f["type"] == "category":
            out[name] = category_curves(y.astype(int), p, st["classes"])
        elif f["type"] == "number":
            out[name] = number_curves(y * st["std"] + st["mean"], p[:, 0] * st["std"] + st["mean"])
        elif f["type"] == "set":
            truth, chosen = y > 0.5, p >= f["options"]["threshold"]
            tp, fp, fn = (truth & chosen).sum(0), (~truth & chosen).sum(0), (truth & ~chosen).sum(0)
            f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
            out[name] = {"labels": st["labels"], "f1": [float(v) for v in f1], "support": [int(v) for v in truth.sum(0)]}
        elif f["type"] == "vector":
            mean, std = np.asarray(st["mean"]), np.asarray(st["std"])
            actual, predicted = y * std + mean, p * std + mean
            idx = _sample(len(actual))
            out[name] = {"actual": actual[idx].tolist(), "predicted": predicted[idx].tolist()}
    return out
