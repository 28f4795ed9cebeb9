"""The folder `mlc run --out DIR` writes: checked and locked before any work, and its
model.mlc and report.json always from one run.

    DIR/model.mlc      -> .mlc/current/model.mlc     symbolic links, made once
    DIR/report.json    -> .mlc/current/report.json
    DIR/.mlc/current   -> run-ID                     swapped by one atomic rename per run
    DIR/.mlc/run-ID/   model.mlc, report.json        written in full, synced, then published
    DIR/.mlc/lock      held with flock while a run owns DIR

A reader that opens DIR/model.mlc and DIR/report.json sees both files of the old run
or both of the new one, never a mix, and a run killed at any moment leaves the last
published pair in place (its unpublished run-ID folder is removed by the next run).
The lock is an OS file lock: it dies with the process that holds it, so a killed run
never blocks the next one, and a second run into a busy DIR is refused at once.
On a file system without symbolic links the two files are replaced one after the
other (model first) and a note says so.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path

from mlc.diagnostics import UserError

FILES = ("model.mlc", "report.json")
HIDDEN = ".mlc"


def unique_temporary(path: Path) -> tuple[int, str]:
    """(descriptor, name) of a new file beside `path`, named for this process and call
    (created exclusively, with the permissions a plain open would give)."""
    while True:
        tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _why(e: OSError) -> str:
    return e.strerror or str(e)


class OutputDir:
    """`with OutputDir(DIR) as out:` checks DIR is writable and takes its lock (a clean
    UserError otherwise); `out.write_model(fn)` and `out.publish(report_text)` write the pair."""

    def __init__(self, folder: str | Path, log=print):
        self.folder = Path(folder)
        self.hidden = self.folder / HIDDEN
        self.log = log
        self.created: list[Path] = []
        self.lock_fd: int | None = None
        self.stage: Path | None = None
        self.published = False
        self.model_sha256: str | None = None

    # ---- before any work ------------------------------------------------------------
    def __enter__(self) -> "OutputDir":
        try:
            self._open()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._cleanup()

    def _open(self) -> None:
        f = self.folder
        if f.exists() and not f.is_dir():
            raise UserError(f"--out `{f}` is a file, not a folder; choose a folder for model.mlc and report.json")
        missing = [p for p in [f, *f.parents] if not p.exists()]
        for parent in reversed(missing):  # the first existing ancestor must be a folder we can write in
            if parent.parent.exists() and not parent.parent.is_dir():
                raise UserError(f"cannot create the output folder `{f}`: `{parent.parent}` is a file")
        try:
            f.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the output folder `{f}` ({_why(e)}); choose another with --out") from None
        self.created = [p for p in missing if p.exists()]
        for name in FILES:
            if (f / name).is_dir() and not (f / name).is_symlink():
                raise UserError(f"`{f / name}` is a folder; mlc run writes a file there, so choose another --out")
        try:
            self.hidden.mkdir(exist_ok=True)
            self._lock()
            self.stage = self.hidden / f"run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
            self.stage.mkdir()
            probe = self.stage / ".probe"
            probe.write_bytes(b"")  # the folder takes files, not just folders
            probe.unlink()
        except OSError as e:
            raise UserError(f"cannot write in the output folder `{f}` ({_why(e)}); choose another with --out") from None
        self._remove_stale()

    def _lock(self) -> None:
        path = self.hidden / "lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = ""
                try:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                except OSError:
                    pass
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"`{self.folder}` is in use by another `mlc run`"
                                    + (f" (process {holder})" if holder.isdigit() else "")
                                    + "; wait for it to finish or choose another --out") from None
                raise
            try:  # the file we locked must still be the one at the path (a cleanup may have removed it)
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.lock_fd = fd

    def _current(self) -> str | None:
        try:
            return os.readlink(self.hidden / "current")
        except OSError:
            return None

    def _remove_stale(self) -> None:
        """Run folders and links left by killed runs (we hold the lock: nobody else writes)."""
        keep = {self._current(), self.stage.name if self.stage else None}
        for p in self.hidden.iterdir():
            if p.name.startswith("run-") and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith(("current.", "probe.")) and p.is_symlink():
                p.unlink(missing_ok=True)
        for name in FILES:
            for p in self.folder.glob(f".{name}.*.tmp"):
                p.unlink(missing_ok=True)

    # ---- after training -------------------------------------------------------------
    def write_model(self, write) -> Path:
        """write(path) writes the model into this run's own folder; returns its path."""
        path = self.stage / "model.mlc"
        write(path)
        with path.open("rb") as fh:
            self.model_sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        return path

    def publish(self, report_text: str) -> None:
        """Write report.json beside the model, then make the pair DIR's in one rename."""
        report = self.stage / "report.json"
        with report.open("w", encoding="utf-8") as fh:
            fh.write(report_text)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(self.stage)
        old = self._current()
        if not self._links_supported():
            return self._publish_by_copy(old)
        link = self.hidden / f"current.{self.stage.name}"
        link.unlink(missing_ok=True)
        os.symlink(self.stage.name, link)
        os.replace(link, self.hidden / "current")  # the one atomic step
        _fsync_dir(self.hidden)
        self.published = True
        for name in FILES:  # DIR/NAME -> .mlc/current/NAME, made once (replacing an older plain file)
            target = f"{HIDDEN}/current/{name}"
            path = self.folder / name
            if path.is_symlink() and os.readlink(path) == target:
                continue
            tmp = self.folder / f".{name}.{self.stage.name}.link.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, path)
        _fsync_dir(self.folder)
        if old and old != self.stage.name and old.startswith("run-"):
            shutil.rmtree(self.hidden / old, ignore_errors=True)

    def _links_supported(self) -> bool:
        probe = self.hidden / f"probe.{self.stage.name}"
        try:
            os.symlink(self.stage.name, probe)
        except OSError:
            return False
        probe.unlink(missing_ok=True)
        return True

    def _publish_by_copy(self, old) -> None:
        self.log(f"note: the file system of `{self.folder}` has no symbolic links; model.mlc and report.json "
                 "are replaced one after the other")
        for name in FILES:
            path = self.folder / name
            if path.is_symlink():
                path.unlink()
            os.replace(self.stage / name, path)
        _fsync_dir(self.folder)
        self.published = True
        shutil.rmtree(self.stage, ignore_errors=True)

    def _cleanup(self) -> None:
        if self.stage is not None and not self.published:
            shutil.rmtree(self.stage, ignore_errors=True)
        if not self.published and self.created and not any((self.folder / n).exists() for n in FILES):
            # a folder this run created and never filled: leave nothing behind
            shutil.rmtree(self.hidden, ignore_errors=True)
            for p in self.created:  # deepest first; stops at anything another process put there
                try:
                    p.rmdir()
                except OSError:
                    break
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the lock
            self.lock_fd = None
