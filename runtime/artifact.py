"""The `model.mlc` artifact and the predictor that loads it.

A model.mlc file is a zip archive holding:
  manifest.json  format, versions, the resolved program, preprocessing state
  program.dml    the resolved program as `mlc explain` prints it
  model.ir       the graph IR (for people; the loader lowers the program again)
  weights.npz    parameters, read with allow_pickle=False
Nothing in it is pickled, and it needs neither the .dml file nor the data.
"""
from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa

from mlc import accelerator, spec
from mlc.diagnostics import UserError
from mlc.backends import numpy_backend
from mlc.ir.graph import Graph, print_graph
from mlc.ir.lower import lower
from mlc.ir.pipeline import optimize
from mlc.runtime import data as D
from mlc.runtime import manifest as M
from mlc.runtime.outdir import unique_temporary
from mlc.runtime import rows as R
from mlc.runtime import preprocess as P
from mlc.runtime import few_rows

FORMAT = "mlc-model/1"
COMPILED_FORMAT = "mlc-compiled/1"  # mlc/export.py writes those; `load` hands them to runtime/compiled.py


def versions() -> dict:
    out = {}
    for pkg in ("mlc", "jax", "jaxlib", "optax", "numpy", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def save(path: Path, resolved: spec.Resolved, state: dict, graph: Graph, params: dict, program_text: str):
    """Write the artifact under a temporary name unique to this call, then rename it into
    place: a reader never sees a half-written file, and two writers never share one."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in params.items()})
    members = {"program.dml": program_text.encode(), "model.ir": print_graph(graph).encode(),
               "weights.npz": buf.getvalue()}
    manifest = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions(), "resolved": resolved.to_json(), "file": resolved.file,
                "preprocessing": state,
                "outputs": [{"name": f["name"], "type": f["type"]} for f in resolved.outputs],
                "inputs": [{"name": f["name"], "type": f["type"]} for f in resolved.inputs],
                "members": M.describe_members(members)}
    path = Path(path)
    fd, tmp = unique_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr("manifest.json", json.dumps(manifest, indent=1))
                for name, data in members.items():
                    z.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # never leave a half-written artifact behind
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Batch sizes the inference program is compiled for: a chunk of rows is padded to the next
# one, so a service compiles at most these few programs, however its batch sizes vary
# (at most 4x the rows of a small chunk are computed; the MLP's cost is small beside encoding).
BUCKETS = (1, 4, 16, 64, 256, 1024, 4096)


# Rows read and encoded at a time in a large batch, while XLA computes the rows before them
# (Predictor._run_blocks): a multiple of the largest bucket.
PIPELINE_BLOCK = 4 * BUCKETS[-1]


def bucket(rows: int) -> int:
    return next(b for b in BUCKETS if b >= rows) if rows <= BUCKETS[-1] else rows


class ArtifactError(UserError):
    """A model file that is missing, damaged or of another format."""


def _writer(manifest: dict) -> str:
    v = manifest.get("versions")
    return f"mlc {v.get('mlc')}" if isinstance(v, dict) and isinstance(v.get("mlc"), str) else "version unknown"


def resolved_from_json(j: dict, file: str) -> spec.Resolved:
    return spec.Resolved(file, j["data"], j["split"], j["inputs"], j["outputs"], j["combiner"], j["train"],
                         blocks=j.get("blocks", {}), slices=j.get("slices", []))


def rows_to_table(rows, resolved: spec.Resolved, state: dict, cols: dict | None = None) -> pa.Table:
    """A dict of columns, a list of row dicts, a pandas DataFrame or a pyarrow Table, checked
    against the model's inputs (runtime/rows.py says what each input type accepts)."""
    try:
        return R.to_table(rows, resolved.inputs, state, cols)
    except (pa.ArrowException, OverflowError) as e:
        raise R.RowsError(f"cannot read the rows as columns ({e}); give each column values of one kind, "
                          "such as all strings or all dates") from None


class Predictions(dict):
    """What `predict` returns: {column: list of values} as `mlc predict` writes them, plus
    `.metadata`, how the rows were read:

        rows            the number of rows
        unknown         {input: cells read as <unknown>} for binary and category inputs:
                        values outside the model's vocabulary (never seen in training, or
                        rarer than `min_count`); missing cells are not counted
        unknown_tokens  {input: {"unknown": n, "total": n}} for text, sequence, set and bag
                        inputs: the tokens or labels the model reads, and those outside its
                        vocabulary
    """

    def __init__(self, columns: dict, metadata: dict):
        super().__init__(columns)
        self.metadata = metadata


class Predictor:
    """What every loaded model offers: `predict(rows)` -> Predictions (a dict of columns).

    Subclasses set `resolved` and `state` and implement `forward(encoded chunk)`
    -> {output name: raw prediction}.
    """

    resolved: spec.Resolved
    state: dict

    @property
    def inputs(self) -> list[str]:
        return [f["name"] for f in self.resolved.inputs]

    @property
    def outputs(self) -> list[str]:
        return [f["name"] for f in self.resolved.outputs]

    def forward(self, encoded: dict) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def forward_few(self, encoded: dict) -> dict[str, np.ndarray] | None:
        """The outputs for a few rows without calling XLA, or None where this model has no such path."""
        return None

    def encode(self, table: pa.Table, unknown: dict | None = None) -> dict[str, np.ndarray]:
        table = R.check_table(table, self.resolved.inputs, self.state)
        try:
            return P.encode_inputs(self.resolved, self.state, table, unknown=unknown)
        except D.DataError as e:  # a number column with text in it, an infinite value, "1,5"
            hint = e.hint if e.hint and "declare" not in e.hint else \
                "give a number, or leave the cell empty (None from Python)"
            raise R.RowsError(f"{e.message}; {hint}") from None
        except (pa.ArrowException, OverflowError) as e:
            raise R.RowsError(f"cannot read the rows as the model's inputs ({e})") from None

    def start(self, chunk: dict) -> object:
        """Start the model on one padded chunk; `finish` waits for its outputs. A back end that
        computes in the background (XLA) returns at once: every chunk is queued before the first
        is waited for."""
        return self.forward(chunk)

    def finish(self, started) -> dict[str, np.ndarray]:
        return started

    def _start_chunk(self, chunk: dict, size: int):
        padded = bucket(size)
        if padded != size:  # zero rows (missing cells) after the real ones, dropped in _finish_chunks
            chunk = {k: np.concatenate([v, np.zeros((padded - size,) + v.shape[1:], v.dtype)])
                     for k, v in chunk.items()}
        return self.start(chunk), size

    def _start_chunks(self, encoded: dict, rows: int, batch: int = BUCKETS[-1]) -> list:
        """Every chunk of at most `batch` rows started (XLA queues them; `_finish_chunks` waits)."""
        return [self._start_chunk({k: v[s:s + batch] for k, v in encoded.items()}, min(rows - s, batch))
                for s in range(0, rows, batch)]

    def _finish_chunks(self, started: list) -> dict[str, np.ndarray]:
        parts = []
        for handle, size in started:
            out = self.finish(handle)
            parts.append({name: out[name][:size] for name in self.outputs})
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.outputs}

    def run(self, encoded: dict, rows: int, batch: int = BUCKETS[-1]) -> dict[str, np.ndarray]:
        """The model on every row, in chunks of at most `batch` rows, each padded to one of a few
        sizes (BUCKETS): a new number of rows never compiles a new program. A few rows on the
        CPU skip XLA (mlc/backends/numpy_backend.py says why)."""
        if rows <= numpy_backend.MAX_ROWS:
            out = self.forward_few(encoded)
            if out is not None:
                return {name: out[name] for name in self.outputs}
        return self._finish_chunks(self._start_chunks(encoded, rows, batch))

    def warmup(self):
        """Run every bucket once now, so that XLA compiles the sizes it runs (a server calls this
        before it listens; on the CPU the sizes up to numpy_backend.MAX_ROWS need no compiling)."""
        one = self.encode(rows_to_table({c: [None] for c in self.inputs}, self.resolved, self.state))
        for size in BUCKETS:
            self.run({k: np.repeat(v, size, axis=0) for k, v in one.items()}, size)

    def _few_rows(self) -> few_rows.RowEncoder:
        if self.__dict__.get("_row_encoder") is None:
            self._row_encoder = few_rows.RowEncoder(self.resolved, self.state)
        return self._row_encoder

    def predict_raw(self, table: pa.Table, batch: int = BUCKETS[-1]) -> dict[str, np.ndarray]:
        return self.run(self.encode(table), table.num_rows, batch)

    def predict(self, rows) -> Predictions:
        cols = R.python_columns(rows, self.inputs)
        unknown: dict[str, int] = {}
        # a few plain rows (a request to a service) skip Arrow; anything else takes the general path
        encoded = self._few_rows().encode(cols, unknown) if cols else None
        if encoded is not None:
            n, tokens = len(encoded["x_num"]), {}  # the few-rows path reads no text, sequence, set or bag input
            raw = self.run(encoded, n)
        else:
            n = rows.num_rows if cols is None else len(next(iter(cols.values()))) if cols else 0
            found = self._run_blocks(rows, cols, n) if n > PIPELINE_BLOCK else None
            if found is None:
                table = rows_to_table(rows, self.resolved, self.state, cols)
                n = table.num_rows
                if n == 0:  # the same columns as for any rows: those of one row, every cell missing
                    names = self.predict({c: [None] for c in self.inputs}).keys()
                    return Predictions({c: [] for c in names}, {"rows": 0, "unknown": {}, "unknown_tokens": {}})
                encoded = self.encode(table, unknown)
                tokens = R.unknown_tokens(self.resolved.inputs, self.state, encoded)
                raw = self.run(encoded, n)
            else:
                raw, unknown, tokens = found
        check_scores(raw)
        raw = {k: (v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v) for k, v in raw.items()}
        return Predictions(P.decode_outputs(self.resolved, self.state, raw),
                           {"rows": n, "unknown": unknown, "unknown_tokens": tokens})

    def _run_blocks(self, rows, cols: dict | None, n: int) -> tuple[dict, dict, dict] | None:
        """A large batch in blocks of PIPELINE_BLOCK rows: each block is read and encoded while
        XLA computes the blocks before it (`start` returns at once). Returns (outputs, unknown
        cells, unknown tokens), or None on any error: the caller then reads the whole batch
        again, so that an error names its row in the batch, not in a block."""
        started, unknown, tokens = [], {}, {}
        try:
            for s in range(0, n, PIPELINE_BLOCK):
                part = rows.slice(s, PIPELINE_BLOCK) if cols is None else \
                    {c: v[s:s + PIPELINE_BLOCK] for c, v in cols.items()}
                seen: dict[str, int] = {}
                encoded = self.encode(rows_to_table(part, self.resolved, self.state,
                                                    None if cols is None else part), seen)
                for name, count in seen.items():
                    unknown[name] = unknown.get(name, 0) + count
                for name, count in R.unknown_tokens(self.resolved.inputs, self.state, encoded).items():
                    total = tokens.setdefault(name, {"unknown": 0, "total": 0})
                    total["unknown"] += count["unknown"]
                    total["total"] += count["total"]
                started += self._start_chunks(encoded, min(n - s, PIPELINE_BLOCK))
        except Exception:  # noqa: BLE001 - read again as a whole, which raises the error for the batch
            return None
        return self._finish_chunks(started), unknown, tokens


