"""The saved-model folder: open formats only, a format version, per-file content
hashes, and writes that never leave a half-written model or clobber a saved one.

Layout of a model folder::

    manifest.json   format name and version, package version, method, config hash,
                    sha256 of every other file
    config.json     model_config and fit_config (JSON)
    ids.json        the user's ids: students, assessments, lessons
    fit.nc          the whole DataTree (posterior, sample stats, data) as netCDF4/HDF5; its root
                    attribute ``fit_verdict`` (optional) keeps the fit's overall diagnostic verdict
    modules.json    (optional) the modules table the fit was given: knowledge-component tags
                    per module (`data.modules`), for predicting modules added after the fit
    encoder.*       (optional) the amortised placement encoder (`results.encoder`)

Writers of one destination exclude each other: a writer holds ``.NAME.lock`` next to
the folder (`folder_lock`; ``fcntl.flock``, so a killed writer's lock is released by
the kernel), and a second writer fails at once with `ModelFolderBusy`. A new folder is
written as ``.NAME.XXXXXXXX.tmp`` and renamed into place; an existing one is first
renamed to ``.NAME.old-PID``. A kill between those two renames left no model at the
path (issue 19 item 3): whoever next takes the lock (a write, or a load that finds
leftovers) puts the old folder back if the new one never landed and removes the rest
(`recover_folder`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # POSIX: a lock the kernel releases when its holder dies, however it dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: an exclusive create of the lock file instead
    fcntl = None  # type: ignore[assignment]

from bayes_lse.core.files import atomic_write_text, new_file_mode, sha256_file
from bayes_lse.inference.assemble import FORMAT_VERSION

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "DATA_FILES", "ModelFolderError", "ModelFolderBusy",
           "atomic_write_text", "sha256_file", "write_folder", "check_folder", "folder_lock", "lock_path",
           "recover_folder", "read_optional_file"]

FORMAT_NAME = "bayes-lse-model"
MANIFEST = "manifest.json"
DATA_FILES = ("config.json", "ids.json", "fit.nc")


class ModelFolderError(ValueError):
    """A saved model folder that cannot be used: missing, incomplete, tampered, or another version."""


class ModelFolderBusy(ModelFolderError):
    """Another writer holds the model folder's lock (issue 19 item 1: two fits to one
    `-o` both exited 0 and one silently replaced the other)."""


# ------------------------------------------------------------------ the writers' lock
#: folders whose lock this process holds: canonical path -> (thread id, depth)
_HELD: dict[str, tuple[int, int]] = {}
_HELD_GUARD = threading.Lock()


def _canonical(dest: str | os.PathLike[str]) -> Path:
    """One name per destination, whatever the spelling (relative, `..`, a symlinked parent)."""
    dest = Path(os.path.abspath(dest))
    return Path(os.path.realpath(dest.parent)) / dest.name


def lock_path(dest: str | os.PathLike[str]) -> Path:
    """The lock file of model folder `dest`: ``.NAME.lock`` beside it."""
    dest = _canonical(dest)
    return dest.with_name(f".{dest.name}.lock")


def _busy(dest: Path, lock: Path, holder: str) -> ModelFolderBusy:
    who = f" ({holder})" if holder else ""
    return ModelFolderBusy(f"{dest}: another bayes-lse process{who} is writing this model folder; wait for it "
                           f"to finish or choose another path (lock: {lock})")


def _holder(fd: int) -> str:
    """What the lock file says about its holder ("PID n on host"), or ''."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        return ""
    return f"PID {text[0]} on {text[1]}" if len(text) >= 2 and text[0].isdigit() else ""


def _acquire(dest: Path, lock: Path, shown: Path) -> int:
    """Take the lock file `lock` without waiting; the open descriptor holds it.
    `shown`: the destination as the caller spelled it, for messages."""
    import socket

    stamp = f"{os.getpid()} {socket.gethostname()}\n".encode()
    if fcntl is None:  # pragma: no cover - exercised by tests that hide fcntl
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                holder = Path(lock).read_text(errors="replace").split()
            except OSError:
                holder = []
            who = f"PID {holder[0]} on {holder[1]}" if len(holder) >= 2 else "unknown"
            # no kernel lock here: a writer that was killed leaves its lock file behind
            raise _busy(shown, lock, f"{who}; if none is running, delete the lock file") from None
        os.write(fd, stamp)
        return fd
    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise _busy(shown, lock, who) from None
        except BaseException:
            os.close(fd)
            raise
        # A holder releasing the lock unlinks the file before closing it: the file we
        # locked may no longer be the one at `lock`. Then try again with the new one.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                # A file left by a killed writer (its PID in it) is simply taken over:
                # the kernel released that writer's lock when it died.
                os.ftruncate(fd, 0)
                os.pwrite(fd, stamp, 0)
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise _busy(shown, lock, "")  # pragma: no cover - 20 lost races in a row


