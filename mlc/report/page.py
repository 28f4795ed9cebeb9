"""report.html: one self-contained page from report.json (no script, no network).

`build(report)` returns the HTML text; `write(dir)` rebuilds DIR/report.html from
DIR/report.json (what `mlc report DIR` runs). The charts come from plots.py as inline
SVG; everything else is plain HTML with a small inline style sheet.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from mlc.diagnostics import UserError

from . import plots

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; color: #1a202c;
       max-width: 1100px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 17px; margin-top: 28px;
     border-bottom: 1px solid #e2e8f0; padding-bottom: 4px; } h3 { font-size: 15px; }
.sub { color: #718096; } table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #e2e8f0; padding: 3px 9px; text-align: right; }
th { background: #f7fafc; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7fafc; border: 1px solid #e2e8f0; padding: 10px; overflow-x: auto; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; } .chart svg { max-width: 100%; height: auto; }
.warn { color: #975a16; } .diff-add { color: #276749; } .diff-del { color: #9b2c2c; }
"""


def esc(x) -> str:
    return html.escape(str(x))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e5 else f"{v:.4g}"
    return esc(v)


def table(head: list[str], rows: list[list]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{fmt(c)}</td>" for c in r) + "</tr>" for r in rows]
    return "".join(out) + "</table>"


def chart(svg: str, caption: str) -> str:
    return f'<figure class="chart" data-chart="{esc(caption)}">{svg}</figure>'


def page(title: str, body: list[str]) -> str:
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def metrics_table(report: dict) -> str:
    rows = []
    for out, metrics in report["metrics"]["test"].items():
        for m in metrics:
            rows.append([out, m] + [report["metrics"][s][out][m] for s in ("train", "validation", "test")])
    return table(["output", "metric", "train", "validation", "test"], rows)


def output_charts(out: dict, curves: dict) -> list[str]:
    t = out["type"]
    if t == "binary":
        return [chart(plots.roc(curves), "roc"), chart(plots.precision_recall(curves), "precision-recall"),
                chart(plots.calibration(curves), "calibration")]
    if t == "category":
        return [chart(plots.confusion(curves), "confusion")]
    if t in ("number", "vector"):
        flat = curves
        if t == "vector":  # every component on one plot
            flat = {"actual": [a for row in curves["actual"] for a in row],
                    "predicted": [p for row in curves["predicted"] for p in row]}
        return [chart(plots.predicted_vs_actual(flat), "predicted-vs-actual"), chart(plots.residuals(flat), "residuals")]
    if t == "set":
        return [chart(plots.bars(curves["labels"], {"F1": curves["f1"]}, "F1 per label (test)", "F1"), "f1-per-label")]
    return []


def slice_section(report: dict) -> list[str]:
    """Per-slice metrics (every metric, validation and test) and a chart of the lead metric."""
    slices = report.get("slices") or {}
    if not slices:
        return []
    out = ["<h2>Slices</h2>"]
    for output, metrics in report["metrics"]["test"].items():
        rows = [["(all rows)", "", report["rows"]["test"], *[report["metrics"]["test"][output][m] for m in metrics]]]
        for name, sl in slices.items():
            got = sl["metrics"].get("test", {}).get(output, {})
            rows.append([name, sl["condition"] + (f" (weight {sl['weight']:g})" if sl["weight"] != 1 else ""),
                         sl["rows"]["test"], *[got.get(m, "") for m in metrics]])
        out.append(f"<h3>{esc(output)}, test split</h3>" + table(["slice", "condition", "rows", *metrics], rows))
        lead = next(iter(metrics))
        labels = ["(all rows)", *slices]
        series = {split: [report["metrics"][split][output][lead]] +
                  [sl["metrics"].get(split, {}).get(output, {}).get(lead, float("nan")) for sl in slices.values()]
                  for split in ("validation", "test")}
        out.append(chart(plots.bars(labels, series, f"{lead} per slice", lead), f"slices-{output}"))
    return out


def build(report: dict) -> str:
    name = Path(report.get("program", "model")).stem
    tr = report["training"]
    body = [f"<h1>{esc(name)}</h1>",
            f"<p class=sub>{esc(report.get('program'))} &middot; seed {esc(report.get('seed'))} &middot; "
            f"mlc {esc(report.get('versions', {}).get('mlc'))} &middot; best epoch {tr['best_epoch']} of "
            f"{tr['epochs_run']} ({esc(tr.get('stopped_by', ''))})</p>",
            "<h2>Metrics</h2>", metrics_table(report)]
    rows = report["rows"]
    body += ["<h2>Data</h2>", table(["split", "rows"], [[s, n] for s, n in rows.items()]
                                    + [["dropped (output empty or unreadable)", report.get("dropped_rows", 0)]])]
    quality = report.get("data_quality") or {}
    if quality:
        items = []
        for col, q in quality.items():
            if "count" in q:
                shown = ", ".join(f"`{e.get('value', e.get('text'))}` (line {e['line']})" for e in q.get("examples", []))
                items.append(f"<li><b>{esc(col)}</b>: {q['count']} unreadable, such as {esc(shown)}</li>")
            if "no_information" in q:
                items.append(f"<li><b>{esc(col)}</b>: {esc(q['no_information'])}</li>")
        body.append("<h3 class=warn>Data quality</h3><ul>" + "".join(items) + "</ul>")
    metric = tr["early_stop"]["metric"]
    body += ["<h2>Training</h2>",
             chart(plots.learning_curves(tr["history"], metric, tr["best_epoch"]), "learning-curves")]
    for out in report["resolved"]["outputs"]:
        curves = report.get("curves", {}).get("test", {}).get(out["name"])
        if curves:
            body += [f"<h2>Output <code>{esc(out['name'])}</code> ({esc(out['type'])}), test split</h2>",
                     '<div class="charts">' + "".join(output_charts(out, curves)) + "</div>"]
    body += slice_section(report)
    body += ["<h2>Program, with every decision and its reason</h2>",
             f"<pre>{esc(report.get('resolved_program', ''))}</pre>",
             "<h2>Timings</h2>", table(["stage", "seconds"], [[k, v] for k, v in report["timings_seconds"].items()])]
    return page(f"mlc report: {name}", body)


def read_report(folder: Path) -> dict:
    path = Path(folder) / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no report.json in `{folder}`; `mlc run` writes one") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"`{path}` is not a report ({e})") from None
    if not isinstance(report, dict) or not {"metrics", "training", "resolved", "rows"} <= set(report):
        raise UserError(f"`{path}` is not a report written by `mlc run`")
    return report


def write(folder: Path) -> Path:
    """Rebuild folder/report.html from folder/report.json."""
    out = Path(folder) / "report.html"
    tmp = out.with_name(f".report.html.{__import__('os').getpid()}.tmp")
    tmp.write_text(build(read_report(Path(folder))), encoding="utf-8")
    tmp.replace(out)
    return out