class Model(Predictor):
    """A trained model loaded from model.mlc."""

    def __init__(self, manifest: dict, params: dict, program_text: str, graph: Graph | None = None):
        self.manifest = manifest
        self.program_text = program_text
        self.resolved = resolved_from_json(manifest["resolved"], manifest.get("file", "model.dml"))
        self.state = manifest["preprocessing"]
        # the graph `mlc run` trained
        self.graph = graph if graph is not None else optimize(lower(self.resolved, self.state))[0]
        for name, p in self.graph.params.items():
            if name not in params or tuple(params[name].shape) != tuple(p.type.shape):
                raise ArtifactError(f"weights do not match the program (parameter `{name}`)")
        self.params = params
        self.wanted = [f"pred.{f['name']}" for f in self.resolved.outputs]
        # Built on first use: a service that predicts a few rows at a time on the CPU never
        # imports JAX (numpy_backend), one that sends batches pays for it once.
        self._plan: numpy_backend.Plan | bool | None = None
        self._fn = self._device_params = None
        self._lock = threading.Lock()

    def forward_few(self, encoded: dict) -> dict[str, np.ndarray] | None:
        if self._plan is None:  # off where JAX finds an accelerator: it does the work, as for any batch
            self._plan = numpy_backend.Plan(self.graph, self.params, self.wanted) if accelerator.cpu_only() else False
        if self._plan is False:
            return None
        out = self._plan.run(encoded)
        return {name: out[f"pred.{name}"] for name in self.outputs}

    def start(self, chunk: dict):
        if self._fn is None:
            import jax
            from mlc.backends import jax_backend
            with self._lock:
                if self._fn is None:
                    self._device_params = jax.device_put(self.params)  # once: not copied on every call
                    self._fn = jax.jit(jax_backend.build(self.graph, self.wanted))
        return self._fn(self._device_params, chunk)  # returns at once; XLA computes in the background

    def finish(self, started) -> dict[str, np.ndarray]:
        import jax
        out = jax.device_get(started)
        return {name: out[f"pred.{name}"] for name in self.outputs}

    def forward(self, encoded: dict) -> dict[str, np.ndarray]:
        return self.finish(self.start(encoded))


