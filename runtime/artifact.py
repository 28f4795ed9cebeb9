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
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa

from mlc import spec
from mlc.diagnostics import UserError
from mlc.backends import jax_backend
from mlc.ir.graph import Graph, print_graph
from mlc.ir.lower import lower
from mlc.ir.pipeline import optimize
from mlc.runtime import preprocess as P

FORMAT = "mlc-model/1"
COMPILED_FORMAT = "mlc-compiled/1"  # mlc/export.py; `load` hands those to mlc.export.load_compiled


def versions() -> dict:
    out = {}
    for pkg in ("mlc", "jax", "jaxlib", "optax", "numpy", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def save(path: Path, resolved: spec.Resolved, state: dict, graph: Graph, params: dict, program_text: str):
    manifest = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions(), "resolved": resolved.to_json(), "file": resolved.file,
                "preprocessing": state,
                "outputs": [{"name": f["name"], "type": f["type"]} for f in resolved.outputs],
                "inputs": [{"name": f["name"], "type": f["type"]} for f in resolved.inputs]}
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in params.items()})
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        z.writestr("program.dml", program_text)
        z.writestr("model.ir", print_graph(graph))
        z.writestr("weights.npz", buf.getvalue())
    tmp.replace(path)  # never leave a half-written artifact behind


class ArtifactError(UserError):
    """A model file that is missing, damaged or of another format."""


def resolved_from_json(j: dict, file: str) -> spec.Resolved:
    return spec.Resolved(file, j["data"], j["split"], j["inputs"], j["outputs"], j["combiner"], j["train"],
                         blocks=j.get("blocks", {}), slices=j.get("slices", []))


def rows_to_table(rows) -> pa.Table:
    """A dict of columns, a list of row dicts, or a pyarrow Table."""
    try:
        return _rows_to_table(rows)
    except (pa.ArrowException, OverflowError) as e:
        raise ValueError(f"cannot read the rows as columns ({e}); give each column values of one kind, "
                         "such as all strings or all dates") from None


def _rows_to_table(rows) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, dict):
        return pa.Table.from_pydict({k: list(np.asarray(v).tolist()) if isinstance(v, np.ndarray) else list(v)
                                     for k, v in rows.items()})
    if isinstance(rows, (list, tuple)):
        return pa.Table.from_pylist(list(rows))
    raise TypeError("rows must be a dict of columns, a list of row dicts or a pyarrow.Table")


class Predictor:
    """What every loaded model offers: `predict(rows)` -> dict of columns.

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

    def predict_raw(self, table: pa.Table, batch: int = 8192) -> dict[str, np.ndarray]:
        missing = [c for c in self.inputs if c not in table.column_names]
        if missing:
            raise ValueError("rows lack input column(s): " + ", ".join(missing))
        encoded = P.encode_inputs(self.resolved, self.state, table)
        parts = [self.forward({k: v[s:s + batch] for k, v in encoded.items()})
                 for s in range(0, table.num_rows, batch)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.outputs}

    def predict(self, rows) -> dict[str, list]:
        table = rows_to_table(rows)
        if table.num_rows == 0:
            return {c: [] for c in self.outputs}
        raw = self.predict_raw(table)
        raw = {k: (v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v) for k, v in raw.items()}
        return P.decode_outputs(self.resolved, self.state, raw)


class Model(Predictor):
    """A trained model loaded from model.mlc."""

    def __init__(self, manifest: dict, params: dict, program_text: str):
        self.manifest = manifest
        self.program_text = program_text
        self.resolved = resolved_from_json(manifest["resolved"], manifest.get("file", "model.dml"))
        self.state = manifest["preprocessing"]
        self.graph, _ = optimize(lower(self.resolved, self.state))  # the graph `mlc run` trained
        for name, p in self.graph.params.items():
            if name not in params or tuple(params[name].shape) != tuple(p.type.shape):
                raise ArtifactError(f"weights do not match the program (parameter `{name}`)")
        self.params = params
        self.wanted = [f"pred.{f['name']}" for f in self.resolved.outputs]
        self._fn = jax.jit(jax_backend.build(self.graph, self.wanted))

    def forward(self, encoded: dict) -> dict[str, np.ndarray]:
        out = jax.device_get(self._fn(self.params, encoded))
        return {name: out[f"pred.{name}"] for name in self.outputs}


def load(path: str | Path) -> Model:
    """A model.mlc -> Model; a .mlcc compiled from one -> mlc.export.CompiledModel (same predict)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no model file at `{path}`")
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            compiled = isinstance(manifest, dict) and manifest.get("format") == COMPILED_FORMAT
            if not compiled:
                program_text = z.read("program.dml").decode()
                with np.load(io.BytesIO(z.read("weights.npz")), allow_pickle=False) as w:
                    params = {k: w[k] for k in w.files}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError) as e:
        raise ArtifactError(f"`{path}` is not an mlc model ({e})") from None
    if compiled:  # a .mlcc written by `mlc compile --target`
        from mlc.export import load_compiled
        return load_compiled(path, manifest)
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"`{path}` has format {manifest.get('format')!r}; this mlc reads {FORMAT}")
    return Model(manifest, params, program_text)
