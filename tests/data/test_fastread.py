"""The lean CSV path (bayes_lse/data/fastread.py + log._build_lean, issue 16) gives exactly the detailed
path's InteractionLog, and leaves every unusual or bad file to the detailed path (same
messages, same warnings, once)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_lse.core.errors import InteractionLogError
from bayes_lse.data import log as L
from bayes_lse.data.log import read_interactions


def read_csv_fast(path, name, require_outcomes=True):
    return L._read_csv_lean(path, name, require_outcomes)


def detailed(path, require_outcomes=True):
    df, where = L._read_file(path, None)
    return L._build(df, where, require_outcomes=require_outcomes)


def assert_same(a, b):
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    for name in ("students", "assessments", "lessons"):
        pd.testing.assert_index_equal(getattr(a, name), getattr(b, name), exact=True)
    for name in ("state_offset", "state_student", "state_step"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert (a.source, a.timesteps_derived) == (b.source, b.timesteps_derived)


def write(tmp_path, text, name="log.csv", newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode())
    return path


TAKEN = {  # files the lean path reads itself
    "leading_zeros_na_ids": (
        "student_id,module_id,module_type,outcome\n"
        "007,0100,assessment,1\nNA,None,assessment,0\n 8 ,L1,lesson,\n007,L1,lesson,NA\n"
        "null,0100,Assessment ,true\n"
    ),
    "quoted_timestep": (
        '"student_id","module_id","module_type","outcome","timestep"\n'
        '"u0","a22","assessment",0,0\n"u1","l12","lesson",,0\n"u1","a,34","assessment","1.0",1\n'
        '"u0","a22","assessment", 1 ,3\n"u""2","l12","LESSON","N/A",2'
    ),
    "empty_timestep_derived": (
        "Student_ID , module_id,MODULE_TYPE,outcome,timestep\n"
        "s1,A,assessment,FALSE,\ns1,L,lesson,,\ns1,A,assessment,1,\ns2,L,lesson,,\n"
    ),
    "tabs": "student_id\tmodule_id\tmodule_type\toutcome\n1\t2\tassessment\t0\n2\t 3\tlesson\t\n",
}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("case", sorted(TAKEN))
def test_lean_path_equals_detailed(tmp_path, case, newline):
    path = write(tmp_path, TAKEN[case], newline=newline)
    fast = read_csv_fast(path, None)
    assert fast is not None, "the lean path should take this file"
    assert_same(fast, detailed(path))
    assert_same(read_interactions(path), fast)


def test_ids_stay_the_users_text(tmp_path):
    log = read_csv_fast(write(tmp_path, TAKEN["leading_zeros_na_ids"]), None)
    assert log.students.tolist() == ["007", "NA", "8", "null"]
    assert log.assessments.tolist() == ["0100", "None"]
    assert log.table["student_id"].astype(str).tolist() == ["007", "NA", "8", "007", "null"]
    assert log.table["outcome"].isna().tolist() == [False, False, True, True, False]


FALLBACK = {  # (file, message or None): the detailed path reads these
    "blank_line": ("student_id,module_id,module_type,outcome\ns1,A,assessment,1\n\ns2,A,assessment,0\n", None),
    "multiline_field": ('student_id,module_id,module_type,outcome\ns1,"A\nB",assessment,1\ns2,A,assessment,0\n', None),
    "timestamp": ("student_id,module_id,module_type,outcome,timestamp\ns1,A,assessment,1,5\ns1,L,lesson,,2\n", None),
    "extra_column": ("student_id,module_id,module_type,outcome,note\ns1,A,assessment,1,x\n", None),
    "bad_outcome": ("student_id,module_id,module_type,outcome\ns1,A,assessment,1\ns1,A,assessment,maybe\n",
                    "line 3, column 'outcome': assessment needs a 0/1 outcome, got 'maybe'"),
    "empty_id": ("student_id,module_id,module_type,outcome\ns1,A,assessment,1\n  ,A,assessment,1\n",
                 "line 3, column 'student_id': student_id is empty"),
    "bad_type": ("student_id,module_id,module_type,outcome\ns1,A,quiz,1\n",
                 "line 2, column 'module_type': module_type must be 'assessment' or 'lesson', got 'quiz'"),
    "bad_timestep": ("student_id,module_id,module_type,outcome,timestep\ns1,A,assessment,1,0\ns1,A,assessment,1,1.5\n",
                     "line 3, column 'timestep': timestep must be an integer >= 0, got '1.5'"),
    "two_lessons": ("student_id,module_id,module_type,outcome,timestep\ns1,L,lesson,,0\ns1,M,lesson,,0\n",
                    "line 3, column 'timestep': student 's1' already has a lesson at timestep 0 (line 2)"),
    "too_few_fields": ("student_id,module_id,module_type,outcome\ns1,A,assessment\n",
                       "line 2, column 'outcome': assessment needs a 0/1 outcome, but it is empty"),
    "too_many_fields": ("student_id,module_id,module_type,outcome\ns1,A,assessment,1\ns1,A,assessment,1,9\n",
                        "cannot be parsed as CSV"),
    "huge_timestep": ("student_id,module_id,module_type,outcome,timestep\ns1,A,assessment,1,1700000000\n",
                      "timestep 1700000000 is far too large"),
}


@pytest.mark.parametrize("case", sorted(FALLBACK))
def test_unusual_files_go_to_the_detailed_path(tmp_path, case):
    text, message = FALLBACK[case]
    path = write(tmp_path, text)
    assert read_csv_fast(path, None) is None
    if message is None:
        assert_same(read_interactions(path), detailed(path))
        return
    with pytest.raises(InteractionLogError) as lean:
        read_interactions(path)
    with pytest.raises(InteractionLogError) as slow:
        detailed(path)
    assert message in str(lean.value)
    assert str(lean.value) == str(slow.value) and lean.value.row == slow.value.row


@pytest.mark.parametrize("text, match", [
    ("student_id,module_id,module_type,outcome\n1,A,assessment,1\n 1,A,assessment,0\n", "written in several ways"),
    ("student_id,module_id,module_type,outcome\ns1,L,lesson,1\ns1,A,assessment,0\n", "lesson row"),
])
def test_warnings_come_once_from_the_detailed_path(tmp_path, text, match):
    path = write(tmp_path, text)
    assert read_csv_fast(path, None) is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = read_interactions(path)
    assert [str(w.message) for w in caught if match in str(w.message)] == [
        str(w.message) for w in caught
    ] and len(caught) == 1
    assert_same(log, detailed(path))


def test_predict_rows_without_outcomes(tmp_path):
    path = write(tmp_path, "student_id,module_id,module_type,outcome\ns1,A,assessment,\ns1,A,assessment,1\n")
    with pytest.raises(InteractionLogError):
        read_interactions(path)
    fast = read_csv_fast(path, None, require_outcomes=False)
    assert fast is not None
    assert_same(fast, detailed(path, require_outcomes=False))


@pytest.mark.filterwarnings("ignore:.*lesson row")  # 'N/A' is text in a DataFrame
def test_parquet_and_frame_give_the_same_table(tmp_path):
    path = write(tmp_path, TAKEN["quoted_timestep"])
    log = read_interactions(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    pq = tmp_path / "log.parquet"
    raw.to_parquet(pq)
    assert read_csv_fast(pq, None) is None
    for other in (read_interactions(pq), read_interactions(raw)):
        want = log.table.drop(columns="source_row")
        pd.testing.assert_frame_equal(other.table.drop(columns="source_row"), want)
        pd.testing.assert_index_equal(other.students, log.students)


TOKENS = {
    "student_id": ["s1", "007", "7", "NA", '"s 2"', "None", "  x", "u1", ""],
    "module_id": ["A", "0100", "100", "L", "null", "M", '"a,b"', " A"],
    "module_type": ["assessment", "lesson", "Lesson", " assessment", "quiz", ""],
    "outcome": ["0", "1", "", "NA", "1.0", "true", "2", " 0"],
    "timestep": ["0", "1", "2", "", "3", "1.0", "-1"],
}


@pytest.mark.parametrize("seed", range(40))
def test_random_small_files_agree(tmp_path, seed):
    """Random files from tricky tokens: the lean path, when it takes a file, gives the
    detailed path's log; read_interactions always gives what the detailed path gives
    (log, error or warnings)."""
    rng = np.random.default_rng(seed)
    cols = ["student_id", "module_id", "module_type", "outcome"] + (["timestep"] if seed % 2 else [])
    clean = seed % 4 < 2  # half the files from the tokens that are always valid
    rows = []
    for k in range(rng.integers(1, 12)):
        row = [TOKENS[c][rng.integers(len(TOKENS[c]))] for c in cols]
        if clean:  # valid by construction: only the spelling varies
            lesson = rng.random() < 0.4
            row[0] = TOKENS["student_id"][rng.integers(6)]
            row[1] = TOKENS["module_id"][rng.integers(7)]
            row[2] = rng.choice(["lesson", "Lesson", "LESSON "] if lesson else ["assessment", " Assessment"])
            row[3] = rng.choice(["", "NA", "null"] if lesson else ["0", "1", "1.0", "true", " 0"])
            if len(cols) == 5:  # one row per step: at most one lesson per step
                row[4] = str(k + rng.integers(2) * 10)
        rows.append(",".join(row))
    path = write(tmp_path, ",".join(cols) + "\n" + "\n".join(rows) + ("\n" if seed % 3 else ""))

    def run(fn):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return fn(path), [str(w.message) for w in caught]
            except InteractionLogError as e:
                return e, [str(w.message) for w in caught]

    got, got_w = run(read_interactions)
    want, want_w = run(detailed)
    assert got_w == want_w
    if isinstance(want, InteractionLogError):
        assert isinstance(got, InteractionLogError) and str(got) == str(want)
    else:
        assert_same(got, want)
        fast = read_csv_fast(path, None)
        if fast is not None:
            assert_same(fast, want)