def build_graph(manifest: dict, path) -> Graph:
    """The optimized graph of a checked manifest; anything this mlc cannot build from it
    (a block it cannot parse, nesting past the parser's limits) is an ArtifactError."""
    from mlc.diagnostics import MlcError
    try:
        r = resolved_from_json(manifest["resolved"], manifest.get("file", "model.dml"))
        return optimize(lower(r, manifest["preprocessing"]))[0]
    except MlcError as e:
        first = e.diagnostics[0].message if e.diagnostics else str(e)
        raise ArtifactError(f"`{path}`: its program cannot be built: {first}") from None
    except RecursionError:
        raise ArtifactError(f"`{path}`: its program is nested too deeply to build") from None
    except MemoryError:
        raise ArtifactError(f"`{path}`: its program is too large to build in this machine's memory") from None
    except Exception as e:  # noqa: BLE001 - whatever lowering trips on, the artifact is at fault
        raise ArtifactError(f"`{path}`: its manifest describes a program this mlc cannot build "
                            f"({type(e).__name__}: {e})") from None


def params_bytes(graph: Graph) -> int:
    return sum(8 * int(np.prod(p.type.shape, dtype=np.float64)) for p in graph.params.values())


def _read_weights(z: zipfile.ZipFile, manifest: dict, graph: Graph) -> dict[str, np.ndarray]:
    """weights.npz, bounded by the parameters the program has (at most 8 bytes a number)
    and by its recorded size; each array inside it bounded the same way."""
    limit = params_bytes(graph) + 1024 * len(graph.params) + (64 << 10)
    recorded = M.recorded_size(manifest, "weights.npz")
    data = M.read_member(z, "weights.npz", min(limit, recorded) if recorded is not None else limit,
                         "this program's parameters need" if recorded is None or recorded >= limit else
                         "manifest.json records")
    M.verify_digest(manifest, "weights.npz", data)
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise M.ManifestError(f"weights.npz is not an npz archive ({e})") from None
    params = {}
    with inner:
        names = set(inner.namelist())
        for name, p in graph.params.items():
            if f"{name}.npy" not in names:
                raise ArtifactError(f"weights do not match the program (parameter `{name}`)")
            need = 8 * int(np.prod(p.type.shape, dtype=np.float64)) + 1024
            raw = M.read_member(inner, f"{name}.npy", need, f"parameter `{name}` needs")
            try:
                params[name] = np.load(io.BytesIO(raw), allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise M.ManifestError(f"weights.npz: parameter `{name}` cannot be read ({e})") from None
            _check_finite(name, params[name])
    return params


def _check_finite(name: str, value: np.ndarray):
    """A NaN or infinite weight makes every prediction NaN, which would decode to some label
    without a word: refuse such a model at load (training never writes one)."""
    if value.dtype.kind not in "fiu":
        raise M.ManifestError(f"weights.npz: parameter `{name}` holds {value.dtype} values, not numbers")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = int((~np.isfinite(value)).sum())
        raise M.ManifestError(f"weights.npz: parameter `{name}` holds {bad} NaN or infinite values; "
                              "the model cannot give meaningful predictions (retrain it)")


def check_scores(raw: dict[str, np.ndarray]):
    """Scores must be finite before they are decoded to labels or numbers: a NaN would
    silently become the first class or a NaN number."""
    for name, v in raw.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            bad = int((~np.isfinite(v)).reshape(len(v), -1).any(axis=1).sum())
            raise ArtifactError(f"the model gave NaN or infinite scores for output `{name}` on {bad} of "
                                f"{len(v)} rows; no predictions were made (the model or its inputs are out "
                                "of the range it can compute)")


def load(path: str | Path) -> Model:
    """A model.mlc -> Model; a .mlcc compiled from one -> runtime/compiled.py's CompiledModel (same predict)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no model file at `{path}`")
    try:
        with zipfile.ZipFile(path) as z:
            manifest = M.read_manifest(z)
            fmt = manifest.get("format")
            if fmt == COMPILED_FORMAT:  # a .mlcc written by `mlc compile --target`
                from mlc.runtime.compiled import load_compiled
                return load_compiled(path, manifest, z)
            if fmt != FORMAT:
                raise ArtifactError(f"`{path}` has format {fmt!r}; this mlc ({__import__('mlc').__version__}) reads "
                                    f"{FORMAT} and {COMPILED_FORMAT}: load it with the mlc that wrote it "
                                    f"({_writer(manifest)}), or train the program again")
            M.check(manifest)
            program = M.read_member(z, "program.dml", M.MAX_TEXT_BYTES, "a program may hold")
            M.verify_digest(manifest, "program.dml", program)
            M.verify_members(z, manifest, checked={"program.dml", "weights.npz"})
            graph = build_graph(manifest, path)
            params = _read_weights(z, manifest, graph)
    except M.ManifestError as e:
        raise ArtifactError(f"`{path}`: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ArtifactError(f"`{path}` is not an mlc model ({e})") from None
    try:
        text = program.decode()
    except UnicodeDecodeError:
        raise ArtifactError(f"`{path}`: program.dml is not UTF-8 text; the file is damaged") from None
    return Model(manifest, params, text, graph)
