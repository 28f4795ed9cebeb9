"""`mlc run`: data -> preprocessing -> training -> evaluation -> report and artifact."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from mlc.compile import frontend
from mlc.explain import explain
from mlc.ir.graph import verify
from mlc.ir.lower import lower
from mlc.ir.pipeline import optimize
from mlc.runtime import artifact
from mlc.runtime.curves import output_curves
from mlc.runtime.outdir import OutputDir
from mlc.runtime.slices import mask, parse_condition, row_weights
from mlc.runtime import data as D
from mlc.runtime import devices as DV
from mlc.runtime.checkpoint import Checkpoints, fingerprint
from mlc.runtime import preprocess as P
from mlc.diagnostics import Diagnostic, MlcError, Span, UserError
from mlc.runtime.train import Diverged, Evaluator, output_metrics, train

SPLITS = ("train", "validation", "test")


def run(path: str | Path, out_dir: str | Path, seed: int = 0, progress=None, log=print, kernels: str = "xla",
        devices: int | None = None, resume: bool = False) -> dict:
    """Train, evaluate, write DIR/model.mlc and DIR/report.json (runtime/outdir.py: DIR is
    checked writable and locked before any work, and the pair is published in one step).
    devices: at most this many local devices (default: all). resume: continue from DIR's
    checkpoint (runtime/checkpoint.py). In a multi-process run (runtime/devices.py) every
    process trains and only process 0 writes."""
    from mlc.runtime.devices import process_index
    if process_index() != 0:
        return _run(path, NoOutput(out_dir), seed, progress, log, kernels, devices, resume)
    with OutputDir(out_dir, log) as out:
        return _run(path, out, seed, progress, log, kernels, devices, resume)


class NoOutput:
    """The output of a process other than 0 in a multi-process run: it writes nothing."""

    def __init__(self, folder):
        self.folder, self.model_sha256 = Path(folder), None

    def write_model(self, write) -> None:
        pass

    def publish(self, report_text: str) -> None:
        pass


def _run(path: str | Path, out, seed: int, progress, log, kernels: str,
         devices: int | None = None, resume: bool = False) -> dict:
    streamed, why = _data_path(path)
    if streamed:  # larger than memory, or several files: runtime/stream_run.py
        from mlc.compile import read_program
        from mlc.grammar.parse import parse
        if parse(*read_program(path)).tunes:  # trials share the encoded splits in memory
            raise UserError(f"`tune` needs the data in memory, and this data is {why}; tune on a sample "
                            "that fits, then train the chosen program on all of it")
        from mlc.runtime.stream_run import run_streamed
        return _publish(out, run_streamed(path, out, seed, progress, log, kernels, devices, resume, why), log)
    t_start = time.perf_counter()
    timings = {}
    fe = frontend(path)
    r = fe.resolved
    tables = {s: D.take(fe.table, fe.splits[s]) for s in SPLITS}
    timings["load_and_check"] = time.perf_counter() - t_start
    fe.print_warnings(log)
    if fe.dropped_rows:
        log(f"note: dropped {fe.dropped_rows} rows whose output is empty or unreadable")

    t = time.perf_counter()
    state = fe.state  # fitted on the training split by the front end
    encoded = {s: (P.encode_inputs(r, state, tables[s], lenient=True), P.encode_targets(r, state, tables[s])) for s in SPLITS}
    weights = row_weights(r.slices, tables["train"])
    if weights is not None:  # slices with a weight: the training rows' loss weights
        encoded["train"][1]["row_weight"] = weights
    # Train the optimized graph: simplified, CSE'd, dead code removed, kernel groups marked.
    graph, _ = optimize(lower(r, state))
    verify(graph)
    timings["preprocess"] = time.perf_counter() - t

    layout = DV.layout_for(graph, devices, r.train["batch_size"])
    checkpoint = Checkpoints(Path(out.folder) / ".mlc" / "checkpoint",
                             fingerprint(path, r.data_path, seed), resume, log)
    try:
        tuned = None
        if r.tune is not None or r.train.get("ensemble", 1) > 1:  # many models as few programs
            from mlc.runtime.tune import search
            tuned = search(fe, r, state, tables, encoded, seed, log)
            r, state, graph, encoded, result = tuned.resolved, tuned.state, tuned.graph, tuned.encoded, tuned.result
        else:
            result = train(r, graph, state, encoded, seed, progress, kernels, layout, checkpoint)
    except Diverged as e:  # point at the option most likely to blame
        spans = fe.checked.option_spans
        span = spans.get(e.option) or next((v for k, v in spans.items() if k.startswith(e.option + ".")), None)
        if span is None and e.option == "combiner":
            span = next((s.span for s in fe.checked.program.sections if s.keyword == "combiner"), None)
        raise MlcError(Diagnostic(str(e), span or Span(1, 1), fe.checked.program.file, e.hint),
                       fe.checked.program.source) from None
    except MemoryError:
        raise UserError("training ran out of memory; use a smaller `batch_size` or smaller layers") from None
    except Exception as e:  # XLA reports its own allocation failures as runtime errors
        if "RESOURCE_EXHAUSTED" in str(e) or "Out of memory" in str(e):
            raise UserError("training ran out of memory; use a smaller `batch_size` or smaller layers") from None
        raise
    timings["compile_first_epoch"] = result.compile_seconds
    timings["train"] = result.train_seconds

    t = time.perf_counter()
    evaluate = Evaluator(graph, [w for w in graph.outputs if w.startswith("pred.")])
    metrics, curves = {}, {}
    slice_masks = {sl["name"]: {s: mask(parse_condition(sl["condition"]), tables[s]) for s in SPLITS}
                   for sl in r.slices}
    slice_metrics = {sl["name"]: {} for sl in r.slices}
    for s in SPLITS:
        inputs, targets = encoded[s]
        preds = evaluate(result.params, inputs)
        metrics[s] = output_metrics(r, preds, targets, state)
        if s == "test":  # what report.html plots: bounded in size (runtime/curves.py)
            curves[s] = output_curves(r, preds, targets, state)
        for sl in r.slices:
            rows = slice_masks[sl["name"]][s]
            if rows.any():
                sliced = {k: v[rows] for k, v in preds.items()}
                slice_metrics[sl["name"]][s] = output_metrics(r, sliced, {k: v[rows] for k, v in targets.items()
                                                                           if k.startswith("y_")}, state)
    timings["evaluate"] = time.perf_counter() - t

    program_text = explain(r)
    out.write_model(lambda p: artifact.save(p, r, state, graph, result.params, program_text))
    timings["total"] = time.perf_counter() - t_start
    report = {
        "program": str(path),
        "seed": seed,
        "metrics": metrics,
        "curves": curves,
        "rows": {s: int(len(fe.splits[s])) for s in SPLITS},
        "dropped_rows": fe.dropped_rows,
        "data_quality": fe.data_quality,
        "slices": {sl["name"]: {"condition": sl["condition"], "weight": sl["weight"],
                                "rows": {s: int(slice_masks[sl["name"]][s].sum()) for s in SPLITS},
                                "metrics": slice_metrics[sl["name"]]} for sl in r.slices},
        "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                     "steps": result.steps, "batch_size": r.train["batch_size"], "kernels": kernels,
                     "stopped_by": result.stopped_by,
                     "early_stop": r.train["early_stop"],
                     "rows_per_second": result.rows_per_second,
                     "mesh": result.mesh, "resumed_from_epoch": result.resumed_from,
                     "history": result.history},
        "timings_seconds": {k: round(v, 4) for k, v in timings.items()},
        "resolved": r.to_json(),
        "resolved_program": program_text,
        "parameters": int(sum(np.asarray(p).size for p in result.params.values())),
        "versions": artifact.versions(),
        "model": {"file": "model.mlc", "sha256": out.model_sha256},  # the model this report describes
    }
    if tuned is not None:  # every trial (values, curve, validation metric, time); the ensemble's members
        report.update(tuned.report)
    report["data"] = {"path": "memory", "reason": why}
    return _publish(out, report, log)


def _data_path(path) -> tuple[bool, str]:
    """(stream?, reason): runtime/stream.choose on the program's data path. A program or
    path that does not check is left to the in-memory front end, which reports it."""
    from mlc.compile import read_program
    from mlc.grammar.parse import parse
    from mlc.passes.check import check
    from mlc.passes.check_data import data_path
    from mlc.runtime import stream
    try:
        checked = check(parse(*read_program(path)))
        return stream.choose(data_path(checked))
    except (MlcError, UserError, OSError):
        return False, "in memory"


def _publish(out, report: dict, log) -> dict:
    if isinstance(out, NoOutput):
        return report
    out.publish(json.dumps(report, indent=1, default=_json_default))
    _write_html(out.folder, json.loads(json.dumps(report, default=_json_default)), log)
    return report


def _write_html(folder: Path, report: dict, log) -> None:
    """DIR/report.html (mlc/report/page.py), written whole or not at all. It is derived
    from report.json (`mlc report DIR` rebuilds it), so a failure here only warns."""
    from mlc.report.page import build
    target = Path(folder) / "report.html"
    tmp = target.with_name(f".report.html.{os.getpid()}.tmp")
    try:
        tmp.write_text(build(report), encoding="utf-8")
        tmp.replace(target)
    except Exception as e:  # noqa: BLE001 - the model and report are already published
        tmp.unlink(missing_ok=True)
        log(f"warning: could not write {target} ({type(e).__name__}: {e}); `mlc report {folder}` retries")


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x))
