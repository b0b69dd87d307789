"""`bayes-lse plan` and `FittedLSE.plan` on the tiny MAP fit (in-process, click's runner)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bayes_lse.cli.commands import main


@pytest.fixture(scope="module")
def saved(tiny_map, tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "m"
    tiny_map.save(path)
    return path


def test_plan_json_parses(saved):
    r = CliRunner().invoke(main, ["plan", str(saved), "--student", "s00", "--goal", "A0", "--goal", "A1",
                                  "--format", "json", "--tree", "2", "--horizon", "3", "--seed", "0"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["next"]["kind"] in ("lesson", "assess", "stop")
    assert out["goals"] == ["A0", "A1"] and out["policy"] == "voi"
    lo, hi = out["next"]["band"]
    assert lo <= out["next"]["value"] <= hi
    assert out["tree"]["kind"] == out["next"]["kind"]


def test_plan_table_and_errors(saved):
    r = CliRunner().invoke(main, ["plan", str(saved), "--student", "s00", "--goal", "A0", "--policy", "receding"])
    assert r.exit_code == 0, r.output
    assert "Next: " in r.output and "policy receding" in r.output
    r = CliRunner().invoke(main, ["plan", str(saved), "--student", "nobody", "--goal", "A0"])
    assert r.exit_code == 2 and "--history" in r.output


def test_api_plan_for_a_new_student(tiny_map, tiny_cohort):
    hist = tiny_cohort.table[tiny_cohort.table.student_id == "s01"].head(5)
    adv = tiny_map.plan(goal=["A2"], history=hist, policy="greedy", seed=1)
    assert adv.student == "new student" and adv.action.kind in ("lesson", "assess", "stop")
    assert json.loads(adv.to_json())["next"]["policy"] == "greedy"


def test_plan_history_student_placement_option(saved, tiny_cohort, tmp_path):
    """--placement reaches the new student's placement: 'amortised' without an encoder is
    refused in one line; 'exact' plans."""
    hist = tmp_path / "h.csv"
    tiny_cohort.table[tiny_cohort.table.student_id == "s01"].head(5).to_csv(hist, index=False)
    base = ["plan", str(saved), "--history", str(hist), "--goal", "A2", "--policy", "greedy", "--seed", "1"]
    r = CliRunner().invoke(main, [*base, "--placement", "amortised"])
    assert r.exit_code == 2 and "no amortised encoder" in r.output
    r = CliRunner().invoke(main, [*base, "--placement", "exact"])
    assert r.exit_code == 0, r.output
    assert "Next: " in r.output
