"""Reading an artifact's zip members with bounded memory, and checking its manifest.

A model file may be damaged or hostile: `read_member` refuses a member before reading
it when it would expand past a limit (zip bombs: a 2 MB file holding 2 GiB of zeros),
and `check` validates manifest.json against the shape `artifact.save` and
`mlc compile --target` write (types of every field the loader and the preprocessing
read, option values against the tables in mlc/spec.py), so a malformed manifest is one
ArtifactError that names the field, never a traceback from deep inside the loader.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
import zlib

from mlc import spec

# Sane caps, whatever a manifest says. A manifest holds vocabularies and tokenizers:
# a million-value vocabulary is about 20 MB of JSON.
MAX_MANIFEST_BYTES = 256 << 20
MAX_TEXT_BYTES = 64 << 20  # program.dml
MAX_DEPTH = 64  # JSON nesting anywhere in a manifest (ours is at most 6 deep)
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what mlc writes; bzip2/lzma decompress unboundedly


class ManifestError(Exception):
    """One problem in an artifact; artifact.py turns it into an ArtifactError naming the file."""


def memory_cap() -> int:
    """Half the machine's memory: no member may expand past it."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def read_member(z: zipfile.ZipFile, name: str, limit: int, why: str = "") -> bytes:
    """The member's bytes, refused before reading when its stated size passes `limit`;
    reading stops at the limit too (the stated size is what zipfile enforces)."""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ManifestError(f"it has no {name}") from None
    limit = min(limit, memory_cap())
    if info.compress_type not in _METHODS:
        raise ManifestError(f"{name} is compressed with zip method {info.compress_type}; mlc writes "
                            "stored or deflated members only")
    if info.file_size > limit:
        raise ManifestError(f"{name} would expand to {_size(info.file_size)}, more than the {_size(limit)} "
                            f"{why or 'mlc allows'}; the file is damaged or was not written by mlc")
    chunks, total = [], 0
    try:
        with z.open(info) as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise ManifestError(f"{name} expands past {_size(limit)}; the file is damaged")
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as e:
        raise ManifestError(f"{name} cannot be read ({e}); the file is damaged") from None
    return b"".join(chunks)


def read_manifest(z: zipfile.ZipFile) -> dict:
    raw = read_member(z, "manifest.json", MAX_MANIFEST_BYTES, "a manifest may hold")
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"manifest.json is not JSON ({e})") from None
    except RecursionError:
        raise ManifestError(f"manifest.json is nested deeper than mlc reads (limit {MAX_DEPTH})") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"manifest.json holds {_kind(manifest)}, not an object with `format`, `resolved` "
                            "and `preprocessing`")
    _depth(manifest)
    return manifest


def verify_digest(manifest: dict, name: str, data: bytes) -> None:
    """Against the sha256 that manifest.json records for the member (artifacts written
    before members were recorded have none)."""
    rec = (manifest.get("members") or {}).get(name) if isinstance(manifest.get("members"), dict) else None
    if isinstance(rec, dict) and isinstance(rec.get("sha256"), str):
        if hashlib.sha256(data).hexdigest() != rec["sha256"]:
            raise ManifestError(f"{name} is damaged: its sha256 differs from the one manifest.json records")


def verify_members(z: zipfile.ZipFile, manifest: dict, checked: set[str]) -> None:
    """The archive holds exactly the members manifest.json lists, each with its recorded
    sha256: a file added, removed, truncated or changed after mlc wrote it is refused.
    `checked`: members the loader reads (and verifies) itself."""
    rec = manifest.get("members")
    if not isinstance(rec, dict):
        return  # written before members were recorded
    names = [n for n in z.namelist() if n != "manifest.json"]
    extra = sorted(set(names) - set(rec))
    if extra:
        raise ManifestError(f"it holds {', '.join(extra[:3])}, which manifest.json does not list; the file was "
                            "changed after mlc wrote it")
    lacking = sorted(set(rec) - set(names))
    if lacking:
        raise ManifestError(f"it lacks {', '.join(lacking[:3])}, which manifest.json lists; the file is damaged")
    for name in sorted(set(rec) - checked):
        size = recorded_size(manifest, name)
        verify_digest(manifest, name, read_member(z, name, size if size is not None else MAX_MANIFEST_BYTES,
                                                  "manifest.json records"))


