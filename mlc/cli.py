"""The `mlc` command line. User mistakes exit with status 1 and a diagnostic,
never a traceback."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from mlc import accelerator
from mlc.diagnostics import MlcError, UserError

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def user_errors(fn):
    """Turn every user-facing error into a message and exit status 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlcError as e:
            # click.echo, not rich: diagnostics must never be wrapped or have markup applied.
            click.echo(e.render(), err=True)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(1)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlc")
def main():
    """mlc: compile declarative .dml programs into trained, deployable models."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        accelerator.select(None)  # JAX's own choice, or MLC_DEVICE; see mlc/accelerator.py
    except UserError as e:
        raise click.UsageError(str(e)) from None


def device_option(fn):
    """`--device`: the accelerator JAX finds by default; `cpu` forces the CPU."""
    @click.option("--device", type=click.Choice(accelerator.CHOICES), default=None,
                  help=f"Where to run: auto (the accelerator JAX finds, else the CPU), cpu, gpu or tpu "
                       f"[default: ${accelerator.DEVICE_ENV}, else auto].")
    @functools.wraps(fn)
    def wrapper(*args, device=None, **kwargs):
        accelerator.select(device)
        accelerator.check_available(device)
        return fn(*args, **kwargs)
    return wrapper


@main.command()
@click.argument("program", type=click.Path(dir_okay=False))
@user_errors
def check(program):
    """Check PROGRAM and its data; print diagnostics, change nothing."""
    from mlc.compile import frontend
    from mlc.runtime.run import _data_path
    streamed, why = _data_path(program)
    if streamed:  # larger than memory, or several files: checked on its first rows, counted streamed
        from mlc.runtime.stream_run import HEAD_ROWS, prepare
        _, _, pos, _, r, _, _, _ = prepare(program, lambda m: None)
        click.echo(f"{program}: ok: {len(r.inputs)} inputs, {len(r.outputs)} outputs, {sum(pos.counts.values())} "
                   f"rows ({', '.join(f'{k} {v}' for k, v in pos.counts.items())}); data {why}; cells checked "
                   f"in the first {HEAD_ROWS:,} rows")
        return
    fe = frontend(program)
    r = fe.resolved
    fe.print_warnings(lambda m: click.echo(m, err=True))
    click.echo(f"{program}: ok: {len(r.inputs)} inputs, {len(r.outputs)} outputs, "
              f"{fe.table.num_rows} rows ({', '.join(f'{k} {len(v)}' for k, v in fe.splits.items())})")


@main.command()
@click.argument("program", type=click.Path(dir_okay=False))
@click.option("--fusion", is_flag=True,
              help="Instead: the kernel groups, refused fusions with reasons, kernel counts.")
@click.option("--devices", type=int, default=None,
              help="Explain the layout `mlc run --devices N` would train on [default: every local device].")
@user_errors
@device_option
def explain(program, fusion, devices):
    """Print PROGRAM with every default filled in, and why (valid .dml)."""
    from mlc.compile import frontend
    from mlc.explain import explain as render
    if fusion:
        from mlc.ir import pipeline
        fe = frontend(program)
        graph = pipeline.lower_file(program)
        click.echo(pipeline.explain_fusion(graph, optimizer=fe.resolved.train["optimizer"]["name"]), nl=False)
        if fe.resolved.tune is not None or fe.resolved.train.get("ensemble", 1) > 1:
            from mlc.runtime.tune import explain_trial_axis  # trials and members: a leading vmapped axis
            click.echo(explain_trial_axis(fe.resolved), nl=False)
        return
    from mlc.runtime.devices import explain_training
    from mlc.runtime.run import _data_path
    if _data_path(program)[0]:  # larger than memory or several files: checked and fitted streamed
        from mlc.runtime.stream_run import prepare
        checked, _, _, _, resolved, _, state, _ = prepare(program, lambda m: None)
    else:
        fe = frontend(program)
        checked, resolved, state = fe.checked, fe.resolved, fe.state
    click.echo(render(resolved), nl=False)
    click.echo(explain_training(checked, resolved, state, devices), nl=False)  # comments: still valid .dml


@main.command()
@click.argument("program", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for report.json and model.mlc [default: runs/<program name>]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for initialization and shuffling.")
@click.option("--kernels", type=click.Choice(["xla", "triton"]), default="xla", show_default=True,
              help="xla: XLA compiles the whole step. triton: each fused group calls its generated Triton "
                   "kernels on a CUDA GPU (elsewhere it runs the group's jax.numpy reference).")
@click.option("--devices", type=int, default=None,
              help="Train on at most N local devices [default: every local device] (docs/scaling.md).")
@click.option("--resume", is_flag=True,
              help="Continue the run whose checkpoint is in DIR (same program, data and seed).")
@click.option("--coordinator", default=None, metavar="HOST:PORT",
              help="Join a multi-process run whose process 0 listens at HOST:PORT ('auto': what the "
                   "cluster launcher set). Every process runs the same command; process 0 writes DIR.")
@click.option("--num-processes", type=int, default=None, help="With --coordinator: how many processes.")
@click.option("--process-id", type=int, default=None, help="With --coordinator: this process's index, from 0.")
@user_errors
@device_option
def run(program, out_dir, seed, kernels, devices, resume, coordinator, num_processes, process_id):
    """Train PROGRAM, evaluate it, write DIR/report.json and DIR/model.mlc."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mlc.runtime.devices import distributed_init, process_index
    from mlc.runtime.run import run as run_job
    distributed_init(coordinator, num_processes, process_id)  # before anything touches a device
    out_dir = out_dir or str(Path("runs") / Path(program).stem)
    bar = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
                   TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=err)
    task = None

    def progress(epoch, epochs, info):
        nonlocal task
        if task is None:  # start the bar only once the program and data have passed the checks
            bar.start()
            task = bar.add_task("train", total=epochs, info="compiling")
        if info is None:
            return
        best = f"{info['best']:.4f}" if info["best"] is not None else "-"
        bar.update(task, completed=epoch, total=epochs,
                   info=f"loss {info['train_loss']:.4f}  {info['metric']} {info['value']:.4f} "
                        f"(best {best} @ {info['best_epoch']})")
    try:
        if kernels == "triton":
            _check_triton_kernels()
        report = run_job(program, out_dir, seed, progress, log=lambda m: click.echo(m, err=True), kernels=kernels,
                         devices=devices, resume=resume)
        if task is not None:
            ran = report["training"]["epochs_run"]
            bar.update(task, total=ran, completed=ran)
    finally:
        if task is not None:
            bar.stop()
    mesh = report["training"].get("mesh") or {}
    if mesh.get("processes", 1) > 1 and process_index():  # process 0 writes DIR and prints the summary
        click.echo(f"process {process_index()} of {mesh['processes']}: trained; process 0 writes {out_dir}", err=True)
        return
    _summary(report, out_dir)


