"""The lean path of :func:`bayes_lse.data.log.read_interactions` for a plain CSV file
(issue 16: 25M interactions read in well under 4 GB).

The detailed path reads every column as per-row strings with pandas, then validates
row by row: ~7.7 GB peak and a 2.2 GB table at 25M rows. Here pyarrow reads each
column dictionary-encoded (int32 codes + its distinct values), every check and parse
of :mod:`bayes_lse.data.log` runs on the distinct values only, and rows are touched
only through their codes.

It takes only the common case: an uncompressed UTF-8 file without BOM whose first
line is the header, whose columns are the four required ones (plus ``timestep``),
each once, with one record per line (no blank line, no field spanning lines), and
where nothing is wrong or unusual (no empty or invalid value, no ids that merge after
trimming, no lesson with an outcome, no warning at all). Anything else returns None
and the caller reads the file again by the detailed path, so every error message and
warning stays exactly that path's. Its output equals the detailed path's
(tests/data/test_fastread.py).
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["read_csv_fast"]

_HEAD_BYTES = 1 << 16


def read_csv_fast(
    source: str | os.PathLike[str], name: str | None, *, require_outcomes: bool = True
) -> Any:
    """The `InteractionLog` of `source`, or None when the detailed path must read it."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log = _read(Path(os.fspath(source)), name or os.fspath(source), require_outcomes)
    except Exception:  # noqa: BLE001 - anything at all: the detailed path says what
        return None
    return None if caught else log


def _read(path: Path, src: str, require_outcomes: bool) -> Any:
    from pandas.io.common import infer_compression

    from bayes_lse.data import log as L
    from bayes_lse.data.table import _line_count

    if not path.is_file() or path.suffix.lower() in L._PARQUET_SUFFIXES:
        return None
    if infer_compression(str(path), "infer") is not None:
        return None
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if not head or head.startswith((L._PARQUET_MAGIC, b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
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
    sep = ","
    for cand in (",", "\t", ";", "|"):
        if "student_id" in (c.strip().strip('"').lower() for c in header.split(cand)):
            sep = cand
            break
    names = next(csv.reader([header], delimiter=sep))
    keys = [n.strip().lower() for n in names]
    allowed = L.REQUIRED_COLUMNS + ("timestep",)
    if (
        len(set(names)) != len(names)
        or len(set(keys)) != len(keys)
        or not set(keys) <= set(allowed)
        or not set(L.REQUIRED_COLUMNS) <= set(keys)
    ):
        return None

    # One record per line (pyarrow skips blank lines and joins quoted line breaks, so
    # either makes fewer rows than lines): row k is on line k + 2.
    n = (_line_count(path, "utf-8") or 0) - 1
    if n < 1:
        return None
    columns = _read_codes(path, sep, names, keys, n)
    if columns is None:
        return None

    # ids: trimmed text, none empty, no two spellings of one id
    sc, sv = columns.pop("student_id")
    mc, mv = columns.pop("module_id")
    students = L._parse_ids(sv)
    modules = L._parse_ids(mv)
    for ids in (students, modules):
        if ids.isna().any() or ids.duplicated().any():
            return None

    tc, tv = columns.pop("module_type")
    mtype = tv.astype("str").str.strip().str.lower()
    type_lesson = (mtype == "lesson").to_numpy()
    if not ((mtype == "assessment").to_numpy() | type_lesson).all():
        return None
    is_lesson = type_lesson[tc]
    del tc
    is_assess = ~is_lesson

    oc, ov = columns.pop("outcome")
    out_val, out_present = L._parse_outcome(ov)
    out_ok = (out_val == 0.0) | (out_val == 1.0)
    bad = ~out_ok & (out_present | require_outcomes)
    if (bad[oc] & is_assess).any() or (out_present[oc] & is_lesson).any():
        return None
    outcome = out_val[oc]
    outcome[is_lesson] = np.nan
    del oc

    explicit = False
    if "timestep" in columns:
        stc, stv = columns.pop("timestep")
        explicit = not stv.isna().all()
        if explicit:
            step_val, _, step_ok = L._parse_timestep(stv)
            if not step_ok.all():
                return None
            timestep = step_val[stc]
        del stc

    # dictionary codes should be numbered in order of first appearance, as pd.factorize
    # numbers them (then the codes are the factorize codes); checked, not assumed
    if not (_first_appearance(sc) and _first_appearance(mc)):
        return None
    student = sc
    if explicit:
        if _two_lessons_at_one_step(student, timestep, is_lesson):
            return None
    else:
        lesson_int = is_lesson.astype(np.int64)
        timestep = (
            pd.Series(lesson_int).groupby(student, sort=False).cumsum().to_numpy() - lesson_int
        )
        del lesson_int

    # assessment / lesson codes: modules numbered by first appearance among those rows
    # (what pd.factorize of those rows' ids gives), through a lookup table on mc
    module_ids = modules.to_numpy(dtype=object)
    assessment, a_uniques = _codes_among(mc, is_assess, len(module_ids))
    lesson, l_uniques = _codes_among(mc, is_lesson, len(module_ids))

    # T_u = max(timestep of any row, timestep + 1 of a lesson)
    n_students = len(students)
    last = np.zeros(n_students, dtype=np.int64)
    np.maximum.at(last, student, timestep)
    np.maximum.at(last, student[is_lesson], timestep[is_lesson] + 1)
    n_states = int(last.sum()) + n_students
    if n_states > max(L._MAX_STATES_PER_ROW * n, L._MIN_STATE_BUDGET):
        return None
    sizes = last + 1
    state_offset = np.zeros(n_students + 1, dtype=np.int64)
    np.cumsum(sizes, out=state_offset[1:])
    state_student = np.repeat(np.arange(n_students, dtype=np.int64), sizes)
    state_step = np.arange(n_states, dtype=np.int64) - state_offset[state_student]

    student_ids = pd.Index(students.array, dtype="str", name="student_id")
    out = L.make_table(
        student, student_ids.rename(None), mc,
        pd.Index(module_ids, dtype="str"), is_lesson, outcome, timestep,
        assessment, lesson, np.arange(2, n + 2, dtype=np.int64),
    )
    for a in (state_offset, state_student, state_step):
        a.flags.writeable = False
    return L.InteractionLog(
        table=out,
        students=student_ids,
        assessments=pd.Index(module_ids[a_uniques], dtype="str", name="assessment"),
        lessons=pd.Index(module_ids[l_uniques], dtype="str", name="lesson"),
        source=src,
        state_offset=state_offset,
        state_student=state_student,
        state_step=state_step,
        timesteps_derived=not explicit,
    )


def _first_appearance(codes: np.ndarray) -> bool:
    """True if code k first appears after codes 0..k-1 (pd.factorize's numbering)."""
    seen = np.maximum.accumulate(codes)
    ok = codes[0] == 0 and bool((codes[1:] <= seen[:-1] + 1).all())
    return ok


def _read_codes(
    path: Path, sep: str, names: list[str], keys: list[str], n: int
) -> dict[str, tuple[np.ndarray, pd.Series]] | None:
    """Every column as (int32 code per row, its distinct values with the detailed path's
    missing values as NaN), codes numbered in order of first appearance. Streamed in
    blocks, so that only the codes stay (4 bytes a row and column). None if the file
    does not have exactly `n` data rows or does not parse."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from bayes_lse.data import log as L

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
        na = [""] if key in ("student_id", "module_id") else L._NA_STRINGS
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