def recorded_size(manifest: dict, name: str) -> int | None:
    rec = manifest.get("members")
    rec = rec.get(name) if isinstance(rec, dict) else None
    size = rec.get("bytes") if isinstance(rec, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None


def describe_members(files: dict[str, bytes]) -> dict:
    """{name: {bytes, sha256}}, recorded in manifest.json by the writers."""
    return {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()}


# ---- the manifest's shape ------------------------------------------------------------
def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the text {json.dumps(v[:40])}" + ("..." if len(v) > 40 else "")
    return {list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _depth(value) -> None:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > MAX_DEPTH:
            raise ManifestError(f"manifest.json is nested deeper than mlc reads (limit {MAX_DEPTH})")
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


class _At:
    """A field path for messages: resolved.inputs[2].options.encoder."""

    def __init__(self, path: str):
        self.path = path

    def __truediv__(self, key) -> "_At":
        return _At(f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}" if self.path else key)

    def fail(self, value, expected: str):
        raise ManifestError(f"manifest.json: `{self.path}` is {_kind(value)}; expected {expected}")


def _need(obj: dict, at: _At, key: str):
    if key not in obj:
        raise ManifestError(f"manifest.json: `{at.path}` lacks `{key}`" if at.path else
                            f"manifest.json lacks `{key}`")
    return obj[key]


def _dict(v, at: _At) -> dict:
    if not isinstance(v, dict):
        at.fail(v, "an object")
    return v


def _list(v, at: _At, item=None, nonempty: bool = False) -> list:
    if not isinstance(v, list) or (nonempty and not v):
        at.fail(v, "a non-empty list" if nonempty else "a list")
    if item is not None:
        for i, x in enumerate(v):
            item(x, at / i)
    return v


def _str(v, at: _At, nonempty: bool = False) -> str:
    if not isinstance(v, str) or (nonempty and not v):
        at.fail(v, "non-empty text" if nonempty else "text")
    return v


def _bool(v, at: _At) -> bool:
    if not isinstance(v, bool):
        at.fail(v, "true or false")
    return v


def _int(v, at: _At, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum) or \
            (maximum is not None and v > maximum):
        bounds = f" from {minimum}" if minimum is not None else ""
        bounds += f" to {maximum}" if maximum is not None else ""
        at.fail(v, f"a whole number{bounds}")
    return v


def _num(v, at: _At, minimum: float | None = None, maximum: float | None = None, nonzero: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            (minimum is not None and v < minimum) or (maximum is not None and v > maximum) or (nonzero and v == 0):
        at.fail(v, "a finite number" + (" other than 0" if nonzero else "") +
                (f" from {minimum}" if minimum is not None else "") + (f" to {maximum}" if maximum is not None else ""))
    return v


def _increasing(v, at: _At) -> list:
    _list(v, at, lambda x, a: _num(x, a))
    if any(b <= a for a, b in zip(v, v[1:])):
        at.fail(v, "increasing numbers")
    return v


def _option(value, form, at: _At, blocks: dict) -> None:
    if isinstance(form, spec.Choice):
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            at.fail(value, "a choice such as {\"name\": \"" + next(iter(form.calls)) + "\"} (one of " +
                    ", ".join(form.calls) + ")")
        if value.get("block"):  # an expert block as the encoder
            if value["name"] not in blocks:
                raise ManifestError(f"manifest.json: `{at.path}` names the block `{value['name']}`, which "
                                    "`resolved.blocks` lacks")
            for k, x in _dict(value.get("args", {}), at / "args").items():
                _num(x, at / "args" / k)
            return
        if value["name"] not in form.calls:
            raise ManifestError(f"manifest.json: `{at.path}.name` is {_kind(value['name'])}; expected one of "
                                + ", ".join(form.calls))
        for arg, kind in form.calls[value["name"]].items():
            if arg in value:
                _scalar(value[arg], spec.Scalar(kind), at / arg)
        return
    _scalar(value, form, at)


def _scalar(value, form, at: _At) -> None:
    if form.auto and value == "auto":
        return
    lo, hi = form.minimum, form.maximum
    if form.kind == "int":
        _int(value, at, None if lo is None else math.ceil(lo), None if hi is None else math.floor(hi))
    elif form.kind == "float":
        _num(value, at, lo, hi)
    elif form.kind == "string":
        _str(value, at)
    elif form.kind == "int_list":
        _list(value, at, lambda x, a: _int(x, a, None if lo is None else math.ceil(lo)), nonempty=True)
    elif form.kind == "bool":
        _bool(value, at)


def _options(opts: dict, table: dict, at: _At, blocks: dict) -> None:
    for key, value in opts.items():
        if key in table:  # unknown keys are ignored by every stage
            _option(value, table[key].form, at / key, blocks)


def check_resolved(r, at: _At = _At("resolved")) -> None:
    _dict(r, at)
    _str(_need(r, at, "data"), at / "data")
    split = _dict(_need(r, at, "split"), at / "split")
    if split.get("kind") == "ratio":
        _list(_need(split, at / "split", "parts"), at / "split" / "parts", lambda x, a: _num(x, a, 0), nonempty=True)
        _int(_need(split, at / "split", "seed"), at / "split" / "seed")
    blocks = _dict(r.get("blocks", {}), at / "blocks")
    for name, text in blocks.items():
        _str(text, at / "blocks" / name)
    names = set()
    for role, types in (("inputs", spec.INPUT_TYPES), ("outputs", spec.OUTPUT_TYPES)):
        feats = _list(_need(r, at, role), at / role, nonempty=True)
        for i, f in enumerate(feats):
            fa = at / role / i
            _dict(f, fa)
            name = _str(_need(f, fa, "name"), fa / "name", nonempty=True)
            if name in names:
                raise ManifestError(f"manifest.json: `{fa.path}.name` repeats the column `{name}`")
            names.add(name)
            t = _str(_need(f, fa, "type"), fa / "type")
            if t not in types:
                raise ManifestError(f"manifest.json: `{fa.path}.type` is {_kind(t)}; expected one of "
                                    + ", ".join(types))
            _options(_dict(_need(f, fa, "options"), fa / "options"),
                     spec.FEATURE_OPTIONS.get((role[:-1], t), {}), fa / "options", blocks)
    comb = _dict(_need(r, at, "combiner"), at / "combiner")
    name = _str(_need(comb, at / "combiner", "name"), at / "combiner" / "name", nonempty=True)
    if comb.get("block"):
        if name not in blocks:
            raise ManifestError(f"manifest.json: `{at.path}.combiner.name` names the block `{name}`, which "
                                "`resolved.blocks` lacks")
        for k, x in _dict(comb.get("args", {}), at / "combiner" / "args").items():
            _num(x, at / "combiner" / "args" / k)
    elif name not in spec.COMBINERS:
        raise ManifestError(f"manifest.json: `{at.path}.combiner.name` is {_kind(name)}; expected one of "
                            + ", ".join(spec.COMBINERS) + " or a block in `resolved.blocks`")
    _options(_dict(comb.get("options", {}), at / "combiner" / "options"), spec.COMBINER_OPTIONS,
             at / "combiner" / "options", blocks)
    train = _dict(_need(r, at, "train"), at / "train")
    for key in ("optimizer", "batch_size", "epochs"):
        _need(train, at / "train", key)
    early = train.get("early_stop")
    if isinstance(early, dict):  # resolved: {"patience", "metric"}
        _int(_need(early, at / "train" / "early_stop", "patience"), at / "train" / "early_stop" / "patience", 1)
        _str(_need(early, at / "train" / "early_stop", "metric"), at / "train" / "early_stop" / "metric")
    _options({k: v for k, v in train.items() if k != "early_stop"}, spec.TRAIN_OPTIONS, at / "train", blocks)
    _list(r.get("slices", []), at / "slices")


# ---- the preprocessing state, per column type -------------------------------------------
def _vocab(v, at: _At) -> list:
    return _list(v, at, lambda x, a: _str(x, a))


def _input_state(t: str, st, at: _At) -> None:
    _dict(st, at)
    g = lambda key: _need(st, at, key)  # noqa: E731
    if t == "number":
        for key in ("fill", "shift"):
            _num(g(key), at / key)
        _num(g("scale"), at / "scale", nonzero=True)
        _bool(g("clip"), at / "clip")
        _bool(g("indicator"), at / "indicator")
        _increasing(g("edges"), at / "edges")
    elif t == "binary":
        _vocab(g("values"), at / "values")
    elif t == "category":
        _vocab(g("vocab"), at / "vocab")
    elif t in ("text", "sequence"):
        kind = _str(g("tokenizer"), at / "tokenizer")
        if kind not in ("word", "split", "bpe"):
            at.fail(kind, "`word`, `split` or `bpe`")
        if kind == "bpe":
            _str(g("bpe"), at / "bpe")
        else:
            _vocab(g("vocab"), at / "vocab")
        if kind == "split":
            _str(g("separator"), at / "separator", nonempty=True)
        size = _int(g("vocab_size"), at / "vocab_size", 0)
        if kind != "bpe" and size != len(st["vocab"]):  # ids past the table would be clamped silently
            (at / "vocab_size").fail(size, f"{len(st['vocab'])}, the length of `vocab`")
        _int(g("max_len"), at / "max_len", 1)
        _int(st.get("buckets", 0), at / "buckets", 0)
        _str(g("encoder"), at / "encoder")
    elif t in ("set", "bag"):
        _str(g("separator"), at / "separator", nonempty=True)
        _vocab(g("vocab"), at / "vocab")
        _int(g("max_len"), at / "max_len", 1)
        if _str(g("kind"), at / "kind") not in ("set", "bag"):
            at.fail(st["kind"], "`set` or `bag`")
    elif t == "date":
        _str(g("format"), at / "format", nonempty=True)
        _num(g("shift"), at / "shift")
        _num(g("scale"), at / "scale", nonzero=True)
        _bool(g("time_of_day"), at / "time_of_day")
        _bool(g("indicator"), at / "indicator")
        _increasing(g("edges"), at / "edges")
    elif t == "vector":
        _vector_state(st, at)
        _bool(g("indicator"), at / "indicator")


def _vector_state(st: dict, at: _At) -> None:
    _str(_need(st, at, "separator"), at / "separator", nonempty=True)
    size = _int(_need(st, at, "size"), at / "size", 1)
    for key in ("mean", "std"):
        v = _list(_need(st, at, key), at / key, lambda x, a: _num(x, a, nonzero=key == "std"))
        if len(v) != size:
            (at / key).fail(v, f"a list of {size} numbers (`size`)")


def _output_state(t: str, st, at: _At) -> None:
    _dict(st, at)
    g = lambda key: _need(st, at, key)  # noqa: E731
    if t == "binary":
        _str(g("positive"), at / "positive")
        if st.get("values") is not None:
            _vocab(st["values"], at / "values")
    elif t == "category":
        classes = _list(g("classes"), at / "classes", lambda x, a: _str(x, a), nonempty=True)
        priors = _list(g("priors"), at / "priors", lambda x, a: _num(x, a, 0))
        if len(priors) != len(classes):
            (at / "priors").fail(priors, f"one number per class ({len(classes)})")
    elif t == "number":
        _num(g("mean"), at / "mean")
        _num(g("std"), at / "std", nonzero=True)
    elif t == "set":
        _str(g("separator"), at / "separator", nonempty=True)
        labels = _vocab(g("labels"), at / "labels")
        priors = _list(g("priors"), at / "priors", lambda x, a: _num(x, a, 0, 1))
        if len(priors) != len(labels):
            (at / "priors").fail(priors, f"one number per label ({len(labels)})")
        _num(g("threshold"), at / "threshold", 0, 1)
    elif t == "vector":
        _vector_state(st, at)


def check(manifest: dict, compiled: bool = False) -> None:
    """Raise ManifestError at the first field that is not as the writers write it."""
    top = _At("")
    r = _need(manifest, top, "resolved")
    check_resolved(r)
    pre = _dict(_need(manifest, top, "preprocessing"), _At("preprocessing"))
    for role, check_state in (("inputs", _input_state), ("outputs", _output_state)):
        states = _dict(_need(pre, _At("preprocessing"), role), _At("preprocessing") / role)
        for f in r[role]:
            if f["name"] not in states:
                raise ManifestError(f"manifest.json: `preprocessing.{role}` lacks the column `{f['name']}`")
            check_state(f["type"], states[f["name"]], _At("preprocessing") / role / f["name"])
    if "file" in manifest:
        _str(manifest["file"], _At("file"))
    if "members" in manifest:
        _dict(manifest["members"], _At("members"))
    if compiled:
        _list(_need(manifest, top, "platforms"), _At("platforms"), lambda x, a: _str(x, a), nonempty=True)
        progs = _dict(_need(manifest, top, "programs"), _At("programs"))
        inf = _dict(_need(progs, _At("programs"), "inference"), _At("programs") / "inference")
        for i, x in enumerate(_list(_need(inf, _At("programs.inference"), "inputs"), _At("programs.inference.inputs"))):
            a = _At("programs.inference.inputs") / i
            _str(_need(_dict(x, a), a, "name"), a / "name", nonempty=True)
            if _str(_need(x, a, "dtype"), a / "dtype") not in ("float32", "int32"):
                (a / "dtype").fail(x["dtype"], "float32 or int32")
        source = manifest.get("source", {})
        _dict(source, _At("source"))
