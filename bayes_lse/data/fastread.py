"""Reading a plain CSV log lean (issue 16: 25M interactions in well under 4 GB): the
first half of the lean path of :func:`bayes_lse.data.log.read_interactions`.

The detailed path reads every column as per-row strings with pandas, then validates
row by row: ~7.7 GB peak and a 2.2 GB table at 25M rows. Here pyarrow streams the
file in blocks, each column dictionary-encoded, into one int32 code per row and
column plus the column's distinct values; `bayes_lse.data.log._build_lean` then runs
every check and parse on the distinct values only and touches rows through codes.

This module takes only the common case: an uncompressed UTF-8 file without BOM whose
first line is the header, whose columns are the required ones (plus optional ones),
each once, with one record per line (no blank line, no field spanning lines), that
pyarrow parses. Anything else returns None and the caller reads the file by the
detailed path, so every error message stays exactly that path's. It does not import
`bayes_lse.data.log` (no import cycle): what it needs is passed in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["read_csv_codes"]

_HEAD_BYTES = 1 << 16


def read_csv_codes(
    source: str | os.PathLike[str], *, required: tuple[str, ...], optional: tuple[str, ...],
    na_strings: list[str], skip_suffixes: set[str], skip_magic: bytes,
) -> tuple[dict[str, tuple[np.ndarray, pd.Series]], int] | None:
    """``({column: (int32 code per row, distinct values)}, n_rows)`` of a plain CSV
    file whose columns are `required` plus some of `optional` (keys lower-case), or
    None when the detailed path must read it. Distinct values are str with NaN where
    the detailed path reads a missing value (`na_strings`; only ``""`` for the ids);
    codes are numbered in order of first appearance. Row k is on file line k + 2."""
    return _read(Path(os.fspath(source)), required, optional, na_strings, skip_suffixes, skip_magic)


def _read(path: Path, required: tuple[str, ...], optional: tuple[str, ...], na_strings: list[str],
          skip_suffixes: set[str], skip_magic: bytes) -> Any:
    from pandas.io.common import infer_compression

    from bayes_lse.data.table import _line_count

    if not path.is_file() or path.suffix.lower() in skip_suffixes:
        return None
    if infer_compression(str(path), "infer") is not None:
        return None
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if not head or head.startswith((skip_magic, b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return None
    if b"\x00" in head:
        return None
    text = head.decode("utf-8", errors="replace")
    first = text.split("\n", 1)[0]
    first = first[:-1] if first.endswith("\r") else first
    # the detailed path's header: the first non-blank line (splitlines' idea of lines)
    header = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first.strip() or header != first:
        return None
    from bayes_lse.data.table import header_columns

    sep, names = header_columns(header)
    keys = [n.strip().lower() for n in names]
    allowed = required + optional
    if (
        len(set(names)) != len(names)
        or len(set(keys)) != len(keys)
        or not set(keys) <= set(allowed)
        or not set(required) <= set(keys)
    ):
        return None

    # One record per line (pyarrow skips blank lines and joins quoted line breaks, so
    # either makes fewer rows than lines): row k is on line k + 2.
    n = (_line_count(path, "utf-8") or 0) - 1
    if n < 1:
        return None
    columns = _read_codes(path, sep, names, keys, n, na_strings)
    return None if columns is None else (columns, n)

def _read_codes(
    path: Path, sep: str, names: list[str], keys: list[str], n: int, na_strings: list[str]
) -> dict[str, tuple[np.ndarray, pd.Series]] | None:
    """Every column as (int32 code per row, its distinct values with the detailed path's
    missing values as NaN), codes numbered in order of first appearance. Streamed in
    blocks, so that only the codes stay (4 bytes a row and column). None if the file
    does not have exactly `n` data rows or does not parse."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    dict_type = pa.dictionary(pa.int32(), pa.string())
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 23),
        parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: dict_type for name in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    if reader.schema.names != names:
        return None
    codes = [np.empty(n, dtype=np.int32) for _ in names]
    vocab: list[dict[str, int]] = [{} for _ in names]
    pos = 0
    for batch in reader:
        m = batch.num_rows
        if pos + m > n:
            return None
        for i in range(len(names)):
            arr = batch.column(i)
            seen = vocab[i]
            # batch dictionaries list values in order of first appearance in the batch
            local = np.fromiter(
                (seen.setdefault(v, len(seen)) for v in arr.dictionary.to_pylist()),
                dtype=np.int32,
            )
            np.take(local, arr.indices.to_numpy(zero_copy_only=False), out=codes[i][pos : pos + m])
        pos += m
    if pos != n:
        return None
    out = {}
    for i, key in enumerate(keys):
        values = pd.Series(list(vocab[i]), dtype="str")
        vocab[i] = {}
        na = [""] if key in ("student_id", "module_id") else na_strings
        out[key] = (codes[i], values.where(~values.isin(na)))
    return out


def _two_lessons_at_one_step(student: np.ndarray, timestep: np.ndarray, is_lesson: np.ndarray) -> bool:
    """True if a student has two lessons at one timestep (the detailed path's error)."""
    idx = np.flatnonzero(is_lesson)
    if len(idx) < 2:
        return False
    span = int(timestep[idx].max()) + 1
    if (int(student.max()) + 1) * span >= 2**62:  # the key would overflow: let the detailed path see
        return True
    key = np.sort(student[idx].astype(np.int64) * span + timestep[idx])
    return bool((key[1:] == key[:-1]).any())


def _codes_among(module: np.ndarray, rows: np.ndarray, n_modules: int) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, -1 off `rows`; the module codes in that numbering's order): the
    modules of `rows` numbered by first appearance there, as pd.factorize does."""
    first = pd.unique(module[rows])
    lookup = np.full(n_modules, -1, dtype=np.int32)
    lookup[first] = np.arange(len(first), dtype=np.int32)
    out = lookup[module]
    out[~rows] = -1
    return out, first
