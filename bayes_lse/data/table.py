"""What every reader shares: the DESIGN §2 table assembled from rows already grouped by
student and in time order, the one-line error naming file, line and column, and the
file line on which each CSV row starts (`data_lines`)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

PathLike = str | os.PathLike[str]


def reader_error(problem: str, *, source: PathLike | None = None, row: int | None = None,
           column: str | None = None) -> Exception:
    """Build an InteractionLogError (imported lazily so this module loads on its own)."""
    from bayes_lse.core.errors import InteractionLogError

    kwargs = {"problem": problem, "source": "<inputs>" if source is None else str(source),
              "row": row, "column": column}
    try:  # our row numbers are always text-file line numbers
        return InteractionLogError(**kwargs, row_kind="line")
    except TypeError:  # an errors.py without row_kind
        return InteractionLogError(**kwargs)


# ------------------------------------------------------------------ physical line numbers
_TEXT_OPENERS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
_OTHER_COMPRESSION = {".zip", ".zst", ".tar"}


def _open_text(path: Path, encoding: str) -> Any:
    import importlib

    mod = _TEXT_OPENERS.get(path.suffix.lower())
    opener = importlib.import_module(mod).open if mod else open
    return opener(path, "rt", encoding=encoding, errors="replace", newline="")


def _line_count(path: Path, encoding: str) -> int | None:
    """Lines in the file as an editor counts them (a last line without a newline counts);
    None where the bytes cannot be counted cheaply (UTF-16, an unknown compression)."""
    import importlib

    if encoding.lower().replace("-", "") not in ("utf8", "utf8sig", "ascii", "latin1"):
        return None
    mod = _TEXT_OPENERS.get(path.suffix.lower())
    opener = importlib.import_module(mod).open if mod else open
    count, last = 0, b"\n"
    try:
        with opener(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                count += chunk.count(b"\n")
                last = chunk[-1:]
    except Exception:  # noqa: BLE001 - unreadable: the caller keeps its own numbering
        return None
    return count + (last != b"\n")


def record_starts(path: PathLike, *, sep: str = ",", encoding: str = "utf-8", skip_blank: bool = False,
                  stop: int | None = None) -> np.ndarray | None:
    """The 1-based line on which every CSV record starts, header first: a quoted field
    may span lines, so record k is not always on line k. Blank lines are records unless
    `skip_blank` (pandas' `skip_blank_lines`). `stop`: read no further than that many
    records. None if the file cannot be read as CSV text here (the caller then keeps
    its own numbering)."""
    import array
    import csv

    path = Path(path)
    if path.suffix.lower() in _OTHER_COMPRESSION:
        return None
    starts = array.array("q")
    try:
        with _open_text(path, encoding) as fh:
            reader = csv.reader(fh, delimiter=sep)
            before = 0
            for record in reader:
                if record or not skip_blank:
                    starts.append(before + 1)
                    if stop is not None and len(starts) >= stop:
                        break
                before = reader.line_num
    except Exception:  # noqa: BLE001 - csv.Error (a field over the size limit), decoding, I/O
        return None
    return np.frombuffer(starts, dtype=np.int64).copy()


def data_lines(path: PathLike, n_rows: int, *, sep: str = ",", encoding: str = "utf-8",
               skip_blank: bool = False) -> np.ndarray:
    """The file line on which each of the `n_rows` data rows pandas read from `path`
    starts (header = line 1), as a text editor counts lines — also after a quoted field
    that spans lines (issue 19 item 17: counting rows as lines put every later error a
    line too early). Reading the file's bytes once shows whether any row spans lines or
    any blank line was skipped; only then is it parsed again, with the csv module. Rows
    as numbered if that parse and pandas' disagree on the number of rows."""
    naive = np.arange(2, n_rows + 2, dtype=np.int64)
    path = Path(path)
    if _line_count(path, encoding) == n_rows + 1:
        return naive  # one line per row, no blank line: the common case
    starts = record_starts(path, sep=sep, encoding=encoding, skip_blank=skip_blank)
    if starts is None or len(starts) != n_rows + 1:
        return naive
    return starts[1:]


def parser_error_line(path: PathLike, message: str, *, sep: str = ",", encoding: str = "utf-8") -> int | None:
    """The file line of a pandas parser error ("Expected 4 fields in line 5, saw 5"):
    pandas numbers records there (header and blank lines included), not lines."""
    import re

    m = re.search(r"line (\d+)", message)
    if not m:
        return None
    n = int(m.group(1))
    starts = record_starts(path, sep=sep, encoding=encoding, stop=n)
    return int(starts[n - 1]) if starts is not None and len(starts) >= n else n


def fix_parser_message(message: str, line: int | None) -> str:
    """pandas' parser message with its record number replaced by the file line."""
    import re

    return message if line is None else re.sub(r"line \d+", f"line {line}", message, count=1)


def _decode(codes: np.ndarray, uniques: Any) -> pd.Series:
    """A string column from codes into its distinct values, decoded by Arrow."""
    dictionary = pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array([str(u) for u in uniques], type=pa.string())
    )
    return pd.Series(pd.array(dictionary.dictionary_decode(), dtype="str"))


