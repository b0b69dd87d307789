"""The modules table (bayes_lse/data/modules.py): reading, validation, tag incidence,
JSON round trip, and the Riiid/EdNet metadata builders on the real files when present."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from bayes_lse.core.errors import InteractionLogError
from bayes_lse.data.modules import ModuleTable, ednet_modules, read_modules, riiid_modules

CSV = "module_id,module_type,tags,part\nq1,assessment,a;b,1\nq2,Assessment, b ,1\nL1,lesson,,2\n"


def test_read_csv_and_dataframe_agree(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(CSV)
    m = read_modules(p)
    assert m.table["tags"].tolist() == [("a", "b"), ("b",), ()]
    assert m.table["module_type"].tolist() == ["assessment", "assessment", "lesson"]
    assert m.groups == ["part"]
    d = read_modules(pd.read_csv(p, dtype=str, keep_default_na=False))
    pd.testing.assert_frame_equal(m.table, d.table)


def test_tag_incidence_in_model_order_and_unknown_modules(tmp_path):
    m = read_modules(pd.DataFrame({"module_id": ["q1", "q2"], "module_type": "assessment", "tags": ["x;y", "y"]}))
    indptr, indices, tags = m.tag_incidence(["q2", "q9", "q1"], "assessment")
    assert list(tags) == ["x", "y"]
    assert indptr.tolist() == [0, 1, 1, 3]  # q9 is not in the table: no tags
    assert indices.tolist() == [1, 0, 1]
    with pytest.raises(ValueError):
        m.tag_incidence(["q1"], "quiz")


def test_whitespace_separator_and_lists():
    m = read_modules(pd.DataFrame({"module_id": ["q1"], "module_type": ["assessment"], "tags": ["51 131  38"]}),
                     tag_separator=None)
    assert m.tags_of("q1", "assessment") == ("51", "131", "38")
    m = read_modules(pd.DataFrame({"module_id": ["q1"], "module_type": ["assessment"], "tags": [["u", "v", "u"]]}))
    assert m.tags_of("q1", "assessment") == ("u", "v")


@pytest.mark.parametrize(
    "text, line, column, words",
    [
        ("module_id,tags\nq1,a\n", 1, "module_type", "lacks column"),
        ("module_id,module_type\nq1,assessment\n,lesson\n", 3, "module_id", "empty module_id"),
        ("module_id,module_type\nq1,quiz\n", 2, "module_type", "must be"),
        ("module_id,module_type\nq1,assessment\nq2,lesson\nq1,assessment\n", 4, "module_id", "twice"),
    ],
)
def test_errors_name_source_line_and_column(tmp_path, text, line, column, words):
    p = tmp_path / "m.csv"
    p.write_text(text)
    with pytest.raises(InteractionLogError) as info:
        read_modules(p)
    msg = str(info.value)
    assert str(p) in msg and f"line {line}" in msg and column in msg and words in msg


def test_same_id_as_lesson_and_assessment_is_allowed():
    m = read_modules(pd.DataFrame({"module_id": ["x", "x"], "module_type": ["assessment", "lesson"]}))
    assert len(m) == 2 and m.tags_of("x", "lesson") == ()


def test_json_round_trip(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(CSV)
    m = read_modules(p)
    back = ModuleTable.from_json(m.to_json())
    pd.testing.assert_frame_equal(back.table.astype({"part": str}), m.table.astype({"part": str}))


def test_missing_folder_and_empty(tmp_path):
    with pytest.raises(InteractionLogError, match="folder"):
        read_modules(tmp_path)
    with pytest.raises(InteractionLogError, match="not found"):
        read_modules(tmp_path / "nope.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InteractionLogError, match="empty"):
        read_modules(tmp_path / "e.csv")


RIIID = SHARED_DATA / "riiid_26users"
EDNET = SHARED_DATA / "ednet_kt4_sample"


@pytest.mark.skipif(not RIIID.exists(), reason="../shared/data is not beside the repository")
def test_riiid_metadata_covers_the_log():
    from bayes_lse.data.log import read_interactions
    from bayes_lse.data.readers import read_riiid

    m = riiid_modules(RIIID / "questions.csv", RIIID / "lectures.csv")
    counts = m.table["module_type"].value_counts()
    assert counts["assessment"] == 13_523 and counts["lesson"] == 418
    assert m.tags_of("q0", "assessment") == ("t51", "t131", "t162", "t38")  # questions.csv line 2
    assert m.tags_of("l89", "lesson") == ("t159",)                          # lectures.csv line 2
    log = read_interactions(read_riiid([RIIID / "train.csv"], questions=RIIID / "questions.csv"))
    for ids, kind in ((log.assessments, "assessment"), (log.lessons, "lesson")):
        indptr, _, _ = m.tag_incidence(ids, kind)
        assert np.all(np.diff(indptr) >= 1)  # every module in the log has at least one tag


@pytest.mark.skipif(not EDNET.exists(), reason="../shared/data is not beside the repository")
def test_ednet_metadata():
    m = ednet_modules(EDNET / "questions.csv", EDNET / "lectures.csv")
    assert m.tags_of("q1", "assessment") == ("t1", "t2", "t179", "t181")
    assert m.tags_of("l520", "lesson") == ("t142",)
    assert not any("t-1" in t for t in m.table["tags"])


def test_key_matrix_averages_tags_and_group_values():
    m = read_modules(pd.DataFrame({"module_id": ["q1", "q2", "q3"], "module_type": "assessment",
                                   "tags": ["a;b", "b", ""], "part": ["1", "1", ""]}))
    mat, names = m.key_matrix(["q2", "q9", "q1", "q3"])
    assert names == ["a", "b", "part=1"]
    np.testing.assert_allclose(mat.toarray(), [[0, 0.5, 0.5], [0, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0, 0]])
    assert m.keys_of("assessment")["q1"] == frozenset({"a", "b", "part=1"})


def test_to_frame_reads_back_as_the_same_table(tmp_path):
    m = read_modules(pd.DataFrame({"module_id": ["q1", "L1"], "module_type": ["assessment", "lesson"],
                                   "tags": ["x;y", ""], "part": ["3", "4"]}))
    p = tmp_path / "m.csv"
    m.to_frame().to_csv(p, index=False)
    pd.testing.assert_frame_equal(read_modules(p).table, m.table)
    assert read_modules(m) is m  # an already validated table passes through
