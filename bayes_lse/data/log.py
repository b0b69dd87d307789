"""Reading and validating interaction logs (DESIGN §2).

:func:`read_interactions` turns a CSV file, a Parquet file or a DataFrame into an
:class:`InteractionLog`: the user's table, checked row by row, plus integer codes
and the *ragged, flattened* state layout the model is indexed by. Everything
here is vectorised (no Python loop over rows or students), so logs of hundreds
of thousands of rows are read in about a second.

Bad input raises :class:`~bayes_lse.core.errors.InteractionLogError` naming the
source, the first offending row (file line for CSV: header = line 1; 0-based row
position for Parquet; index label for a DataFrame) and the column.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bayes_lse.core.errors import InteractionLogError

__all__ = ["InteractionLog", "InteractionLogError", "read_interactions"]

#: Columns every log must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("student_id", "module_id", "module_type", "outcome")
#: Columns with a meaning if present.
OPTIONAL_COLUMNS: tuple[str, ...] = ("timestep", "timestamp")
#: Columns :func:`read_interactions` adds; recomputed if the input already has them.
DERIVED_COLUMNS: tuple[str, ...] = ("student", "assessment", "lesson", "source_row")
MODULE_TYPES: tuple[str, ...] = ("assessment", "lesson")

_KNOWN = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_PARQUET_MAGIC = b"PAR1"
# pandas' default missing-value spellings; used for every column except the ids,
# so that a student called "NA" or "None" stays a student.
_NA_STRINGS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
# Above this many states per interaction the timesteps are almost surely not
# step counts (e.g. Unix times put in `timestep`), and the layout would not fit.
_MAX_STATES_PER_ROW = 100
_MIN_STATE_BUDGET = 1_000_000


# --------------------------------------------------------------------------- #
# the result
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False, repr=False)
class InteractionLog:
    """A validated interaction log with integer codes and the ragged state layout.

    Attributes
    ----------
    table : one row per interaction (RangeIndex), in the order read (sorted by
        ``timestamp`` when timesteps were derived from it). Columns
        ``student_id, module_id, module_type`` (``category`` of str: the trimmed
        ids; categories sorted as str sorts, so ``sort_values`` and ``groupby``
        order as for a str column; ``module_type``'s categories are always
        ``['assessment', 'lesson']``. A category column compares, hashes, prints,
        sorts and ``.astype(str)``-converts like the str column it replaces, at a
        fraction of the memory: 25M rows of per-row strings were ~1 GB; only
        ``value_counts(sort=False)`` lists categories, not first-seen order), ``outcome`` (float64 0/1, NaN for lessons), ``timestep`` (int64),
        ``student`` (int32 code into ``students``), ``assessment`` / ``lesson``
        (int32 codes into ``assessments`` / ``lessons``, -1 where not applicable),
        ``source_row`` (int64, the line number for CSV, 0-based row for Parquet,
        index label for a DataFrame), then the user's other columns unchanged.
    students, assessments, lessons : the user's ids (str) in order of first
        appearance; a code is a position in these.
    source : where the log came from (path as given, or ``"<DataFrame>"``).
    state_offset : int64, length ``n_students + 1``; student ``u``'s states
        (timesteps ``0..T_u``) are the flat indices
        ``state_offset[u] .. state_offset[u+1] - 1``. ``T_u`` is the largest
        timestep the student answers at, or one past its last lesson.
    state_student, state_step : int64 per flat state: its student code and timestep.
    timesteps_derived : True when the input had no ``timestep`` column (or an empty
        one) and timesteps were derived from row order or ``timestamp``.
    modules : the modules table given with the log (`data.modules.ModuleTable`: tags and
        groups per module), or None; `with_modules` attaches one.
    """

    table: pd.DataFrame
    students: pd.Index
    assessments: pd.Index
    lessons: pd.Index
    source: str
    state_offset: np.ndarray
    state_student: np.ndarray
    state_step: np.ndarray
    timesteps_derived: bool = False
    modules: Any = None

    def with_modules(self, modules: Any) -> InteractionLog:
        """The same log carrying `modules` (a `ModuleTable`, or None to drop it)."""
        import dataclasses

        return dataclasses.replace(self, modules=modules)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, name: str | None = None) -> InteractionLog:
        """Same as ``read_interactions(df, name=name)``."""
        return read_interactions(df, name=name)

    # ---- sizes ------------------------------------------------------------ #
    @property
    def n_interactions(self) -> int:
        return len(self.table)

    @property
    def n_students(self) -> int:
        return len(self.students)

    @property
    def n_assessments(self) -> int:
        """Number of distinct assessment modules (not assessment rows)."""
        return len(self.assessments)

    @property
    def n_lessons(self) -> int:
        """Number of distinct lesson modules (not lesson rows)."""
        return len(self.lessons)

    @property
    def n_states(self) -> int:
        return int(self.state_offset[-1])

    def mirrored_answer_share(self) -> float:
        """The share of answers that come with a lesson of the same module id, by the same
        student at the same step: 1.0 for a log converted with items as lessons (every
        answered item also a lesson, the original LSE treatment of ASSISTments), 0.0
        where lessons and assessments are different modules."""
        t = self.table
        answers = t[t["module_type"] == "assessment"]
        lessons = t[t["module_type"] == "lesson"]
        if answers.empty or lessons.empty:
            return 0.0
        keys = ["student_id", "module_id", "timestep"]
        les = lessons[keys].astype({"student_id": str, "module_id": str}).drop_duplicates()
        hit = answers[keys].astype({"student_id": str, "module_id": str}).merge(les, on=keys, how="inner")
        return len(hit) / len(answers)

    @property
    def last_step(self) -> np.ndarray:
        """T_u per student (its states are timesteps 0..T_u)."""
        return np.diff(self.state_offset) - 1

    # ---- what the model is indexed by ------------------------------------ #
    @cached_property
    def _assessment_mask(self) -> np.ndarray:
        return self.table["assessment"].to_numpy() >= 0

    @cached_property
    def obs_state(self) -> np.ndarray:
        """Flat state index of every assessment row, in table order of those rows."""
        t = self.table
        m = self._assessment_mask
        out = (
            self.state_offset[t["student"].to_numpy()[m]] + t["timestep"].to_numpy()[m]
        ).astype(np.int64)
        out.flags.writeable = False
        return out

    def assessment_rows(self) -> pd.DataFrame:
        """The observations the likelihood needs, one row per assessment row.

        Columns: ``row`` (position in ``table``), ``student``, ``assessment``
        (codes), ``step`` (timestep), ``state`` (flat state index, equal to
        ``obs_state``), ``outcome`` (int8 0/1). RangeIndex.
        """
        t = self.table
        m = self._assessment_mask
        return pd.DataFrame(
            {
                "row": np.flatnonzero(m).astype(np.int64),
                "student": t["student"].to_numpy()[m].astype(np.int64),
                "assessment": t["assessment"].to_numpy()[m].astype(np.int64),
                "step": t["timestep"].to_numpy()[m],
                "state": np.asarray(self.obs_state),
                "outcome": t["outcome"].to_numpy()[m].astype(np.int8),
            }
        )

    def transitions(self) -> pd.DataFrame:
        """One row per state change t -> t+1, for every student and every t < T_u.

        Columns (int64): ``from_state``, ``to_state`` (flat indices), ``student``,
        ``step`` (= t), ``lesson`` (code of the lesson taken at step t, or -1 when
        the step passes without a lesson: zero mean gain, noise only).
        Ordered by student, then step.
        """
        last = self.last_step
        frm = np.flatnonzero(self.state_step < last[self.state_student])
        lesson_at = np.full(self.n_states, -1, dtype=np.int64)
        t = self.table
        codes = t["lesson"].to_numpy()
        m = codes >= 0
        pos = self.state_offset[t["student"].to_numpy()[m]] + t["timestep"].to_numpy()[m]
        lesson_at[pos] = codes[m]
        return pd.DataFrame(
            {
                "from_state": frm.astype(np.int64),
                "to_state": (frm + 1).astype(np.int64),
                "student": self.state_student[frm],
                "step": self.state_step[frm],
                "lesson": lesson_at[frm],
            },
            copy=False,  # fresh arrays: no second copy (25M rows: 11M states x 5 columns)
        )

    # ---- reporting -------------------------------------------------------- #
    def summary(self) -> dict[str, Any]:
        """Counts, pass rate and history lengths; plain Python numbers (JSON-able)."""
        t = self.table
        m = self._assessment_mask
        n_ass_rows = int(m.sum())
        per_student_ass = np.bincount(t["student"].to_numpy()[m], minlength=self.n_students)
        per_student_les = np.bincount(
            t["student"].to_numpy()[~m], minlength=self.n_students
        )

        def spread(x: np.ndarray) -> dict[str, float]:
            if len(x) == 0:
                return {"min": 0, "median": 0.0, "max": 0}
            return {"min": int(x.min()), "median": float(np.median(x)), "max": int(x.max())}

        return {
            "source": self.source,
            "n_interactions": self.n_interactions,
            "n_students": self.n_students,
            "n_assessments": self.n_assessments,
            "n_lessons": self.n_lessons,
            "n_assessment_rows": n_ass_rows,
            "n_lesson_rows": self.n_interactions - n_ass_rows,
            "n_states": self.n_states,
            "n_transitions": self.n_states - self.n_students,
            "pass_rate": float(t["outcome"].to_numpy()[m].mean()) if n_ass_rows else float("nan"),
            "steps_per_student": spread(self.last_step),
            "assessments_per_student": spread(per_student_ass),
            "lessons_per_student": spread(per_student_les),
        }

    def __repr__(self) -> str:
        return (
            f"InteractionLog({self.source!r}: {self.n_interactions} interactions, "
            f"{self.n_students} students, {self.n_assessments} assessments, "
            f"{self.n_lessons} lessons, {self.n_states} states)"
        )

    def __len__(self) -> int:
        return self.n_interactions


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #
def read_interactions(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    name: str | None = None,
    require_outcomes: bool = True,
) -> InteractionLog:
    """Read, validate and index an interaction log (DESIGN §2).

    ``source`` is a CSV file (any extension that is not Parquet; ``,`` ``;``
    tab or ``|`` separated, optionally gzip/bz2/xz compressed), a Parquet file
    (``.parquet``/``.pq``, or any file starting with the Parquet magic bytes),
    or a DataFrame (never modified). ``name`` replaces the source's name in
    messages and in ``InteractionLog.source``.

    If ``timestep`` is absent or entirely empty it is derived per student: rows
    in ``timestamp`` order if that column exists (stable), else in row order;
    0 at the start, +1 after each lesson.

    Parameters
    ----------
    source : str, path or DataFrame
        The interaction table: one row per interaction with ``student_id``,
        ``module_id``, ``module_type`` (``assessment``/``lesson``), ``outcome`` (0/1
        for assessments) and optionally ``timestep`` / ``timestamp``.
    name : str, optional
        What messages call the source (default: the path, or ``<DataFrame>``).
    require_outcomes : bool, default True
        False for rows to predict: the ``outcome`` column may be missing and an
        assessment's outcome empty (NaN in the table); an outcome that is given must
        still be 0/1.

    Returns
    -------
    InteractionLog
        The validated table with integer codes, the original ids, the ragged state
        layout and the transitions the model is built from.

    Raises
    ------
    InteractionLogError
        On the first problem found, naming the source, the row (line for text
        files) and the column. Lesson rows that carry outcomes only warn
        (``UserWarning``, once): the outcomes are ignored.
    """
    if isinstance(source, pd.DataFrame):
        where = _Where(name or "<DataFrame>", "row", source.index)
        df = source.copy(deep=False)
    else:
        # A plain, well-formed CSV file is read by a lean path (pyarrow, work on the
        # distinct values only); anything unusual or wrong returns None there and is
        # read again here, so every message and warning is the detailed path's.
        log = _read_csv_lean(source, name, require_outcomes)
        if log is not None:
            return log
        df, where = _read_file(source, name)
    return _build(df, where, require_outcomes=require_outcomes)


class _Where:
    """How to name a row in messages, for the rows as currently ordered."""

    def __init__(
        self, source: str, row_kind: Literal["line", "row"], labels: pd.Index | np.ndarray
    ) -> None:
        self.source = source
        self.row_kind = row_kind
        self.integer = pd.api.types.is_integer_dtype(np.asarray(labels).dtype)
        self.labels = np.asarray(labels)
        self.positions = np.arange(len(self.labels), dtype=np.int64)

    def label(self, pos: int) -> Hashable:
        v = self.labels[pos]
        return v.item() if isinstance(v, np.generic) else v

    def error(
        self, problem: str, pos: int | None = None, column: str | None = None
    ) -> InteractionLogError:
        row = None if pos is None else self.label(pos)
        return InteractionLogError(
            self.source, problem, row=row, column=column, row_kind=self.row_kind
        )

    def take(self, order: np.ndarray) -> None:
        self.labels = self.labels[order]
        self.positions = self.positions[order]

    def source_rows(self) -> np.ndarray:
        """Row numbers as the user counts them (positions if the index is not integer)."""
        return self.labels.astype(np.int64) if self.integer else self.positions.copy()


def _read_file(source: str | os.PathLike[str], name: str | None) -> tuple[pd.DataFrame, _Where]:
    path = Path(os.fspath(source))
    src = name or os.fspath(source)
    if not path.exists():
        raise InteractionLogError(src, "no such file")
    if path.is_dir():
        raise InteractionLogError(src, "is a directory, not a CSV or Parquet file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise InteractionLogError(src, f"cannot be opened ({e.strerror or e})") from None
    if not magic:
        raise InteractionLogError(src, "the file is empty")
    if path.suffix.lower() in _PARQUET_SUFFIXES or magic == _PARQUET_MAGIC:
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types; all mean "not Parquet"
            msg = str(e).splitlines()[0] if str(e) else ""
            raise InteractionLogError(
                src, f"is not a readable Parquet table ({type(e).__name__}: {msg})"
            ) from None
        return df, _Where(src, "row", np.arange(len(df), dtype=np.int64))
    return _read_csv(path, src)


_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _read_csv(path: Path, src: str) -> tuple[pd.DataFrame, _Where]:
    """CSV with ids as text, and every data row's file line number kept."""
    opener = _OPENERS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise InteractionLogError(src, f"cannot be read ({e})") from None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif b"\x00" in head:
        raise InteractionLogError(src, "is not a table: it holds binary data, not CSV text")
    else:
        encoding = "utf-8"
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    header = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not header:
        raise InteractionLogError(src, "the file is empty")
    from bayes_lse.data.table import header_columns

    sep, names = header_columns(header)
    text_cols = {n for n in names if n.strip().lower() in REQUIRED_COLUMNS + ("timestep",)}
    id_cols = {n for n in names if n.strip().lower() in ("student_id", "module_id")}
    na_values = {n: ([""] if n in id_cols else _NA_STRINGS) for n in names}
    kwargs: dict[str, Any] = dict(
        sep=sep,
        dtype={n: str for n in text_cols},
        keep_default_na=False,
        na_values=na_values,
        encoding=encoding,
    )
    try:
        df = pd.read_csv(path, skip_blank_lines=False, **kwargs)
    except pd.errors.EmptyDataError:
        raise InteractionLogError(src, "the file is empty") from None
    except UnicodeDecodeError as e:
        raise InteractionLogError(
            src, f"is not a text table: byte {e.start} is not UTF-8 (save the file as UTF-8)"
        ) from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError, lzma.LZMAError) as e:
        from bayes_lse.data.table import fix_parser_message, parser_error_line

        msg = " ".join(str(e).split())
        if isinstance(e, pd.errors.ParserError):  # pandas counts records there, not lines
            msg = fix_parser_message(msg, parser_error_line(path, msg, sep=sep, encoding=encoding))
        raise InteractionLogError(src, f"cannot be parsed as CSV ({msg})") from None
    from bayes_lse.data.table import data_lines

    # The file line of every data row (line 1 is the header), also after a quoted
    # field that spans lines (issue 19 item 17). Blank lines come in as all-missing
    # rows (skip_blank_lines=False) so they are counted; drop them now.
    lines = data_lines(path, len(df), sep=sep, encoding=encoding)
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        lines = lines[~blank]
        # Read again skipping blank lines, so that column types come out as
        # pandas infers them without the blanks (an int column stays int).
        again = pd.read_csv(path, skip_blank_lines=True, **kwargs)
        df = again if len(again) == len(lines) else df.loc[~blank].reset_index(drop=True)
    return df, _Where(src, "line", lines)


