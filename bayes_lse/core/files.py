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


def atomic_write_text(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write a file via a temporary sibling and a rename: readers never see half a file.

    With ``exclusive=True`` the final name is taken by a hard link, which fails if
    anything exists there by then: a file created between a command's existence
    check and its write is never replaced (issue 19 item 2; ``os.replace`` would
    replace it). Raises FileExistsError naming the path in that case.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
