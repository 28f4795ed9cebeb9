"""`mlc compare DIR1 DIR2 ...`: one page comparing runs side by side: test metrics,
validation curves overlaid, and the differences between their resolved programs."""
from __future__ import annotations

import difflib
from pathlib import Path

from mlc.diagnostics import UserError

from . import plots
from .page import chart, esc, page, read_report, table


def build(folders: list[Path]) -> str:
    reports = [read_report(f) for f in folders]
    labels = _labels(folders)
    body = [f"<h1>Comparing {len(reports)} runs</h1>",
            "<p class=sub>" + " &middot; ".join(f"<b>{esc(l)}</b>: {esc(r.get('program'))}"
                                               for l, r in zip(labels, reports)) + "</p>"]
    for split in ("test", "validation", "train"):
        rows = []
        keys = dict.fromkeys((o, m) for r in reports for o, ms in r["metrics"][split].items() for m in ms)
        for o, m in keys:
            rows.append([o, m] + [r["metrics"][split].get(o, {}).get(m, "") for r in reports])
        body += [f"<h2>Metrics: {split}</h2>", table(["output", "metric", *labels], rows)]
    metrics = {r["training"]["early_stop"]["metric"] for r in reports}
    metric = metrics.pop() if len(metrics) == 1 else "val_loss"
    runs = {l: r["training"]["history"] for l, r in zip(labels, reports)}
    body += ["<h2>Training curves</h2>", chart(plots.learning_curves([], metric, 0, runs), "learning-curves")]
    base = reports[0].get("resolved_program", "").splitlines()
    for label, r in zip(labels[1:], reports[1:]):
        diff = difflib.unified_diff(base, r.get("resolved_program", "").splitlines(), labels[0], label, lineterm="", n=1)
        lines = [f'<span class="diff-{"add" if d.startswith("+") else "del"}">{esc(d)}</span>'
                 if d[:1] in "+-" and not d.startswith(("+++", "---")) else esc(d) for d in diff]
        body += [f"<h2>Program: {esc(labels[0])} against {esc(label)}</h2>",
                 "<pre>" + ("\n".join(lines) or "(the same program)") + "</pre>"]
    return page("mlc compare", body)


def _labels(folders: list[Path]) -> list[str]:
    names = [Path(f).name or str(f) for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def write(folders: list[Path], out: Path) -> Path:
    if len(folders) < 2:
        raise UserError("compare needs two run folders or more")
    html = build([Path(f) for f in folders])
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"cannot write `{out}`: its folder does not exist")
    out.write_text(html, encoding="utf-8")
    return out
