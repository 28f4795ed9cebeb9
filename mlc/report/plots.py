"""The report's charts: matplotlib figures rendered to inline SVG text.

matplotlib rather than Vega-Altair: it renders on the server to static SVG, so the
page needs no JavaScript at all (nothing to inline, nothing to load: it opens offline
and prints), and it is the plotting library every Python user already has.
"""
from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "figure.dpi": 96})
SIZE = (4.2, 3.0)
COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#718096"]


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def learning_curves(history: list[dict], metric: str, best_epoch: int, runs: dict | None = None) -> str:
    """Train and validation loss, and the early-stopping metric, per epoch; the best epoch
    marked. `runs`: {label: history} to overlay several runs (compare)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.0))
    for i, (label, hist) in enumerate((runs or {"": history}).items()):
        epochs = [h["epoch"] for h in hist]
        c = COLORS[i % len(COLORS)]
        prefix = f"{label}: " if label else ""
        a.plot(epochs, [h["train_loss"] for h in hist], color=c, ls="--", label=f"{prefix}train loss")
        a.plot(epochs, [h["val_loss"] for h in hist], color=c, label=f"{prefix}validation loss")
        b.plot(epochs, [h.get(metric) for h in hist], color=c, label=f"{prefix}{metric}")
    if not runs and best_epoch:
        for ax in (a, b):
            ax.axvline(best_epoch, color="#a0aec0", lw=1, ls=":")
        b.annotate(f"best epoch {best_epoch}", (best_epoch, b.get_ylim()[0]), fontsize=8, color="#4a5568")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend(frameon=False, fontsize=7)
    b.set_xlabel("epoch"), b.set_ylabel(metric), b.legend(frameon=False, fontsize=7)
    return _svg(fig)


def roc(curves: dict) -> str:
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(curves["roc"]["fpr"], curves["roc"]["tpr"], color=COLORS[0])
    ax.plot([0, 1], [0, 1], color="#cbd5e0", lw=1, ls="--")
    ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate"), ax.set_title("ROC curve")
    return _svg(fig)


def precision_recall(curves: dict) -> str:
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(curves["pr"]["recall"], curves["pr"]["precision"], color=COLORS[1])
    ax.axhline(curves["base_rate"], color="#cbd5e0", lw=1, ls="--")
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_title("precision and recall")
    ax.set_ylim(0, 1.02)
    return _svg(fig)


def calibration(curves: dict) -> str:
    fig, ax = plt.subplots(figsize=SIZE)
    bins = curves["calibration"]
    ax.plot([0, 1], [0, 1], color="#cbd5e0", lw=1, ls="--")
    ax.plot([c["predicted"] for c in bins], [c["observed"] for c in bins], marker="o", color=COLORS[2])
    ax.set_xlabel("predicted probability"), ax.set_ylabel("observed frequency"), ax.set_title("calibration")
    return _svg(fig)


def confusion(curves: dict) -> str:
    classes, m = curves["classes"], curves["confusion"]
    fig, ax = plt.subplots(figsize=(max(3.2, 0.45 * len(classes) + 1.8), max(2.8, 0.4 * len(classes) + 1.4)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    top = max(max(r) for r in m) if m else 0
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            ax.text(j, i, v, ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    ax.set_xlabel("predicted"), ax.set_ylabel("actual"), ax.set_title("confusion matrix")
    return _svg(fig)


def predicted_vs_actual(curves: dict) -> str:
    fig, ax = plt.subplots(figsize=SIZE)
    actual, pred = curves["actual"], curves["predicted"]
    ax.scatter(actual, pred, s=6, alpha=0.5, color=COLORS[0])
    lo, hi = min(actual + pred), max(actual + pred)
    ax.plot([lo, hi], [lo, hi], color="#a0aec0", lw=1, ls="--")
    ax.set_xlabel("actual"), ax.set_ylabel("predicted"), ax.set_title("predicted against actual")
    return _svg(fig)


def residuals(curves: dict) -> str:
    fig, ax = plt.subplots(figsize=SIZE)
    pred = curves["predicted"]
    ax.scatter(pred, [p - a for p, a in zip(pred, curves["actual"])], s=6, alpha=0.5, color=COLORS[1])
    ax.axhline(0, color="#a0aec0", lw=1, ls="--")
    ax.set_xlabel("predicted"), ax.set_ylabel("predicted - actual"), ax.set_title("residuals")
    return _svg(fig)


def bars(labels: list[str], values: dict[str, list[float]], title: str, ylabel: str) -> str:
    """Grouped bars: one group per label, one bar per series."""
    fig, ax = plt.subplots(figsize=(max(4.2, 0.5 * len(labels) * max(1, len(values)) + 1.5), 3.0))
    width = 0.8 / max(1, len(values))
    for i, (series, ys) in enumerate(values.items()):
        ax.bar([x + i * width for x in range(len(labels))], ys, width, label=series, color=COLORS[i % len(COLORS)])
    ax.set_xticks([x + width * (len(values) - 1) / 2 for x in range(len(labels))], labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel), ax.set_title(title)
    if len(values) > 1:
        ax.legend(frameon=False, fontsize=7)
    return _svg(fig)
