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

    import pyarrow as pa
    import pyarrow.csv as pacsv

    dict_type = pa.dictionary(pa.int32(), pa.string())
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=True),
        parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: dict_type for n in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    n = table.num_rows
    if table.column_names != names or n == 0:
        return None
    # One record per line (pyarrow skips blank lines and joins quoted line breaks, so
    # either makes fewer rows than lines): row k is on line k + 2.
    if _line_count(path, "utf-8") != n + 1:
        return None
    table = table.unify_dictionaries()

    columns: dict[str, tuple[np.ndarray, pd.Series]] = {}
    for name, key in zip(names, keys):
        arr = table.column(name).combine_chunks()
        codes = arr.indices.to_numpy(zero_copy_only=False)
        values = pd.Series(arr.dictionary.to_pylist(), dtype="str")
        na = [""] if key in ("student_id", "module_id") else L._NA_STRINGS
        columns[key] = (codes, values.where(~values.isin(na)))
    del table, arr

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
    is_assess = ~is_lesson

    oc, ov = columns.pop("outcome")
    out_val, out_present = L._parse_outcome(ov)
    out_ok = (out_val == 0.0) | (out_val == 1.0)
    bad = ~out_ok & (out_present | require_outcomes)
    if (bad[oc] & is_assess).any() or (out_present[oc] & is_lesson).any():
        return None
    outcome = np.where(is_assess, out_val[oc], np.nan)
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
        L._check_one_lesson_per_step(student, timestep, is_lesson, None, None)  # raises: fall back
    else:
        lesson_int = is_lesson.astype(np.int64)
        timestep = (
            pd.Series(lesson_int).groupby(student, sort=False).cumsum().to_numpy() - lesson_int
        )
        del lesson_int

    assessment = np.full(n, -1, dtype=np.int32)
    codes, a_uniques = pd.factorize(mc[is_assess])
    assessment[is_assess] = codes
    lesson = np.full(n, -1, dtype=np.int32)
    codes, l_uniques = pd.factorize(mc[is_lesson])
    lesson[is_lesson] = codes
    del codes
    module_ids = modules.to_numpy(dtype=object)

    n_students = len(students)
    last = np.zeros(n_students, dtype=np.int64)
    np.maximum.at(last, student, timestep + is_lesson)
    n_states = int(last.sum()) + n_students
    if n_states > max(L._MAX_STATES_PER_ROW * n, L._MIN_STATE_BUDGET):
        return None
    sizes = last + 1
    state_offset = np.zeros(n_students + 1, dtype=np.int64)
    np.cumsum(sizes, out=state_offset[1:])
    state_student = np.repeat(np.arange(n_students, dtype=np.int64), sizes)
    state_step = np.arange(n_states, dtype=np.int64) - state_offset[state_student]

    out = L.make_table(
        student, pd.Index(students.to_numpy(), dtype="str"), mc,
        pd.Index(module_ids, dtype="str"), is_lesson, outcome, timestep,
        assessment, lesson, np.arange(2, n + 2, dtype=np.int64),
    )
    for a in (state_offset, state_student, state_step):
        a.flags.writeable = False
    return L.InteractionLog(
        table=out,
        students=pd.Index(students.to_numpy(), dtype="str", name="student_id"),
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