def _release(lock: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(lock)  # before closing: no other process can hold it yet
    os.close(fd)


@contextlib.contextmanager
def folder_lock(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the writers' lock of model folder `dest` while the block runs.

    Fails at once with `ModelFolderBusy` (a `ModelFolderError`) if another process, or
    another thread, holds it; re-entrant within one thread (the CLI holds it for a whole
    fit, and `write_folder` takes it again). Taking it first tidies what an interrupted
    write left (`recover_folder`). The lock file ``.NAME.lock`` is removed on release,
    and folders created to hold it are removed again if nothing landed in them.
    Yields the destination's canonical path.
    """
    shown = Path(dest)
    dest = _canonical(dest)
    key = str(dest)
    me = threading.get_ident()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[0] == me:
            _HELD[key] = (me, held[1] + 1)
    if held is not None and held[0] == me:
        try:
            yield dest
        finally:
            with _HELD_GUARD:
                _HELD[key] = (me, _HELD[key][1] - 1)
        return
    lock = dest.with_name(f".{dest.name}.lock")
    created = []
    parent = dest.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _acquire(dest, lock, shown)
    except BaseException:
        _remove_empty(created)
        raise
    with _HELD_GUARD:
        _HELD[key] = (me, 1)
    try:
        recover_folder(shown)
        yield dest
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        _release(lock, fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    for f in folders:  # deepest first
        try:
            f.rmdir()
        except OSError:
            break


# ------------------------------------------------------------------ leftovers of an interrupted swap
def _leftover_patterns(name: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    n = re.escape(name)
    # tempfile.mkdtemp's 8 random characters; old-PID as write_folder names it
    return re.compile(rf"\.{n}\.[a-z0-9_]{{8}}\.tmp"), re.compile(rf"\.{n}\.old-\d+")


def _leftovers(dest: Path) -> tuple[list[Path], list[Path]]:
    """(old folders, unfinished new folders) an interrupted write left beside `dest`."""
    tmp_re, old_re = _leftover_patterns(dest.name)
    olds: list[Path] = []
    tmps: list[Path] = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return olds, tmps
    for e in entries:
        try:
            if not e.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        if old_re.fullmatch(e.name):
            olds.append(Path(e.path))
        elif tmp_re.fullmatch(e.name):
            tmps.append(Path(e.path))
    return olds, tmps


def _mtime(folder: Path) -> float:
    for p in (folder / MANIFEST, folder):
        with contextlib.suppress(OSError):
            return p.stat().st_mtime
    return 0.0


def recover_folder(dest: str | os.PathLike[str]) -> list[str]:
    """Tidy what an interrupted write left beside `dest`; return what was done.

    If nothing is at `dest` but an old folder (``.NAME.old-PID``) is, the new model never
    landed: the old one is put back. Every other leftover (unfinished ``.NAME.*.tmp``
    folders, old folders of a swap that completed) is removed. Call it holding the
    folder's lock (`folder_lock` does), so a live writer's folders are never touched.
    """
    shown = Path(dest)
    dest = _canonical(dest)
    olds, tmps = _leftovers(dest)
    done: list[str] = []
    if olds and not os.path.lexists(dest):
        newest = max(olds, key=_mtime)
        os.replace(newest, dest)
        olds.remove(newest)
        done.append(f"restored the model that an interrupted overwrite had moved to {newest.name}")
    for p in olds + tmps:
        shutil.rmtree(p, ignore_errors=True)
    if olds or tmps:
        done.append(f"removed {len(olds) + len(tmps)} leftover folder(s) of an interrupted write")
    if done:
        warnings.warn(f"{shown}: {'; '.join(done)}", UserWarning, stacklevel=2)
    return done


def _recover_before_reading(src: Path) -> None:
    """A load that finds leftovers takes the lock to tidy them, if it can: never while a
    writer works (its folders are not leftovers), nor where it may not write."""
    olds, tmps = _leftovers(_canonical(src))
    if not olds and not tmps:
        return
    with contextlib.suppress(ModelFolderBusy, OSError):
        with folder_lock(src):
            pass


def write_folder(dest: Path, writers: dict[str, Any], manifest: dict[str, Any], overwrite: bool) -> Path:
    """Write every file into a temporary sibling folder, then rename it into place.

    `writers` maps file name → callable(path) that writes it. An existing model at
    `dest` is replaced only with `overwrite=True`, and only after the new one is
    complete; anything else already at `dest` is never touched. The whole write holds
    the folder's lock (`folder_lock`): a second writer of `dest` fails with
    `ModelFolderBusy` instead of silently replacing the first one's model.
    """
    dest = Path(dest)
    with folder_lock(dest):
        if dest.exists():
            if not dest.is_dir():
                raise ModelFolderError(f"{dest}: exists and is not a folder; choose another path")
            if any(dest.iterdir()):
                if not overwrite:
                    raise ModelFolderError(f"{dest}: already holds files; pass overwrite=True (--overwrite) to replace it")
                if not (dest / MANIFEST).exists():
                    raise ModelFolderError(f"{dest}: holds files that are not a bayes-lse model; refusing to replace them")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        os.chmod(tmp, new_file_mode(directory=True))  # mkdtemp's 0700 -> the user's umask
        old: Path | None = None
        landed = False
        try:
            hashes = {}
            for name, write in writers.items():
                write(tmp / name)
                hashes[name] = sha256_file(tmp / name)
            manifest = {**manifest, "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "files": hashes}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                os.replace(dest, old)
            os.replace(tmp, dest)
            landed = True
        except BaseException:
            if old is not None and not landed:  # the new model never landed: the old one goes back
                with contextlib.suppress(OSError):  # if even that fails, the next load or write restores it
                    os.replace(old, dest)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def _regular_file(path: Path) -> None:
    """Refuse anything but a regular file before opening it: a folder fails with a
    traceback, and a symlink to /dev/zero or a FIFO made `predict` hang forever
    (issue 19 items 7 and 11)."""
    import stat

    try:
        mode = os.stat(path).st_mode  # follows symlinks: what would be read
    except OSError as exc:
        raise ModelFolderError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise ModelFolderError(f"{path}: is {kind}; a model folder holds regular files only")


def read_optional_file(src: Path, name: str) -> str | None:
    """The text of optional file `name` of model folder `src` (e.g. ``modules.json``),
    checked against the manifest's hash; None when the manifest does not list it.

    Refused (`ModelFolderError`) when the file is there but the manifest does not list
    it, when it is listed but missing, or when its content differs from its hash."""
    src = Path(src)
    try:
        files = json.loads((src / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelFolderError(f"{src}: {MANIFEST} cannot be read ({exc})") from None
    path = src / name
    if name not in files:
        if path.exists():
            raise ModelFolderError(f"{src}: holds {name}, which the manifest does not list; refusing it")
        return None
    if not path.is_file():
        raise ModelFolderError(f"{src}: incomplete model folder, {name} is missing")
    if sha256_file(path) != files[name]:
        raise ModelFolderError(f"{src}: {name} does not match its recorded hash (modified after saving?)")
    return path.read_text()


def check_folder(src: Path) -> dict[str, Any]:
    """Verify a model folder before reading anything from it; return its manifest."""
    src = Path(src)
    _recover_before_reading(src)
    if not src.exists():
        olds, _ = _leftovers(_canonical(src))
        if olds:
            raise ModelFolderError(f"{src}: no model folder here, but an interrupted overwrite left the previous "
                                   f"one as {olds[0]}; load again where it may be written (or while no fit "
                                   "writes it) to restore it, or rename it back by hand")
        raise ModelFolderError(f"{src}: no such model folder")
    if not src.is_dir():
        raise ModelFolderError(f"{src}: not a folder (a saved model is a folder)")
    mpath = src / MANIFEST
    if not mpath.exists():
        raise ModelFolderError(f"{src}: incomplete model folder, {MANIFEST} is missing")
    _regular_file(mpath)
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelFolderError(f"{mpath}: not a bayes-lse manifest (a JSON object is expected)")
    if manifest.get("format") != FORMAT_NAME:
        raise ModelFolderError(f"{src}: not a bayes-lse model folder")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFolderError(
            f"{src}: saved with model format version {version}, this bayes-lse reads version {FORMAT_VERSION}"
        )
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise ModelFolderError(f"{mpath}: 'files' must map file names to hashes, got {type(files).__name__}")
    for name in DATA_FILES:
        if name not in files:
            raise ModelFolderError(f"{src}: manifest lists no {name}; the folder is incomplete")
        path = src / name
        if not path.exists():
            raise ModelFolderError(f"{src}: incomplete model folder, {name} is missing")
        _regular_file(path)
        if sha256_file(path) != files[name]:
            raise ModelFolderError(f"{src}: {name} does not match its recorded hash (modified after saving?)")
    return manifest
