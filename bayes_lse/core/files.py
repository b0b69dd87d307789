"""File writes every layer needs: a content hash and an atomic text write (a reader
never sees half a file).  Lives at the bottom so that the simulator, the CLI and
the evaluation can write without depending on the model-folder format."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    """The process's umask, read from /proc on Linux: `os.umask` can only be read by
    setting it, which races with other threads creating files meanwhile."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(directory: bool = False) -> int:
    """The permissions a plain ``open``/``mkdir`` would give under the user's umask.

    Atomic writes go through `tempfile`, which creates files 0600 and folders 0700 so that
    nobody reads a half-written temporary; once complete, a file or model folder gets the
    mode the user's umask asks for (issue 19: model folders were 0700 and CSV outputs 0600
    whatever the umask, so a shared group could not read them)."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write_text(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write a file via a temporary sibling and a rename: readers never see half a file.

    With ``exclusive=True`` the final name is taken by a hard link, which fails if
    anything exists there by then: a file created between a command's existence
    check and its write is never replaced (issue 19 item 2; ``os.replace`` would
    replace it). Raises FileExistsError naming the path in that case.

    The new file gets the permissions of the file it replaces, else those of the user's
    umask (`new_file_mode`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777 if not exclusive else new_file_mode()
    except OSError:
        mode = new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path}: appeared while this command ran; nothing was replaced "
                                      "(pass --overwrite to replace it)") from None
            Path(tmp).unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