def finish_table(student_id: Any, module_id: Any, is_lesson: np.ndarray, outcome: np.ndarray,
            timestamp: np.ndarray | None = None) -> pd.DataFrame:
    """Assemble the §2 table from rows already grouped by student and in time order.

    The timestep is the number of lessons earlier in the same student's rows.
    """
    # Columns are built from integer codes and the distinct values, never one Python
    # string per row: on ASSISTments (536k rows) that halves the reader's peak memory.
    s_codes, s_uniques = pd.factorize(np.asarray(student_id, dtype=object))
    m_codes, m_uniques = pd.factorize(np.asarray(module_id, dtype=object))
    return finish_table_codes(s_codes, s_uniques, m_codes, m_uniques, is_lesson, outcome, timestamp)


def finish_table_codes(s_codes: np.ndarray, s_uniques: Any, m_codes: np.ndarray, m_uniques: Any,
                  is_lesson: np.ndarray, outcome: np.ndarray,
                  timestamp: np.ndarray | None = None) -> pd.DataFrame:
    """`_finish` from student and module codes (positions in their distinct values,
    numbered in order of first appearance, as `pd.factorize` numbers them)."""
    is_lesson = np.asarray(is_lesson, dtype=bool)
    lessons = is_lesson.astype(np.int64)
    # Lessons earlier in the same student's rows (groupby: robust even if a student recurs).
    before = pd.Series(lessons).groupby(s_codes, sort=False).cumsum().to_numpy()
    timestep = before - lessons
    data = {
        "student_id": _decode(s_codes, s_uniques),
        "module_id": _decode(m_codes, m_uniques),
        "module_type": _decode(is_lesson.astype(np.int64), np.array(["assessment", "lesson"], dtype=object)),
        "outcome": np.where(is_lesson, np.nan, np.asarray(outcome, dtype=np.float64)),
        "timestep": timestep.astype(np.int64),
    }
    if timestamp is not None:
        data["timestamp"] = np.asarray(timestamp, dtype=np.int64)
    return pd.DataFrame(data)


def header_columns(header: str) -> tuple[str, list[str]]:
    """The separator of a CSV header line (the first of ``,``, tab, ``;``, ``|`` that splits
    off a ``student_id`` column; ``,`` if none does) and its column names, as the csv module
    reads them.  Shared by the detailed reader (`log`) and the lean one (`fastread`), so
    both see the same columns."""
    sep = ","
    for cand in (",", "\t", ";", "|"):
        if "student_id" in (c.strip().strip('"').lower() for c in header.split(cand)):
            sep = cand
            break
    return sep, next(csv.reader([header], delimiter=sep))
