"""DataShop transaction exports (bayes_lse/data/datashop.py): tiny hand-written exports in
both spellings, every error path, and the real MoFaCTS export when ../shared/data is there."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA

from bayes_lse.core.errors import InteractionLogError
from bayes_lse.data.datashop import datashop_modules, read_datashop
from bayes_lse.data.log import read_interactions
from bayes_lse.data.readers import convert

MOFACTS = SHARED_DATA / "mofacts_statistics_cloze" / "largerawsample.csv.gz"

TAB = (
    "Anon Student Id\tTime\tOutcome\tProblem Name\tStep Name\tKC (Default)\tKC (Cluster)\n"
    "s2\t2015-11-02 10:00:05\tCORRECT\tP1\tS1\titemA\tfact1\n"      # line 2
    "s1\t2015-11-02 10:00:00\tSTUDY\tP1\tS1\titemA\tfact1\n"        # line 3
    "s1\t2015-11-02 10:00:09\tINCORRECT\tP2\tS1\titemB\tfact1\n"    # line 4
    "s1\t2015-11-02 10:00:09\tCORRECT\tP1\tS1\titemA\tfact1\n"      # line 5: tie with line 4
    "s2\t2015-11-02 10:00:01\tHINT\tP2\tS1\titemB\tfact1\n"         # line 6
    "s1\t2015-11-02 10:00:03\tSTUDY\tP2\tS1\titemB\tfact1\n"        # line 7
)


def _write(tmp_path, text, name="tx.txt", compress=False):
    p = tmp_path / (name + (".gz" if compress else ""))
    if compress:
        with gzip.open(p, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def _r_spelling(text: str) -> str:
    """The same export after a trip through R: comma-separated, names mangled."""
    header, *rows = text.splitlines()
    names = [n.replace(" ", ".").replace("(", ".").replace(")", ".") for n in header.split("\t")]
    return "\n".join([",".join(names)] + [r.replace("\t", ",") for r in rows]) + "\n"


def test_order_types_outcomes_and_timesteps(tmp_path):
    t = read_datashop(_write(tmp_path, TAB))
    # students in order of first appearance (s2 first), each by time, ties in file order
    assert t["student_id"].tolist() == ["s2", "s2", "s1", "s1", "s1", "s1"]
    assert t["module_id"].tolist() == ["itemB", "itemA", "itemA", "itemB", "itemB", "itemA"]
    assert t["module_type"].tolist() == ["assessment", "assessment", "lesson", "lesson", "assessment", "assessment"]
    np.testing.assert_array_equal(t["outcome"].to_numpy(), [0.0, 1.0, np.nan, np.nan, 0.0, 1.0])  # HINT -> 0
    assert t["timestep"].tolist() == [0, 0, 0, 1, 2, 2]
    assert t["timestamp"].iloc[0] == pd.Timestamp("2015-11-02 10:00:01").value // 1_000_000
    read_interactions(t)  # a valid DESIGN §2 table


def test_r_mangled_comma_separated_gzip_reads_the_same(tmp_path):
    a = read_datashop(_write(tmp_path, TAB))
    b = read_datashop(_write(tmp_path, _r_spelling(TAB), name="tx.csv", compress=True))
    pd.testing.assert_frame_equal(a, b)


def test_module_column_and_lesson_outcomes_options(tmp_path):
    p = _write(tmp_path, TAB)
    t = read_datashop(p, module_column="KC..Cluster.")
    assert set(t["module_id"]) == {"fact1"}
    t = read_datashop(p, lesson_outcomes=["hint", "study"])
    assert (t["module_type"] == "lesson").sum() == 3


def test_without_kc_the_module_is_problem_and_step(tmp_path):
    text = "\n".join("\t".join(r.split("\t")[:5]) for r in TAB.splitlines()) + "\n"
    t = read_datashop(_write(tmp_path, text))
    assert t["module_id"].iloc[0] == "P2 | S1"


@pytest.mark.parametrize(
    "edit, column, line, words",
    [
        (lambda s: s.replace("\tHINT\t", "\tUNGRADED\t"), "Outcome", 6, "unknown outcome"),
        (lambda s: s.replace("2015-11-02 10:00:09\tINCORRECT", "yesterday\tINCORRECT"), "Time", 4, "does not parse"),
        (lambda s: s.replace("s1\t2015-11-02 10:00:03", "\t2015-11-02 10:00:03"), "Anon Student Id", 7, "empty student"),
        (lambda s: s.replace("\titemB\tfact1\n", "\t\tfact1\n", 1), "KC (Default)", 4, "empty module"),
        (lambda s: s.replace("Outcome", "Result"), "Outcome", 1, "lacks the outcome column"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path, edit, column, line, words):
    p = _write(tmp_path, edit(TAB))
    with pytest.raises(InteractionLogError) as info:
        read_datashop(p)
    msg = str(info.value)
    assert words in msg and str(p) in msg and f"line {line}" in msg and column in msg


def test_drop_outcomes_drops_what_it_names(tmp_path):
    p = _write(tmp_path, TAB.replace("\tHINT\t", "\tUNGRADED\t"))
    t = read_datashop(p, drop_outcomes=["ungraded"])
    assert len(t) == 5


def test_folder_missing_and_empty_inputs(tmp_path):
    for p, words in [(tmp_path, "folder"), (tmp_path / "nope.txt", "not found"), (_write(tmp_path, "", "e.txt"), "empty")]:
        with pytest.raises(InteractionLogError, match=words):
            read_datashop(p)


def test_modules_table_gives_kc_tags(tmp_path):
    m = datashop_modules(_write(tmp_path, TAB))
    row = m.set_index(["module_id", "module_type"]).loc[("itemA", "assessment")]
    assert row["tags"] == "fact1;itemA"
    assert len(m) == 4  # itemA/itemB as assessment and as lesson


def test_convert_and_cli(tmp_path):
    from bayes_lse.cli import main

    p = _write(tmp_path, TAB)
    assert len(convert("datashop", [p], module_column="KC (Cluster)")) == 6
    with pytest.raises(ValueError, match="unknown option"):
        convert("datashop", [p], items_as_lessons=True)
    out = tmp_path / "out.csv"
    r = CliRunner().invoke(main, ["convert", "--from", "datashop", str(p), "-o", str(out), "--lesson-outcomes", "STUDY,HINT"])
    assert r.exit_code == 0, r.output
    assert "3 lessons" in r.output and out.exists()
    r = CliRunner().invoke(main, ["convert", "--from", "riiid", str(p), "-o", str(tmp_path / "x.csv"), "--module-column", "x"])
    assert r.exit_code == 2 and "datashop only" in r.output


@pytest.mark.skipif(not MOFACTS.exists(), reason="../shared/data is not beside the repository")
def test_real_mofacts_export():
    t = read_datashop(MOFACTS)
    assert len(t) == 58_316 and t["student_id"].nunique() == 478
    counts = t["module_type"].value_counts()
    assert counts["lesson"] == 3_194 and counts["assessment"] == 55_122
    assert t.loc[t["module_type"] == "assessment", "outcome"].sum() == 30_045  # CORRECT rows
    assert t["module_id"].nunique() == 144
    assert read_datashop(MOFACTS, module_column="KC (Cluster)")["module_id"].nunique() == 36
    # within each student, time never goes backwards
    assert (t.groupby("student_id", sort=False)["timestamp"].diff().fillna(0) >= 0).all()
    m = datashop_modules(MOFACTS)
    assert len(m) == 288 and (m["tags"].str.count(";") == 1).all()  # each item: itself and its fact


def test_line_numbers_count_spanning_fields_and_blank_lines(tmp_path):
    """Issue 19 item 17: a quoted field spanning two lines (line 2-3) and a skipped blank
    line (5) put the unknown outcome, on line 8, at line 6."""
    text = TAB.replace("P1\tS1\titemA\tfact1\n", 'P1\tS1\titemA\t"fact\n1"\n', 1)
    text = text.replace("s1\t2015-11-02 10:00:09\tCORRECT", "\ns1\t2015-11-02 10:00:09\tCORRECT", 1)
    p = _write(tmp_path, text.replace("\tHINT\t", "\tUNGRADED\t"))
    with pytest.raises(InteractionLogError, match=r"line 8, column 'Outcome': unknown outcome 'UNGRADED'"):
        read_datashop(p)
