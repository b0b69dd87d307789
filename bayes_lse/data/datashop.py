"""DataShop transaction exports → the DESIGN §2 table (issue 15).

DataShop (LearnSphere) is the field's standard archive of tutor logs. A transaction
export has one row per student action with, among many others, an anonymous student
id, a time, an outcome and knowledge-component (KC) columns. It comes tab-separated
(``.txt``, DataShop's own export) or, after a trip through R, comma-separated with the
column names mangled (``Anon Student Id`` → ``Anon.Student.Id``, ``KC (Default)`` →
``KC..Default.``); both are read, optionally gzip/bz2/xz-compressed.

Rules (each an option):

* **Lessons**: rows whose ``Outcome`` is in `lesson_outcomes` (default ``STUDY``, the
  MoFaCTS study trials where the whole sentence is shown: 3,194 of 58,316 rows in
  ``mofacts_statistics_cloze``).
* **Assessments**: ``CORRECT`` → 1 and ``INCORRECT`` → 0; ``HINT`` → 0, as DataShop's
  own first-attempt correctness counts a hint request as not correct. Any other
  value is an error naming its line, unless listed in `drop_outcomes`.
* **Module**: by default the ``KC (Default)`` column when the export has one (on
  MoFaCTS: 144 cloze items, each with study and graded trials), else
  ``Problem Name`` + ``Step Name``. `module_column` names another column, e.g.
  ``KC (Cluster)`` (MoFaCTS: the 36 facts the items test).
* **Order**: students in order of first appearance, each student's rows by ``Time``
  (to the second in DataShop), ties kept in file order (a stable sort); ``timestamp``
  is that time in ms. The timestep is the number of earlier lessons of the student.

The KC columns also give the module metadata (`datashop_modules`): a module's tags
are its KC values, so items that test the same fact can share strength in a model.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_lse.data.table import data_lines, finish_table, fix_parser_message, parser_error_line, reader_error

__all__ = ["DATASHOP_OUTCOMES", "datashop_modules", "read_datashop"]

PathLike = str | os.PathLike[str]

#: assessment outcome → correctness (HINT counts as not correct, as in DataShop's first-attempt data)
DATASHOP_OUTCOMES: dict[str, float] = {"CORRECT": 1.0, "INCORRECT": 0.0, "HINT": 0.0}


def _key(name: str) -> str:
    """Column name without case and punctuation: 'Anon Student Id' and 'Anon.Student.Id' agree."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _sniff_sep(path: Path) -> str:
    import gzip, bz2, lzma  # noqa: E401 - only the header line is read here

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        header = fh.readline()
    return "\t" if header.count("\t") > header.count(",") else ","


def _read(path: PathLike) -> tuple[pd.DataFrame, dict[str, str]]:
    """The export as strings, and a map from normalised column name to the file's own name."""
    p = Path(path)
    if p.is_dir():
        raise reader_error("is a folder, not a DataShop transaction file", source=p)
    if not p.is_file():
        raise reader_error("DataShop file not found", source=p)
    sep = _sniff_sep(p)
    try:
        df = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except pd.errors.EmptyDataError:
        raise reader_error("DataShop file is empty", source=p) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        line = parser_error_line(p, msg, sep=sep) if isinstance(exc, pd.errors.ParserError) else None
        raise reader_error(f"cannot parse DataShop export: {fix_parser_message(msg, line)}", source=p,
                           row=line) from None
    columns: dict[str, str] = {}
    for c in df.columns:
        columns.setdefault(_key(c), c)
    return df, columns


def _column(columns: dict[str, str], wanted: str | None, default: Sequence[str], path: PathLike,
            what: str, required: bool = True) -> str | None:
    """The file's name for a column given in any spelling (or the first default present)."""
    names = [wanted] if wanted is not None else list(default)
    for n in names:
        if _key(n) in columns:
            return columns[_key(n)]
    if not required:
        return None
    raise reader_error(f"DataShop export lacks the {what} column {names[0]!r} "
                       f"(it has {', '.join(map(repr, columns.values()))})", source=path, row=1,
                       column=names[0])


def _lines(path: PathLike, df: pd.DataFrame) -> np.ndarray:
    """1-based text line of every row (header = line 1), as an editor counts them: after
    a quoted field spanning lines or a skipped blank line too (issue 19 item 17)."""
    return data_lines(path, len(df), sep=_sniff_sep(Path(path)), skip_blank=True)


