"""Readers that turn public knowledge-tracing formats into the DESIGN §2 table.

Every reader returns a DataFrame with columns ``student_id`` (str), ``module_id``
(str), ``module_type`` ("assessment"/"lesson"), ``outcome`` (float 1.0/0.0 for
assessments, NaN for lessons), ``timestep`` (int64: 0 at each student's first row,
+1 after each lesson row) and, when the source has one, ``timestamp`` (int64 ms).
Rows are grouped by student (in the order students first appear in the input)
and in time order within a student.

Malformed input raises :class:`bayes_lse.core.errors.InteractionLogError` with the
file, the 1-based line number as a text editor counts it, and the column.

Choices (also in each function's docstring):

* ASSISTments DKT: students are ``s1, s2, ...`` by block order in the file
  (``student_prefix`` changes the ``s``); module ids are the item ids as written.
  :func:`convert` given several DKT files prefixes each with its file stem
  (``<stem>-s1``) so train/test students never collide.
* EdNet-KT4: one graded assessment per question per submitted bundle, graded on
  the LAST ``respond`` before the ``submit`` (the answer the user actually
  submitted); responds that are never submitted are dropped. Lectures (``enter``
  of ``l…``) are lessons; explanations (``enter`` of ``e…``) only with
  ``explanations_as_lessons=True``.
* Riiid: module ids ``q<content_id>`` / ``l<content_id>`` since question and
  lecture ids overlap; rows ordered by (user, timestamp, file order).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bayes_lse.data.table import (PathLike, data_lines, finish_table, finish_table_codes, fix_parser_message,
                                  parser_error_line, reader_error)

__all__ = [
    "FORMATS",
    "convert",
    "read_assistments_dkt",
    "read_ednet_kt4",
    "read_riiid",
    "sniff_format",
]
# read_datashop lives in data/datashop.py (it uses this module's table assembly)


FORMATS: dict[str, str] = {
    "assistments-dkt": (
        "ASSISTments DKT 3-line files (length / item ids / 0-1 correctness per student); "
        "option items_as_lessons=True also makes every answered item a lesson"
    ),
    "ednet-kt4": (
        "EdNet-KT4 per-user action logs u<N>.csv (or a folder of them) plus questions.csv "
        "(and optionally lectures.csv) given as inputs or found beside the user files; "
        "option explanations_as_lessons=True"
    ),
    "riiid": (
        "Riiid Answer Correctness Prediction train.csv (questions -> assessments q<id>, "
        "lectures -> lessons l<id>); optional questions.csv among the inputs"
    ),
    "datashop": (
        "DataShop transaction export (tab- or comma-separated): CORRECT/INCORRECT/HINT -> "
        "assessments, STUDY -> lessons (option lesson_outcomes), module = KC (Default) "
        "(option module_column, e.g. 'KC (Cluster)')"
    ),
}

COLUMNS = ["student_id", "module_id", "module_type", "outcome", "timestep"]


# ---------------------------------------------------------------- ASSISTments DKT


def _dkt_values(line: str) -> list[str]:
    """Split a DKT value line; trailing commas and surrounding spaces are tolerated."""
    text = line.strip().rstrip(",").strip()
    if not text:
        return []
    values = text.split(",")
    if " " in text or "\t" in text:
        values = [v.strip() for v in values]
    return values


def read_assistments_dkt(path: PathLike, *, items_as_lessons: bool = False,
                         student_prefix: str = "s") -> pd.DataFrame:
    """Read a DKT 3-line file (length, item ids, 0/1 correctness per student).

    Students are named ``<student_prefix><k>`` with k = 1, 2, ... in file order
    (the format has no ids). Every answer is an assessment at timestep 0, since the
    file holds no lessons. ``items_as_lessons=True`` reproduces the original LSE
    code: each answered item is also a lesson (same module id) right after its
    assessment row, so answer i of a student is at timestep i.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise reader_error(f"not a UTF-8 text file ({exc.reason})", source=path) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()

    n_full = len(lines) // 3
    lengths = np.zeros(n_full, dtype=np.int64)
    # Each block's item ids and marks are checked one block at a time and kept as one
    # comma-joined line; Arrow splits and encodes them all at once below. A Python
    # string per item (268k on ASSISTments) left ~20 MB of interpreter memory behind
    # that a MAP fit could not get back (issue 7).
    item_chunks: list[str] = []
    outcome_chunks: list[str] = []
    for b in range(n_full):
        i = 3 * b  # 0-based index of the length line
        head = lines[i].strip().rstrip(",").strip()
        try:
            length = int(head)
        except ValueError:
            raise reader_error(f"sequence length {head!r} is not an integer (a DKT file has 3 lines "
                         "per student: length, item ids, correctness)",
                         source=path, row=i + 1, column="sequence length") from None
        if length < 0:
            raise reader_error(f"sequence length {length} is negative", source=path, row=i + 1,
                         column="sequence length")
        ids = _dkt_values(lines[i + 1])
        if len(ids) != length:
            raise reader_error(f"{len(ids)} item ids but the sequence length on line {i + 1} is {length}",
                         source=path, row=i + 2, column="item ids")
        if "" in ids:
            raise reader_error(f"item id {ids.index('') + 1} is empty", source=path, row=i + 2,
                         column="item ids")
        marks = _dkt_values(lines[i + 2])
        if len(marks) != length:
            raise reader_error(f"{len(marks)} correctness values but the sequence length on line "
                         f"{i + 1} is {length}", source=path, row=i + 3, column="correctness")
        joined = "".join(marks)
        if len(joined) != length or joined.strip("01"):
            bad = next(k for k, v in enumerate(marks) if v not in ("0", "1"))
            raise reader_error(f"correctness value {bad + 1} is {marks[bad]!r}, expected 0 or 1",
                         source=path, row=i + 3, column="correctness")
        lengths[b] = length
        if length:
            item_chunks.append(",".join(ids))
        outcome_chunks.append(joined)
        del ids, marks
    if len(lines) % 3:
        start = 3 * n_full + 1
        raise reader_error(f"truncated final block: the student starting on line {start} has "
                     f"{len(lines) % 3} of its 3 lines (length, item ids, correctness)",
                     source=path, row=start, column=None)
    del lines, text

    n = int(lengths.sum())
    if n == 0:  # a header-only table that `fit` would then reject (issue 19 item 13)
        raise reader_error("no answers in the file (an empty DKT file, or every student has length 0)",
                           source=path)
    outcome = (np.frombuffer("".join(outcome_chunks).encode("ascii"), dtype=np.uint8) == ord("1"))
    del outcome_chunks
    # item ids: split by Arrow, numbered in order of first appearance (as pd.factorize)
    items = pc.split_pattern(pa.array([",".join(item_chunks)], type=pa.large_string()), ",").flatten()
    del item_chunks
    encoded = items.dictionary_encode() if n else pa.array([], type=pa.string()).dictionary_encode()
    m_codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    m_uniques = encoded.dictionary.to_pylist()
    del items, encoded
    s_codes = np.repeat(np.arange(n_full, dtype=np.int64), lengths)
    # students without answers have no rows: number the others in order (as pd.factorize would)
    with_rows = np.flatnonzero(lengths > 0)
    s_codes = np.searchsorted(with_rows, s_codes)
    s_uniques = [f"{student_prefix}{k + 1}" for k in with_rows]
    if not items_as_lessons:
        return finish_table_codes(s_codes, s_uniques, m_codes, m_uniques, np.zeros(n, dtype=bool),
                             outcome.astype(np.float64))
    # Interleave: assessment of answer j at row 2j, its lesson at row 2j+1.
    return finish_table_codes(np.repeat(s_codes, 2), s_uniques, np.repeat(m_codes, 2), m_uniques,
                         np.tile(np.array([False, True]), n),
                         np.repeat(outcome.astype(np.float64), 2))


