"""Property-based tests of hostile input (issue 19): whatever table or text comes in,
`read_interactions` and the readers either give a usable result or raise the one
error a user can act on (`InteractionLogError`) — never another exception.
Profile (examples per test) in tests/conftest.py."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra: pip install -e '.[test]'")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bayes_lse.core.errors import InteractionLogError  # noqa: E402
from bayes_lse.data.log import InteractionLog, read_interactions  # noqa: E402
from bayes_lse.data.readers import convert  # noqa: E402

ANY_CELL = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(),
    st.text(max_size=5), st.sampled_from(["", " ", "1", " 1", "1.0", "nan", "NA", "assessment", "lesson", "0"]),
)
IDS = st.one_of(st.integers(-3, 30), st.text(min_size=1, max_size=6).filter(lambda s: s.strip()),
                st.sampled_from(["1", " 1", "s1", "ü", "a,b", 'x"y', "line\nbreak"]))
FLOAT_IDS = st.one_of(st.integers(-5, 5).map(float), st.floats(allow_nan=False, allow_infinity=False),
                      st.sampled_from([1e20, 2e20, -1e300, 2.0**63, 0.5]))


def id_column(n: int):
    """A column of ids all of one kind (ints, floats, text) or mixed."""
    return st.one_of(*(st.lists(kind, min_size=n, max_size=n)
                       for kind in (st.integers(-3, 30), FLOAT_IDS, IDS)))


@st.composite
def tables(draw) -> pd.DataFrame:
    """Half the time a table that should be valid (ids of any kind, right types and
    outcomes), else any cells at all, with columns sometimes missing or extra."""
    n = draw(st.integers(1, 8))
    if draw(st.booleans()):
        types = draw(st.lists(st.sampled_from(["assessment", "lesson", " Assessment", "LESSON"]),
                              min_size=n, max_size=n))
        outcome = [np.nan if t.strip().lower() == "lesson" else draw(st.sampled_from([0, 1, 0.0, 1.0, "1", True]))
                   for t in types]
        cols = {"student_id": draw(id_column(n)), "module_id": draw(id_column(n)),
                "module_type": types, "outcome": outcome}
    else:
        cols = {c: draw(st.lists(ANY_CELL, min_size=n, max_size=n))
                for c in ("student_id", "module_id", "module_type", "outcome")}
        if draw(st.booleans()):
            cols["timestep"] = draw(st.lists(st.one_of(st.integers(-2, 6), ANY_CELL), min_size=n, max_size=n))
        if draw(st.booleans()):
            cols.pop(draw(st.sampled_from(sorted(cols))))
    if draw(st.booleans()):
        cols["timestamp"] = draw(st.lists(st.one_of(st.integers(0, 10**12), ANY_CELL), min_size=n, max_size=n))
    df = pd.DataFrame(cols)
    if draw(st.booleans()):  # index labels are what messages name for a DataFrame
        df.index = draw(st.lists(st.one_of(st.integers(), st.text(max_size=3)), min_size=n, max_size=n, unique=True))
    return df


def _as_id(values: pd.Series) -> list[str]:
    """The documented id rule (DESIGN §2): trimmed text; whole floats without '.0'."""
    if pd.api.types.is_float_dtype(values.dtype) and np.all(np.mod(values.dropna(), 1) == 0):
        return [str(int(v)) for v in values]
    return [str(v).strip() for v in values]


@given(tables())
def test_read_interactions_gives_a_log_whose_ids_round_trip_or_one_clear_error(df):
    before = df.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # merged ids and lesson outcomes warn; that is allowed
        warnings.simplefilter("error", RuntimeWarning)  # an overflowing cast made two huge float ids one
        try:
            log = read_interactions(df)
        except InteractionLogError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("<DataFrame>")
            pd.testing.assert_frame_equal(df, before)  # never modified
            return
    pd.testing.assert_frame_equal(df, before)
    assert isinstance(log, InteractionLog)
    t = log.table
    # source_row: the index label, or the position when labels are not integers
    pos = ([df.index.get_loc(r) for r in t["source_row"]] if pd.api.types.is_integer_dtype(df.index.dtype)
           else list(t["source_row"]))
    for col in ("student_id", "module_id"):
        expected = _as_id(df[col])
        assert list(t[col]) == [expected[p] for p in pos], col
    assert list(log.students[t["student"].to_numpy()]) == list(t["student_id"])
    assert set(log.students) == set(_as_id(df["student_id"]))
    assessed = t["module_type"] == "assessment"
    assert set(t.loc[assessed, "outcome"]) <= {0.0, 1.0}


LINE = st.lists(st.one_of(st.sampled_from(["1", "0", "-1", "q1", "l2", "e3", "s1", "", " ", '"', '"a\nb"', "\t",
                                           "respond", "submit", "enter", "CORRECT", "STUDY", "2015-11-02 10:00:00"]),
                          st.text(max_size=4)), max_size=6)
TEXT = st.one_of(st.text(max_size=60),
                 st.lists(LINE, max_size=8).map(lambda rows: "\n".join(",".join(r) for r in rows)),
                 st.lists(LINE, max_size=8).map(lambda rows: "\n".join("\t".join(r) for r in rows)))
HEADERS = {"riiid": "row_id,timestamp,user_id,content_id,content_type_id,task_container_id,answered_correctly\n",
           "ednet-kt4": "timestamp,action_type,item_id,source,user_answer,platform\n",
           "datashop": "Anon Student Id\tTime\tOutcome\tProblem Name\tStep Name\tKC (Default)\n",
           "assistments-dkt": ""}


@given(fmt=st.sampled_from(sorted(HEADERS)), header=st.booleans(), text=TEXT, raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_convert_of_any_text_gives_a_table_or_one_clear_error(tmp_path_factory, fmt, header, text, raw):
    folder = tmp_path_factory.mktemp("convert")
    data = folder / ("u1.csv" if fmt == "ednet-kt4" else "in.csv")
    if raw is not None:
        data.write_bytes(raw)
    else:
        data.write_text((HEADERS[fmt] if header else "") + text, encoding="utf-8")
    inputs = [data]
    if fmt == "ednet-kt4":
        (folder / "questions.csv").write_text("question_id,bundle_id,correct_answer\nq1,b1,a\n" + text,
                                              encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            out = convert(fmt, inputs)
        except InteractionLogError as exc:
            assert "\n" not in str(exc)
            return
    assert isinstance(out, pd.DataFrame)
    assert {"student_id", "module_id", "module_type", "outcome", "timestep"} <= set(out.columns)
