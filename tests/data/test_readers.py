"""Tests for bayes_lse.readers: tiny hand-checked fixtures, every malformed-input error,
and (skipped when absent) the real public data in ../shared/data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_lse.core.errors import InteractionLogError
from bayes_lse.data.readers import (
    FORMATS,
    convert,
    read_assistments_dkt,
    read_ednet_kt4,
    read_riiid,
)

FIX = Path(__file__).parent / "fixtures" / "readers"
EDNET = FIX / "ednet"
RIIID = FIX / "riiid"
from conftest import SHARED_DATA as DATA  # noqa: E402  (../shared/data beside the repository; tests skip without it)
L, A = "lesson", "assessment"
NA = np.nan


def table(rows: list[tuple], timestamp: bool = False) -> pd.DataFrame:
    cols = ["student_id", "module_id", "module_type", "outcome", "timestep"]
    if timestamp:
        cols.append("timestamp")
    df = pd.DataFrame(rows, columns=cols)
    df["outcome"] = df["outcome"].astype(float)
    df["timestep"] = df["timestep"].astype(np.int64)
    if timestamp:
        df["timestamp"] = df["timestamp"].astype(np.int64)
    for c in ("student_id", "module_id", "module_type"):
        df[c] = df[c].astype("str")
    return df


def check_schema(df: pd.DataFrame) -> None:
    assert list(df.columns[:5]) == ["student_id", "module_id", "module_type", "outcome", "timestep"]
    assert df["timestep"].dtype == np.int64
    assert df["outcome"].dtype == np.float64
    assert pd.api.types.is_string_dtype(df["student_id"]) and pd.api.types.is_string_dtype(df["module_id"])
    assert set(df["module_type"]) <= {A, L}
    lesson = df["module_type"] == L
    assert df.loc[lesson, "outcome"].isna().all()
    assert df.loc[~lesson, "outcome"].isin([0.0, 1.0]).all()
    # Timestep: 0 at each student's first row, +1 after each lesson.
    les = lesson.astype(int)
    expected = les.groupby(df["student_id"]).cumsum() - les
    assert (df["timestep"] == expected).all()


def assert_error(exc: pytest.ExceptionInfo, source: Path | str, line: int | None,
                 column: str | None, text: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    where = re.escape(str(source))
    if line is not None:
        where += re.escape(f", line {line}")
    if column is not None:
        where += re.escape(f", column '{column}'")
    assert re.match(where + ": ", msg), msg
    assert re.search(text, msg), msg


# ---------------------------------------------------------------- ASSISTments DKT


def test_dkt_small() -> None:
    df = read_assistments_dkt(FIX / "dkt_small.csv")
    check_schema(df)
    pd.testing.assert_frame_equal(df, table([
        ("s1", "10", A, 1, 0), ("s1", "11", A, 0, 0), ("s1", "10", A, 1, 0),
        ("s2", "12", A, 0, 0),
        # s3 has a zero-length sequence: no rows, but numbering goes on
        ("s4", "11", A, 0, 0), ("s4", "12", A, 1, 0),
    ]))


def test_dkt_items_as_lessons() -> None:
    df = read_assistments_dkt(FIX / "dkt_small.csv", items_as_lessons=True)
    check_schema(df)
    pd.testing.assert_frame_equal(df, table([
        ("s1", "10", A, 1, 0), ("s1", "10", L, NA, 0),
        ("s1", "11", A, 0, 1), ("s1", "11", L, NA, 1),
        ("s1", "10", A, 1, 2), ("s1", "10", L, NA, 2),
        ("s2", "12", A, 0, 0), ("s2", "12", L, NA, 0),
        ("s4", "11", A, 0, 0), ("s4", "11", L, NA, 0),
        ("s4", "12", A, 1, 1), ("s4", "12", L, NA, 1),
    ]))


def test_dkt_crlf_and_prefix(tmp_path: Path) -> None:
    p = tmp_path / "win.csv"
    p.write_bytes(b"2,\r\n 7, 8 ,\r\n1,0,\r\n\r\n")
    df = read_assistments_dkt(p, student_prefix="train-")
    assert df["student_id"].tolist() == ["train-1", "train-1"]
    assert df["module_id"].tolist() == ["7", "8"]
    assert df["outcome"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize("text, line, column, problem", [
    ("x\n1\n1\n", 1, "sequence length", r"'x' is not an integer"),
    ("1\n5\n1\n2.5\n6,7\n1,1\n", 4, "sequence length", r"'2\.5' is not an integer"),
    ("-1\n\n\n1\n5\n1\n", 1, "sequence length", r"negative"),
    ("2\n1\n1,0\n", 2, "item ids", r"1 item ids but the sequence length on line 1 is 2"),
    ("2\n1,2\n1\n", 3, "correctness", r"1 correctness values but .* is 2"),
    ("3\n1,,2\n1,1,0\n", 2, "item ids", r"item id 2 is empty"),
    ("2\n1,2\n1,2\n", 3, "correctness", r"value 2 is '2', expected 0 or 1"),
    ("1\n5\n1\n1\n6\nyes\n", 6, "correctness", r"value 1 is 'yes'"),
    ("1\n5\n1\n2\n6,7\n", 4, None, r"truncated final block.* line 4 has 2 of its 3 lines"),
    ("1\n5\n1\n2\n", 4, None, r"truncated final block.* has 1 of its 3 lines"),
])
def test_dkt_errors(tmp_path: Path, text: str, line: int, column: str | None, problem: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InteractionLogError) as exc:
        read_assistments_dkt(p)
    assert_error(exc, p, line, column, problem)


# ---------------------------------------------------------------- EdNet-KT4

EDNET_EXPECTED = [
    # u1: q1 answered b then a before submit -> graded on the last (a, correct);
    # bundle b2 has two questions, q3 changed d -> b (wrong); the later q1 respond
    # is abandoned (bundle b1 never submitted again) and dropped.
    ("u1", "q1", A, 1, 0, 1300), ("u1", "q2", A, 1, 0, 2100), ("u1", "q3", A, 0, 0, 2300),
    ("u1", "l1", L, NA, 0, 3000), ("u1", "q4", A, 1, 1, 5100),
    # u2: wrong answer, two lectures, then a blank answer (graded wrong).
    ("u2", "q4", A, 0, 0, 1100), ("u2", "l2", L, NA, 0, 2000), ("u2", "l1", L, NA, 1, 2200),
    ("u2", "q1", A, 0, 2, 3100),
]


def test_ednet_grading_and_lectures() -> None:
    df = read_ednet_kt4([EDNET / "u1.csv", EDNET / "u2.csv"], questions=EDNET / "questions.csv",
                        lectures=EDNET / "lectures.csv")
    check_schema(df)
    pd.testing.assert_frame_equal(df, table(EDNET_EXPECTED, timestamp=True))


def test_ednet_explanations_as_lessons() -> None:
    df = read_ednet_kt4(EDNET, questions=EDNET / "questions.csv", explanations_as_lessons=True)
    check_schema(df)
    u1 = df[df["student_id"] == "u1"]
    assert u1["module_id"].tolist() == ["q1", "q2", "q3", "e2", "l1", "q4"]
    assert u1["timestep"].tolist() == [0, 0, 0, 0, 1, 2]
    assert df["module_type"].value_counts().to_dict() == {A: 6, L: 4}


def test_ednet_folder_and_convert_rules(tmp_path: Path) -> None:
    expected = table(EDNET_EXPECTED, timestamp=True)
    # A folder: u<N>.csv files, questions.csv / lectures.csv found inside it.
    pd.testing.assert_frame_equal(convert("ednet-kt4", [str(EDNET)]), expected)
    # Files listed one by one, content files beside them.
    pd.testing.assert_frame_equal(
        convert("ednet-kt4", [EDNET / "u1.csv", EDNET / "u2.csv"]), expected)
    # User files elsewhere, content files among the inputs.
    for name in ("u1.csv", "u2.csv"):
        shutil.copy(EDNET / name, tmp_path / name)
    pd.testing.assert_frame_equal(
        convert("ednet-kt4", [tmp_path / "u1.csv", tmp_path / "u2.csv",
                              EDNET / "questions.csv", EDNET / "lectures.csv"]), expected)
    # ... or passed as an option.
    pd.testing.assert_frame_equal(
        convert("ednet-kt4", [tmp_path], questions=EDNET / "questions.csv"), expected)
    # No questions.csv anywhere: a clear error.
    with pytest.raises(InteractionLogError, match="needs questions.csv"):
        convert("ednet-kt4", [tmp_path])


def _ednet_bad(tmp_path: Path, old: str, new: str, name: str = "u1.csv") -> Path:
    p = tmp_path / name
    p.write_text((EDNET / name).read_text().replace(old, new, 1))
    return p


def test_ednet_errors(tmp_path: Path) -> None:
    q, lec = EDNET / "questions.csv", EDNET / "lectures.csv"
    p = _ednet_bad(tmp_path, "2200,respond,q3", "2200,respond,q99")
    with pytest.raises(InteractionLogError) as exc:
        read_ednet_kt4([p], questions=q)
    assert_error(exc, p, 10, "item_id", r"'q99' is not in questions\.csv")

    p = _ednet_bad(tmp_path, "2200,respond,q3", "2200,respond,b2")
    with pytest.raises(InteractionLogError) as exc:
        read_ednet_kt4([p], questions=q)
    assert_error(exc, p, 10, "item_id", r"not a question")

    p = _ednet_bad(tmp_path, "3000,enter,l1", "3000,enter,l77")
    read_ednet_kt4([p], questions=q)  # without lectures.csv nothing to check against
    with pytest.raises(InteractionLogError) as exc:
        read_ednet_kt4([p], questions=q, lectures=lec)
    assert_error(exc, p, 15, "item_id", r"lecture 'l77' is not in lectures\.csv")

    p = _ednet_bad(tmp_path, "1300,respond", "13:00,respond")
    with pytest.raises(InteractionLogError) as exc:
        read_ednet_kt4([p], questions=q)
    assert_error(exc, p, 5, "timestamp", r"'13:00', expected an integer")

    p = _ednet_bad(tmp_path, "timestamp,action_type", "time,action_type")
    with pytest.raises(InteractionLogError) as exc:
        read_ednet_kt4([p], questions=q)
    assert_error(exc, p, 1, "timestamp", r"lacks column")

    bad_q = tmp_path / "questions.csv"
    bad_q.write_text("question_id,bundle_id\nq1,b1\n")
    with pytest.raises(InteractionLogError) as exc:
        read_ednet_kt4([EDNET / "u1.csv"], questions=bad_q)
    assert_error(exc, bad_q, 1, "correct_answer", r"lacks column")

    with pytest.raises(InteractionLogError, match="no EdNet-KT4 user files"):
        read_ednet_kt4(tmp_path / "..", questions=q)


# ---------------------------------------------------------------- Riiid

RIIID_EXPECTED = [
    # user 115: row 5 (t=100000) comes before the lecture although later in the file;
    # rows 4 and 6 share a timestamp and keep file order. Question 5 and lecture 5 differ.
    ("115", "q5", A, 1, 0, 0), ("115", "q16", A, 0, 0, 56943), ("115", "q21", A, 0, 0, 100000),
    ("115", "l5", L, NA, 0, 118363), ("115", "q20", A, 1, 1, 131167),
    ("115", "q22", A, 1, 1, 131167),
    ("2746", "q7", A, 1, 0, 0), ("2746", "l3", L, NA, 0, 20000), ("2746", "q7", A, 0, 1, 30000),
]


def test_riiid_lectures_and_order() -> None:
    df = read_riiid(RIIID / "train.csv")
    check_schema(df)
    pd.testing.assert_frame_equal(df, table(RIIID_EXPECTED, timestamp=True))
    # questions.csv among the inputs checks ids; lectures.csv is ignored.
    pd.testing.assert_frame_equal(
        convert("riiid", [RIIID / "train.csv", RIIID / "questions.csv", RIIID / "lectures.csv"]),
        table(RIIID_EXPECTED, timestamp=True))


def test_riiid_grades_without_answered_correctly(tmp_path: Path) -> None:
    p = tmp_path / "test.csv"
    pd.read_csv(RIIID / "train.csv").drop(columns="answered_correctly").to_csv(p, index=False)
    with pytest.raises(InteractionLogError, match="no answered_correctly column"):
        read_riiid(p)
    df = read_riiid(p, questions=RIIID / "questions.csv")
    pd.testing.assert_frame_equal(df, table(RIIID_EXPECTED, timestamp=True))


def _riiid_bad(tmp_path: Path, old: str, new: str) -> Path:
    p = tmp_path / "train.csv"
    text = (RIIID / "train.csv").read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    return p


@pytest.mark.parametrize("old, new, line, column, problem", [
    ("1,56943,115,16,0", "1,56943,115,16,2", 3, "content_type_id", r"is 2, expected 0 .* or 1"),
    ("16,0,1,2,0,37000", "16,0,1,2,-1,37000", 3, "answered_correctly", r"is '-1' for a question"),
    ("16,0,1,2,0,37000", "16,0,1,2,,37000", 3, "answered_correctly", r"is empty for a question"),
    ("4,131167,115", "4,soon,115", 6, "timestamp", r"'soon', expected an integer"),
    ("5,100000,115", "5,100000,", 7, "user_id", r"empty, expected an integer"),
    ("row_id,timestamp,user_id", "row_id,timestamp,user", 1, "user_id", r"lacks column"),
])
def test_riiid_errors(tmp_path: Path, old: str, new: str, line: int, column: str,
                      problem: str) -> None:
    p = _riiid_bad(tmp_path, old, new)
    with pytest.raises(InteractionLogError) as exc:
        read_riiid(p)
    assert_error(exc, p, line, column, problem)


def test_riiid_unknown_question(tmp_path: Path) -> None:
    p = _riiid_bad(tmp_path, "1,56943,115,16,0", "1,56943,115,999,0")
    read_riiid(p)
    with pytest.raises(InteractionLogError) as exc:
        read_riiid(p, questions=RIIID / "questions.csv")
    assert_error(exc, p, 3, "content_id", r"question 999 is not in questions\.csv")


# ---------------------------------------------------------------- convert


def test_convert_dispatch(tmp_path: Path) -> None:
    assert set(FORMATS) == {"assistments-dkt", "ednet-kt4", "riiid", "datashop"}
    pd.testing.assert_frame_equal(convert("assistments-dkt", [FIX / "dkt_small.csv"]),
                                  read_assistments_dkt(FIX / "dkt_small.csv"))
    other = tmp_path / "other.csv"
    other.write_text("1\n10\n1\n")
    both = convert("assistments-dkt", [FIX / "dkt_small.csv", other], items_as_lessons=True)
    check_schema(both)
    assert both["student_id"].unique().tolist() == [
        "dkt_small-s1", "dkt_small-s2", "dkt_small-s4", "other-s1"]
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        convert("csv", [FIX / "dkt_small.csv"])
    with pytest.raises(ValueError, match="unknown option.*lessons"):
        convert("riiid", [RIIID / "train.csv"], lessons=True)


# ---------------------------------------------------------------- real data (skipped when absent)

ASSIST_TRAIN = DATA / "assistments2009" / "ckyeungac_problem_id_train.csv"
EDNET_SAMPLE = DATA / "ednet_kt4_sample"


def test_real_assistments_train() -> None:
    if not ASSIST_TRAIN.is_file():
        pytest.skip("shared ASSISTments data not present")
    df = read_assistments_dkt(ASSIST_TRAIN)  # its time: python -m benchmarks.bench_read
    assert df["student_id"].nunique() == 3330
    assert len(df) == 268_322
    assert df["module_id"].nunique() == 17_264
    assert (df["timestep"] == 0).all()

    lessons = read_assistments_dkt(ASSIST_TRAIN, items_as_lessons=True)
    assert len(lessons) == 2 * 268_322
    check_schema(lessons)
    sizes = df.groupby("student_id", sort=False).size()
    last = lessons.groupby("student_id", sort=False)["timestep"].max()
    assert (last == sizes - 1).all()


def test_real_ednet_sample() -> None:
    if not (EDNET_SAMPLE / "questions.csv").is_file():
        pytest.skip("shared EdNet-KT4 sample not present")
    df = convert("ednet-kt4", [str(EDNET_SAMPLE)])
    check_schema(df)
    assert df["student_id"].nunique() == 9
    counts = df["module_type"].value_counts().to_dict()
    # 3,055 respond actions: 2,443 distinct (question, submitted bundle) answers.
    assert counts == {A: 2443, L: 178}
    assert df.groupby("student_id")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    expl = read_ednet_kt4(EDNET_SAMPLE, questions=EDNET_SAMPLE / "questions.csv",
                          explanations_as_lessons=True)
    assert expl["module_type"].value_counts().to_dict() == {A: 2443, L: 178 + 2510}


def test_convert_refuses_folders_missing_files_and_empty_dkt(tmp_path):
    """Issue 19 item 13: one line naming the input, never a traceback or a header-only table."""
    with pytest.raises(InteractionLogError, match="is a folder"):
        convert("assistments-dkt", [tmp_path])
    with pytest.raises(InteractionLogError, match="is a folder"):
        convert("riiid", [tmp_path])
    with pytest.raises(InteractionLogError, match="not found"):
        convert("riiid", [tmp_path / "nope.csv"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InteractionLogError, match="no answers") as info:
        convert("assistments-dkt", [empty])
    assert str(empty) in str(info.value)


def test_riiid_line_numbers_count_spanning_fields_and_blank_lines(tmp_path: Path) -> None:
    """Issue 19 item 17: row 1 spans lines 2-3 (a quoted field) and line 4 is blank, so
    the next row is on line 5, not 3."""
    p = _riiid_bad(tmp_path, "0,0,115,5,0,0,1,1,,\n", '0,0,115,5,0,0,1,1,,"multi\nline"\n\n')
    p.write_text(p.read_text().replace("1,56943,115,16,0", "1,56943,115,16,2", 1))
    with pytest.raises(InteractionLogError) as exc:
        read_riiid(p)
    assert_error(exc, p, 5, "content_type_id", r"is 2, expected 0 .* or 1")
