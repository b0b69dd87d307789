"""The blog's toy scenarios (Figures 1-4) load and have the structure described."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_lse.data.log import read_interactions
from bayes_lse.data.examples import DEFAULT_REPEATS, EXAMPLES, load_example

COLUMNS = ["student_id", "module_id", "module_type", "outcome", "timestep"]


def answers(df: pd.DataFrame) -> dict[tuple[str, str, int], set[float]]:
    """(student, assessment, timestep) -> set of outcomes."""
    a = df[df["module_type"] == "assessment"]
    return {k: set(g["outcome"]) for k, g in a.groupby(["student_id", "module_id", "timestep"])}


def lessons(df: pd.DataFrame) -> dict[str, list[tuple[str, int]]]:
    les = df[df["module_type"] == "lesson"]
    return {s: list(zip(g["module_id"], g["timestep"])) for s, g in les.groupby("student_id")}


INTRANSITIVE = {
    ("Fogell", "A1", 0): {0.0}, ("Fogell", "A2", 0): {0.0},
    ("McLovin", "A1", 0): {1.0}, ("McLovin", "A2", 0): {1.0},
    ("Evan", "A1", 0): {0.0}, ("Evan", "A2", 0): {1.0},
    ("Seth", "A1", 0): {1.0}, ("Seth", "A2", 0): {0.0},
}  # fmt: skip


def test_names_and_descriptions():
    assert set(EXAMPLES) == {"alice", "intransitive", "orthogonal_lessons", "prerequisites"}
    assert all(isinstance(v, str) and v and "\n" not in v for v in EXAMPLES.values())


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_schema_and_reads(name):
    df = load_example(name)
    assert list(df.columns) == COLUMNS
    assert df["timestep"].dtype == np.int64 and df["outcome"].dtype == np.float64
    assert set(df["module_type"]) <= {"assessment", "lesson"}
    assert df.loc[df["module_type"] == "lesson", "outcome"].isna().all()
    assert df.loc[df["module_type"] == "assessment", "outcome"].isin([0.0, 1.0]).all()
    log = read_interactions(load_example(name))  # no warnings, no errors
    assert log.n_interactions == len(df)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_repeats(name):
    one, many = load_example(name, repeats=1), load_example(name)
    n_a1 = (one["module_type"] == "assessment").sum()
    n_l = (one["module_type"] == "lesson").sum()
    assert (many["module_type"] == "assessment").sum() == DEFAULT_REPEATS * n_a1
    assert (many["module_type"] == "lesson").sum() == n_l  # lessons are not repeated
    assert answers(one) == answers(many)
    assert lessons(one) == lessons(many)
    # each (student, assessment, step) answer appears exactly `repeats` times
    a = load_example(name, repeats=3)
    counts = a[a["module_type"] == "assessment"].groupby(["student_id", "module_id", "timestep"]).size()
    assert (counts == 3).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown example 'bob'"):
        load_example("bob")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="repeats"):
            load_example("alice", repeats=bad)


def test_alice():
    df = load_example("alice", repeats=1)
    expected = pd.DataFrame(
        {
            "student_id": ["Alice"] * 3,
            "module_id": ["A1", "L1", "A1"],
            "module_type": ["assessment", "lesson", "assessment"],
            "outcome": [0.0, np.nan, 1.0],
            "timestep": [0, 0, 1],
        }
    ).astype({"student_id": "str", "module_id": "str", "module_type": "str"})
    pd.testing.assert_frame_equal(df, expected)
    log = read_interactions(df)
    assert log.state_offset.tolist() == [0, 2]
    assert log.transitions()["lesson"].tolist() == [0]
    assert log.assessment_rows()["outcome"].tolist() == [0, 1]
    assert log.obs_state.tolist() == [0, 1]


def test_intransitive():
    df = load_example("intransitive")
    assert answers(df) == INTRANSITIVE
    assert lessons(df) == {}
    log = read_interactions(df)
    assert log.students.tolist() == ["Fogell", "McLovin", "Evan", "Seth"]
    assert log.assessments.tolist() == ["A1", "A2"]
    assert log.n_states == 4 and len(log.transitions()) == 0


def test_orthogonal_lessons():
    df = load_example("orthogonal_lessons")
    got = answers(df)
    # Figure 2 unchanged
    assert {k: v for k, v in got.items() if k[0] not in ("Slater", "Michaels")} == INTRANSITIVE
    # Slater starts like Evan, Michaels like Seth; after their lesson both pass A1 and A2
    assert got[("Slater", "A1", 0)] == {0.0} and got[("Slater", "A2", 0)] == {1.0}
    assert got[("Michaels", "A1", 0)] == {1.0} and got[("Michaels", "A2", 0)] == {0.0}
    for s in ("Slater", "Michaels"):
        assert got[(s, "A1", 1)] == {1.0} and got[(s, "A2", 1)] == {1.0}
    assert lessons(df) == {"Slater": [("L1", 0)], "Michaels": [("L2", 0)]}
    log = read_interactions(df)
    tr = log.transitions()
    assert log.lessons[tr["lesson"]].tolist() == ["L1", "L2"]
    assert log.students[tr["student"]].tolist() == ["Slater", "Michaels"]


def test_prerequisites():
    df = load_example("prerequisites")
    got = answers(df)
    assert {k: v for k, v in got.items() if k[1] != "A3"} == INTRANSITIVE
    students = ["Fogell", "McLovin", "Evan", "Seth"]
    for s in students:
        assert got[(s, "A3", 0)] == {0.0}
        assert got[(s, "A3", 1)] == ({1.0} if s == "McLovin" else {0.0})
    assert lessons(df) == {s: [("L1", 0)] for s in students}
    log = read_interactions(df)
    assert log.assessments.tolist() == ["A1", "A2", "A3"]
    assert log.lessons.tolist() == ["L1"]
    assert log.last_step.tolist() == [1, 1, 1, 1]
    assert (log.transitions()["lesson"] == 0).all()