# ---------------------------------------------------------------- CSV helpers


def _read_csv(path: PathLike, required: Sequence[str], what: str, **kwargs: Any) -> pd.DataFrame:
    """Read a CSV, turning parser failures and missing columns into one-line errors."""
    try:
        df = pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise reader_error(f"{what} file not found", source=path) from None
    except pd.errors.EmptyDataError:
        raise reader_error(f"{what} file is empty", source=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        # pandas numbers records there; the file line differs after a field spanning lines
        line = parser_error_line(path, msg) if isinstance(exc, pd.errors.ParserError) else None
        raise reader_error(f"cannot parse {what} CSV: {fix_parser_message(msg, line)}", source=path,
                     row=line) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise reader_error(f"{what} file lacks column(s) {', '.join(map(repr, missing))}; "
                     f"it has {', '.join(map(repr, df.columns))}", source=path, row=1,
                     column=missing[0])
    return df


def _line(path: PathLike, n_rows: int, row: int) -> int:
    """The file line of data row `row` (0-based, as pandas read the file, skipping blank
    lines): worked out only when an error names it (issue 19 item 17)."""
    return int(data_lines(path, n_rows, skip_blank=True)[row])


def _integers(df: pd.DataFrame, column: str, path: PathLike) -> np.ndarray:
    """Column as int64, or an error naming the first line whose value is not an integer."""
    col = df[column]
    if pd.api.types.is_integer_dtype(col.dtype) and not col.isna().any():
        return col.to_numpy(dtype=np.int64)
    num = pd.to_numeric(col, errors="coerce")
    arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(arr) | (arr != np.round(arr))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        value = col.iloc[k]
        shown = "empty" if pd.isna(value) else repr(str(value))
        raise reader_error(f"{column} is {shown}, expected an integer", source=path,
                     row=_line(path, len(df), k), column=column)
    return arr.astype(np.int64)


# ---------------------------------------------------------------- EdNet-KT4


def _ednet_user_files(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Expand folders to their ``u<N>.csv`` files (sorted by N); keep listed files as given."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [f for f in p.iterdir() if f.is_file() and re.fullmatch(r"u\d+\.csv", f.name)]
            if not found:
                raise reader_error("folder holds no EdNet-KT4 user files (u<N>.csv)", source=p)
            files.extend(sorted(found, key=lambda f: int(f.stem[1:])))
        else:
            files.append(p)
    if not files:
        raise reader_error("no EdNet-KT4 user files given")
    return files


def read_ednet_kt4(paths: PathLike | Iterable[PathLike], *, questions: PathLike,
                   lectures: PathLike | None = None,
                   explanations_as_lessons: bool = False) -> pd.DataFrame:
    """Read EdNet-KT4 user logs into the §2 table; student id = file stem (``u1``).

    Assessments: a question is graded once per submitted bundle, on the LAST
    ``respond`` to it before the bundle's ``submit`` — users change their choice
    before submitting and only the submitted answer is the one EdNet grades
    (KT1 records exactly that). Responds never followed by a submit of their
    bundle (abandoned) are dropped. A blank answer is graded wrong. The row keeps
    that last respond's timestamp.
    Lessons: each ``enter`` of a lecture (``l…``), and with
    ``explanations_as_lessons`` each ``enter`` of an explanation (``e…``).
    ``lectures``, if given, is used to check that every entered lecture exists.
    """
    files = _ednet_user_files(paths)
    qdf = _read_csv(questions, ["question_id", "correct_answer"], "EdNet questions",
                    dtype=str, keep_default_na=False)
    qdf["question_id"] = qdf["question_id"].str.strip()
    correct = dict(zip(qdf["question_id"], qdf["correct_answer"].str.strip().str.lower()))
    bundle_of = (dict(zip(qdf["question_id"], qdf["bundle_id"].str.strip()))
                 if "bundle_id" in qdf.columns else None)
    known_lectures: set[str] | None = None
    if lectures is not None:
        ldf = _read_csv(lectures, ["lecture_id"], "EdNet lectures", dtype=str,
                        keep_default_na=False)
        known_lectures = set(ldf["lecture_id"].str.strip())

    parts: list[pd.DataFrame] = []
    for f in files:
        df = _read_csv(f, ["timestamp", "action_type", "item_id", "user_answer"],
                       "EdNet-KT4 user log",
                       usecols=lambda c: c.strip() in ("timestamp", "action_type", "item_id",
                                                       "user_answer"),
                       dtype={"action_type": str, "item_id": str, "user_answer": str})
        ts = _integers(df, "timestamp", f)
        action = df["action_type"].fillna("").str.strip().to_numpy(dtype=object)
        item = df["item_id"].fillna("").str.strip().to_numpy(dtype=object)
        answer = df["user_answer"].fillna("").str.strip().str.lower().to_numpy(dtype=object)
        line = np.arange(len(df), dtype=np.int64)  # row positions; _line gives the file line
        order = np.argsort(ts, kind="stable")  # logs are time-ordered; be safe if not
        ts, action, item, answer, line = ts[order], action[order], item[order], answer[order], line[order]
        parts.append(_ednet_one_user(f, ts, action, item, answer, line, correct, bundle_of,
                                     known_lectures, explanations_as_lessons))
    if not parts:
        return finish_table([], [], np.zeros(0, bool), np.zeros(0), np.zeros(0, np.int64))
    out = pd.concat(parts, ignore_index=True)
    return finish_table(out["student_id"], out["module_id"], out["is_lesson"].to_numpy(),
                   out["outcome"].to_numpy(), out["timestamp"].to_numpy())


def _ednet_one_user(path: Path, ts: np.ndarray, action: np.ndarray, item: np.ndarray,
                    answer: np.ndarray, line: np.ndarray, correct: dict[str, str],
                    bundle_of: dict[str, str] | None, known_lectures: set[str] | None,
                    explanations_as_lessons: bool) -> pd.DataFrame:
    """One user's rows (already time-sorted) → assessment and lesson rows in time order."""
    is_submit = action == "submit"
    is_respond = action == "respond"
    # Index of the submit that closes each row: submits strictly before it.
    closing = np.cumsum(is_submit) - is_submit
    submit_items = item[is_submit]

    r = np.flatnonzero(is_respond)
    if len(r):
        r_item = item[r]
        not_q = np.array([not s.startswith("q") for s in r_item], dtype=bool)
        if not_q.any():
            k = r[np.flatnonzero(not_q)[0]]
            raise reader_error(f"respond action on {item[k]!r}, which is not a question (q…)",
                         source=path, row=_line(path, len(line), int(line[k])), column="item_id")
        unknown = np.array([s not in correct for s in r_item], dtype=bool)
        if unknown.any():
            k = r[np.flatnonzero(unknown)[0]]
            raise reader_error(f"question {item[k]!r} is not in questions.csv, so it cannot be graded",
                         source=path, row=_line(path, len(line), int(line[k])), column="item_id")
        c = closing[r]
        submitted = c < len(submit_items)
        if bundle_of is not None:
            submitted &= np.array([ok and bundle_of.get(q) == submit_items[ci] if ok else False
                                   for q, ci, ok in zip(r_item, c, submitted)], dtype=bool)
        r, c = r[submitted], c[submitted]
        # Keep the last respond per (closing submit, question).
        last = ~pd.DataFrame({"c": c, "q": item[r]}).duplicated(keep="last").to_numpy()
        r = r[last]
    a_outcome = np.array([ans == correct[q] for q, ans in zip(item[r], answer[r])],
                         dtype=np.float64)

    is_enter = action == "enter"
    first = np.array([s[:1] for s in item], dtype=object)
    lesson_mask = is_enter & (first == "l")
    if known_lectures is not None:
        for k in np.flatnonzero(lesson_mask):
            if item[k] not in known_lectures:
                raise reader_error(f"lecture {item[k]!r} is not in lectures.csv", source=path,
                             row=_line(path, len(line), int(line[k])), column="item_id")
    if explanations_as_lessons:
        lesson_mask |= is_enter & (first == "e")
    les = np.flatnonzero(lesson_mask)

    rows = np.r_[r, les]
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    is_lesson = np.r_[np.zeros(len(r), bool), np.ones(len(les), bool)][order]
    outcome = np.r_[a_outcome, np.full(len(les), np.nan)][order]
    return pd.DataFrame({
        "student_id": path.stem,
        "module_id": pd.Series(item[rows], dtype=object),
        "is_lesson": is_lesson,
        "outcome": outcome,
        "timestamp": ts[rows],
    })


# ---------------------------------------------------------------- Riiid


def read_riiid(path: PathLike | Sequence[PathLike], *,
               questions: PathLike | None = None) -> pd.DataFrame:
    """Read the Riiid ``train.csv`` schema into the §2 table.

    Questions (content_type_id 0) become assessments ``q<content_id>`` scored by
    ``answered_correctly``; lectures (1) become lessons ``l<content_id>`` — the
    prefixes keep question 5 and lecture 5 apart. Student ids are the user_id
    numbers as strings. Rows are ordered by (user first appearance, timestamp,
    file order), so the questions of one task container keep their order.
    ``questions`` (Riiid questions.csv), if given, checks every question id and
    grades ``user_answer`` against ``correct_answer`` when the file lacks
    ``answered_correctly`` (as the Kaggle test files do).
    Several paths are read as one table (a user may span files).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    base = ["timestamp", "user_id", "content_id", "content_type_id"]
    frames = []
    for p in paths:
        df = _read_csv(p, base, "Riiid",
                       usecols=lambda c: c.strip() in base + ["answered_correctly", "user_answer"])
        frames.append((p, df))

    qcorrect: dict[int, int] | None = None
    if questions is not None:
        qdf = _read_csv(questions, ["question_id", "correct_answer"], "Riiid questions")
        qcorrect = dict(zip(_integers(qdf, "question_id", questions),
                            _integers(qdf, "correct_answer", questions)))

    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("user", "ts", "content", "lecture", "outcome")}
    for p, df in frames:
        ts = _integers(df, "timestamp", p)
        user = _integers(df, "user_id", p)
        content = _integers(df, "content_id", p)
        ctype = _integers(df, "content_type_id", p)
        bad = (ctype != 0) & (ctype != 1)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise reader_error(f"content_type_id is {ctype[k]}, expected 0 (question) or 1 (lecture)",
                         source=p, row=_line(p, len(df), k), column="content_type_id")
        is_q = ctype == 0
        if qcorrect is not None:
            unknown = is_q & ~np.isin(content, np.fromiter(qcorrect, dtype=np.int64))
            if unknown.any():
                k = int(np.flatnonzero(unknown)[0])
                raise reader_error(f"question {content[k]} is not in questions.csv", source=p,
                             row=_line(p, len(df), k), column="content_id")
        if "answered_correctly" in df.columns:
            ac = pd.to_numeric(df["answered_correctly"], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)
            bad = is_q & ~((ac == 0) | (ac == 1))
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                v = df["answered_correctly"].iloc[k]
                shown = "empty" if pd.isna(v) else repr(str(v))
                raise reader_error(f"answered_correctly is {shown} for a question, expected 0 or 1",
                             source=p, row=_line(p, len(df), k), column="answered_correctly")
            outcome = np.where(is_q, ac, np.nan)
        elif qcorrect is not None and "user_answer" in df.columns:
            ua = pd.to_numeric(df["user_answer"], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)
            key = np.array([qcorrect.get(int(c), -99) for c in content[is_q]], dtype=np.float64)
            outcome = np.full(len(df), np.nan)
            outcome[is_q] = (ua[is_q] == key).astype(np.float64)
        else:
            raise reader_error("no answered_correctly column (to grade user_answer instead, pass "
                         "questions.csv)", source=p, row=1, column="answered_correctly")
        cols["user"].append(user)
        cols["ts"].append(ts)
        cols["content"].append(content)
        cols["lecture"].append(~is_q)
        cols["outcome"].append(outcome)

    user, ts, content, lecture, outcome = (np.concatenate(cols[k]) for k in
                                           ("user", "ts", "content", "lecture", "outcome"))
    code, uniques = pd.factorize(user)
    order = np.lexsort((np.arange(len(user)), ts, code))
    user, ts, content, lecture, outcome = (a[order] for a in (user, ts, content, lecture, outcome))
    module = pd.Series(np.where(lecture, "l", "q"), dtype="str") + pd.Series(content).astype("str")
    return finish_table(pd.Series(user).astype("str"), module, lecture, outcome, ts)


# ---------------------------------------------------------------- dispatch


#: the content (metadata) files of EdNet and Riiid logs, by file name → reader option
_CONTENT_FILES = {"questions.csv": "questions", "lectures.csv": "lectures"}


def _content_files(inputs: Sequence[PathLike]) -> tuple[list[Path], dict[str, Path], Path | None]:
    """Inputs split into logs and content files (`_CONTENT_FILES`): an input named
    ``questions.csv`` / ``lectures.csv`` is that file, and one not given is looked for in
    the folder of the first log (a folder input is its own).  Returns the logs, the content
    files found by option name, and that folder (None without logs)."""
    logs: list[Path] = []
    found: dict[str, Path] = {}
    for p in map(Path, inputs):
        if p.is_file() and p.name.lower() in _CONTENT_FILES:
            found[_CONTENT_FILES[p.name.lower()]] = p
        else:
            logs.append(p)
    if not logs:
        return logs, found, None
    home = logs[0] if logs[0].is_dir() else logs[0].parent
    for name, key in _CONTENT_FILES.items():
        if key not in found and (home / name).is_file():
            found[key] = home / name
    return logs, found, home


def _ednet_inputs(inputs: Sequence[PathLike], options: dict[str, Any]) -> pd.DataFrame:
    """Split EdNet inputs into user logs and content files, then read.

    Rule: an input named ``questions.csv`` / ``lectures.csv`` is that content file;
    a folder contributes its ``u<N>.csv`` files; content files not given (and not
    passed as options) are looked for in the folder of the first user input.
    ``questions.csv`` is required (it holds the correct answers); ``lectures.csv``
    is optional.
    """
    users, found, home = _content_files(inputs)
    if not users:
        raise reader_error("no EdNet-KT4 user files among the inputs (only questions/lectures)")
    opts = {k: v for k, v in options.items() if v is not None}
    for key, p in found.items():
        opts.setdefault(key, p)
    if "questions" not in opts:
        raise reader_error("EdNet-KT4 needs questions.csv (the correct answers): give it as an input "
                     "or put it beside the user files", source=home)
    return read_ednet_kt4(users, **opts)


def convert(fmt: str, inputs: Sequence[PathLike] | PathLike, **options: Any) -> pd.DataFrame:
    """Read ``inputs`` in format ``fmt`` (a key of :data:`FORMATS`) into the §2 table.

    Options go to the reader (``items_as_lessons``, ``explanations_as_lessons``,
    ``questions``, ``lectures``). Several DKT files are concatenated with students
    renamed ``<file stem>-s<k>`` so they cannot collide. For ``riiid`` an input
    named ``questions.csv`` is used as ``questions`` and one named ``lectures.csv``
    is ignored (the train file already says which rows are lectures).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not inputs:
        raise ValueError(f"no input files given for {fmt}")
    allowed = {"assistments-dkt": {"items_as_lessons", "student_prefix"},
               "ednet-kt4": {"questions", "lectures", "explanations_as_lessons"},
               "riiid": {"questions"},
               "datashop": {"lesson_outcomes", "module_column", "drop_outcomes"}}[fmt]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown option(s) for {fmt}: {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")

    for p in inputs:  # one line naming the input, not a traceback (issue 19 item 13)
        if fmt != "ednet-kt4" and Path(p).is_dir():
            raise reader_error(f"is a folder; --from {fmt} takes files", source=p)
        if not Path(p).exists():
            raise reader_error("input file not found", source=p)
    if fmt == "assistments-dkt":
        if len(inputs) == 1:
            return read_assistments_dkt(inputs[0], **options)
        opts = {k: v for k, v in options.items() if k != "student_prefix"}
        return pd.concat([read_assistments_dkt(p, student_prefix=f"{Path(p).stem}-s", **opts)
                          for p in inputs], ignore_index=True)
    if fmt == "ednet-kt4":
        return _ednet_inputs(inputs, options)
    if fmt == "datashop":
        from bayes_lse.data.datashop import read_datashop

        if len(inputs) > 1:
            raise ValueError("datashop: give one transaction export (concatenate exports with DataShop's tools)")
        return read_datashop(inputs[0], **options)
    train: list[PathLike] = []
    questions = options.get("questions")
    for p in inputs:
        name = Path(p).name.lower()
        if name == "questions.csv":
            questions = questions if questions is not None else p
        elif name != "lectures.csv":
            train.append(p)
    if not train:
        raise ValueError("no Riiid train file among the inputs")
    return read_riiid(train, questions=questions)


def convert_modules(fmt: str, inputs: Sequence[PathLike] | PathLike, **options: Any) -> Any:
    """The modules table (`data.modules.ModuleTable`: tags, groups) of the logs that
    `convert(fmt, inputs, **options)` reads, from the format's own metadata: Riiid's and
    EdNet's ``questions.csv`` / ``lectures.csv`` (given among the inputs or beside the
    first one; module ids as their readers write them), a DataShop export's KC columns.
    ASSISTments' DKT files have none (ValueError)."""
    from bayes_lse.data.modules import ednet_modules, read_modules, riiid_modules

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if fmt == "datashop":
        from bayes_lse.data.datashop import datashop_modules

        keep = {k: v for k, v in options.items() if k in ("lesson_outcomes", "module_column") and v is not None}
        return read_modules(datashop_modules(paths[0], **keep), name=str(paths[0]))
    if fmt not in ("riiid", "ednet-kt4"):
        raise ValueError(f"{fmt} logs carry no module metadata (tags); write a modules table by hand "
                         "(module_id, module_type, tags)")
    _, found, home = _content_files(paths)
    questions = options.get("questions") or found.get("questions")
    if questions is None:
        raise reader_error(f"{fmt} module metadata needs questions.csv: give it as an input or put it beside "
                           "the log", source=home or paths[0].parent)
    build = riiid_modules if fmt == "riiid" else ednet_modules
    return build(questions, options.get("lectures") or found.get("lectures"))


# ------------------------------------------------------------------- recognising a raw format

#: header columns (lower case, letters and digits only) that only a raw export of that format has
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("ednet-kt4", frozenset({"timestamp", "actiontype", "itemid"})),
    ("riiid", frozenset({"userid", "contentid", "contenttypeid"})),
    ("datashop", frozenset({"anonstudentid", "outcome"})),  # also R-mangled: Anon.Student.Id
)


def _looks_like_dkt(lines: list[str]) -> bool:
    """A first block of three lines: a length n, n item ids, n marks 0/1."""
    if len(lines) < 3:
        return False
    head = lines[0].strip().rstrip(",").strip()
    if not head.isdigit() or int(head) == 0:
        return False
    n = int(head)
    ids, marks = _dkt_values(lines[1]), _dkt_values(lines[2])
    return len(ids) == n and len(marks) == n and all(m in ("0", "1") for m in marks)


def sniff_format(path: PathLike) -> str | None:
    """The raw public format `path` looks like (a key of :data:`FORMATS`), or None.

    For hints when a file fails validation as the DESIGN §2 table (`bayes-lse fit`
    suggests ``bayes-lse convert --from <format>``): an ASSISTments DKT file by its
    first 3-line block, EdNet-KT4 / Riiid / DataShop by their header columns, and a
    folder of EdNet ``u<N>.csv`` user logs. Reads at most the first 64 KB; never raises.
    """
    p = Path(path)
    try:
        if p.is_dir():
            return "ednet-kt4" if any(re.fullmatch(r"u\d+\.csv", f.name) for f in p.iterdir()) else None
        with open(p, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    if _looks_like_dkt(lines):
        return "assistments-dkt"
    header = lines[0]
    sep = max(("\t", ",", ";"), key=header.count)
    columns = {re.sub(r"[^a-z0-9]", "", c.lower()) for c in header.split(sep)}
    for fmt, needed in _SIGNATURES:
        if needed <= columns:
            return fmt
    return None
