"""Data larger than memory: a streamed source, its split, and preprocessing fitted in one pass.

Reading is pyarrow.dataset: CSV and Parquet files, a folder or a glob of them (a
partitioned data set), in record batches of BATCH_ROWS with only the needed columns.
pyarrow.dataset rather than Grain: mlc already reads and types every column through
pyarrow (runtime/data.py), pyarrow.dataset reads Parquet row groups and CSV blocks lazily
with projection, and its batches feed the same encoders as the in-memory path; Grain
would add a second reader (and its own record format) for no gain here, since the
shuffle and batching below are a few lines of numpy.

A row's position is its index among the rows kept (those whose outputs are present),
in file order (files sorted by name). Splits are the in-memory rules on those positions:
a ratio split permutes the positions with numpy's default_rng(seed), exactly as
runtime/data.split_indices does, so a streamed file gets the same split as when it is
read whole (it costs one byte per row kept, and eight per row while it is computed);
`split by COLUMN` reads the column.
"""
from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mlc.runtime import data as D
from mlc.runtime import sketches as S

BATCH_ROWS = 1 << 16
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


def files_of(path: Path) -> list[Path]:
    """The data files a `data` path names: a file, every .csv/.parquet under a folder, or a glob."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in globlib.glob(text, recursive=True))
    elif path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    else:
        found = [path] if path.exists() else []
    found = [p for p in found if p.suffix.lower() in (".csv", ".parquet", ".pq")]
    if not found:
        raise D.DataError(f"no .csv or .parquet files at `{text}`", "check the path in the `data` statement")
    if len({p.suffix.lower().replace(".pq", ".parquet") for p in found}) > 1:
        raise D.DataError(f"`{text}` mixes CSV and Parquet files", "use one format per data set")
    return found


def is_multi(path: Path) -> bool:
    return any(ch in str(path) for ch in "*?[") or path.is_dir()


def memory_estimate(files: list[Path]) -> int:
    """Bytes the files would take as an Arrow table in memory (Parquet: uncompressed sizes from
    the footers; CSV: twice the text, pyarrow's typical ratio with strings)."""
    import pyarrow.parquet as pq
    total = 0
    for f in files:
        if f.suffix.lower() == ".csv":
            total += 2 * f.stat().st_size
        else:
            md = pq.ParquetFile(f).metadata
            total += sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    return total


def memory_budget() -> tuple[int, str]:
    """(bytes, why): how much data the in-memory path may hold: a quarter of the host memory
    available (the table, its encoded copy and the training arrays each take about that
    much), and on an accelerator at most half of one device's memory (the training split
    is replicated on every device, beside the model and its activations)."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        avail = info.get("MemAvailable", info.get("MemTotal"))
    except (OSError, ValueError, IndexError):
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    budget, why = avail // 4, "a quarter of the memory available"
    try:
        import jax
        if jax.default_backend() != "cpu":
            limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
            if limit and limit // 2 < budget:
                budget, why = limit // 2, f"half of one {jax.default_backend()} device's memory"
    except Exception:  # noqa: BLE001 - no device statistics: the host budget stands
        pass
    return budget, why


def choose(path: Path) -> tuple[bool, str]:
    """(stream?, reason). MLC_DATA_PATH=memory|stream forces a path (for tests and benchmarks)."""
    forced = os.environ.get("MLC_DATA_PATH", "")
    if forced in ("memory", "stream"):
        return forced == "stream", f"MLC_DATA_PATH={forced}"
    files = files_of(path)
    try:
        size = memory_estimate(files)
    except (pa.ArrowException, OSError, ValueError):  # the in-memory reader reports what is wrong
        return False, "in memory (the size of the data could not be read)"
    budget, where = memory_budget()
    if size > budget:
        return True, (f"streamed: the data takes about {size / 2**30:.1f} GiB in memory, more than the "
                      f"{budget / 2**30:.1f} GiB budget ({where})")
    if is_multi(path):
        return True, f"streamed: a data set of {len(files)} files ({size / 2**20:.1f} MiB in memory)"
    return False, (f"in memory, whole epochs as one program: about {size / 2**20:.1f} MiB, within the "
                   f"{budget / 2**30:.1f} GiB budget ({where})")


@dataclass
class Source:
    """A streamed data set: its pieces (Parquet row groups, CSV files) in file order."""
    path: Path
    dataset: ds.Dataset
    pieces: list = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> "Source":
        files = files_of(path)
        if files[0].suffix.lower() == ".csv":
            fmt = ds.CsvFileFormat(convert_options=pa.csv.ConvertOptions(
                null_values=D.NULL_VALUES, strings_can_be_null=True))
        else:
            fmt = ds.ParquetFileFormat()
        try:
            dataset = ds.dataset([str(f) for f in files], format=fmt)
            pieces = []
            for frag in dataset.get_fragments():
                # row groups are the unit of the per-epoch shuffle of the reading order
                pieces += frag.split_by_row_group() if isinstance(frag, ds.ParquetFileFragment) else [frag]
        except (pa.ArrowException, OSError) as e:
            raise D.DataError(f"cannot read `{path}`: {str(e).splitlines()[0]}") from None
        return cls(path, dataset, pieces)

    @property
    def columns(self) -> list[str]:
        return self.dataset.schema.names

    def head(self, rows: int) -> pa.Table:
        return self.dataset.head(rows)

    def batches(self, columns: list[str], order=None):
        """(piece index, record batch) in piece order or `order`."""
        for i in (range(len(self.pieces)) if order is None else order):
            for b in self.pieces[i].to_batches(columns=columns, batch_size=BATCH_ROWS,
                                               schema=self.dataset.schema):
                if b.num_rows:
                    yield i, b


def kept_mask(batch: pa.RecordBatch, outputs: list[dict]) -> np.ndarray:
    """Rows whose every output is present and readable (the in-memory path drops the others)."""
    keep = np.ones(batch.num_rows, bool)
    for f in outputs:
        col = batch.column(f["name"])
        keep &= np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), bool)
        if f["type"] == "number":
            keep &= ~np.isnan(D.as_numbers_lenient(pa.chunked_array([col])))
    return keep


@dataclass
class Positions:
    """Where each piece's kept rows start among all kept rows, and the split of each."""
    offsets: np.ndarray  # piece -> position of its first kept row
    split: np.ndarray | None  # int8 code per kept row (ratio split); None: read the split column
    counts: dict  # split name -> rows

    def codes(self, piece: int, start: int, n: int) -> np.ndarray:
        return self.split[self.offsets[piece] + start: self.offsets[piece] + start + n]


def positions(source: Source, outputs: list[dict], split: dict) -> Positions:
    """Pass 1 (outputs and the split column only): the kept rows of each piece and the split."""
    cols = [f["name"] for f in outputs] + ([split["column"]] if split["kind"] == "column" else [])
    kept = np.zeros(len(source.pieces) + 1, np.int64)
    counts = {k: 0 for k in SPLIT_CODES}
    for i, b in source.batches(cols):
        keep = kept_mask(b, outputs)
        kept[i + 1] += int(keep.sum())
        if split["kind"] == "column":
            values = np.array(D.as_strings(pa.chunked_array([b.column(split["column"])])), dtype=object)[keep]
            for name in counts:
                counts[name] += int((values == name).sum())
    offsets = np.cumsum(kept)
    n = int(offsets[-1])
    codes = None
    if split["kind"] == "ratio":  # runtime/data.split_indices, on the kept positions
        perm = np.random.default_rng(split["seed"]).permutation(n)
        a = n * split["parts"][0] // 100
        b = a + n * split["parts"][1] // 100
        codes = np.full(n, 2, np.int8)
        codes[perm[:a]] = 0
        codes[perm[a:b]] = 1
        del perm
        counts = {"train": a, "validation": b - a, "test": n - b}
    return Positions(offsets, codes, counts)


def split_rows(source: Source, pos: Positions, outputs: list[dict], split: dict, columns: list[str],
               wanted: set, order=None):
    """(split name, kept positions, table) of the rows of the `wanted` splits, batch by batch,
    pieces in file order or `order`."""
    seen: dict = {}
    for i, b in source.batches(columns, order):
        keep = kept_mask(b, outputs)
        start = seen.get(i, 0)
        seen[i] = start + int(keep.sum())
        table = pa.Table.from_batches([b]).filter(pa.array(keep))
        n = table.num_rows
        if split["kind"] == "ratio":
            codes = pos.codes(i, start, n)
        else:
            names = np.array(D.as_strings(table.column(split["column"])), dtype=object)
            codes = np.select([names == k for k in SPLIT_CODES], list(SPLIT_CODES.values()), -1).astype(np.int8)
        ids = np.arange(pos.offsets[i] + start, pos.offsets[i] + start + n)
        for name in wanted:
            rows = np.flatnonzero(codes == SPLIT_CODES[name])
            if rows.size:
                yield name, ids[rows], table.take(pa.array(rows))


# ---- preprocessing from one pass ------------------------------------------------------


@dataclass
class Stats:
    moments: dict  # number column -> sketches.Moments (inputs and number outputs)
    counts: dict  # category/binary column -> sketches.Counts
    sample: pa.Table  # the bottom-K sample of training rows, in position order
    sample_k: int


def fit_pass(source: Source, pos: Positions, resolved, split: dict, seed: int, k: int | None = None) -> Stats:
    """Pass 2, over the training rows: exact moments and counts, and a uniform sample of k."""
    k = k or S.SAMPLE_SIZE
    features = resolved.inputs + resolved.outputs
    columns = sorted({f["name"] for f in features} | ({split["column"]} if split["kind"] == "column" else set()))
    moments = {f["name"]: S.Moments() for f in features if f["type"] == "number"}
    counts = {f["name"]: S.Counts() for f in features if f["type"] in ("category", "binary")}
    keys = np.empty(0, np.uint64)
    pieces: list[pa.Table] = []
    for _, ids, table in split_rows(source, pos, resolved.outputs, split, columns, {"train"}):
        for name, m in moments.items():
            m.add(D.as_numbers_lenient(table.column(name)))
        for name, c in counts.items():
            values, n = _value_counts(table.column(name))
            c.add(values, n)
        h = S.position_hash(ids, seed)
        if keys.size >= k:
            take = h < np.partition(keys, k - 1)[k - 1]
        else:
            take = np.ones(h.size, bool)
        if take.any():
            keys = np.concatenate([keys, h[take]])
            pieces.append(table.filter(pa.array(take)).append_column("__key", pa.array(h[take])))
        if keys.size > 2 * k:  # trim to the K smallest keys
            keys, pieces = _trim(pieces, k)
    if pieces:
        keys, pieces = _trim(pieces, k)
    sample = pa.concat_tables(pieces) if pieces else pa.table({})
    if sample.num_columns:
        sample = sample.drop_columns(["__key"])
    return Stats(moments, counts, sample, k)


def _trim(pieces: list[pa.Table], k: int):
    t = pa.concat_tables(pieces)
    key = t.column("__key").to_numpy()
    if key.size > k:
        t = t.take(pa.array(np.sort(np.argpartition(key, k - 1)[:k])))
    return t.column("__key").to_numpy(), [t]


def _value_counts(col) -> tuple[list, list]:
    """Distinct canonical texts (runtime/data.as_strings) and their counts, nulls left out."""
    vc = pa.array(D.as_strings(col), pa.string()).drop_null().value_counts()
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


# ---- training batches -------------------------------------------------------------------

# Rows gathered before a shuffle: with the pieces (Parquet row groups, files) read in a new
# random order each epoch, a batch mixes rows from this many rows' worth of the data.
SHUFFLE_ROWS = 1 << 18


def encode(resolved, state: dict, table: pa.Table) -> tuple[dict, dict]:
    from mlc.runtime import preprocess as P
    return P.encode_inputs(resolved, state, table, lenient=True), P.encode_targets(resolved, state, table)


def columns_of(resolved, split: dict) -> list[str]:
    names = [f["name"] for f in resolved.inputs + resolved.outputs]
    return sorted(set(names) | ({split["column"]} if split["kind"] == "column" else set()))


def train_batches(source: Source, pos: Positions, resolved, state: dict, split: dict, batch: int,
                  seed: int, epoch: int, shuffle_rows: int = SHUFFLE_ROWS):
    """The epoch's batches of `batch` training rows: pieces in a random order, rows shuffled
    in windows of `shuffle_rows`, the ragged end dropped (as in memory: every step sees a
    full batch, n_train // batch steps). The same for every device count."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(source.pieces))
    buf: list[dict] = []
    rows = 0

    def emit(final: bool):
        nonlocal buf, rows
        merged = {k: np.concatenate([b[k] for b in buf]) for k in buf[0]}
        perm = rng.permutation(rows)
        full = rows // batch * batch
        for s in range(0, full, batch):
            idx = perm[s:s + batch]
            yield {k: v[idx] for k, v in merged.items()}
        rest = perm[full:]
        buf = [] if final or not rest.size else [{k: v[rest] for k, v in merged.items()}]
        rows = 0 if final else int(rest.size)

    for _, _, table in split_rows(source, pos, resolved.outputs, split, columns_of(resolved, split), {"train"}, order):
        inputs, targets = encode(resolved, state, table)
        buf.append({**inputs, **targets})
        rows += table.num_rows
        if rows >= shuffle_rows:
            yield from emit(False)
    if rows:
        yield from emit(True)


def encoded_split(source: Source, pos: Positions, resolved, state: dict, split: dict, name: str):
    """(inputs, targets) pieces of one split, in file order."""
    for _, _, table in split_rows(source, pos, resolved.outputs, split, columns_of(resolved, split), {name}):
        yield encode(resolved, state, table)
