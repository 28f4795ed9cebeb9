"""report.html and compare.html: built from report.json alone, self-contained (no script,
no network), every chart present; opened in headless Chromium where it is installed
(Debian's `chromium` package), as a person would look at it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers_frontend import mlc, write_files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The charts each output type gets in report.html, plus the learning curves.
CHARTS = {"binary": 3, "category": 1, "number": 2, "set": 1, "vector": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """titanic (binary) and penguins (category) trained briefly, twice for titanic."""
    folder = tmp_path_factory.mktemp("runs")
    shutil.copytree(EXAMPLES / "data", folder / "data")
    for name, extra in [("titanic", "train { epochs = 4 }"), ("titanic2", "train { epochs = 6 }\n"
                        "combiner concat { layers = [64] }"), ("penguins", "train { epochs = 4 }")]:
        src = (EXAMPLES / f"{name.rstrip('2')}.dml").read_text()
        (folder / f"{name}.dml").write_text(src + "\n" + extra + "\n")
        r = mlc(folder, "run", f"{name}.dml", "--out", f"out/{name}", timeout=300)
        assert r.returncode == 0, r.stderr
        r = mlc(folder, "report", f"out/{name}")
        assert r.returncode == 0, r.stderr
    return folder / "out"


def _external(html: str) -> list[str]:
    """Anything the page would fetch: src/href attributes, CSS url(), imports (inline data:
    URIs and references to the page's own elements are not fetched)."""
    return re.findall(r'(?:src|href)\s*=\s*["\'](?!data:|#)[^"\']+|url\((?!#)|@import', html)


def test_report_is_self_contained_with_every_chart(runs):
    for name, kind in [("titanic", "binary"), ("penguins", "category")]:
        page = (runs / name / "report.html").read_text()
        assert "<script" not in page and not _external(page)
        charts = re.findall(r'<figure class="chart" data-chart="([^"]+)"><svg[^>]*width="([\d.]+)pt" height="([\d.]+)pt"',
                            page)
        assert len(charts) == 1 + CHARTS[kind], charts
        assert all(float(w) > 50 and float(h) > 50 for _, w, h in charts)
        report = json.loads((runs / name / "report.json").read_text())
        for metric, value in report["metrics"]["test"][next(iter(report["metrics"]["test"]))].items():
            assert f"<td>{value:.4f}</td>" in page  # the metrics table shows the test numbers


def test_curves_in_report_json_are_bounded_and_consistent(runs):
    report = json.loads((runs / "titanic" / "report.json").read_text())
    c = report["curves"]["test"]["survived"]
    fpr, tpr = np.array(c["roc"]["fpr"]), np.array(c["roc"]["tpr"])
    assert len(fpr) <= 101 and fpr[0] == 0 and tpr[-1] == 1 and (np.diff(fpr) >= 0).all()
    # the area under the stored ROC points is the reported ROC AUC (thinned to 101 points)
    assert abs(np.trapezoid(tpr, fpr) - report["metrics"]["test"]["survived"]["roc_auc"]) < 0.03
    assert sum(b["rows"] for b in c["calibration"]) == report["rows"]["test"]


def test_compare_shows_both_runs_and_their_program_difference(runs, tmp_path):
    out = tmp_path / "cmp.html"
    r = mlc(runs, "compare", "titanic", "titanic2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert "<th>titanic</th><th>titanic2</th>" in page
    assert re.search(r'<span class="diff-add">\+  layers += \[64\] +# set in the program', page)
    assert not _external(page)


def test_report_and_compare_errors_are_clean(tmp_path):
    r = mlc(tmp_path, "report", "nowhere")
    assert r.returncode == 1 and r.lines[-1] == "error: no report.json in `nowhere`; `mlc run` writes one"
    write_files(tmp_path, {"bad/report.json": "[1, 2]"})
    r = mlc(tmp_path, "report", "bad")
    assert r.returncode == 1 and "is not a report written by `mlc run`" in r.stderr
    r = mlc(tmp_path, "compare", "bad")
    assert r.returncode == 1 and r.lines[-1] == "error: compare needs two run folders or more"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_report_renders_in_a_browser(runs, tmp_path):
    page = runs / "titanic" / "report.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<svg") == 1 + CHARTS["binary"]  # parsed and in the document
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,2200", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    import matplotlib.image
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not a blank page
    blue = np.abs(pixels - np.array([0x2b, 0x6c, 0xb0]) / 255).sum(-1) < 0.08
    assert blue.sum() > 500  # the charts' lines were drawn


@pytest.fixture(scope="module")
def every_example(runs, tmp_path_factory):
    """Every shipped example trained for one epoch (in process), with its report.html;
    titanic and penguins are the `runs` fixture's (4 epochs, `mlc run`), not trained again."""
    from mlc.runtime.run import run
    folder = tmp_path_factory.mktemp("examples")
    shutil.copytree(EXAMPLES / "data", folder / "data")
    out = {}
    for program in sorted(EXAMPLES.glob("*.dml")):
        if program.stem in ("titanic", "penguins"):
            shutil.copytree(runs / program.stem, folder / "out" / program.stem)
            out[program.stem] = json.loads((runs / program.stem / "report.json").read_text())
            continue
        (folder / program.name).write_text(program.read_text() + "\ntrain { epochs = 1 }\n")
        out[program.stem] = run(folder / program.name, folder / "out" / program.stem, log=lambda m: None)
    return folder / "out", out


def test_report_and_compare_work_on_every_example(every_example, tmp_path):
    from mlc.report import compare
    folder, reports = every_example
    for name, report in reports.items():
        page = (folder / name / "report.html").read_text()
        kinds = [o["type"] for o in report["resolved"]["outputs"]]
        assert len(re.findall(r'<figure class="chart"', page)) == 1 + sum(CHARTS[k] for k in kinds), name
    out = compare.write([folder / n for n in reports], tmp_path / "all.html")
    assert all(f"<th>{n}</th>" in out.read_text() for n in reports)
