"""`sniff_format`: which raw public format a file that failed validation looks like (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayes_lse.data.readers import sniff_format

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "readers"


@pytest.mark.parametrize("text, fmt", [
    ("3\n10,11,10,\n1,0,1,\n", "assistments-dkt"),
    ("timestamp,action_type,item_id,cursor_time,source,user_answer,platform\n1,enter,b1,,x,,web\n", "ednet-kt4"),
    ("row_id,timestamp,user_id,content_id,content_type_id,task_container_id\n0,0,1,5,0,0\n", "riiid"),
    ("Anon Student Id\tTime\tOutcome\tKC (Default)\ns1\t1\tCORRECT\tk\n", "datashop"),
    ("Anon.Student.Id,Time,Outcome\ns1,1,CORRECT\n", "datashop"),  # R-mangled names
    ("student_id,module_id,module_type\ns1,A1,assessment\n", None),  # our table, missing a column
    ("3\n10,11\n1,0\n", None),  # a length that does not match its block
    ("", None),
])
def test_sniff_format(tmp_path, text, fmt):
    (tmp_path / "f.csv").write_text(text)
    assert sniff_format(tmp_path / "f.csv") == fmt


def test_sniff_format_on_folders_and_missing_files(tmp_path):
    assert sniff_format(FIXTURES / "ednet") == "ednet-kt4"
    assert sniff_format(tmp_path) is None
    assert sniff_format(tmp_path / "nope.csv") is None
