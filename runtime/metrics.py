"""Metrics per output type, in numpy (tests check them against scikit-learn)."""
from __future__ import annotations

import numpy as np


class NonFiniteScores(ValueError):
    """Metrics refuse predictions that are NaN or infinite: a number computed from them
    would look like a result and mean nothing."""


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise NonFiniteScores(f"{bad} of {x.size} predictions are not finite numbers; metrics refuse them")
    return x


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney) formula; ties share ranks."""
    y = np.asarray(y).astype(bool)
    score = _finite(score)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _f1(tp, fp, fn) -> float:
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    p = _finite(p)
    y = y.astype(bool)
    pred = p >= 0.5
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    return {"roc_auc": roc_auc(y, p), "accuracy": float((pred == y).mean()), "f1": _f1(tp, fp, fn),
            "loss": float(-(y * np.log(pc) + (~y) * np.log(1 - pc)).mean())}


def category_metrics(y: np.ndarray, probs: np.ndarray) -> dict:
    probs = _finite(probs)
    pred = probs.argmax(axis=1)
    f1s = []
    for k in range(probs.shape[1]):
        if not ((y == k).any() or (pred == k).any()):
            continue  # a class absent from both does not count, as in scikit-learn's labels=present
        tp = int(((pred == k) & (y == k)).sum())
        f1s.append(_f1(tp, int(((pred == k) & (y != k)).sum()), int(((pred != k) & (y == k)).sum())))
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(np.mean(f1s)),
            "loss": float(-np.log(p_true).mean())}


def number_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    pred = _finite(pred)
    err = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"r2": float(1 - (err ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
            "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}


def regression_loss(y: np.ndarray, pred: np.ndarray, loss: dict) -> float:
    """The training loss of a number output, on the standardized scale."""
    err = pred - y
    if loss["name"] == "mse":
        return float((err ** 2).mean())
    if loss["name"] == "mae":
        return float(np.abs(err).mean())
    d, a = loss["delta"], np.abs(err)
    return float(np.where(a <= d, 0.5 * err ** 2, d * (a - 0.5 * d)).mean())


def set_metrics(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """Multi-label metrics on [rows, labels] 0/1 targets: jaccard (per row, averaged; a row
    with no true and no predicted label counts 1), micro and macro F1 (over the labels that
    occur in y or the predictions, as scikit-learn's), and the loss (sum of the per-label
    binary cross-entropies, as in training)."""
    probs = _finite(probs)
    truth, pred = y > 0.5, probs >= threshold
    inter, union = (truth & pred).sum(1), (truth | pred).sum(1)
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    tp, fp, fn = (truth & pred).sum(0), (~truth & pred).sum(0), (truth & ~pred).sum(0)
    used = (truth | pred).any(0)
    macro = [_f1(int(a), int(b), int(c)) for a, b, c, u in zip(tp, fp, fn, used) if u]
    pc = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = -(truth * np.log(pc) + ~truth * np.log(1 - pc)).sum(1)
    return {"jaccard": float(jaccard.mean()), "f1_micro": _f1(int(tp.sum()), int(fp.sum()), int(fn.sum())),
            "f1_macro": float(np.mean(macro)) if macro else 0.0, "loss": float(loss.mean())}


def vector_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    """r2 averaged over the components (scikit-learn's uniform average), mae and rmse over
    every number."""
    pred = _finite(pred)
    err = pred - y
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    r2 = 1 - (err ** 2).sum(0) / np.where(ss_tot > 0, ss_tot, np.nan)
    return {"r2": float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan"),
            "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}

