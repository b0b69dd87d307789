"""The saved-model folder: open formats only, a format version, per-file content
hashes, and writes that never leave a half-written model or clobber a saved one.

Layout of a model folder::

    manifest.json   format name and version, package version, method, config hash,
                    sha256 of every other file
    config.json     model_config and fit_config (JSON)
    ids.json        the user's ids: students, assessments, lessons
    fit.nc          the whole DataTree (posterior, sample stats, data) as netCDF4/HDF5; its root
                    attribute ``fit_verdict`` (optional) keeps the fit's overall diagnostic verdict
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bayes_lse.core.files import atomic_write_text, sha256_file
from bayes_lse.inference.assemble import FORMAT_VERSION

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "DATA_FILES", "ModelFolderError", "atomic_write_text",
           "sha256_file", "write_folder", "check_folder"]

FORMAT_NAME = "bayes-lse-model"
MANIFEST = "manifest.json"
DATA_FILES = ("config.json", "ids.json", "fit.nc")


class ModelFolderError(ValueError):
    """A saved model folder that cannot be used: missing, incomplete, tampered, or another version."""


def write_folder(dest: Path, writers: dict[str, Any], manifest: dict[str, Any], overwrite: bool) -> Path:
    """Write every file into a temporary sibling folder, then rename it into place.

    `writers` maps file name → callable(path) that writes it. An existing model at
    `dest` is replaced only with `overwrite=True`, and only after the new one is
    complete; anything else already at `dest` is never touched.
    """
    dest = Path(dest)
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
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


def check_folder(src: Path) -> dict[str, Any]:
    """Verify a model folder before reading anything from it; return its manifest."""
    src = Path(src)
    if not src.exists():
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