def _read_csv_lean(
    source: str | os.PathLike[str], name: str | None, require_outcomes: bool
) -> InteractionLog | None:
    """The lean path (issue 16, bayes_lse/data/fastread.py): a plain, well-formed CSV
    file read as int32 codes per column, every check and parse below run on the
    distinct values only. None, to read the file by the detailed path, as soon as
    anything is unusual or wrong (an error, a warning, a check that fails): so every
    message and warning is the detailed path's. Its log equals the detailed path's
    (tests/data/test_fastread.py)."""
    from bayes_lse.data.fastread import read_csv_codes

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read = read_csv_codes(
                source, required=REQUIRED_COLUMNS, optional=("timestep",), na_strings=_NA_STRINGS,
                skip_suffixes=_PARQUET_SUFFIXES, skip_magic=_PARQUET_MAGIC,
            )
            log = None if read is None else _build_lean(*read, name or os.fspath(source), require_outcomes)
    except Exception:  # noqa: BLE001 - anything at all: the detailed path says what
        return None
    return None if caught else log


def _build_lean(
    columns: dict[str, tuple[np.ndarray, pd.Series]], n: int, src: str, require_outcomes: bool
) -> InteractionLog | None:
    """`_build` for `_read_csv_lean`'s codes; None where `_build` would raise or warn."""
    from bayes_lse.data.fastread import _codes_among, _two_lessons_at_one_step

    # ids: trimmed text, none empty, no two spellings of one id
    sc, sv = columns.pop("student_id")
    mc, mv = columns.pop("module_id")
    students = _parse_ids(sv)
    modules = _parse_ids(mv)
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
    out_val, out_present = _parse_outcome(ov)
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
            step_val, _, step_ok = _parse_timestep(stv)
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
    if n_states > max(_MAX_STATES_PER_ROW * n, _MIN_STATE_BUDGET):
        return None
    sizes = last + 1
    state_offset = np.zeros(n_students + 1, dtype=np.int64)
    np.cumsum(sizes, out=state_offset[1:])
    state_student = np.repeat(np.arange(n_students, dtype=np.int64), sizes)
    state_step = np.arange(n_states, dtype=np.int64) - state_offset[state_student]

    student_ids = pd.Index(students.array, dtype="str", name="student_id")
    out = make_table(
        student, student_ids.rename(None), mc,
        pd.Index(module_ids, dtype="str"), is_lesson, outcome, timestep,
        assessment, lesson, np.arange(2, n + 2, dtype=np.int64),
    )
    for a in (state_offset, state_student, state_step):
        a.flags.writeable = False
    return InteractionLog(
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


# --------------------------------------------------------------------------- #
# validation and indexing
# --------------------------------------------------------------------------- #
def _build(df: pd.DataFrame, where: _Where, *, require_outcomes: bool = True) -> InteractionLog:
    df = _normalise_columns(df, where)
    n = len(df)
    if not require_outcomes and "outcome" not in df.columns and any(c in df.columns for c in REQUIRED_COLUMNS):
        df = df.assign(outcome=np.nan)  # rows to predict need no outcome

    present = [c for c in REQUIRED_COLUMNS if c in df.columns]
    found = ", ".join(repr(str(c)) for c in list(df.columns)[:12])
    if len(df.columns) > 12:
        found += f", ... ({len(df.columns)} columns)"
    if not present:
        raise where.error(
            "is not a table of interactions: none of the required columns "
            f"{', '.join(map(repr, REQUIRED_COLUMNS))} (found {found or 'no columns'})"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise where.error(
            f"missing required column(s) {', '.join(map(repr, missing))} (found {found})"
        )
    if n == 0:
        raise where.error("no interactions (the table has a header but no rows)")

    sid = _parse_ids(df["student_id"])
    mid = _parse_ids(df["module_id"])
    for column in ("student_id", "module_id"):
        _warn_merged_ids(df[column], column, where)
    mtype = df["module_type"].astype("str").str.strip().str.lower()
    is_assess = (mtype == "assessment").to_numpy()
    is_lesson = (mtype == "lesson").to_numpy()
    out_val, out_present = _parse_outcome(df["outcome"])
    out_ok = (out_val == 0.0) | (out_val == 1.0)

    explicit = "timestep" in df.columns and not df["timestep"].isna().all()
    if explicit:
        step_val, step_present, step_ok = _parse_timestep(df["timestep"])

    # First bad row over all row-wise checks; ties go to the leftmost column.
    checks: list[tuple[np.ndarray, str]] = [
        (sid.isna().to_numpy(), "student_id"),
        (mid.isna().to_numpy(), "module_id"),
        (~(is_assess | is_lesson), "module_type"),
        (is_assess & ~out_ok & (out_present | require_outcomes), "outcome"),
    ]
    if explicit:
        checks.append((~step_ok, "timestep"))
    firsts = [(int(np.argmax(bad)), k) for k, (bad, _) in enumerate(checks) if bad.any()]
    if firsts:
        pos, k = min(firsts)
        col = checks[k][1]
        raw = df[col].iloc[pos]
        if col in ("student_id", "module_id"):
            problem = f"{col} is empty"
        elif col == "module_type":
            problem = (
                "module_type is empty; expected 'assessment' or 'lesson'"
                if _is_blank(raw)
                else f"module_type must be 'assessment' or 'lesson', got {_show(raw)}"
            )
        elif col == "outcome":
            problem = (
                "assessment needs a 0/1 outcome, but it is empty"
                if _is_blank(raw)
                else f"assessment needs a 0/1 outcome, got {_show(raw)}"
            )
        else:
            problem = (
                "timestep is empty (fill it on every row, or drop the column to derive it)"
                if _is_blank(raw)
                else f"timestep must be an integer >= 0, got {_show(raw)}"
            )
        raise where.error(problem, pos, col)

    lesson_with_outcome = is_lesson & out_present
    if lesson_with_outcome.any():
        first = int(np.argmax(lesson_with_outcome))
        warnings.warn(
            f"{where.source}: {int(lesson_with_outcome.sum())} lesson row(s) have an "
            f"outcome, which is ignored (first: {where.row_kind} {where.label(first)})",
            UserWarning,
            skip_file_prefixes=(os.path.dirname(__file__) + os.sep,),
        )
    outcome = np.where(is_assess, out_val, np.nan)

    extras = [
        c for c in df.columns if c not in REQUIRED_COLUMNS + ("timestep",) + DERIVED_COLUMNS
    ]
    # Id columns stay Arrow-backed Series: `.to_numpy()` would make one Python string
    # per row and column (~150 MB on ASSISTments' 536k rows).
    cols: dict[str, Any] = {
        "student_id": sid.reset_index(drop=True),
        "module_id": mid.reset_index(drop=True),
        "module_type": mtype.reset_index(drop=True),
        "outcome": outcome,
    }

    if explicit:
        timestep = step_val.astype(np.int64)
    else:
        order = _timestamp_order(df, where) if "timestamp" in df.columns else None
        if order is not None:
            cols = {
                k: v.iloc[order].reset_index(drop=True) if isinstance(v, pd.Series) else v[order]
                for k, v in cols.items()
            }
            is_lesson, is_assess = is_lesson[order], is_assess[order]
            df = df.iloc[order]
            where.take(order)

    student, students = pd.factorize(cols["student_id"])
    student = student.astype(np.int64)

    if not explicit:
        lesson_int = is_lesson.astype(np.int64)
        timestep = (
            pd.Series(lesson_int).groupby(student, sort=False).cumsum().to_numpy() - lesson_int
        )
    else:
        _check_one_lesson_per_step(student, timestep, is_lesson, cols["student_id"], where)

    assessment = np.full(n, -1, dtype=np.int64)
    codes, assessments = pd.factorize(cols["module_id"][is_assess])
    assessment[is_assess] = codes
    lesson = np.full(n, -1, dtype=np.int64)
    codes, lessons = pd.factorize(cols["module_id"][is_lesson])
    lesson[is_lesson] = codes

    # Ragged state layout: T_u = max(timestep of answers, timestep + 1 of lessons).
    end = timestep + is_lesson
    last = np.zeros(len(students), dtype=np.int64)
    np.maximum.at(last, student, end)
    n_states = int(last.sum()) + len(students)
    budget = max(_MAX_STATES_PER_ROW * n, _MIN_STATE_BUDGET)
    if n_states > budget:
        pos = int(np.argmax(end))
        raise where.error(
            f"timestep {int(timestep[pos])} is far too large: these timesteps would need "
            f"{n_states} states for {n} interactions. A timestep counts lessons taken "
            "(put clock times in 'timestamp' instead)",
            pos,
            "timestep",
        )
    sizes = last + 1
    state_offset = np.zeros(len(students) + 1, dtype=np.int64)
    np.cumsum(sizes, out=state_offset[1:])
    state_student = np.repeat(np.arange(len(students), dtype=np.int64), sizes)
    state_step = np.arange(n_states, dtype=np.int64) - state_offset[state_student]

    m_codes, m_uniques = pd.factorize(cols["module_id"])
    table = make_table(
        student, pd.Index(students, dtype="str"), m_codes, pd.Index(m_uniques, dtype="str"),
        is_lesson, cols["outcome"], timestep, assessment, lesson, where.source_rows(),
    )
    if extras:
        table = pd.concat([table, df[extras].reset_index(drop=True)], axis=1)

    for arr in (state_offset, state_student, state_step):
        arr.flags.writeable = False
    return InteractionLog(
        table=table,
        students=pd.Index(students, dtype="str", name="student_id"),
        assessments=pd.Index(assessments, dtype="str", name="assessment"),
        lessons=pd.Index(lessons, dtype="str", name="lesson"),
        source=where.source,
        state_offset=state_offset,
        state_student=state_student,
        state_step=state_step,
        timesteps_derived=not explicit,
    )


#: ``module_type``'s categories in the table, whatever the input.
_MODULE_TYPE_CATEGORIES = pd.Index(list(MODULE_TYPES), dtype="str")


def _category(codes: np.ndarray, categories: pd.Index) -> pd.Categorical:
    """Values ``categories[codes]`` as a category column whose categories are sorted as
    the str column's values sort, so that ``sort_values`` and ``groupby`` (sort=True)
    order rows and groups as they did for the str column."""
    order = np.asarray(categories.argsort(), dtype=np.int64)
    if not np.array_equal(order, np.arange(len(order))):
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        codes = rank[codes]
        categories = categories[order]
    dtype = pd.CategoricalDtype(categories=categories, ordered=False)
    return pd.Categorical.from_codes(np.asarray(codes), dtype=dtype, validate=False)


def make_table(
    student: np.ndarray,
    students: pd.Index,
    module: np.ndarray,
    modules: pd.Index,
    is_lesson: np.ndarray,
    outcome: np.ndarray,
    timestep: np.ndarray,
    assessment: np.ndarray,
    lesson: np.ndarray,
    source_row: np.ndarray,
) -> pd.DataFrame:
    """The table's first nine columns (see `InteractionLog`), from codes: ``student``
    into ``students`` and ``module`` into ``modules`` (the trimmed ids, in order of
    first appearance). Shared by the detailed and the lean CSV path so that both
    give the same dtypes."""
    return pd.DataFrame(
        {
            "student_id": _category(student, students),
            "module_id": _category(module, modules),
            "module_type": _category(np.asarray(is_lesson, dtype=np.int8), _MODULE_TYPE_CATEGORIES),
            "outcome": np.asarray(outcome, dtype=np.float64),
            "timestep": np.asarray(timestep, dtype=np.int64),
            "student": np.asarray(student, dtype=np.int32),
            "assessment": np.asarray(assessment, dtype=np.int32),
            "lesson": np.asarray(lesson, dtype=np.int32),
            "source_row": np.asarray(source_row, dtype=np.int64),
        },
        copy=False,  # the arrays are the caller's own, made for this table: no second copy
    )


def _normalise_columns(df: pd.DataFrame, where: _Where) -> pd.DataFrame:
    """Known columns matched ignoring case and surrounding spaces; derived ones dropped."""
    rename: dict[Hashable, str] = {}
    seen: dict[str, Hashable] = {}
    for c in df.columns:
        if not isinstance(c, str):
            continue
        key = c.strip().lower()
        if key in _KNOWN:
            if key in seen:
                raise where.error(
                    f"two columns mean {key!r}: {seen[key]!r} and {c!r}", column=key
                )
            seen[key] = c
            if c != key:
                rename[c] = key
    if rename:
        df = df.rename(columns=rename)
    derived = [c for c in DERIVED_COLUMNS if c in df.columns]
    if derived:
        if len(derived) < len(DERIVED_COLUMNS):  # not a table we produced: say so
            warnings.warn(
                f"{where.source}: column(s) {', '.join(map(repr, derived))} are recomputed "
                "by bayes-lse; the input's values are replaced",
                UserWarning,
                skip_file_prefixes=(os.path.dirname(__file__) + os.sep,),
            )
        df = df.drop(columns=derived)
    return df


def _parse_ids(s: pd.Series) -> pd.Series:
    """Ids as stripped strings (NaN where empty); whole floats lose their '.0'."""
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(v)
        if np.all(v[ok] == np.round(v[ok])):
            out = np.full(len(v), np.nan, dtype=object)
            whole = v[ok]
            # beyond int64 the cast overflowed: 1e20 and 2e20 both became '-9223372036854775808'
            # (found by tests/data/test_log_properties.py); Python ints have no limit
            small = np.abs(whole) < 2.0**62
            text = np.empty(len(whole), dtype=object)
            text[small] = whole[small].astype(np.int64).astype(str)
            text[~small] = [str(int(x)) for x in whole[~small]]
            out[ok] = text
            s = pd.Series(out, index=s.index)
    s = s.astype("str").str.strip()
    return s.where(s != "")


def _warn_merged_ids(raw: pd.Series, column: str, where: Any) -> None:
    """Ids are compared as trimmed text (DESIGN §2), so 1, '1' and ' 1' are one student.
    That is the rule, but it must not be silent (issue 19 item 18): warn, once, naming
    the column and a few of the raw values that became one id."""
    if isinstance(raw.dtype, pd.StringDtype):  # distinct values first: no Python str per row
        uniques = pd.Series(np.asarray(pd.unique(raw.array), dtype=object), dtype=object)
    else:
        uniques = pd.Series(pd.unique(raw.to_numpy(dtype=object)), dtype=object)
    if len(uniques) < 2:
        return
    parsed = _parse_ids(uniques)
    groups = pd.DataFrame({"raw": uniques, "id": parsed}).dropna().groupby("id")["raw"]
    sizes = groups.size()
    merged = sizes[sizes > 1]
    if not len(merged):
        return
    first = merged.index[0]
    shown = ", ".join(repr(v) for v in groups.get_group(first).tolist()[:4])
    warnings.warn(
        f"{where.source}: column {column!r}: {len(merged)} id(s) were written in several ways that count as one "
        f"(ids are compared as trimmed text), e.g. {shown} -> {first!r}",
        UserWarning,
        stacklevel=4,
    )


def _parse_outcome(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(value, present): value 0.0/1.0 where readable (else NaN or the number read)."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        return v, ~np.isnan(v)
    t = s.astype("str").str.strip().str.lower()
    present = (t.notna() & (t != "")).to_numpy()
    num = pd.to_numeric(t, errors="coerce")
    word = t.map({"true": 1.0, "false": 0.0})
    v = num.where(num.notna(), word).to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    v[~present] = np.nan
    return v, present


def _parse_timestep(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, present, ok): ok where a whole number >= 0."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        if pd.api.types.is_integer_dtype(s.dtype) and not s.hasnans:
            v = s.to_numpy(dtype=np.int64)
            return v, np.ones(len(v), bool), v >= 0
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(v)
    else:
        t = s.astype("str").str.strip()
        present = (t.notna() & (t != "")).to_numpy()
        v = pd.to_numeric(t, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (v >= 0) & (v == np.floor(v)) & (v < 2**62)
    return np.where(ok, v, 0).astype(np.int64), present, ok


def _timestamp_order(df: pd.DataFrame, where: _Where) -> np.ndarray | None:
    """Stable order of rows by `timestamp` (numbers or ISO dates); None if all empty."""
    s = df["timestamp"]
    if s.isna().all():
        return None
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        key = s
        bad = s.isna().to_numpy()
    else:
        t = s.astype("str").str.strip()
        blank = (t.isna() | (t == "")).to_numpy()
        num = pd.to_numeric(t, errors="coerce")
        if not (num.isna().to_numpy() & ~blank).any():
            key = num
        else:
            key = pd.to_datetime(t, format="ISO8601", utc=True, errors="coerce")
        bad = key.isna().to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        raw = s.iloc[pos]
        problem = (
            "timestamp is empty (needed to order this student's rows)"
            if _is_blank(raw)
            else f"timestamp must be a number or an ISO date/time, got {_show(raw)}"
        )
        raise where.error(problem, pos, "timestamp")
    key = key.reset_index(drop=True)
    return key.sort_values(kind="stable").index.to_numpy()


def _check_one_lesson_per_step(
    student: np.ndarray,
    timestep: np.ndarray,
    is_lesson: np.ndarray,
    student_id: np.ndarray,
    where: _Where,
) -> None:
    """A step moves a student through one lesson; two would make the update ambiguous."""
    idx = np.flatnonzero(is_lesson)
    if len(idx) < 2:
        return
    keys = pd.DataFrame({"s": student[idx], "t": timestep[idx]})
    dup = keys.duplicated(keep="first").to_numpy()
    if not dup.any():
        return
    pos = int(idx[np.argmax(dup)])
    same = (student[idx] == student[pos]) & (timestep[idx] == timestep[pos])
    first = int(idx[np.argmax(same)])
    raise where.error(
        f"student {student_id[pos]!r} already has a lesson at timestep {int(timestep[pos])} "
        f"({where.row_kind} {where.label(first)}); one step holds at most one lesson",
        pos,
        "timestep",
    )


def _is_blank(v: Any) -> bool:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, str) and not v.strip()


def _show(v: Any, width: int = 40) -> str:
    """A user value quoted for a one-line message."""
    if isinstance(v, np.generic):
        v = v.item()
    r = repr(v)
    return r if len(r) <= width else r[: width - 3] + "..."
