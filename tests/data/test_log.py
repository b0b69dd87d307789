"""read_interactions: validation messages, timestep derivation, ragged state layout."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_lse.data.log import InteractionLog, read_interactions
from bayes_lse.core.errors import InteractionLogError

HEADER = "student_id,module_id,module_type,outcome"


def write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


# --------------------------------------------------------------------------- #
# the error type
# --------------------------------------------------------------------------- #
def test_error_message_parts():
    err = InteractionLogError(
        "data.csv", "assessment needs a 0/1 outcome, got 'maybe'", row=7, column="outcome",
        row_kind="line",
    )
    assert str(err) == "data.csv, line 7, column 'outcome': assessment needs a 0/1 outcome, got 'maybe'"
    assert isinstance(err, ValueError)
    assert (err.source, err.row, err.column) == ("data.csv", 7, "outcome")
    assert str(InteractionLogError("empty.csv", "the file is empty")) == "empty.csv: the file is empty"
    assert str(InteractionLogError("<DataFrame>", "x", row=3)) == "<DataFrame>, row 3: x"
    multi = InteractionLogError("f.csv", "bad\nvalue")
    assert "\n" not in str(multi)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.row == 7


# --------------------------------------------------------------------------- #
# validation errors, one per kind; each names file, line and column
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "rows, match",
    [
        (["s1,A1,assessment,1", "s1,A1,quiz,1"],
         r"data\.csv, line 3, column 'module_type': module_type must be 'assessment' or 'lesson', got 'quiz'$"),
        (["s1,A1,assessment,1", "s1,A1,,1"], r"line 3, column 'module_type': module_type is empty"),
        (["s1,A1,assessment,1", "s1,A1,assessment,1", "s1,A1,assessment,maybe"],
         r"data\.csv, line 4, column 'outcome': assessment needs a 0/1 outcome, got 'maybe'$"),
        (["s1,A1,assessment,", "s1,A1,assessment,1"], r"line 2, column 'outcome': .*empty"),
        (["s1,A1,assessment,2"], r"line 2, column 'outcome': .*got '2'"),
        (["s1,A1,assessment,1", ",A1,assessment,1"], r"line 3, column 'student_id': student_id is empty"),
        (["s1,A1,assessment,1", "s1,   ,assessment,1"], r"line 3, column 'module_id': module_id is empty"),
    ],
)
def test_row_errors(tmp_path, rows, match):
    path = write(tmp_path, csv(*rows))
    with pytest.raises(InteractionLogError, match=match) as info:
        read_interactions(path)
    assert info.value.source == str(path)  # the path as given
    assert info.value.row_kind == "line"


@pytest.mark.parametrize("bad", ["1.5", "-1", "x"])
def test_bad_timestep(tmp_path, bad):
    path = write(
        tmp_path,
        csv("s1,A1,assessment,1,0", f"s1,A1,assessment,1,{bad}", header=HEADER + ",timestep"),
    )
    with pytest.raises(InteractionLogError, match=rf"line 3, column 'timestep': .*integer >= 0, got '{bad}'"):
        read_interactions(path)


def test_partly_empty_timestep(tmp_path):
    path = write(tmp_path, csv("s1,A1,assessment,1,0", "s1,A1,assessment,1,", header=HEADER + ",timestep"))
    with pytest.raises(InteractionLogError, match=r"line 3, column 'timestep': timestep is empty"):
        read_interactions(path)


def test_first_offending_row_wins(tmp_path):
    # line 3 has a bad outcome, line 4 a bad module type: line 3 is reported
    path = write(tmp_path, csv("s1,A1,assessment,1", "s1,A1,assessment,7", "s1,A1,quiz,1"))
    with pytest.raises(InteractionLogError, match=r"line 3, column 'outcome'"):
        read_interactions(path)


def test_blank_lines_keep_line_numbers(tmp_path):
    path = write(tmp_path, "\n".join([HEADER, "s1,A1,assessment,1", "", "", "s1,A1,assessment,x"]) + "\n\n")
    with pytest.raises(InteractionLogError, match=r"line 5, column 'outcome'"):
        read_interactions(path)
    ok = write(tmp_path, "\n".join([HEADER, "s1,A1,assessment,1", "", "s1,A1,assessment,0", "", ""]), "ok.csv")
    log = read_interactions(ok)
    assert log.table["source_row"].tolist() == [2, 4]


def test_two_lessons_same_step(tmp_path):
    path = write(
        tmp_path,
        csv("s1,L1,lesson,,0", "s2,L1,lesson,,0", "s1,A1,assessment,1,1", "s1,L2,lesson,,0",
            header=HEADER + ",timestep"),
    )
    with pytest.raises(InteractionLogError, match=r"line 5, column 'timestep': student 's1' already has a lesson at timestep 0 \(line 2\)"):
        read_interactions(path)


def test_missing_columns(tmp_path):
    path = write(tmp_path, "student_id,module_id,type,score\ns1,A1,assessment,1\n")
    with pytest.raises(InteractionLogError, match=r"data\.csv: missing required column\(s\) 'module_type', 'outcome' \(found 'student_id', 'module_id', 'type', 'score'\)$") as info:
        read_interactions(path)
    assert info.value.row is None and info.value.column is None


def test_columns_matched_ignoring_case_and_spaces(tmp_path):
    path = write(tmp_path, "Student_ID, module_id ,MODULE_TYPE,Outcome\ns1,A1,assessment,1\n")
    log = read_interactions(path)
    assert list(log.table.columns[:4]) == ["student_id", "module_id", "module_type", "outcome"]


def test_empty_file(tmp_path):
    with pytest.raises(InteractionLogError, match=r"^empty\.csv: the file is empty$"):
        read_interactions(write(tmp_path, "", "empty.csv"), name="empty.csv")
    with pytest.raises(InteractionLogError, match=r"the file is empty"):
        read_interactions(write(tmp_path, "\n  \n", "blank.csv"))


def test_header_only(tmp_path):
    with pytest.raises(InteractionLogError, match=r"data\.csv: no interactions"):
        read_interactions(write(tmp_path, HEADER + "\n"))


def test_missing_file(tmp_path):
    with pytest.raises(InteractionLogError, match=r"nope\.csv: no such file"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(InteractionLogError, match=r"is a directory"):
        read_interactions(tmp_path)


def test_binary_junk(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InteractionLogError, match=r"junk\.csv: is not a table"):
        read_interactions(path)
    path2 = tmp_path / "junk2.bin"
    path2.write_bytes(bytes(range(128, 256)) * 8)  # no NUL, but not UTF-8
    with pytest.raises(InteractionLogError, match=r"junk2\.bin: is not a text table"):
        read_interactions(path2)


def test_csv_without_required_columns(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n", "other.csv")
    with pytest.raises(InteractionLogError, match=r"other\.csv: is not a table of interactions: none of the required columns"):
        read_interactions(path)


def test_bad_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text(csv("s1,A1,assessment,1"))
    with pytest.raises(InteractionLogError, match=r"bad\.parquet: is not a readable Parquet table"):
        read_interactions(path)


def test_ragged_csv_rows(tmp_path):
    path = write(tmp_path, csv("s1,A1,assessment,1", "s1,A1,assessment,1,9,9"))
    with pytest.raises(InteractionLogError, match=r"data\.csv: cannot be parsed as CSV .*line 3"):
        read_interactions(path)


def test_absurd_timesteps(tmp_path):
    path = write(tmp_path, csv("s1,A1,assessment,1,0", "s1,A1,assessment,1,1700000000", header=HEADER + ",timestep"))
    with pytest.raises(InteractionLogError, match=r"line 3, column 'timestep': timestep 1700000000 is far too large"):
        read_interactions(path)


# --------------------------------------------------------------------------- #
# accepted spellings, warnings, formats
# --------------------------------------------------------------------------- #
def test_outcome_and_type_spellings(tmp_path):
    path = write(
        tmp_path,
        csv("s1,A1,assessment,1", "s1,A1, Assessment ,0", "s1,A1,ASSESSMENT,true", "s1,A1,assessment,False",
            "s1,A1,assessment,1.0", "s1,A1,assessment,0.0", "s1,L1,LESSON,"),
    )
    log = read_interactions(path)
    assert log.table["outcome"].tolist()[:6] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert np.isnan(log.table["outcome"].iloc[6])
    assert log.table["module_type"].tolist() == ["assessment"] * 6 + ["lesson"]


def test_lesson_outcome_warns_once(tmp_path):
    path = write(tmp_path, csv("s1,A1,assessment,1", "s1,L1,lesson,1", "s1,L1,lesson,", "s1,L2,lesson,0"))
    with pytest.warns(UserWarning, match=r"2 lesson row\(s\) have an outcome.*first: line 3") as record:
        log = read_interactions(path)
    assert len([w for w in record if issubclass(w.category, UserWarning)]) == 1
    assert log.table["outcome"].isna().tolist() == [False, True, True, True]


def test_no_warning_for_clean_log(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_interactions(write(tmp_path, csv("s1,A1,assessment,1", "s1,L1,lesson,")))


def test_ids_stay_text(tmp_path):
    path = write(tmp_path, csv("007,0100,assessment,1", "NA,None,assessment,0", " 8 ,L1,lesson,"))
    log = read_interactions(path)
    assert log.students.tolist() == ["007", "NA", "8"]
    assert log.assessments.tolist() == ["0100", "None"]
    assert log.table["student_id"].tolist() == ["007", "NA", "8"]
    # a category of str (issue 16): text values, one copy per distinct id
    assert pd.api.types.is_string_dtype(log.table["student_id"].cat.categories.dtype)


def test_semicolon_and_tab_separated(tmp_path):
    for sep, name in ((";", "semi.csv"), ("\t", "tabs.txt")):
        text = csv("s1,A1,assessment,1", "s1,L1,lesson,").replace(",", sep)
        log = read_interactions(write(tmp_path, text, name))
        assert log.n_interactions == 2 and log.lessons.tolist() == ["L1"]


def test_parquet_and_dataframe_input(tmp_path):
    df = pd.DataFrame(
        {
            "student_id": [7, 7, 8],  # integer ids become "7", "8"
            "module_id": ["A1", "L1", "A1"],
            "module_type": ["assessment", "lesson", "assessment"],
            "outcome": [True, None, False],
            "p_true": [0.9, np.nan, 0.2],
        }
    )
    original = df.copy()
    log = read_interactions(df)
    pd.testing.assert_frame_equal(df, original)  # not modified
    assert log.source == "<DataFrame>"
    assert log.students.tolist() == ["7", "8"]
    assert log.table["p_true"].iloc[0] == 0.9

    path = tmp_path / "log.parquet"
    df.to_parquet(path)
    plog = read_interactions(path)
    pd.testing.assert_frame_equal(plog.table, log.table)

    other = tmp_path / "log.bin"  # Parquet recognised by its magic bytes
    df.to_parquet(other)
    assert read_interactions(other).n_interactions == 3


def test_dataframe_errors_name_index_label():
    df = pd.DataFrame(
        {"student_id": ["a", "b"], "module_id": ["A1", "A1"], "module_type": ["assessment"] * 2,
         "outcome": [1, "maybe"]},
        index=[10, 20],
    )
    with pytest.raises(InteractionLogError, match=r"^<DataFrame>, row 20, column 'outcome': assessment needs a 0/1 outcome, got 'maybe'$"):
        read_interactions(df)
    with pytest.raises(InteractionLogError, match=r"^mine, row 20"):
        read_interactions(df, name="mine")
    bad_type = df.assign(outcome=[1, 0], module_type=["assessment", "test"])
    with pytest.raises(InteractionLogError, match=r"row 20, column 'module_type'"):
        read_interactions(bad_type)
    with pytest.raises(InteractionLogError, match=r"<DataFrame>: no interactions"):
        read_interactions(df.iloc[:0])


def test_parquet_error_row_is_position(tmp_path):
    df = pd.DataFrame({"student_id": ["a", "b"], "module_id": ["A1", "A1"],
                       "module_type": ["assessment", "lesson"], "outcome": [1.0, 0.0],
                       "timestep": [0, -3]})
    path = tmp_path / "x.parquet"
    df.to_parquet(path)
    with pytest.raises(InteractionLogError, match=r"x\.parquet, row 1, column 'timestep'"):
        read_interactions(path)


def test_round_trip_of_table():
    df = pd.DataFrame({"student_id": ["a", "a", "b"], "module_id": ["A1", "L1", "A1"],
                       "module_type": ["assessment", "lesson", "assessment"], "outcome": [1, None, 0]})
    log = read_interactions(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = read_interactions(log.table)
    pd.testing.assert_frame_equal(again.table, log.table)


# --------------------------------------------------------------------------- #
# timesteps
# --------------------------------------------------------------------------- #
def test_timestep_derived_from_row_order(tmp_path):
    path = write(tmp_path, csv("s1,A1,assessment,0", "s2,A1,assessment,1", "s1,L1,lesson,",
                               "s1,A1,assessment,1", "s1,L2,lesson,", "s2,L1,lesson,", "s2,A2,assessment,1"))
    log = read_interactions(path)
    assert log.table["timestep"].tolist() == [0, 0, 0, 1, 1, 0, 1]
    assert log.table["source_row"].tolist() == [2, 3, 4, 5, 6, 7, 8]


def test_timestep_derived_from_numeric_timestamp(tmp_path):
    path = write(
        tmp_path,
        csv("s1,A1,assessment,1,30", "s1,L1,lesson,,20", "s1,A1,assessment,0,10", "s2,A1,assessment,1,15",
            "s1,A2,assessment,0,20", header=HEADER + ",timestamp"),
    )
    log = read_interactions(path)
    t = log.table
    # sorted by timestamp, ties kept in row order
    assert t["timestamp"].tolist() == [10, 15, 20, 20, 30]
    assert t["source_row"].tolist() == [4, 5, 3, 6, 2]
    assert t["module_id"].tolist() == ["A1", "A1", "L1", "A2", "A1"]
    assert t["timestep"].tolist() == [0, 0, 0, 1, 1]
    assert log.students.tolist() == ["s1", "s2"]
    assert t["timestamp"].dtype == np.int64  # user column unchanged


def test_timestep_derived_from_iso_timestamp(tmp_path):
    path = write(
        tmp_path,
        csv("s1,A1,assessment,1,2024-01-02T10:00:00", "s1,L1,lesson,,2024-01-01T12:00:00+00:00",
            "s1,A1,assessment,0,2024-01-01", header=HEADER + ",timestamp"),
    )
    log = read_interactions(path)
    assert log.table["source_row"].tolist() == [4, 3, 2]
    assert log.table["timestep"].tolist() == [0, 0, 1]
    assert log.table["timestamp"].tolist()[0] == "2024-01-01"


def test_bad_timestamp(tmp_path):
    path = write(tmp_path, csv("s1,A1,assessment,1,2024-01-02", "s1,L1,lesson,,yesterday", header=HEADER + ",timestamp"))
    with pytest.raises(InteractionLogError, match=r"line 3, column 'timestamp': .*got 'yesterday'"):
        read_interactions(path)


def test_explicit_timestep_used_as_given(tmp_path):
    # an explicit timestep wins over timestamp, and the row order is kept
    path = write(
        tmp_path,
        csv("s1,A1,assessment,1,2,5", "s1,L1,lesson,,0,9", "s1,A1,assessment,0,0,1",
            header=HEADER + ",timestep,timestamp"),
    )
    log = read_interactions(path)
    assert log.table["timestep"].tolist() == [2, 0, 0]
    assert log.table["source_row"].tolist() == [2, 3, 4]


def test_all_empty_timestep_column_is_derived(tmp_path):
    path = write(tmp_path, csv("s1,A1,assessment,1,", "s1,L1,lesson,,", "s1,A1,assessment,1,",
                               header=HEADER + ",timestep"))
    assert read_interactions(path).table["timestep"].tolist() == [0, 0, 1]


# --------------------------------------------------------------------------- #
# codes, ragged state layout, transitions (hand-checked)
# --------------------------------------------------------------------------- #
@pytest.fixture
def hand_log() -> InteractionLog:
    # u0 = "b": answers at 0, lesson L1 at 0, lesson L2 at 2 (step 1 has none) -> T = 3
    # u1 = "a": answers A2 at 0 only -> T = 0
    # u2 = "c": lesson L2 at 0, nothing after -> T = 1
    df = pd.DataFrame(
        {
            "student_id": ["b", "a", "b", "b", "c", "b", "b"],
            "module_id": ["A1", "A2", "L1", "A1", "L2", "L2", "A2"],
            "module_type": ["assessment", "assessment", "lesson", "assessment", "lesson", "lesson", "assessment"],
            "outcome": [0, 1, None, 1, None, None, 1],
            "timestep": [0, 0, 0, 1, 0, 2, 3],
        }
    )
    return read_interactions(df)


def test_codes_consistent_with_indexes(hand_log):
    log = hand_log
    t = log.table
    assert log.students.tolist() == ["b", "a", "c"]
    assert log.assessments.tolist() == ["A1", "A2"]
    assert log.lessons.tolist() == ["L1", "L2"]
    assert (log.students[t["student"]] == t["student_id"]).all()
    a = t[t["assessment"] >= 0]
    assert (log.assessments[a["assessment"]] == a["module_id"]).all()
    lessons = t[t["lesson"] >= 0]
    assert (log.lessons[lessons["lesson"]] == lessons["module_id"]).all()
    assert ((t["assessment"] >= 0) != (t["lesson"] >= 0)).all()
    for col in ("timestep", "source_row"):
        assert t[col].dtype == np.int64
    for col in ("student", "assessment", "lesson"):  # codes: int32 (issue 16, memory)
        assert t[col].dtype == np.int32
    for col in ("student_id", "module_id", "module_type"):  # text as category of str
        assert isinstance(t[col].dtype, pd.CategoricalDtype)
        assert pd.api.types.is_string_dtype(t[col].cat.categories.dtype)
    assert t["module_type"].cat.categories.tolist() == ["assessment", "lesson"]
    assert t["student_id"].cat.categories.tolist() == ["a", "b", "c"]  # sorted: sorts as str
    assert t.sort_values("student_id", kind="stable").index.tolist() == (
        t.astype({"student_id": "str"}).sort_values("student_id", kind="stable").index.tolist()
    )
    assert t["outcome"].dtype == np.float64
    assert isinstance(t.index, pd.RangeIndex)
    assert (log.n_students, log.n_assessments, log.n_lessons, log.n_interactions) == (3, 2, 2, 7)


def test_ragged_states(hand_log):
    log = hand_log
    assert log.state_offset.tolist() == [0, 4, 5, 7]
    assert log.state_student.tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert log.state_step.tolist() == [0, 1, 2, 3, 0, 0, 1]
    assert log.n_states == 7
    assert log.last_step.tolist() == [3, 0, 1]
    assert log.obs_state.tolist() == [0, 4, 1, 3]
    rows = log.assessment_rows()
    assert rows["row"].tolist() == [0, 1, 3, 6]
    assert rows["state"].tolist() == [0, 4, 1, 3]
    assert rows["student"].tolist() == [0, 1, 0, 0]
    assert rows["assessment"].tolist() == [0, 1, 0, 1]
    assert rows["outcome"].tolist() == [0, 1, 1, 1] and rows["outcome"].dtype == np.int8
    with pytest.raises(ValueError):
        log.state_offset[0] = 1  # read-only


def test_transitions(hand_log):
    tr = hand_log.transitions()
    assert list(tr.columns) == ["from_state", "to_state", "student", "step", "lesson"]
    assert tr.to_dict("list") == {
        "from_state": [0, 1, 2, 5],
        "to_state": [1, 2, 3, 6],
        "student": [0, 0, 0, 2],
        "step": [0, 1, 2, 0],
        "lesson": [0, -1, 1, 1],
    }
    assert all(tr[c].dtype == np.int64 for c in tr.columns)


def test_summary_and_repr(hand_log):
    s = hand_log.summary()
    assert s["n_interactions"] == 7 and s["n_states"] == 7 and s["n_transitions"] == 4
    assert s["n_assessment_rows"] == 4 and s["n_lesson_rows"] == 3
    assert s["pass_rate"] == pytest.approx(0.75)
    assert s["steps_per_student"] == {"min": 0, "median": 1.0, "max": 3}
    assert s["assessments_per_student"] == {"min": 0, "median": 1.0, "max": 3}
    assert repr(hand_log) == (
        "InteractionLog('<DataFrame>': 7 interactions, 3 students, 2 assessments, 2 lessons, 7 states)"
    )


def test_module_both_assessment_and_lesson():
    df = pd.DataFrame({"student_id": ["s", "s", "s"], "module_id": ["Q1", "Q1", "Q1"],
                       "module_type": ["assessment", "lesson", "assessment"], "outcome": [0, None, 1]})
    log = InteractionLog.from_frame(df)
    assert log.assessments.tolist() == ["Q1"] and log.lessons.tolist() == ["Q1"]
    assert log.table["timestep"].tolist() == [0, 0, 1]
    assert log.transitions()["lesson"].tolist() == [0]


def test_large_log_reads_whole():
    """A 400k-row table reads and yields every transition (its time, ~2 s, is measured by
    `python -m benchmarks.bench_read`, not asserted: issue 19 asked for no wall-clock
    asserts in tests)."""
    rng = np.random.default_rng(0)
    n = 400_000
    is_lesson = rng.random(n) < 0.3
    df = pd.DataFrame(
        {
            "student_id": rng.integers(0, 5000, n).astype(str),
            "module_id": np.where(is_lesson, "L", "A") + rng.integers(0, 100, n).astype(str),
            "module_type": np.where(is_lesson, "lesson", "assessment"),
            "outcome": np.where(is_lesson, np.nan, rng.integers(0, 2, n)),
        }
    )
    log = read_interactions(df)
    tr = log.transitions()
    assert log.n_interactions == n
    assert len(tr) == int(is_lesson.sum())


def test_ids_written_several_ways_are_one_id_with_a_warning():
    """Issue 19 item 18: 1, '1' and ' 1' are one student (ids are trimmed text), and
    the merge is announced instead of silent; clean ids give no warning."""
    import warnings

    import pandas as pd

    from bayes_lse.data.log import read_interactions

    df = pd.DataFrame({"student_id": [1, "1", " 1", "s2"], "module_id": ["A", "A", "A", "B"],
                       "module_type": "assessment", "outcome": [1, 0, 1, 1]})
    with pytest.warns(UserWarning, match=r"column 'student_id': 1 id\(s\) were written in several ways.*' 1'"):
        log = read_interactions(df)
    assert log.n_students == 2
    clean = pd.DataFrame({"student_id": ["a", "b"], "module_id": ["A", "A"], "module_type": "assessment",
                          "outcome": [1, 0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_interactions(clean)


# issue 19 item 17: a quoted field spanning lines put every later line number one too early
SPANNING = [HEADER, 's1,"two', 'lines",assessment,1', "s1,A2,assessment,1", ""]  # the record on lines 2-3


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_numbers_after_a_quoted_field_spanning_lines(tmp_path, newline):
    path = write(tmp_path, newline.join(SPANNING[:-1] + ["s1,A2,quiz,1", ""]))
    with pytest.raises(InteractionLogError, match=r"data\.csv, line 5, column 'module_type': .*got 'quiz'$"):
        read_interactions(path)
    ok = read_interactions(write(tmp_path, newline.join(SPANNING[:-1] + ["", 's2,"a', '', 'b",lesson,', "s2,A1,assessment,0", ""]), "ok.csv"))
    assert ok.table["source_row"].tolist() == [2, 4, 6, 9]  # the blank line 5 dropped, not miscounted


def test_ragged_row_after_a_spanning_field_names_its_file_line(tmp_path):
    path = write(tmp_path, "\n".join(SPANNING[:-1] + ["s1,A2,assessment,1,9", ""]))
    with pytest.raises(InteractionLogError, match=r"cannot be parsed as CSV .*line 5, saw 5"):
        read_interactions(path)


def test_spanning_fields_in_compressed_and_utf16_files(tmp_path):
    import gzip

    text = "\n".join(SPANNING[:-1] + ["s1,A2,assessment,maybe", ""])
    gz = tmp_path / "data.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(InteractionLogError, match=r"line 5, column 'outcome'"):
        read_interactions(gz)
    u16 = tmp_path / "u16.csv"
    u16.write_text(text, encoding="utf-16")
    with pytest.raises(InteractionLogError, match=r"line 5, column 'outcome'"):
        read_interactions(u16)


def test_huge_whole_float_ids_stay_distinct():
    """Found by the property suite: whole float ids beyond int64 overflowed the cast, so
    1e20 and 2e20 became one student '-9223372036854775808'."""
    df = pd.DataFrame({"student_id": [1e20, 2e20, 3.0], "module_id": ["A"] * 3,
                       "module_type": ["assessment"] * 3, "outcome": [1, 0, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log = read_interactions(df)
    assert list(log.table["student_id"]) == ["100000000000000000000", "200000000000000000000", "3"]
