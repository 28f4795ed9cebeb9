"""`mlc run` on streamed data (runtime/stream.py chose it): checks on the first rows,
preprocessing from one pass with mergeable summaries (runtime/sketches.py), streamed
training (runtime/stream_train.py), evaluation, and the same report and artifact as the
in-memory path.

What differs from the in-memory path, and why:
- The checks of the data (types, bad cells, values of outputs) look at the first
  HEAD_ROWS rows: reading every row twice more only to check them would double the cost.
  A later cell that does not parse is treated as missing (the lenient encoders).
- Preprocessing: exact where a summary can be exact (means, variances, min and max,
  missing counts, vocabularies and class counts); quantiles (median fill, robust scaling,
  `ple` edges) and the encoders of text, set, date and vector inputs are fitted on a uniform
  sample of sketches.SAMPLE_SIZE training rows (rank error bound in runtime/sketches.py).
- The split is the same as in memory; the shuffle is not (pieces in a random order, rows
  shuffled in windows), so the trained parameters differ from an in-memory run's.
- Training metrics in the report are on the sample of training rows; validation and test
  metrics on every row. Slices are not supported on streamed data yet (refused).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from mlc.compile import read_program
from mlc.diagnostics import Diagnostic, MlcError, UserError
from mlc.grammar.parse import parse
from mlc.passes.check import check
from mlc.passes.check_data import check_data, data_path
from mlc.passes.defaults import resolve, split_of
from mlc.runtime import data as D
from mlc.runtime import devices as DV
from mlc.runtime import preprocess as P
from mlc.runtime import sketches as S
from mlc.runtime import stream as ST

HEAD_ROWS = 100_000
# the validation split is kept encoded in memory up to this size; larger, it is read again each epoch
VALIDATION_CACHE_BYTES = 256 << 20


def exact_state(resolved, state: dict, stats: ST.Stats, facts: dict) -> dict:
    """The sample-fitted state with every value the one pass knows exactly put in."""
    for f in resolved.inputs:
        name, st, opts = f["name"], state["inputs"][f["name"]], f["options"]
        if f["type"] == "number":
            m = stats.moments[name]
            if not m.n:
                continue
            fill = {"mean": m.mean, "zero": 0.0}.get(opts["missing"]["name"], st["fill"])
            total = m.n + m.missing
            mf = (m.n * m.mean + m.missing * fill) / total
            var = (m.m2 + m.n * (m.mean - mf) ** 2 + m.missing * (fill - mf) ** 2) / total
            lo, hi = (min(m.min, fill), max(m.max, fill)) if m.missing else (m.min, m.max)
            st.update(fill=float(fill), indicator=bool(m.missing), constant=bool(hi == lo), empty=False)
            if opts["normalize"]["name"] == "zscore":
                st.update(shift=float(mf), scale=float(math.sqrt(var)) or 1.0)
            elif opts["normalize"]["name"] == "minmax":
                st.update(shift=float(lo), scale=float(hi - lo) or 1.0)
        elif f["type"] == "category":
            st["vocab"] = [v for v, c in stats.counts[name].most_common() if c >= opts["min_count"]]
        elif f["type"] == "binary":
            st["values"] = sorted(stats.counts[name].counts)
    for f in resolved.outputs:
        name, st = f["name"], state["outputs"][f["name"]]
        if f["type"] == "number":
            m = stats.moments[name]
            st.update(mean=float(m.mean), std=float(m.std) or 1.0)
        elif f["type"] == "binary":
            c = stats.counts[name].counts
            total = sum(c.values())
            st["prior"] = float(np.clip(c.get(st["positive"], 0) / max(total, 1), 0.01, 0.99))
        elif f["type"] == "category":
            c = stats.counts[name].counts
            classes = sorted(set(c) | set((facts.get(name) or {}).get("values") or []))
            total = sum(c.values())
            st.update(classes=classes, priors=[(c.get(k, 0) + 1) / (total + len(classes)) for k in classes])
    return state


def prepare(path: str | Path, log):
    """Checks, split and preprocessing of a streamed data set; returns what training needs."""
    source_text, file = read_program(path)
    checked = check(parse(source_text, file))
    if checked.program.slices:
        raise MlcError(Diagnostic("slices are not supported on streamed data yet", checked.data.span, file,
                                  "set MLC_DATA_PATH=memory to read the data whole (docs/scaling.md)"), source_text)
    try:
        source = ST.Source.open(data_path(checked))
    except D.DataError as e:
        raise MlcError(Diagnostic(e.message, checked.data.span, file, e.hint), source_text) from None
    head = source.head(HEAD_ROWS)
    facts = check_data(checked, head)
    split, _ = split_of(checked.data)
    outputs = [{"name": f.name, "type": f.type} for f in checked.program.outputs]
    pos = ST.positions(source, outputs, split)
    for name, count in pos.counts.items():
        if count == 0:
            raise MlcError(Diagnostic(f"the {name} split is empty", checked.data.span, file,
                                      "use more rows or a larger share"), source_text)
    resolved = resolve(checked, facts, pos.counts["train"])
    stats = ST.fit_pass(source, pos, resolved, split, resolved.split.get("seed", 0) if split["kind"] == "ratio" else 0)
    state = exact_state(resolved, P.fit(resolved, stats.sample, facts), stats, facts)
    return checked, source, pos, split, resolved, stats, state, facts


def run_streamed(path, out, seed: int, progress, log, kernels: str, devices, resume: bool, why: str) -> dict:
    from mlc.explain import explain
    from mlc.ir.graph import verify
    from mlc.ir.lower import lower
    from mlc.ir.pipeline import optimize
    from mlc.runtime import artifact
    from mlc.runtime.checkpoint import Checkpoints, fingerprint
    from mlc.runtime.curves import output_curves
    from mlc.runtime.stream_train import evaluate_batches, train_streamed
    from mlc.runtime.train import Evaluator, output_metrics

    t_start = time.perf_counter()
    timings = {}
    log(f"note: data {why}")
    checked, source, pos, split, r, stats, state, facts = prepare(path, log)
    timings["load_check_and_fit"] = time.perf_counter() - t_start
    graph, _ = optimize(lower(r, state))
    verify(graph)
    batch = r.train["batch_size"]
    steps = max(1, pos.counts["train"] // batch)
    layout = DV.layout_for(graph, devices, batch)
    evaluate = Evaluator(graph, [w for w in graph.outputs if w.startswith("pred.")])
    sample_inputs, sample_targets = ST.encode(r, state, stats.sample)
    row_bytes = sum(v.nbytes for v in {**sample_inputs, **sample_targets}.values()) / max(stats.sample.num_rows, 1)
    cached = None
    if pos.counts["validation"] * row_bytes <= VALIDATION_CACHE_BYTES:
        cached = list(ST.encoded_split(source, pos, r, state, split, "validation"))

    def validation(params):
        pieces = cached if cached is not None else ST.encoded_split(source, pos, r, state, split, "validation")
        return evaluate_batches(evaluate, params, pieces)

    checkpoint = Checkpoints(Path(out.folder) / ".mlc" / "checkpoint", fingerprint(path, r.data_path, seed), resume, log)
    t = time.perf_counter()
    result = train_streamed(r, graph, state,
                            lambda epoch: ST.train_batches(source, pos, r, state, split, batch, seed, epoch),
                            steps, validation, seed, progress, kernels, layout, checkpoint)
    timings["train"] = time.perf_counter() - t
    timings["compile_first_epoch"] = result.compile_seconds

    t = time.perf_counter()
    metrics, curves = {}, {}
    metrics["train"] = output_metrics(r, evaluate(result.params, sample_inputs), sample_targets, state)
    for s in ("validation", "test"):
        preds, targets = evaluate_batches(evaluate, result.params, cached if s == "validation" and cached is not None
                                          else ST.encoded_split(source, pos, r, state, split, s))
        metrics[s] = output_metrics(r, preds, targets, state)
        if s == "test":
            curves[s] = output_curves(r, preds, targets, state)
    timings["evaluate"] = time.perf_counter() - t

    program_text = explain(r)
    out.write_model(lambda p: artifact.save(p, r, state, graph, result.params, program_text))
    timings["total"] = time.perf_counter() - t_start
    return {
        "program": str(path), "seed": seed, "metrics": metrics, "curves": curves,
        "rows": {s: int(pos.counts[s]) for s in ("train", "validation", "test")},
        "dropped_rows": None, "data_quality": {}, "slices": {},
        "data": {"path": "stream", "reason": why, "files": len(ST.files_of(source.path)),
                 "pieces": len(source.pieces), "checked_rows": min(HEAD_ROWS, sum(pos.counts.values())),
                 "sample_rows": stats.sample.num_rows, "quantile_rank_error": S.rank_error(stats.sample_k) if pos.counts["train"] > stats.sample_k else 0.0,
                 "train_metrics_on": f"a uniform sample of {stats.sample.num_rows} training rows",
                 "validation_cached": cached is not None},
        "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "steps": result.steps,
                     "batch_size": batch, "kernels": kernels, "stopped_by": result.stopped_by,
                     "early_stop": r.train["early_stop"], "rows_per_second": result.rows_per_second,
                     "mesh": result.mesh, "resumed_from_epoch": result.resumed_from, "history": result.history},
        "timings_seconds": {k: round(v, 4) for k, v in timings.items()},
        "resolved": r.to_json(), "resolved_program": program_text,
        "parameters": int(sum(np.asarray(p).size for p in result.params.values())),
        "versions": artifact.versions(),
        "model": {"file": "model.mlc", "sha256": out.model_sha256},
    }