def _check_triton_kernels():
    """--kernels triton: say what will run where, and refuse what cannot run."""
    import jax
    if jax.default_backend() != "gpu":
        click.echo(f"note: --kernels triton on {jax.default_backend()}: each fused group runs its jax.numpy "
                   "reference here; its Triton kernels run on a CUDA GPU", err=True)
        return
    from mlc.backends.triton import jax_call
    why = jax_call.cuda_kernel_calls()
    if why is not None:
        raise UserError(f"--kernels triton cannot call Triton kernels: {why}")


def _summary(report: dict, out_dir: str):
    t = Table(title=f"{report['program']}  (seed {report['seed']})")
    t.add_column("output")
    t.add_column("metric")
    for split in ("train", "validation", "test"):
        t.add_column(split, justify="right")
    for output, metrics in report["metrics"]["test"].items():
        for metric in metrics:
            t.add_row(output, metric, *(f"{report['metrics'][s][output][metric]:.4f}"
                                        for s in ("train", "validation", "test")))
    out.print(t)
    if report.get("slices"):  # the lead metric of each output, per slice, on validation and test
        st = Table(title="slices (lead metric)")
        for col in ("slice", "output", "metric", "rows (val/test)", "validation", "test"):
            st.add_column(col, justify="right" if col in ("validation", "test") else "left")
        for name, sl in report["slices"].items():
            for output, metrics in report["metrics"]["test"].items():
                lead = next(iter(metrics))
                vals = [sl["metrics"].get(s, {}).get(output, {}).get(lead) for s in ("validation", "test")]
                st.add_row(name, output, lead, f"{sl['rows']['validation']}/{sl['rows']['test']}",
                           *("-" if v is None else f"{v:.4f}" for v in vals))
        out.print(st)
    tr, tm = report["training"], report["timings_seconds"]
    out.print(f"best epoch {tr['best_epoch']} of {tr['epochs_run']} run; "
              f"{tr['rows_per_second']:,.0f} rows/s; total {tm['total']:.1f} s "
              f"(first epoch incl. compile {tm['compile_first_epoch']:.1f} s)")
    out.print(f"wrote {Path(out_dir) / 'report.json'}, {Path(out_dir) / 'model.mlc'} and {Path(out_dir) / 'report.html'}")


@main.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--data", "data_file", required=True, type=click.Path(dir_okay=False),
              help="CSV or Parquet file with the input columns.")
