"""What every `bayes-lse` command shares: one-line errors with exit status 2, and
writes that never replace a saved file without --overwrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bayes_lse.core.errors import InteractionLogError

EXIT_INPUT = 2


class UserError(click.ClickException):
    """One line on stderr, exit status 2, no traceback."""

    exit_code = EXIT_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"bayes-lse: error: {self.format_message()}", err=True)


def guard(fn):
    """Turn input errors from anywhere below into a one-line UserError."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # imported when a command runs, not when the CLI loads (`--help` stays light)
        from bayes_lse.results.storage import ModelFolderError

        try:
            return fn(*args, **kwargs)
        except (InteractionLogError, ModelFolderError, FileNotFoundError, FileExistsError) as exc:
            raise UserError(str(exc)) from None
        except MemoryError:  # e.g. simulate --students 10000000 under a memory limit (issue 19 item 9)
            raise UserError("out of memory: the request is too large for this machine; ask for less "
                            "(fewer students, steps, draws or candidates)") from None
        except (ValueError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise UserError(str(msg)) from None

    return wrapper


def parse_learning_noise(value: str | None) -> float | str | None:
    """`--learning-noise`: a positive number, 'learned', or None (the model's default).

    One parser for every command that takes the option (fit, simulate, evaluate, calibrate),
    so they accept and refuse the same values with the same words."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() == "learned":
        return "learned"
    try:
        return float(text)  # its range is checked by the model's config, in the same words as for Python
    except ValueError:
        raise UserError(f"--learning-noise must be a positive number or 'learned', got {value!r}") from None


def parse_skills(value: str | int | None) -> int | str:
    """`--skills` of fit and evaluate: an integer >= 1 or 'auto' (chosen by a held-out check,
    `results.selection`); one parser so both commands refuse the same values in the same words."""
    text = "auto" if value is None else str(value).strip().lower()
    if text == "auto":
        return "auto"
    try:
        d = int(text)
    except ValueError:
        d = 0
    if d < 1:
        raise UserError(f"--skills must be an integer >= 1 or 'auto', got {value!r}")
    return d


#: how a hint names a raw format, and what `bayes-lse convert` needs beside the file
_RAW_FORMATS = {
    "assistments-dkt": ("an ASSISTments DKT file (3 lines per student)", ""),
    "ednet-kt4": ("EdNet-KT4 user logs", " (questions.csv beside the user files, or as another input)"),
    "riiid": ("a Riiid train.csv", ""),
    "datashop": ("a DataShop transaction export", ""),
}


def read_log(data: Path, *, accepts_from: bool = False) -> Any:
    """`read_interactions(data)`; when the file fails validation and looks like a raw
    public format (ASSISTments DKT, EdNet-KT4, Riiid, DataShop), the one-line error says
    which `bayes-lse convert` command turns it into the table (issue 20), or, for a
    command that reads raw formats itself (`accepts_from`), which --from to add."""
    from bayes_lse.data.log import read_interactions
    from bayes_lse.data.readers import sniff_format

    try:
        return read_interactions(data)
    except InteractionLogError as exc:
        fmt = sniff_format(data)
        if fmt is None:
            raise
        what, needs = _RAW_FORMATS[fmt]
        if accepts_from:
            raise UserError(f"{exc}. It looks like {what}: add --from {fmt} to read it as one{needs}") from None
        raise UserError(f"{exc}. It looks like {what}: convert it to the interaction table first, e.g. "
                        f"bayes-lse convert --from {fmt} {data} -o interactions.csv{needs}") from None


def read_modules_option(path: Path | None) -> Any:
    """`--modules FILE` read and validated (`data.modules.read_modules`), or None; a file
    that is not there is a FileNotFoundError (`guard`'s one line)."""
    if path is None:
        return None
    from bayes_lse.data.modules import read_modules

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such modules file")
    return read_modules(path)


def check_writable(path: Path, what: str = "output") -> None:
    """Refuse, before any work, an output whose folder cannot be written: the nearest
    existing ancestor must be a folder we may write into (issue 19 item 10: `fit` ran
    the whole fit and then ended in a PermissionError traceback)."""
    import os

    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{path}: cannot write the {what} here: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot write the {what} here: no write permission in {parent}")


def refuse_existing(path: Path, overwrite: bool, what: str = "file") -> None:
    """Refuse to replace an existing file without --overwrite, and an unwritable place."""
    if path.exists() and not overwrite:
        raise UserError(f"{path}: {what} already exists; pass --overwrite to replace it")
    check_writable(path, what)


def write_text(path: Path | None, text: str, overwrite: bool = False) -> None:
    """Print `text`, or write it to `path` atomically; without `overwrite`, a file that
    appeared at `path` after the existence check is never replaced."""
    if path is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    from bayes_lse.core.files import atomic_write_text

    atomic_write_text(path, text, exclusive=not overwrite)
