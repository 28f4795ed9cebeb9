"""Checkpoints after every epoch, and `mlc run --resume`.

A checkpoint holds everything the next epoch depends on: the parameters, the optimizer
state, the RNG key (which also fixes the next epoch's shuffle), the best parameters so
far, and the early-stopping state and history (JSON). The data position is the epoch:
the whole-epoch program consumes its epoch at once, so a run killed mid-epoch resumes
at the start of that epoch with the same key and reaches the same parameters, bit for bit.

Written with Orbax (the JAX ecosystem's checkpoint library): it saves sharded global
arrays from every process of a multi-process run and writes each step into a temporary
folder that it renames into place once complete, so a kill at any moment leaves the
previous checkpoint or the new one, never a broken one. One step is kept.

When: at the end of every epoch, except that a save costs about 0.1 s (Orbax's metadata
and files; measured on the titanic example, 34 epochs of 0.1 s), which would double the
time of a run whose epochs are that short. So after an epoch a checkpoint is written when
the training since the last one took at least SAVE_COST_SHARE^-1 times the last save's cost
(the saves then cost at most ~10% of the run; before the first save, its cost is taken to
be FIRST_SAVE_COST), and after the last epoch when that save is due too. Epochs of a second
or more, the runs worth resuming, are each checkpointed; a run of under a second of
training is not checkpointed at all (the test suite's hundreds of tiny runs pay nothing).

A checkpoint belongs to its program, data and seed: `fingerprint` records them, and
resuming with any of them changed is refused, naming what changed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from mlc.diagnostics import UserError

# Data files up to this size are hashed whole; larger ones by size, modification time and
# their first and last MiB (hashing 50 GB at every start would cost minutes).
HASH_WHOLE_BYTES = 1 << 30
SAVE_COST_SHARE = 0.1
FIRST_SAVE_COST = 0.1  # seconds, measured on this machine (see above)


def _file_digest(path: Path, h) -> None:
    st = path.stat()
    h.update(f"{path.name}\0{st.st_size}\0".encode())
    with path.open("rb") as f:
        if st.st_size <= HASH_WHOLE_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(str(st.st_mtime_ns).encode())
            h.update(f.read(1 << 20))
            f.seek(st.st_size - (1 << 20))
            h.update(f.read(1 << 20))


def data_digest(path: Path) -> str:
    """sha256 of a data file, or of every file of a folder or glob (in name order)."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    elif any(ch in str(path) for ch in "*?["):
        files = sorted(Path(p) for p in __import__("glob").glob(str(path), recursive=True))
    else:
        files = [path] if path.exists() else []
    for f in files:
        _file_digest(f, h)
    return h.hexdigest()


def fingerprint(program: str | Path, data_path: str, seed: int) -> dict:
    """What a checkpoint belongs to: the program's text, the data's content and the seed."""
    program = Path(program)
    source = program.read_bytes()
    data = (program.parent / data_path)
    return {"program": hashlib.sha256(source).hexdigest(), "data": data_digest(data), "seed": seed,
            "program_file": str(program), "data_file": str(data_path)}


WHAT = {"program": "the program `{program_file}` changed", "data": "the data `{data_file}` changed",
        "seed": "the seed changed (checkpoint {old}, now {new})"}


class Checkpoints:
    """DIR/.mlc/checkpoint of one `mlc run`. Without resume, an old checkpoint there is
    removed first (a fresh run must not continue another one)."""

    def __init__(self, folder: str | Path, fingerprint: dict, resume: bool = False, log=print):
        self.folder, self.fingerprint, self.resume, self.log = Path(folder).absolute(), fingerprint, resume, log
        self._manager = None
        import time
        self._last_save_end = time.perf_counter()  # when the last save ended (or training began)
        self._save_cost = FIRST_SAVE_COST
        if resume:
            meta = self._meta()
            if meta is None:
                raise UserError(f"nothing to resume: `{self.folder.parent.parent}` holds no checkpoint (runs "
                                "with under a second of training write none); run without --resume")
            old = meta["fingerprint"]
            changed = [WHAT[k].format(old=old.get(k), new=fingerprint[k], **fingerprint)
                       for k in ("program", "data", "seed") if old.get(k) != fingerprint[k]]
            if changed:
                raise UserError(f"cannot resume: {'; '.join(changed)} since the checkpoint of epoch "
                                f"{meta['epoch']} was written; run without --resume to train from the "
                                "beginning with what changed")
        else:
            from mlc.runtime.devices import process_index
            if process_index() == 0 and self.folder.exists():
                shutil.rmtree(self.folder, ignore_errors=True)

    def _mgr(self):
        if self._manager is None:
            import orbax.checkpoint as ocp
            # synchronous: the epoch's checkpoint is on disk before the next epoch starts
            self._manager = ocp.CheckpointManager(
                self.folder, options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False,
                                                                  create=True))
        return self._manager

    def _meta(self) -> dict | None:
        """The JSON part of the newest complete checkpoint, read without Orbax (cheap)."""
        if not self.folder.is_dir():
            return None
        steps = sorted((int(p.name) for p in self.folder.iterdir() if p.name.isdigit()
                        and (p / "meta" / "metadata").is_file()), reverse=True)
        for step in steps:
            try:
                return json.loads((self.folder / str(step) / "meta" / "metadata").read_text())
            except (OSError, ValueError):
                continue
        return None

    def due(self) -> bool:
        """Whether the training since the last save is worth a save (see the module's text).
        Every process computes its own answer, so a multi-process run gets it from process 0."""
        import time
        return time.perf_counter() - self._last_save_end >= self._save_cost / SAVE_COST_SHARE

    def save(self, epoch: int, tree: dict, meta: dict, last: bool = False) -> bool:
        """Write the checkpoint of `epoch` when due; True when written. `last`: the run's last
        epoch (recorded, so a resume after it only evaluates and writes)."""
        import time
        import orbax.checkpoint as ocp
        from mlc.runtime.devices import agree
        if not agree(self.due()):
            return False
        t = time.perf_counter()
        mgr = self._mgr()
        mgr.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                meta=ocp.args.JsonSave({**meta, "fingerprint": self.fingerprint})),
                 force=True)
        mgr.wait_until_finished()
        self._last_save_end = time.perf_counter()
        self._save_cost = self._last_save_end - t
        return True

    def restore(self, template: dict):
        """(tree, meta) of the newest checkpoint, its arrays placed like `template`'s
        (so a run may resume on another number of devices); None when not resuming."""
        if not self.resume:
            return None
        import jax
        import orbax.checkpoint as ocp
        mgr = self._mgr()
        step = mgr.latest_step()
        if step is None:
            return None
        template = {**template, "best_params": template["params"]}
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), template)
        try:
            got = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                          meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise UserError(f"cannot resume: the checkpoint of epoch {step} does not fit this program "
                            f"({str(e).splitlines()[0][:200]}); run without --resume") from None
        tree = jax.tree.map(lambda t, a: a, template, dict(got["state"]),
                            is_leaf=lambda x: x is None)
        self.log(f"resuming after epoch {step} from {self.folder}")
        return tree, dict(got["meta"])