def read_datashop(
    path: PathLike,
    *,
    lesson_outcomes: Sequence[str] = ("STUDY",),
    module_column: str | None = None,
    student_column: str = "Anon Student Id",
    time_column: str = "Time",
    outcome_column: str = "Outcome",
    drop_outcomes: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a DataShop transaction export into the DESIGN §2 table.

    Parameters
    ----------
    path : str or path
        The export: tab- or comma-separated, optionally compressed.
    lesson_outcomes : sequence of str
        Outcome values that are lessons (default ``("STUDY",)``); compared without case.
    module_column : str, optional
        The column whose value is the module id, in any spelling (``KC (Cluster)`` or
        ``KC..Cluster.``). Default: ``KC (Default)`` if present, else problem + step.
    student_column, time_column, outcome_column : str
        Column names, in any spelling (defaults are DataShop's).
    drop_outcomes : sequence of str
        Outcome values to drop silently (e.g. ``("UNGRADED",)``); any other value
        that is neither a lesson nor in `DATASHOP_OUTCOMES` is an error.

    Returns
    -------
    pandas.DataFrame
        ``student_id, module_id, module_type, outcome, timestep, timestamp`` (ms),
        grouped by student in order of first appearance and in time order within.

    Raises
    ------
    InteractionLogError
        Naming the file, the line and the column of the first problem: a missing
        column, an empty student or module id, an unknown outcome, a time that does
        not parse.
    """
    df, columns = _read(path)
    s_col = _column(columns, student_column, (), path, "student")
    o_col = _column(columns, outcome_column, (), path, "outcome")
    t_col = _column(columns, time_column, (), path, "time")
    lines = _lines(path, df)
    module, m_col = _module_ids(df, columns, module_column, path)
    student = df[s_col].str.strip()
    outcome_raw = df[o_col].str.strip().str.upper()
    lesson_set = {str(x).strip().upper() for x in lesson_outcomes}
    drop_set = {str(x).strip().upper() for x in drop_outcomes}
    keep = ~outcome_raw.isin(drop_set).to_numpy()
    known = outcome_raw.isin(lesson_set | set(DATASHOP_OUTCOMES)).to_numpy()
    bad = keep & ~known
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        values = sorted(set(outcome_raw[bad]))
        raise reader_error(f"unknown outcome {df[o_col].iloc[i]!r} ({len(values)} unknown value(s): "
                           f"{', '.join(values[:5])}); lessons are {sorted(lesson_set)}, assessments "
                           f"{sorted(DATASHOP_OUTCOMES)}; pass lesson_outcomes= or drop_outcomes=",
                           source=path, row=int(lines[i]), column=o_col)
    for name, values, col in (("student id", student, s_col), ("module id", module, m_col)):
        empty = keep & (values == "").to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise reader_error(f"empty {name}", source=path, row=int(lines[i]), column=col)
    times = pd.to_datetime(df[t_col].str.strip(), errors="coerce", format="mixed")
    bad_t = keep & times.isna().to_numpy()
    if bad_t.any():
        i = int(np.flatnonzero(bad_t)[0])
        raise reader_error(f"time {df[t_col].iloc[i]!r} does not parse", source=path, row=int(lines[i]),
                           column=t_col)
    rows = np.flatnonzero(keep)
    s_codes, _ = pd.factorize(student.to_numpy()[rows])
    ms = (times.to_numpy()[rows].astype("datetime64[ms]").astype(np.int64))
    order = np.lexsort((np.arange(len(rows)), ms, s_codes))  # student, time, file order
    rows = rows[order]
    is_lesson = outcome_raw.to_numpy()[rows]
    is_lesson = np.isin(is_lesson, list(lesson_set))
    y = outcome_raw.to_numpy()[rows]
    correct = np.array([DATASHOP_OUTCOMES.get(v, np.nan) for v in y])
    return finish_table(student.to_numpy()[rows], module.to_numpy()[rows], is_lesson, correct, ms[order])


def datashop_modules(path: PathLike, *, lesson_outcomes: Sequence[str] = ("STUDY",),
                     module_column: str | None = None, tag_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The module metadata a DataShop export holds: every (module, type) with its KC tags.

    Parameters
    ----------
    path : str or path
        The export.
    lesson_outcomes, module_column : see `read_datashop` (use the same values).
    tag_columns : sequence of str, optional
        KC columns whose values become tags (default: every ``KC (...)`` column).

    Returns
    -------
    pandas.DataFrame
        ``module_id, module_type, tags``: tags ";"-joined, sorted and unique (a
        module may carry several values of one KC column across rows).
    """
    table = read_datashop(path, lesson_outcomes=lesson_outcomes, module_column=module_column)
    df, columns = _read(path)
    kc = [columns[_key(c)] for c in tag_columns] if tag_columns else [c for c in df.columns if _key(c).startswith("kc")]
    # the same module id rule as read_datashop, on the raw rows, then one row per module
    raw = _module_ids(df, columns, module_column, path)[0].to_numpy()
    outcome = df[_column(columns, "Outcome", (), path, "outcome")].str.strip().str.upper()
    mtype = np.where(outcome.isin({str(x).upper() for x in lesson_outcomes}), "lesson", "assessment")
    long = pd.DataFrame({"module_id": raw, "module_type": mtype})
    parts = [df[c].str.strip() for c in kc]
    frame = pd.concat([long] + [p.rename(f"t{i}") for i, p in enumerate(parts)], axis=1)
    out = (frame.melt(id_vars=["module_id", "module_type"], value_name="tag")
           .query("tag != ''").groupby(["module_id", "module_type"])["tag"]
           .agg(lambda s: ";".join(sorted(set(s)))).rename("tags").reset_index())
    present = table[["module_id", "module_type"]].drop_duplicates()
    return present.merge(out, on=["module_id", "module_type"], how="left").fillna({"tags": ""}).reset_index(drop=True)


def _module_ids(df: pd.DataFrame, columns: dict[str, str], module_column: str | None,
                path: PathLike) -> tuple[pd.Series, str]:
    """Every raw row's module id by the rule of `read_datashop`, and the column it came from."""
    if module_column is not None:
        m_col = _column(columns, module_column, (), path, "module")
        return df[m_col].str.strip(), m_col
    m_col = _column(columns, None, ("KC (Default)",), path, "module", required=False)
    if m_col is not None:
        return df[m_col].str.strip(), m_col
    p_col = _column(columns, None, ("Problem Name",), path, "problem")
    st_col = _column(columns, None, ("Step Name",), path, "step", required=False)
    module = df[p_col].str.strip()
    if st_col is not None:
        module = module + " | " + df[st_col].str.strip()
    return module, p_col
