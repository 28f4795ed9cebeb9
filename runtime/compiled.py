"""The predictor of a `.mlcc` artifact: what `mlc.load` returns for one compiled from a model.

`mlc compile model.mlc --target cpu|gpu|tpu` (mlc/export.py) writes the inference program
with the trained weights inside, serialized with `jax.export`. Loading reads and verifies
it (every member's SHA-256, bounded sizes), refuses an artifact for a platform this machine
lacks with an ArtifactError that says why, and deserializes the program: nothing is
unpickled, and nothing of the compiler or of training is imported.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlc.runtime.artifact import COMPILED_FORMAT as FORMAT
from mlc.runtime.artifact import Predictor


def available_platforms() -> dict:
    """{platform: a device} for the platforms this machine's JAX can run ("cpu", "cuda", "rocm", "tpu")."""
    import jax
    found = {}
    for backend in (None, "cpu", "gpu", "tpu"):
        try:
            devices = jax.devices(backend) if backend else jax.devices()
        except RuntimeError:
            continue
        for d in devices:
            p = d.platform
            if p == "gpu":
                p = "rocm" if "rocm" in str(getattr(d.client, "platform_version", "")).lower() else "cuda"
            found.setdefault(p, d)
    return found


def _describe_target(manifest: dict) -> str:
    archs = manifest.get("archs") or []
    return ", ".join(manifest.get("platforms", [])) + (f" ({', '.join(archs)})" if archs else "")


def runnable_device(path, manifest: dict):
    """The device that runs this artifact's programs here, or an ArtifactError that says why none does."""
    from mlc.runtime.artifact import ArtifactError
    here = available_platforms()
    runnable = [p for p in manifest.get("platforms", []) if p in here]
    if not runnable:
        source = manifest.get("source", {}).get("file", "SOURCE")
        raise ArtifactError(
            f"`{path}` was compiled for {_describe_target(manifest)} and this machine has only "
            f"{', '.join(sorted(here)) or 'no JAX device'}; compile it for this machine with "
            f"`mlc compile {source} --target cpu`")
    return here[runnable[0]]


class CompiledModel(Predictor):
    """A model compiled with `mlc compile model.mlc --target ...`: `predict(rows)` runs the
    exported inference program (weights inside) on rows encoded with the stored state."""

    def __init__(self, path: Path, manifest: dict, blob: bytes, program_text: str):
        import jax
        from mlc.runtime.artifact import ArtifactError, resolved_from_json
        self.path, self.manifest, self.program_text = path, manifest, program_text
        self.resolved = resolved_from_json(manifest["resolved"], manifest.get("file", "model.dml"))
        self.state = manifest["preprocessing"]
        self.platforms = tuple(manifest["platforms"])
        self.device = runnable_device(path, manifest)
        try:
            self.exported = jax.export.deserialize(bytearray(blob))
        except Exception as e:  # a damaged file, or one written by an incompatible jax
            raise ArtifactError(f"`{path}`: cannot read inference.jax with jax {jax.__version__} ({e}); "
                                f"it was written with jax {manifest.get('versions', {}).get('jax')}") from None
        spec = manifest["programs"]["inference"]
        self.input_spec = {i["name"]: i for i in spec["inputs"]}

    def __call__(self, encoded: dict) -> dict:
        """The exported program on encoded arrays: {x_num, cat_*} -> {output: prediction}."""
        import jax
        args = {k: np.asarray(encoded[k], dtype=s["dtype"]) for k, s in self.input_spec.items()}
        with jax.default_device(self.device):
            try:
                return jax.device_get(self.exported.call(args))
            except Exception as e:  # noqa: BLE001 - a damaged program fails inside XLA in many ways
                from mlc.runtime.artifact import ArtifactError
                raise ArtifactError(f"`{self.path}`: inference.jax cannot run ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}); the file is damaged or was "
                                    "written by an incompatible jax") from None

    forward = __call__  # what Predictor.predict_raw runs on each chunk


def _inference_limit(manifest: dict, path) -> tuple[int, str]:
    """How large inference.jax may be: its recorded size, else (artifacts written before
    sizes were recorded) the trained weights it closes over, twice, plus 64 MiB."""
    from mlc.runtime import manifest as M
    from mlc.runtime.artifact import build_graph, params_bytes
    recorded = M.recorded_size(manifest, "inference.jax")
    if recorded is not None:
        return recorded, "manifest.json records"
    return 2 * params_bytes(build_graph(manifest, path)) + (64 << 20), "this program's weights need"


def load_compiled(path: str | Path, manifest: dict | None = None, z: zipfile.ZipFile | None = None) -> CompiledModel:
    """The predictor of a .mlcc compiled from a model.mlc (what `mlc.load` returns for one)."""
    from mlc.runtime import manifest as M
    from mlc.runtime.artifact import ArtifactError
    path = Path(path)
    try:
        if z is None:
            with zipfile.ZipFile(path) as z:
                return load_compiled(path, manifest, z)
        manifest = M.read_manifest(z) if manifest is None else manifest
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"`{path}` has format {manifest.get('format')!r}; this mlc reads {FORMAT}")
        names = set(z.namelist())
        source = manifest.get("source")
        if "inference.jax" not in names:
            raise ArtifactError(f"`{path}` holds no inference.jax")
        if not isinstance(source, dict) or source.get("kind") != "model":
            if isinstance(manifest.get("platforms"), list):
                runnable_device(path, manifest)  # an artifact for another platform: that is the more useful message
            raise ArtifactError(f"`{path}` was compiled from the program "
                                f"{source.get('file') if isinstance(source, dict) else None} and "
                                "holds no trained weights; train it with `mlc run` and compile the model.mlc it "
                                "writes to get a predictor (or call its init.jax, train_step.jax and inference.jax)")
        M.check(manifest, compiled=True)
        limit, why = _inference_limit(manifest, path)
        blob = M.read_member(z, "inference.jax", limit, why)
        M.verify_digest(manifest, "inference.jax", blob)
        M.verify_members(z, manifest, checked={"inference.jax"})
        program = M.read_member(z, "program.dml", M.MAX_TEXT_BYTES) if "program.dml" in names else b""
        program_text = program.decode()
    except M.ManifestError as e:
        raise ArtifactError(f"`{path}`: {e}") from None
    except UnicodeDecodeError:
        raise ArtifactError(f"`{path}`: program.dml is not UTF-8 text; the file is damaged") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ArtifactError(f"`{path}` is not an mlc artifact ({e})") from None
    try:
        return CompiledModel(path, manifest, blob, program_text)
    except KeyError as e:
        raise ArtifactError(f"`{path}`: its manifest lacks {e}") from None


def read_program(path: str | Path, name: str):
    """One exported program of a .mlcc ('inference', 'train_step', 'init'), deserialized."""
    import jax
    from mlc.runtime import manifest as M
    with zipfile.ZipFile(path) as z:
        manifest = M.read_manifest(z)
        size = M.recorded_size(manifest, f"{name}.jax")
        blob = M.read_member(z, f"{name}.jax", size if size is not None else M.memory_cap())
        M.verify_digest(manifest, f"{name}.jax", blob)
        return jax.export.deserialize(bytearray(blob))