@click.option("--out", "out_file", required=True, type=click.Path(), help="CSV file to write.")
@click.option("--slices", "with_slices", is_flag=True,
              help="Add a true/false column `slice_NAME` per slice of the program (to monitor per-slice traffic).")
@user_errors
@device_option
def predict(artifact, data_file, out_file, with_slices):
    """Predict with a trained ARTIFACT (model.mlc) on a data file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    import mlc
    from mlc.runtime import data as D
    fd, tmp = _prediction_file(Path(out_file), {"data file": Path(data_file), "model": Path(artifact)})
    try:
        model = mlc.load(artifact)
        table = D.read_table(Path(data_file))
        missing = [c for c in model.inputs if c not in table.column_names]
        if missing:
            raise D.DataError(f"`{data_file}` lacks input column(s) {', '.join(missing)} that the model needs")
        cols = model.predict(table)
        meta = cols.metadata
        if with_slices:
            cols = {**cols, **_slice_columns(model, table, data_file)}
        # A set output's label probabilities (dicts) and vector outputs (lists) as JSON text cells.
        cols = {k: [json.dumps(v) for v in vs] if vs and isinstance(vs[0], (dict, list)) else vs
                for k, vs in cols.items()}
        try:
            with os.fdopen(fd, "wb") as f:
                fd = None
                pacsv.write_csv(pa.table(cols), f)
            os.replace(tmp, out_file)  # written whole, or not at all
        except OSError as e:  # a full disk, a folder removed meanwhile
            raise UserError(f"cannot write `{out_file}` ({e.strerror or e})") from None
    finally:
        if fd is not None:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
    click.echo(f"wrote {table.num_rows} predictions to {out_file}" + _unknown_summary(meta), err=True)  # one line


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Server processes, each with its own copy of the model.")
@click.option("--batch-window-ms", type=click.FloatRange(0, 1000), default=2.0, show_default=True,
              help="Requests arriving within this many ms run as one batch; 0 turns batching off.")
@click.option("--max-batch-rows", type=click.IntRange(1, 1 << 20), default=4096, show_default=True,
              help="Most rows in one batch, and in one request (more: 413).")
@click.option("--max-body-bytes", type=click.IntRange(1, 1 << 31), default=8 << 20, show_default=True,
              help="Largest request body (more: 413).")
@click.option("--access-log", is_flag=True, help="Log every request (one line each) to stderr.")
@user_errors
@device_option
def serve(model, host, port, workers, batch_window_ms, max_batch_rows, max_body_bytes, access_log):
    """Serve a trained MODEL (model.mlc or .mlcc) over HTTP: POST /predict, GET /health,
    /schema and /openapi.json (docs/serving.md)."""
    from mlc.serve.app import Config, serve as run_server
    run_server(Config(model, host, port, workers, batch_window_ms, max_batch_rows, max_body_bytes, access_log),
               say=lambda m: click.echo(m, err=True))


def _slice_columns(model, table, data_file) -> dict[str, list[bool]]:
    """slice_NAME: whether each row is in the slice, from the conditions the model carries."""
    from mlc.runtime.slices import mask, parse_condition
    slices = getattr(getattr(model, "resolved", None), "slices", None) or []
    if not slices:
        raise UserError("--slices: the model's program defines no slice")
    out = {}
    for sl in slices:
        cond = parse_condition(sl["condition"])
        absent = [c.column for c in cond.columns() if c.column not in table.column_names]
        if absent:
            raise UserError(f"--slices: slice `{sl['name']}` reads column `{absent[0]}`, which `{data_file}` lacks")
        out[f"slice_{sl['name']}"] = mask(cond, table).tolist()
    return out


def _prediction_file(out: Path, others: dict[str, Path]) -> tuple[int, str]:
    """Refuse an --out that would overwrite the data or the model, or that cannot be written,
    before any work; returns a new temporary file beside it (renamed over it at the end)."""
    from mlc.runtime.outdir import unique_temporary  # imports no jax: refusals come at once
    for what, other in others.items():
        same = False
        try:
            same = other.exists() and (os.path.samefile(out, other) if out.exists() else
                                       os.path.realpath(out) == os.path.realpath(other))
        except OSError:
            pass
        if same:
            suggestion = other.with_name(f"{other.stem}.predictions.csv")
            raise UserError(f"`{out}` is the {what} `{other}`: predictions would overwrite it; "
                            f"write them to another file, such as --out {suggestion}")
    if out.is_dir():
        raise UserError(f"`{out}` is a folder; give --out a file name, such as {out / 'predictions.csv'}")
    folder = out.parent
    if not folder.exists():
        raise UserError(f"the folder `{folder}` of --out does not exist; create it or write elsewhere")
    if not folder.is_dir():
        raise UserError(f"`{folder}` is not a folder, so --out `{out}` cannot be written there")
    if out.exists() and not os.access(out, os.W_OK):
        raise UserError(f"`{out}` is read-only; not overwriting it")
    try:
        return unique_temporary(out)
    except OSError as e:
        raise UserError(f"cannot write to the folder `{folder}` ({e.strerror or e}); choose another --out") from None


def _unknown_summary(meta: dict) -> str:
    """`; read as <unknown>: passenger_class 3 of 131 (2.3%); unknown tokens: review 12 of 400 (3.0%)`."""
    rows = meta.get("rows", 0)
    pct = lambda k, n: f"{k} of {n}" + (f" ({100 * k / n:.1f}%)" if k and n else "")  # noqa: E731
    parts = []
    if meta.get("unknown"):
        parts.append("read as <unknown>: " + ", ".join(f"{c} {pct(k, rows)}" for c, k in meta["unknown"].items()))
    if meta.get("unknown_tokens"):
        parts.append("unknown tokens: " + ", ".join(f"{c} {pct(t['unknown'], t['total'])}"
                                                    for c, t in meta["unknown_tokens"].items()))
    return "".join(f"; {p}" for p in parts)


@main.command()
@click.argument("datafile", type=click.Path(dir_okay=False))
@click.option("--target", "targets", required=True, multiple=True, help="Column to predict (repeatable).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Write the program here instead of printing it.")
@user_errors
def init(datafile, targets, out_file):
    """Write a starter program for DATAFILE with inferred column types."""
    from mlc.init import starter_program
    text = starter_program(Path(datafile), list(targets), Path(out_file) if out_file else None)
    if out_file:
        if Path(out_file).exists():
            raise UserError(f"`{out_file}` exists; not overwriting it")
        Path(out_file).write_text(text)
        err.print(f"wrote {out_file}; try `mlc run {out_file}`", markup=False)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--target", type=click.Choice(["gpu", "cpu", "tpu"]), default=None,
              help="Write a compiled artifact for this platform (exported JAX program; for gpu also "
                   "Triton kernels as PTX and cubin).")
@click.option("--arch", default=None, help="GPU architecture for --target gpu, e.g. sm_90 [default: sm_80 and sm_90]")
@click.option("--out", "out_path", type=click.Path(), default=None,
              help="Where to write the artifact [default: SOURCE's folder, <name>.<target>.mlcc]")
@click.option("--emit", type=click.Choice(["ir", "opt", "fused", "triton", "ptx"]), default=None,
              help="Print a stage instead: ir (as lowered), opt (after the optimizing passes), fused "
                   "(with kernel groups), triton (generated kernel source), ptx (for --arch).")
@click.option("--dump-after", "dump_after", default=None, metavar="PASS",
              help="Print the IR right after PASS (infer, constfold, simplify, cse, dce, fuse).")
@click.option("--timings", is_flag=True, help="Print each pass's time and op counts to stderr.")
@user_errors
def compile(source, target, arch, out_path, emit, dump_after, timings):  # noqa: A001 - the command's name
    """Compile SOURCE (a .dml program or a trained model.mlc).

    With --target, write a deployable artifact; otherwise print the IR (--emit, default fused).
    """
    if target is not None:
        from mlc.export import compile_target
        compile_target(Path(source), target, arch, Path(out_path) if out_path else None,
                       log=lambda m: click.echo(m, err=True))
        return
    if emit in ("triton", "ptx"):
        from mlc.export import emit as emit_kernels
        click.echo(emit_kernels(Path(source), emit, arch), nl=False)
        return
    from mlc.ir import pipeline
    graph = pipeline.lower_file(source)
    if dump_after is not None:
        if dump_after not in pipeline.PASSES:
            raise UserError(f"unknown pass `{dump_after}`; passes: {', '.join(pipeline.PASSES)}")
        _, log = pipeline.optimize(graph, dump_after=dump_after)
        click.echo(log.dump, nl=False)
    else:
        click.echo(pipeline.emit(graph, emit or "fused"), nl=False)
    if timings:
        click.echo(pipeline.optimize(graph)[1].format(), err=True)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@user_errors
def report(run_dir):
    """Rebuild RUN_DIR/report.html from RUN_DIR/report.json."""
    from mlc.report.page import write
    out = write(Path(run_dir))
    err.print(f"wrote {out}", markup=False)


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(file_okay=False))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default="compare.html", show_default=True,
              help="The comparison page to write.")
@user_errors
def compare(run_dirs, out_file):
    """Compare runs side by side: metrics, training curves, program differences."""
    from mlc.report.compare import write
    out = write([Path(d) for d in run_dirs], Path(out_file))
    err.print(f"wrote {out} comparing {len(run_dirs)} runs", markup=False)


if __name__ == "__main__":
    main()
